import Foundation
import CUDADriver
import Tensors

/// `ComputeBackend` on one NVIDIA GPU.
///
/// Numerics: weights stay in their stored dtype (bf16, or f16/f32); activations are f32; the
/// paged KV pool is bf16 (half the memory of f32, so twice the context); every reduction
/// accumulates in f32. Dense matrix products go through cuBLASLt with bf16 operands (the f32
/// activation is narrowed to bf16 first) and f32 output; without cuBLASLt, or for f16/f32
/// weights, a SIMT kernel with f32 activations is used.
///
/// All work is queued on one stream in call order, so ops need no further synchronisation;
/// only `read*` and `synchronize` wait for the device.
public final class CUDABackend: ComputeBackend, @unchecked Sendable {
    // @unchecked: immutable handles plus mutable caches (scratch buffers, matmul plans, upload
    // state) that are only touched under `lock`; the driver API is thread-safe.
    public typealias Tensor = CUDATensor

    /// How `matmul` multiplies.
    public enum MatmulPath: String, Sendable {
        /// cuBLASLt, bf16 × bf16 → f32 (weights must be bf16).
        case cublasLt
        /// The SIMT kernel in matmul.cu (any weight dtype, f32 activations).
        case simt
    }

    /// How the MoE experts run past the GEMV sizes (bf16 weights, cuBLASLt matmul path).
    public enum MoEPath: String, Sendable, CaseIterable {
        /// By step size: `dense` up to `moeDenseMaxTokens` tokens, then `grouped`, or `tensorCore`
        /// while a replayable step is recorded (the grouped path reads the counts on the host).
        case automatic
        /// The mma.sync kernels of moe.cu over the pairs grouped by expert (no host sync).
        case tensorCore
        /// Every expert on every token by cuBLASLt, the routing weights applied in the sum.
        case dense
        /// Each expert's gathered tokens by cuBLASLt (one host sync per call).
        case grouped
    }

    public let device: CUDADevice
    let stream: CUhandle
    let kernels: KernelLibrary
    let blas: BLASLtMatmul?
    let uploader: WeightUploader
    let lock = NSLock()
    private var scratch: [ScratchSlot: (pointer: CUdeviceptr, bytes: Int)] = [:]
    private var preferredMatmul: MatmulPath
    private var decodeKernelsEnabled = true
    private var moePathSetting: MoEPath
    private var graphsEnabled: Bool
    private var recording = false
    private var capturing = false
    /// Instantiated step recordings, and the shapes seen once (recorded on their second step).
    private var graphs: [GraphKey: CUhandle] = [:]
    private var seenShapes: Set<GraphKey> = []

    /// A recording depends on the step's shape and on the settings that choose kernels.
    struct GraphKey: Hashable {
        let shape: StepShape
        let decodeKernels: Bool
        let matmul: MatmulPath
        let moe: MoEPath
    }

    /// Blocks per multiprocessor the GEMV split aims for (more warps per row on short matrices):
    /// 8 measured 5.53 ms against 5.64 ms for 4 on a Mistral-7B batch-1 step (H200, 2026-11-27).
    /// `MIXTRAL_GEMV_BLOCKS_PER_SM` overrides it, for tuning runs.
    let gemvBlocksPerSM: Int

    /// Whether GEMVs are launched with programmatic dependent launch (sm_90 and cuLaunchKernelEx):
    /// its blocks may be scheduled while the previous kernel finishes and wait on the device
    /// (gemv.cu), which hides part of the gap between kernels. `MIXTRAL_PDL=0` turns it off.
    public let programmaticLaunch: Bool

    public var name: String { device.name }
    public var kvElementBytes: Int { 2 }
    public var gpuCount: Int { 1 }

    /// Why cuBLASLt is not used, when it is not (library missing); nil when it is.
    public let cublasUnavailableReason: String?
    /// This GPU's place in a tensor-parallel group (nil: a model on one GPU without NCCL).
    public let parallel: (group: NCCLGroup, rank: Int)?

    /// Opens GPU `ordinal`, loads NVRTC and (if present) cuBLASLt. Throws
    /// `CUDADriverError.libraryNotFound` / `.noDevice` on a machine without a usable GPU.
    public init(ordinal: Int = 0, environment: [String: String] = ProcessInfo.processInfo.environment,
                parallel: (group: NCCLGroup, rank: Int)? = nil) throws {
        self.parallel = parallel
        let device = try CUDADevice(ordinal: ordinal, api: try DriverAPI.load(environment: environment))
        self.device = device
        stream = try device.createStream()
        let nvrtc = try NVRTC.load(environment: environment)
        let compiler = try KernelCompiler(nvrtc: nvrtc, cache: KernelDiskCache(directory: KernelDiskCache.defaultDirectory(environment: environment)))
        kernels = KernelLibrary(device: device, compiler: compiler)
        var reason: String?
        var blas: BLASLtMatmul?
        do {
            blas = try BLASLtMatmul(api: try CuBLASLt.load(environment: environment), device: device)
        } catch {
            reason = "\(error)"
        }
        self.blas = blas
        cublasUnavailableReason = reason
        preferredMatmul = blas == nil ? .simt : .cublasLt
        uploader = try WeightUploader(device: device, computeStream: stream)
        programmaticLaunch = environment["MIXTRAL_PDL"] != "0" && device.api.cuLaunchKernelEx != nil
            && (Int(device.arch.dropFirst(3)) ?? 0) >= 90
        gemvBlocksPerSM = environment["MIXTRAL_GEMV_BLOCKS_PER_SM"].flatMap { Int($0) }.map { max(1, min($0, 32)) } ?? 8
        moePathSetting = environment["MIXTRAL_MOE_PATH"].flatMap(MoEPath.init(rawValue:)) ?? .automatic
        graphsEnabled = environment["MIXTRAL_CUDA_GRAPHS"] != "0" && device.api.cuGraphLaunch != nil
            && device.api.cuStreamBeginCapture != nil && device.api.cuStreamEndCapture != nil
            && device.api.cuGraphInstantiateWithFlags != nil
    }

    deinit {
        dropGraphs()
    }

    /// Which path `matmul` takes for bf16 weights (f16/f32 weights always take `.simt`). Also picks
    /// the MoE experts for more than 16 pairs: `.cublasLt` → the tensor-core kernels (moe_mma_*,
    /// bf16 operands), `.simt` → the SIMT tile kernels (f32 activations).
    public var matmulPath: MatmulPath {
        get { lock.withLock { preferredMatmul } }
        set { lock.withLock { preferredMatmul = (newValue == .cublasLt && blas == nil) ? .simt : newValue } }
    }

    /// Whether the small-batch kernels are used: GEMV for matmuls of ≤ 4 rows (bf16 weights),
    /// GEMV-style MoE experts for ≤ 16 (token, expert) pairs, split-KV attention when the
    /// (token, KV head) grid is too small to fill the GPU, and the tensor-core prefill attention
    /// for steps of ≥ 64 query tokens (`prefillAttentionTiles`). Off: the general kernels
    /// everywhere (the conformance suite runs both ways).
    public var decodeKernels: Bool {
        get { lock.withLock { decodeKernelsEnabled } }
        set { lock.withLock { decodeKernelsEnabled = newValue } }
    }

    /// Which MoE expert path runs past the GEMV sizes; `.automatic` unless a check or benchmark
    /// pins one (`MIXTRAL_MOE_PATH` sets the start value). A pinned `.grouped` still takes the
    /// tensor-core kernels while a step is recorded.
    public var moePath: MoEPath {
        get { lock.withLock { moePathSetting } }
        set { lock.withLock { moePathSetting = newValue } }
    }

    /// Whether pure decode steps (one token per sequence) are recorded as CUDA graphs and
    /// replayed (`replayable`). On by default where the driver has graphs;
    /// `MIXTRAL_CUDA_GRAPHS=0` turns it off.
    public var stepGraphs: Bool {
        get { lock.withLock { graphsEnabled } }
        set {
            lock.withLock { graphsEnabled = newValue && device.api.cuGraphLaunch != nil }
            if !newValue { dropGraphs() }
        }
    }

    /// Number of instantiated step recordings (for checks and reports).
    public var recordedSteps: Int { lock.withLock { graphs.count } }

    /// True while a replayable step's ops are queued or recorded: ops then size their work from
    /// the step's shape and the buffers' capacities only (never from host-side contents such as
    /// the current context lengths), so the recording stays valid for later steps.
    var recordingStep: Bool { lock.withLock { recording } }

    /// "sm_90", NVRTC version and the kernel files compiled (not cached) by this process.
    public var kernelReport: String {
        let v = kernels.compiler.nvrtcVersion
        return "\(device.arch), NVRTC \(v.major).\(v.minor), compiled now: \(kernels.compiledFiles.isEmpty ? "none (all cached)" : kernels.compiledFiles.joined(separator: " "))"
    }

    /// Compiles/loads every kernel now, so a kernel problem is reported at start-up.
    public func loadKernels() throws { try kernels.loadAll() }

    // MARK: memory

    /// A tensor of `dtype` and `shape`, with room for `scaleCount` f32 row scales beside it (e4m3
    /// weights; a second allocation, freed with the tensor).
    func allocate(dtype: DType, shape: [Int], scaleCount: Int = 0) throws -> CUDATensor {
        let count = shape.reduce(1, *)
        guard count >= 0, shape.allSatisfy({ $0 >= 0 }) else { throw BackendError.shapeMismatch("negative dimension in \(shape)") }
        let bytes = count * dtype.byteSize
        var p: CUdeviceptr = 0
        do {
            p = try device.allocate(bytes)
            let scales: CUdeviceptr = try scaleCount > 0 ? device.allocate(scaleCount * 4) : 0
            return CUDATensor(pointer: p, byteCount: bytes, dtype: dtype, shape: shape, device: device,
                              rowScales: scales, scaleCount: scaleCount)
        } catch {
            if p != 0 { device.free(p) }
            guard let e = error as? CUDADriverError, e.isOutOfMemory else { throw error }
            let info = (try? device.memoryInfo()).map { " (\($0.free >> 20) MiB free of \($0.total >> 20) MiB)" } ?? ""
            throw BackendError.outOfMemory(requestedBytes: bytes + scaleCount * 4, detail: "\(dtype.rawValue) \(shape) on \(device.name)\(info)")
        }
    }

    /// Weight dtypes this backend's kernels read; anything else fails at load with a clear error.
    /// e4m3 (the FP8 scheme) is read by the matrix ops only (`matrixDTypes`): an e4m3 norm,
    /// embedding or router weight is refused by the op that gets it.
    func requireUploadable(_ dtype: DType) throws {
        guard matrixDTypes.contains(dtype) else {
            throw BackendError.unsupported("\(dtype.rawValue) weights on CUDA")
        }
        // The e4m3 kernels compile (NVRTC, in CI) and their conformance cases pass on the CPU,
        // but they have not yet run on a GPU: until cuda-check has passed them there, they are
        // opt-in (cuda-check opts in to check them).
        if dtype == .e4m3, ProcessInfo.processInfo.environment["MIXTRAL_CUDA_FP8"] != "1" {
            throw BackendError.unsupported("fp8 (e4m3) weights on CUDA: the FP8 kernels have not passed cuda-check on a GPU yet; set MIXTRAL_CUDA_FP8=1 to use them anyway, or load with --device cpu")
        }
    }

    public func upload(_ weight: HostTensor) throws -> CUDATensor {
        try requireUploadable(weight.dtype)
        let t = try allocate(dtype: weight.dtype, shape: weight.shape, scaleCount: scaleRows([weight]))
        try uploader.copy(weight.data, to: t.pointer)
        try copyRowScales([weight], to: t)
        return t
    }

    public func upload(stacking parts: [HostTensor]) throws -> CUDATensor {
        guard let first = parts.first else { throw BackendError.shapeMismatch("upload(stacking:) of no parts") }
        try requireUploadable(first.dtype)
        for (i, p) in parts.enumerated() where p.shape != first.shape || p.dtype != first.dtype {
            throw BackendError.shapeMismatch("stacked part \(i) is \(p.dtype.rawValue) \(p.shape), part 0 is \(first.dtype.rawValue) \(first.shape)")
        }
        let t = try allocate(dtype: first.dtype, shape: [parts.count] + first.shape, scaleCount: scaleRows(parts))
        let partBytes = first.data.count
        for (i, p) in parts.enumerated() {
            try uploader.copy(p.data, to: t.pointer + CUdeviceptr(i * partBytes))
        }
        try copyRowScales(parts, to: t)   // (E, N): expert after expert
        return t
    }

    public func upload(concatenatingRows parts: [HostTensor]) throws -> CUDATensor {
        guard let first = parts.first, first.shape.count == 2 else {
            throw BackendError.shapeMismatch("upload(concatenatingRows:) needs 2-D parts, got \(parts.first?.shape ?? [])")
        }
        try requireUploadable(first.dtype)
        for (i, p) in parts.enumerated() where p.shape.count != 2 || p.shape[1] != first.shape[1] || p.dtype != first.dtype {
            throw BackendError.shapeMismatch("joined part \(i) is \(p.dtype.rawValue) \(p.shape), part 0 is \(first.dtype.rawValue) (_, \(first.shape[1]))")
        }
        let t = try allocate(dtype: first.dtype, shape: [parts.reduce(0) { $0 + $1.shape[0] }, first.shape[1]],
                             scaleCount: scaleRows(parts))
        var offset = 0
        for p in parts {
            try uploader.copy(p.data, to: t.pointer + CUdeviceptr(offset))
            offset += p.data.count
        }
        try copyRowScales(parts, to: t)   // ΣN: the joined rows' scales in the same order
        return t
    }

    public func makeActivation(_ shape: [Int]) throws -> CUDATensor { try allocate(dtype: .f32, shape: shape) }

    public func makeIndices(_ count: Int) throws -> CUDATensor { try allocate(dtype: .i32, shape: [count]) }

    public func makeKVPool(blocks: Int, blockSize: Int, kvHeads: Int, headDim: Int) throws -> CUDATensor {
        try allocate(dtype: .bf16, shape: [blocks, blockSize, kvHeads, headDim])
    }

    public func write(_ values: [Int32], to tensor: CUDATensor) throws {
        guard tensor.dtype == .i32 || tensor.dtype == .f32, values.count * 4 <= tensor.byteCount else {
            throw BackendError.shapeMismatch("writing \(values.count) i32 values into \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        try copyToDevice(values, tensor)
    }

    public func write(_ values: [Float], to tensor: CUDATensor) throws {
        guard tensor.dtype == .f32, values.count * 4 <= tensor.byteCount else {
            throw BackendError.shapeMismatch("writing \(values.count) f32 values into \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        try copyToDevice(values, tensor)
    }

    private func copyToDevice<T>(_ values: [T], _ tensor: CUDATensor) throws {
        guard !values.isEmpty else { return }
        try device.makeCurrent()
        // From pageable memory the driver stages the bytes before returning, so `values` may go.
        try values.withUnsafeBytes { raw in
            try device.api.check(device.api.cuMemcpyHtoDAsync(tensor.pointer, raw.baseAddress, raw.count, stream), "cuMemcpyHtoDAsync_v2")
        }
    }

    public func readFloats(_ tensor: CUDATensor, count: Int) throws -> [Float] {
        guard count >= 0, count <= tensor.elementCount else {
            throw BackendError.shapeMismatch("reading \(count) elements of \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        if count == 0 { return [] }
        try device.makeCurrent()
        switch tensor.dtype {
        case .f32:
            var out = [Float](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out
        case .i32:
            var out = [Int32](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map(Float.init)
        case .bf16:
            var out = [UInt16](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map(BFloat16.toFloat)
        case .f16:
            var out = [UInt16](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map { Float(Float16(bitPattern: $0)) }
        case .e4m3:
            throw BackendError.unsupported("readFloats of e4m3 weights")
        }
    }

    private func copyFromDevice<T>(_ tensor: CUDATensor, into out: inout [T]) throws {
        try out.withUnsafeMutableBytes { raw in
            try device.api.check(device.api.cuMemcpyDtoHAsync(raw.baseAddress, tensor.pointer, raw.count, stream), "cuMemcpyDtoHAsync_v2")
            try device.api.check(device.api.cuStreamSynchronize(stream), "cuStreamSynchronize (after a kernel or copy)")
        }
    }

    public func synchronize() throws {
        try device.makeCurrent()
        try device.api.check(device.api.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    // MARK: step graphs

    /// Pure decode steps (tokens == sequences) are recorded on the second step of a shape (the
    /// first runs normally: it compiles kernels, makes cuBLASLt plans and grows scratch buffers)
    /// and replayed from then on with one launch. Other steps run `body` as is.
    public func replayable(_ shape: StepShape, _ body: () throws -> Void) throws {
        let key = GraphKey(shape: shape, decodeKernels: decodeKernels, matmul: matmulPath, moe: moePath)
        let (enabled, graph, seen): (Bool, CUhandle?, Bool) = lock.withLock {
            (graphsEnabled && shape.tokens == shape.sequences, graphs[key], seenShapes.contains(key))
        }
        guard enabled else { return try body() }
        let api = device.api
        try device.makeCurrent()
        if let graph, let launch = api.cuGraphLaunch {
            try api.check(launch(graph, stream), "cuGraphLaunch")
            return
        }
        setRecording(true, capture: false)
        defer { setRecording(false, capture: false) }
        guard seen, let begin = api.cuStreamBeginCapture, let end = api.cuStreamEndCapture,
              let instantiate = api.cuGraphInstantiateWithFlags, let launch = api.cuGraphLaunch else {
            try body()
            _ = lock.withLock { seenShapes.insert(key) }
            return
        }
        setRecording(true, capture: true)
        try api.check(begin(stream, 2), "cuStreamBeginCapture (relaxed)")   // 2 = CU_STREAM_CAPTURE_MODE_RELAXED
        var captured: CUhandle?
        do {
            try body()
        } catch {
            // Nothing was executed: end the capture, drop it, and run the step for real.
            _ = end(stream, &captured)
            if let captured { _ = api.cuGraphDestroy?(captured) }
            setRecording(true, capture: false)
            try body()
            return
        }
        try api.check(end(stream, &captured), "cuStreamEndCapture")
        defer { if let captured { _ = api.cuGraphDestroy?(captured) } }
        var exec: CUhandle?
        try api.check(instantiate(&exec, captured, 0), "cuGraphInstantiateWithFlags")
        guard let exec else { throw BackendError.device("cuGraphInstantiateWithFlags returned no graph") }
        lock.withLock { graphs[key] = exec }
        try api.check(launch(exec, stream), "cuGraphLaunch")
    }

    private func setRecording(_ on: Bool, capture: Bool) {
        lock.withLock {
            recording = on
            capturing = capture
        }
    }

    /// Destroys every recording (after the queued work that may use them is done): they hold the
    /// addresses of scratch buffers, which are about to change, or they are no longer wanted.
    private func dropGraphs() {
        let old: [CUhandle] = lock.withLock {
            let g = Array(graphs.values)
            graphs.removeAll()
            seenShapes.removeAll()
            return g
        }
        guard !old.isEmpty else { return }
        try? device.makeCurrent()
        _ = device.api.cuStreamSynchronize(stream)
        for g in old { _ = device.api.cuGraphExecDestroy?(g) }
    }

    // MARK: helpers for the ops

    /// Scratch buffers that grow to the largest step seen (no allocation per token after that).
    enum ScratchSlot: Hashable {
        case activationBF16, moeHidden, moeOut, moeOffsets, moeSorted, moeInputBF16, moeGate, moeUp, moeGathered, moeRowOf, blasWorkspace, attnMax, attnSum, attnAcc, productOut, normed
        case moeIDs, moeWeights, moeNormed, moeLogits
        /// The `sample` op's penalised copy of the logits rows, (R, V) f32.
        case samplePenalised
    }

    func scratch(_ slot: ScratchSlot, bytes: Int) throws -> CUdeviceptr {
        let (fits, duringCapture, hasGraphs) = lock.withLock { (scratch[slot].map { $0.bytes >= bytes } ?? false, capturing, !graphs.isEmpty) }
        if !fits {
            // Nothing may be freed or allocated inside a recording (the caller then runs the step
            // for real), and a recording must not outlive the buffers it points at.
            if duringCapture { throw BackendError.device("scratch buffer \(slot) grew while recording a step") }
            if hasGraphs { dropGraphs() }
        }
        return try lock.withLock {
            if let s = scratch[slot], s.bytes >= bytes { return s.pointer }
            var grown = max(bytes, 1 << 16)
            if let old = scratch[slot] {
                // cuMemFree waits for queued work that may still use the old buffer. Growing by at
                // least half keeps the number of regrowths (each drops the step graphs) logarithmic
                // when steps grow a little at a time (prompts of rising lengths).
                grown = max(grown, old.bytes + old.bytes / 2)
                device.free(old.pointer)
                scratch[slot] = nil
            }
            let p: CUdeviceptr
            do { p = try device.allocate(grown) } catch let e as CUDADriverError where e.isOutOfMemory {
                throw BackendError.outOfMemory(requestedBytes: grown, detail: "scratch buffer \(slot) on \(device.name)")
            }
            scratch[slot] = (p, grown)
            return p
        }
    }

    func launch(_ kernel: Kernel, grid: (Int, Int, Int), block: (Int, Int, Int) = (256, 1, 1),
                sharedBytes: Int = 0, programmatic: Bool = false, _ arguments: [KernelArgument]) throws {
        let f = try kernels.function(kernel)
        try device.launch(f, grid: grid, block: block, sharedBytes: sharedBytes, stream: stream,
                          arguments: arguments, label: kernel.symbol, programmatic: programmatic && programmaticLaunch)
    }

    /// Blocks for a grid-stride loop over `n` elements.
    func gridFor(_ n: Int, threads: Int = 256) -> (Int, Int, Int) {
        (max(1, min((n + threads - 1) / threads, device.multiprocessors * 16)), 1, 1)
    }

    /// Throws unless `t` holds at least `elements` of `dtype` (guards every kernel against
    /// writing past a buffer when the caller's counts and the buffer disagree).
    func require(_ t: CUDATensor, _ elements: Int, _ dtypes: Set<DType>, _ what: String) throws {
        guard dtypes.contains(t.dtype) else {
            throw BackendError.shapeMismatch("\(what) is \(t.dtype.rawValue), expected \(dtypes.map(\.rawValue).sorted().joined(separator: "/"))")
        }
        guard elements >= 0, t.elementCount >= elements else {
            throw BackendError.shapeMismatch("\(what) \(t.shape) holds \(t.elementCount) elements, op needs \(elements)")
        }
    }
}

/// Weight dtypes the templated kernels are built for (constants: no Set built per op call).
let weightDTypes: Set<DType> = [.bf16, .f16, .f32]
/// Weight dtypes of the matrix ops (normedMatmul, matmulAdd, the MoE experts): the FP8 scheme's
/// e4m3 with row scales besides (norms, embeddings and the router stay `weightDTypes`).
let matrixDTypes: Set<DType> = [.bf16, .f16, .f32, .e4m3]
let f32Only: Set<DType> = [.f32]
let i32Only: Set<DType> = [.i32]
