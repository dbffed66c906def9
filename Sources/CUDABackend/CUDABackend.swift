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

    public let device: CUDADevice
    let stream: CUhandle
    let kernels: KernelLibrary
    let blas: BLASLtMatmul?
    let uploader: WeightUploader
    let lock = NSLock()
    var scratch: [ScratchSlot: (pointer: CUdeviceptr, bytes: Int)] = [:]
    var preferredMatmul: MatmulPath
    var decodeKernelsEnabled = true
    var moePathSetting: MoEPath
    var fp8TensorCoresEnabled: Bool
    var fp8DecodeTensorCoresEnabled: Bool
    var graphsEnabled: Bool
    var recording = false
    var capturing = false
    /// Instantiated step recordings, and the shapes seen once (recorded on their second step).
    var graphs: [GraphKey: CUhandle] = [:]
    var seenShapes: Set<GraphKey> = []

    /// Blocks per multiprocessor the GEMV split aims for (more warps per row on short matrices):
    /// 8 measured 5.53 ms against 5.64 ms for 4 on a Mistral-7B batch-1 step (H200, 2026-11-27).
    /// `MIXTRAL_GEMV_BLOCKS_PER_SM` overrides it, for tuning runs.
    let gemvBlocksPerSM: Int
    /// The same target for the tensor-core e4m3 GEMVs (a warp per 16 rows, so their split is
    /// chosen separately): dense at one activation row, dense at 2–4, and MoE experts.
    /// `MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM`, `MIXTRAL_E4M3_BATCHED_GEMV_BLOCKS_PER_SM` and
    /// `MIXTRAL_E4M3_MOE_GEMV_BLOCKS_PER_SM` override them.
    let e4m3GemvBlocksPerSM: E4M3GemvBlocksPerSM
    /// Most warps sharing one tile of the tensor-core e4m3 GEMVs (16: blocks of 16 warps for the
    /// matrices with the fewest rows); `MIXTRAL_E4M3_GEMV_MAX_SPLIT=8` caps it at one 8-warp block.
    let e4m3GemvMaxSplit: Int

    /// Whether GEMVs are launched with programmatic dependent launch (sm_90 and cuLaunchKernelEx):
    /// its blocks may be scheduled while the previous kernel finishes and wait on the device
    /// (gemv.cu), which hides part of the gap between kernels. `MIXTRAL_PDL=0` turns it off.
    public let programmaticLaunch: Bool

    public var name: String { device.name }
    public var kvElementBytes: Int { 2 }
    public var gpuCount: Int { 1 }

    /// The weight dtypes each op has kernels for: the templated kernels (bf16, f16, f32) for
    /// every op, and e4m3 with row scales for the matrix ops (`matrixDTypes`; the FP8 scheme keeps
    /// embeddings bf16). Which kernel runs is `KernelSelection`'s; a new weight dtype is a row
    /// here once its kernels exist.
    public func supports(_ op: WeightOp, weights: DType) -> Bool {
        switch op {
        case .embed: return weightDTypes.contains(weights)
        case .normedMatmul, .matmulAdd, .normedMoE: return matrixDTypes.contains(weights)
        }
    }

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
        let settings = EnvironmentSettings(environment)
        kernels = KernelLibrary(device: device, compiler: compiler, options: settings.nvrtcOptions)
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
        programmaticLaunch = settings.programmaticLaunch && device.api.cuLaunchKernelEx != nil
            && (Int(device.arch.dropFirst(3)) ?? 0) >= 90
        gemvBlocksPerSM = settings.gemvBlocksPerSM
        moePathSetting = settings.moePath
        fp8TensorCoresEnabled = settings.fp8TensorCores
        fp8DecodeTensorCoresEnabled = settings.fp8DecodeTensorCores
        e4m3GemvBlocksPerSM = settings.e4m3GemvBlocksPerSM
        e4m3GemvMaxSplit = settings.e4m3GemvMaxSplit
        graphsEnabled = settings.stepGraphs && device.api.cuGraphLaunch != nil
            && device.api.cuStreamBeginCapture != nil && device.api.cuStreamEndCapture != nil
            && device.api.cuGraphInstantiateWithFlags != nil
    }

    deinit {
        dropGraphs()
    }

    /// "sm_90", NVRTC version and the kernel files compiled (not cached) by this process.
    public var kernelReport: String {
        let v = kernels.compiler.nvrtcVersion
        return "\(device.arch), NVRTC \(v.major).\(v.minor), compiled now: \(kernels.compiledFiles.isEmpty ? "none (all cached)" : kernels.compiledFiles.joined(separator: " "))"
    }

    /// Compiles/loads every kernel now, so a kernel problem is reported at start-up.
    public func loadKernels() throws { try kernels.loadAll() }
}
