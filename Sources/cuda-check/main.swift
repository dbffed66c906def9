// cuda-check: runs on the GPU machine (no Swift there; build a static binary, see docs/gpu.md).
// Probes CUDA, compiles/loads every kernel, runs the backend conformance suite (every op on
// CUDA vs the CPU reference, fresh random inputs) with both matmul paths, measures weight upload
// bandwidth and reports the KV pool sizing. Exit 0: all passed; 1: a check failed; 2: no GPU.
import Foundation
import BackendConformance
import Checkpoints
import CPUBackend
import CUDABackend
import CUDADriver
import ModelChecks
import Tensors

/// Unbuffered output: if a kernel crashes the process, everything before it is still in the log.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
let arguments = CommandLine.arguments.dropFirst()
func option(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name), arguments.index(after: i) < arguments.endIndex else { return nil }
    return arguments[arguments.index(after: i)]
}
let ordinal = option("--device").flatMap(Int.init) ?? 0
let seed = option("--seed").flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)

// Local dry run of the model checks on the CPU (validates this program where there is no GPU).
if let dir = option("--cpu-model-check") {
    var invariants = ForwardInvariants(tolerances: .init(reference: 1e-4, batched: 1e-5, cached: 1e-5)) { CPUBackend() }
    var (passed, total) = runModelChecks(invariants, directory: URL(fileURLWithPath: dir), names: TinyModelFixture.names + ["moe-hf-fp8"], say: say)
    invariants.fp8 = true
    let (fp8Passed, fp8Total) = runModelChecks(invariants, directory: URL(fileURLWithPath: dir), names: TinyModelFixture.names, say: say)
    passed += fp8Passed
    total += fp8Total
    say("\(passed)/\(total) model checks passed on the CPU")
    exit(passed == total ? 0 : 1)
}

// NVRTC alone (no GPU needed): compile every embedded kernel through the program's code path.
if arguments.contains("--compile-kernels") {
    do {
        let nvrtc = try NVRTC.load()
        let v = try nvrtc.version()
        let arch = option("--arch") ?? "sm_90"
        say("NVRTC \(v.major).\(v.minor) from \(nvrtc.library.path)")
        for r in try CUDABackend.compileKernels(nvrtc: nvrtc, arch: arch) { say("  \(r.file).cu: \(r.cubinBytes) bytes of \(arch) CUBIN") }
        exit(0)
    } catch {
        say("error: \(error)")
        exit(1)
    }
}

let availability = CUDAProbe.probe()
say("probe: \(availability)")
guard availability.isAvailable else { exit(2) }

/// The FP8 cases' view of which e4m3 products the backend rounds to e4m3 (nil without FP8
/// tensor cores under the current settings).
func fp8Rounding(_ cuda: CUDABackend) -> FP8ActivationRounding? {
    guard cuda.fp8TensorCores else { return nil }
    return FP8ActivationRounding(
        product: { cuda.fp8RoundsProduct(rows: $0, inDim: $1, outDim: $2, norm: $3) },
        experts: { cuda.fp8RoundsExperts(tokens: $0, dim: $1, hidden: $2, experts: $3, topK: $4) })
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

do {
    let cuda = try CUDABackend(ordinal: ordinal)
    say("device: \(cuda.name), \(cuda.device.arch), \(cuda.device.multiprocessors) SMs, \(cuda.device.totalMemory >> 20) MiB, driver \(cuda.device.driverVersion)")
    say("cuBLASLt: \(cuda.cublasUnavailableReason ?? "loaded"); programmatic dependent launch of GEMVs: \(cuda.programmaticLaunch ? "on" : "off"); step graphs: \(cuda.stepGraphs ? "on" : "off")")
    let load = try seconds { try cuda.loadKernels() }
    say("kernels: \(cuda.kernelReport) in \(String(format: "%.2f", load)) s")
    if arguments.contains("--kernels-only") { exit(0) }
    let cpu = CPUBackend()
    var failures = 0
    var total = 0
    // Two configurations cover every kernel: cuBLASLt + decode kernels (GEMV, MoE GEMV, split-KV
    // attention), and the general SIMT/tile kernels with the decode kernels off.
    let configurations: [(CUDABackend.MatmulPath, Bool)] = [(.cublasLt, true), (.simt, false)]
    for (path, decode) in configurations {
        cuda.matmulPath = path
        cuda.decodeKernels = decode
        say("\n== conformance vs \(cpu.name), matmul path \(cuda.matmulPath.rawValue), decode kernels \(decode ? "on" : "off"), seed \(seed)")
        var suite = BackendConformance(test: cuda, reference: cpu, seed: seed)
        suite.fp8Rounding = fp8Rounding(cuda)
        let results = suite.runAll { say("  \($0)") }
        failures += results.filter { !$0.passed }.count
        total += results.count
        if path == .cublasLt {
            // The MoE and fp8 families once more under the current settings.
            func rerun(_ title: String) {
                say("== normedMoE and fp8 weights \(title)")
                var suite = BackendConformance(test: cuda, reference: cpu, seed: seed)
                suite.fp8Rounding = fp8Rounding(cuda)
                let r = suite.runAll(only: ["normedMoE", "fp8 weights"]) { say("  \($0)") }
                failures += r.filter { !$0.passed }.count
                total += r.count
            }
            // Each expert path pinned (automatic dispatch covers each at some sizes only).
            for moe in [CUDABackend.MoEPath.tensorCore, .dense, .grouped] {
                cuda.moePath = moe
                rerun("with the \(moe.rawValue) path pinned")
            }
            cuda.moePath = .automatic
            // The e4m3 decode products on the SIMT kernels (gemv.cu), which GPUs before sm_89
            // run and which the tensor-core ones replace here.
            if cuda.fp8DecodeTensorCores {
                cuda.fp8DecodeTensorCores = false
                rerun("with the SIMT e4m3 decode kernels")
                cuda.fp8DecodeTensorCores = true
            }
        }
    }

    // Weight upload: 1 GiB of random bf16 through the pinned staging buffers.
    let bytes = 1 << 30
    let owned = OwnedBytes(count: bytes)
    var rng = SplitMix64(seed: seed)
    owned.pointer.withMemoryRebound(to: UInt64.self, capacity: bytes / 8) { p in for i in 0..<(bytes / 8) { p[i] = rng.next() } }
    let host = HostTensor(dtype: .bf16, shape: [bytes / 2], data: UnsafeRawBufferPointer(start: owned.pointer, count: bytes), owner: owned)
    cuda.setUploadProgress(totalBytes: bytes, nil)
    var uploaded: CUDATensor?
    try { uploaded = try cuda.upload(host) }()
    let stats = try cuda.finishUploads()
    say(String(format: "\nupload: %d MiB in %.3f s = %.2f GB/s (pinned double-buffered staging)",
                 stats.bytesUploaded >> 20, stats.seconds, stats.gigabytesPerSecond))
    if let uploaded {
        // Spot-check the upload: 1M elements at the start and at the end.
        let n = 1 << 20
        let head = try cuda.readFloats(uploaded, count: n)
        let expected = (0..<n).map { host.float(at: $0) }
        let ok = zip(head, expected).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }
        say("upload round trip (first \(n) elements): \(ok ? "identical" : "DIFFERENT")")
        if !ok { failures += 1 }
        total += 1
    }
    uploaded = nil

    if let dir = option("--models") {
        for (path, decode) in configurations {
            say("\n== tiny fixture models on \(cuda.name), matmul path \(path.rawValue), decode kernels \(decode ? "on" : "off")")
            // With decode kernels on, one-row steps take the GEMV (f32 activations) and longer
            // ones cuBLASLt (activations narrowed to bf16): cached-vs-recompute (and chunked
            // prefill) then compare two precision paths, so they get the bf16-operand tolerance.
            let selfTolerance = decode ? 1e-2 : 1e-3
            let invariants = ForwardInvariants(tolerances: .init(reference: path == .simt ? 5e-3 : 2e-2, batched: selfTolerance,
                                                                 cached: selfTolerance)) { () throws -> CUDABackend in
                let b = try CUDABackend(ordinal: ordinal); b.matmulPath = path; b.decodeKernels = decode; return b
            }
            let (passed, count) = runModelChecks(invariants, directory: URL(fileURLWithPath: dir), names: TinyModelFixture.names, say: say)
            failures += count - passed
            total += count
        }
        // The FP8 scheme end to end: the same models quantized while loading, against numpy's
        // simulation of the scheme; and the native FP8 (compressed-tensors) fixture as stored.
        // First with f32 activations everywhere (FP8 tensor cores off: the scheme's numbers, every
        // invariant); then the FP8 tensor-core products, which round prefill activations to e4m3
        // per token and so only approximate them: their logits against the reference, at a
        // tolerance for that rounding (tiny random models amplify it: 4–9% measured, H200).
        for (path, decode) in configurations {
            say("\n== tiny fixture models with fp8 (e4m3) weights on \(cuda.name), matmul path \(path.rawValue), decode kernels \(decode ? "on" : "off"), f32 activations")
            let invariants = ForwardInvariants(tolerances: .init(reference: 2e-2, batched: 1e-2, cached: 1e-2)) { () throws -> CUDABackend in
                let b = try CUDABackend(ordinal: ordinal); b.matmulPath = path; b.decodeKernels = decode
                b.fp8TensorCoreProducts = false
                return b
            }
            let (passed, count) = runFP8ModelChecks(invariants, directory: URL(fileURLWithPath: dir), say: say)
            failures += count - passed
            total += count
        }
        do {
            say("\n== tiny fixture models with fp8 (e4m3) weights on \(cuda.name), FP8 tensor cores (e4m3 prefill activations)")
            var invariants = ForwardInvariants(tolerances: .init(reference: 0.15, batched: 0, cached: 0)) { () throws -> CUDABackend in
                let b = try CUDABackend(ordinal: ordinal); b.matmulPath = .cublasLt; b.decodeKernels = true; return b
            }
            invariants.referenceLogitsOnly = true
            invariants.label = " (FP8 tensor cores)"
            let (passed, count) = runFP8ModelChecks(invariants, directory: URL(fileURLWithPath: dir), say: say)
            failures += count - passed
            total += count
        }
        say("\n== tiny fixture models through NCCL with a communicator of one (tensor-parallel path, 1 GPU)")
        do {
            let group = try NCCLGroup(ordinals: [ordinal])
            say("  NCCL \(group.nccl.version.map(String.init) ?? "?") loaded from \(group.nccl.library.path)")
            var invariants = ForwardInvariants(tolerances: .init(reference: 2e-2, batched: 1e-2, cached: 1e-2)) {
                try CUDABackend(ordinal: ordinal, parallel: (group, 0))
            }
            invariants.groupOfOne = true
            let (passed, count) = runModelChecks(invariants, directory: URL(fileURLWithPath: dir), names: TinyModelFixture.names, say: say)
            failures += count - passed
            total += count
        } catch {
            say("  FAIL NCCL group of one: \(error)")
            failures += 1
            total += 1
        }
        if let n = option("--tp").flatMap(Int.init), n >= 1 {
            // TP N == TP 1 on N GPUs (ModelChecks.TensorParallelCheck, the check swift test runs on
            // CPU ranks): bf16 partial products summed by NCCL against the whole model on one GPU.
            say("\n== tiny fixture models split over GPUs 0..<\(n) through NCCL, against the whole model on GPU \(ordinal)")
            do {
                let group = try NCCLGroup(ordinals: Array(0..<n))
                let check = TensorParallelCheck<CUDABackend>(
                    ranks: n, tolerance: 1e-2, referenceTolerance: 2e-2, group: group,
                    makeRankBackend: { try CUDABackend(ordinal: $0, parallel: (group, $0)) },
                    makeWholeBackend: { try CUDABackend(ordinal: ordinal) })
                for name in TinyModelFixture.names {
                    let results = check.check(try TinyModelFixture(name, in: URL(fileURLWithPath: dir)))
                    for r in results { say("  \(r)") }
                    failures += results.filter { !$0.passed }.count
                    total += results.count
                }
            } catch {
                say("  FAIL tensor-parallel check over \(n) GPUs: \(error)")
                failures += 1
                total += 1
            }
        }
        say("\n== decode steps replayed from CUDA graphs vs launched op by op")
        let graphs = checkStepGraphs(directory: URL(fileURLWithPath: dir), ordinal: ordinal, say: say)
        failures += graphs.total - graphs.passed
        total += graphs.total
    }
    if arguments.contains("--real-shapes") {
        say("\n== real-shape layers, seeded random bf16 weights, CUDA vs CPU")
        let mistral = ModelConfig(dim: 4096, nLayers: 2, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                                  normEps: 1e-5, vocabSize: 32768, ropeTheta: 1_000_000)
        let mixtral = ModelConfig(dim: 4096, nLayers: 1, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                                  normEps: 1e-5, vocabSize: 32000, ropeTheta: 1_000_000, moe: .init(numExperts: 8, numExpertsPerTok: 2))
        for (label, config) in [("Mistral-7B shapes, 2 layers", mistral), ("Mixtral-8x7B shapes, 1 layer", mixtral)] {
            let gpu = try CUDABackend(ordinal: ordinal)
            gpu.setUploadProgress(totalBytes: nil, nil)
            let ok = compareRandomModel(label, config: config, test: gpu, reference: cpu, promptLength: 24, tolerance: 2e-2, say: say)
            if let up = try? gpu.finishUploads() {
                say(String(format: "    weight upload: %.2f GB in %.2f s = %.2f GB/s (host RAM → GPU, incl. random generation)",
                           Double(up.bytesUploaded) / 1e9, up.seconds, up.gigabytesPerSecond))
            }
            failures += ok ? 0 : 1
            total += 1
        }
        // FP8 at real shapes (the CPU reference's e4m3 path is slow: minutes, so on request only).
        for (label, config) in [("Mistral-7B shapes, 2 layers, fp8", mistral), ("Mixtral-8x7B shapes, 1 layer, fp8", mixtral)]
        where arguments.contains("--fp8-real-shapes") {
            let gpu = try CUDABackend(ordinal: ordinal)
            let ok = compareRandomModel(label, config: config, test: gpu, reference: cpu, promptLength: 24, tolerance: 2e-2,
                                        fp8: true, say: say)
            failures += ok ? 0 : 1
            total += 1
        }
    }

    if arguments.contains("--bench") {
        cuda.matmulPath = .cublasLt
        let bench = Bench(backend: cuda, say: say)
        let bw = try bench.copyBandwidth()
        say("\n== bench on \(cuda.name): " + String(format: "device-to-device copy %.0f GB/s (read + write)", bw / 1e9))
        say("per-op time at Mistral-7B decode shapes (50 launches between host syncs):")
        try bench.microbench(bandwidth: bw)
        try bench.sampleBench()
        let layers = option("--layers").flatMap(Int.init) ?? 32
        let mistral = ModelConfig(dim: 4096, nLayers: layers, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                                  normEps: 1e-5, vocabSize: 32768, ropeTheta: 1_000_000)
        try bench.run(label: "Mistral-7B shapes, \(layers) layers", config: mistral, batches: [1, 8, 32], promptLength: 512,
                      steps: 24, bandwidth: bw)
        let moeLayers = option("--moe-layers").flatMap(Int.init) ?? 4
        let mixtral = ModelConfig(dim: 4096, nLayers: moeLayers, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                                  normEps: 1e-5, vocabSize: 32000, ropeTheta: 1_000_000, moe: .init(numExperts: 8, numExpertsPerTok: 2))
        try bench.run(label: "Mixtral-8x7B shapes, \(moeLayers) layers", config: mixtral, batches: [1, 8], promptLength: 512,
                      steps: 24, bandwidth: bw)
    }

    if arguments.contains("--moe-bench") {
        cuda.matmulPath = .cublasLt
        let bench = Bench(backend: cuda, say: say)
        let bw = try bench.copyBandwidth()
        let gemm = try cuda.measureGEMMRate() ?? .nan
        say("\n== MoE experts at Mixtral-8x7B shapes on \(cuda.name): " + String(format: "copy %.0f GB/s, bf16 GEMM %.0f TFLOP/s", bw / 1e9, gemm / 1e12))
        try bench.moeBench(bandwidth: bw, gemmRate: gemm)
    }

    let mem = try cuda.memoryInfo()
    let perBlock = CUDABackend.kvBytesPerBlock(layers: 32, blockSize: 16, kvHeads: 8, headDim: 128)
    let blocks = try cuda.kvPoolBlocks(bytesPerBlock: perBlock, memoryFraction: 0.9)
    say("memory: \(mem.free >> 20) MiB free of \(mem.total >> 20) MiB; Mistral-7B KV (32 layers, 16-token blocks, \(perBlock >> 10) KiB/block) at fraction 0.9: \(blocks) blocks = \(blocks * 16) tokens")
    do {
        _ = try cuda.kvPoolBlocks(bytesPerBlock: perBlock, memoryFraction: 0.01, minimumBlocks: 1 << 30)
        say("KV sizing OOM check: no error (unexpected)"); failures += 1
    } catch {
        say("KV sizing OOM check: \(error)")
    }
    total += 1

    say("\n\(total - failures)/\(total) checks passed on \(cuda.name)")
    exit(failures == 0 ? 0 : 1)
} catch {
    say("error: \(error)")
    exit(1)
}
