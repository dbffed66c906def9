import Foundation
import CUDADriver
import Tensors

/// The `.cu` files in Kernels/, embedded in the binary by SwiftPM (`.embedInCode`).
enum KernelFile: String, CaseIterable, Sendable {
    /// attention: the general paged kernel and its split merge; attention_decode: flash-decoding
    /// (one query token per sequence); attention_prefill: tensor-core prefill.
    /// gemv: the decode GEMVs (bf16, and e4m3 on SIMT); gemvE4M3: the e4m3 ones on tensor cores.
    case attention, attentionDecode = "attention_decode", attentionPrefill = "attention_prefill", elementwise, fp8, gemv
    case gemvE4M3 = "gemv_e4m3", matmul, moe, rmsnorm, rope, sampling

    var source: String {
        let bytes: [UInt8]
        switch self {
        case .attention: bytes = PackageResources.attention_cu
        case .attentionDecode: bytes = PackageResources.attention_decode_cu
        case .attentionPrefill: bytes = PackageResources.attention_prefill_cu
        case .elementwise: bytes = PackageResources.elementwise_cu
        case .fp8: bytes = PackageResources.fp8_cu
        case .gemv: bytes = PackageResources.gemv_cu
        case .gemvE4M3: bytes = PackageResources.gemv_e4m3_cu
        case .matmul: bytes = PackageResources.matmul_cu
        case .moe: bytes = PackageResources.moe_cu
        case .rmsnorm: bytes = PackageResources.rmsnorm_cu
        case .rope: bytes = PackageResources.rope_cu
        case .sampling: bytes = PackageResources.sampling_cu
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Headers the kernels include by name, served to NVRTC from memory.
    static let headers: [(name: String, source: String)] = [
        ("common.cuh", String(decoding: PackageResources.common_cuh, as: UTF8.self)),
        ("tile_gemm.cuh", String(decoding: PackageResources.tile_gemm_cuh, as: UTF8.self)),
    ]
}

/// Every kernel function the backend launches, by name: a typo is a compile error here rather
/// than a `CUDA_ERROR_NOT_FOUND` on the GPU machine. Weight-typed kernels carry the weight dtype
/// (their exported names end in _bf16, _f16 or _f32).
enum Kernel: Hashable, Sendable {
    case swigluSplit, swigluBF16, add, gatherRows, convertToBF16, ropeAppendKV
    case embed(DType), rmsNorm(DType), rmsNormToBF16(DType), matmul(DType), moeGateUp(DType), moeDown(DType), moeRouter(DType), moeNormRoute(DType)
    case attention, moeRoute, moeSort, moeCombine, moeGatherPadded
    /// Decode kernels (gemv.cu, split-KV merge): `gemv(rows)` for rows 1...4, and the same
    /// products adding into their output (`gemvAdd`) or with the RMSNorm computed inside
    /// (`gemvNorm`, and `gemvNormSwiGLU` with the SwiGLU epilogue).
    case gemv(Int), gemvAdd(Int), gemvNorm(Int), gemvNormSwiGLU(Int), moeGemvGateUp, moeGemvDown, attentionMerge
    /// `gemvNorm` that also writes the normed rows (the MoE router), and routing + counting sort
    /// in one single-warp launch for decode steps (moe.cu).
    case gemvNormEmit(Int), moeRouteSort
    /// The decode GEMVs and MoE GEMV experts for e4m3 weights (gemv.cu): the same products
    /// reading 8 codes a lane per load, each dot multiplied by its row's scale. (The SIMT
    /// fallbacks take `.e4m3` as their DType: `matmul(.e4m3)`, `moeGateUp(.e4m3)`, `moeDown(.e4m3)`.)
    case gemvE4M3(Int), gemvAddE4M3(Int), gemvNormE4M3(Int), gemvNormSwiGLUE4M3(Int), moeGemvGateUpE4M3, moeGemvDownE4M3
    /// The same e4m3 products on tensor cores (gemv_e4m3.cu, sm_89+): a warp per 16 weight rows,
    /// the codes converted to f16 by the hardware, the activations rounded to f16 under a
    /// power-of-two scale; one more argument, `split`, for the MoE pair (`E4M3GemvPath`).
    case gemvTCE4M3(Int), gemvTCAddE4M3(Int), gemvTCNormE4M3(Int), gemvTCNormSwiGLUE4M3(Int), moeGemvTCGateUpE4M3, moeGemvTCDownE4M3
    /// Tensor-core MoE experts for bf16 weights (moe.cu), by pair-tile size: gate/up 32 or 128,
    /// down 64 or 128. Tiles, threads and shared memory: `MoEMMATile`.
    case moeMMAGateUp(Int), moeMMADown(Int)
    /// Tensor-core prefill attention (attention_prefill.cu) for head dim 64 or 128.
    case attentionPrefill(headDim: Int)
    /// Flash-decoding attention (attention_decode.cu) for head dim 64 or 128 and `group` (1, 2, 4 or 8)
    /// query heads per block, and the merge of its key splits.
    case attentionDecode(headDim: Int, group: Int), attentionDecodeMerge
    /// The `sample` op (sampling.cu): one block per logits row.
    case sampleRows
    /// FP8 prefill on tensor cores (fp8.cu): activation rows (f32 or bf16) to e4m3 with a scale
    /// each, the scales applied to a cuBLASLt e4m3 product, and the MoE experts' fused SwiGLU
    /// (scales in, h quantized out) and down-product scaling.
    case quantizeE4M3(DType), fp8ScaleEpilogue, fp8ScaleSwiGLU, moeSwiGLUE4M3, moeScaleDownE4M3

    var file: KernelFile {
        switch self {
        case .swigluSplit, .swigluBF16, .add, .gatherRows, .convertToBF16, .embed: return .elementwise
        case .rmsNorm, .rmsNormToBF16: return .rmsnorm
        case .matmul: return .matmul
        case .moeGateUp, .moeDown, .moeRouter, .moeNormRoute, .moeRoute, .moeSort, .moeRouteSort, .moeCombine, .moeGatherPadded, .moeMMAGateUp, .moeMMADown: return .moe
        case .ropeAppendKV: return .rope
        case .attention, .attentionMerge: return .attention
        case .attentionDecode, .attentionDecodeMerge: return .attentionDecode
        case .attentionPrefill: return .attentionPrefill
        case .gemv, .gemvAdd, .gemvNorm, .gemvNormSwiGLU, .gemvNormEmit, .moeGemvGateUp, .moeGemvDown: return .gemv
        case .gemvE4M3, .gemvAddE4M3, .gemvNormE4M3, .gemvNormSwiGLUE4M3, .moeGemvGateUpE4M3, .moeGemvDownE4M3: return .gemv
        case .gemvTCE4M3, .gemvTCAddE4M3, .gemvTCNormE4M3, .gemvTCNormSwiGLUE4M3, .moeGemvTCGateUpE4M3, .moeGemvTCDownE4M3: return .gemvE4M3
        case .sampleRows: return .sampling
        case .quantizeE4M3, .fp8ScaleEpilogue, .fp8ScaleSwiGLU, .moeSwiGLUE4M3, .moeScaleDownE4M3: return .fp8
        }
    }

    var symbol: String {
        switch self {
        case .swigluSplit: return "swiglu_split_f32"
        case .swigluBF16: return "swiglu_bf16"
        case .ropeAppendKV: return "rope_append_kv"
        case .add: return "add_f32"
        case .gatherRows: return "gather_rows_f32"
        case .convertToBF16: return "convert_f32_to_bf16"
        case .embed(let t): return "embed_\(t.rawValue)"
        case .rmsNorm(let t): return "rmsnorm_\(t.rawValue)"
        case .rmsNormToBF16(let t): return "rmsnorm_to_bf16_\(t.rawValue)"
        case .matmul(let t): return "matmul_\(t.rawValue)"
        case .moeGateUp(let t): return "moe_gate_up_\(t.rawValue)"
        case .moeRouter(let t): return "moe_router_\(t.rawValue)"
        case .moeNormRoute(let t): return "moe_norm_route_\(t.rawValue)"
        case .moeDown(let t): return "moe_down_\(t.rawValue)"
        case .attention: return "attention_paged"
        case .moeRoute: return "moe_route_f32"
        case .moeSort: return "moe_sort"
        case .moeCombine: return "moe_combine"
        case .moeGatherPadded: return "moe_gather_padded"
        case .gemv(let rows): return "gemv_bf16_r\(rows)"
        case .gemvAdd(let rows): return "gemv_add_bf16_r\(rows)"
        case .gemvNorm(let rows): return "gemv_norm_bf16_r\(rows)"
        case .gemvNormSwiGLU(let rows): return "gemv_norm_swiglu_bf16_r\(rows)"
        case .moeGemvGateUp: return "moe_gemv_gate_up_bf16"
        case .moeGemvDown: return "moe_gemv_down_bf16"
        case .gemvNormEmit(let rows): return "gemv_norm_emit_bf16_r\(rows)"
        case .gemvE4M3(let rows): return "gemv_e4m3_r\(rows)"
        case .gemvAddE4M3(let rows): return "gemv_add_e4m3_r\(rows)"
        case .gemvNormE4M3(let rows): return "gemv_norm_e4m3_r\(rows)"
        case .gemvNormSwiGLUE4M3(let rows): return "gemv_norm_swiglu_e4m3_r\(rows)"
        case .moeGemvGateUpE4M3: return "moe_gemv_gate_up_e4m3"
        case .moeGemvDownE4M3: return "moe_gemv_down_e4m3"
        case .gemvTCE4M3(let rows): return "gemv_tc_e4m3_r\(rows)"
        case .gemvTCAddE4M3(let rows): return "gemv_tc_add_e4m3_r\(rows)"
        case .gemvTCNormE4M3(let rows): return "gemv_tc_norm_e4m3_r\(rows)"
        case .gemvTCNormSwiGLUE4M3(let rows): return "gemv_tc_norm_swiglu_e4m3_r\(rows)"
        case .moeGemvTCGateUpE4M3: return "moe_gemv_tc_gate_up_e4m3"
        case .moeGemvTCDownE4M3: return "moe_gemv_tc_down_e4m3"
        case .moeRouteSort: return "moe_route_sort"
        case .attentionMerge: return "attention_merge"
        case .moeMMAGateUp(let m): return "moe_mma_gate_up_m\(m)_bf16"
        case .moeMMADown(let m): return "moe_mma_down_m\(m)_bf16"
        case .attentionPrefill(let headDim): return "attention_prefill_d\(headDim)"
        case .attentionDecode(let headDim, let group): return "attention_decode_d\(headDim)_q\(group)"
        case .attentionDecodeMerge: return "attention_decode_merge"
        case .sampleRows: return "sample_rows"
        case .quantizeE4M3(let t): return "quantize_rows_e4m3_\(t.rawValue)"
        case .fp8ScaleEpilogue: return "fp8_scale_epilogue"
        case .fp8ScaleSwiGLU: return "fp8_scale_swiglu"
        case .moeSwiGLUE4M3: return "moe_swiglu_e4m3"
        case .moeScaleDownE4M3: return "moe_scale_down_e4m3"
        }
    }

    /// Every kernel (weight-typed ones for each weight dtype), for warm-up and checks.
    static var all: [Kernel] {
        let weightTypes: [DType] = [.bf16, .f16, .f32]
        var list: [Kernel] = [.swigluSplit, .swigluBF16, .add, .gatherRows, .convertToBF16,
                              .ropeAppendKV, .attention, .moeRoute, .moeSort, .moeCombine, .moeGatherPadded,
                              .moeRouteSort, .moeGemvGateUp, .moeGemvDown, .attentionMerge,
                              .moeMMAGateUp(32), .moeMMAGateUp(128), .moeMMADown(64), .moeMMADown(128),
                              .attentionPrefill(headDim: 64), .attentionPrefill(headDim: 128), .attentionDecodeMerge, .sampleRows]
        for d in [64, 128] { for q in [1, 2, 4, 8] { list.append(.attentionDecode(headDim: d, group: q)) } }
        for r in 1...4 { list += [.gemv(r), .gemvAdd(r), .gemvNorm(r), .gemvNormSwiGLU(r), .gemvNormEmit(r)] }
        for t in weightTypes { list += [.embed(t), .rmsNorm(t), .rmsNormToBF16(t), .matmul(t), .moeGateUp(t), .moeDown(t), .moeRouter(t), .moeNormRoute(t)] }
        // e4m3 (the FP8 scheme): the matrix kernels only; norms, embeddings and the router stay bf16.
        for r in 1...4 {
            list += [.gemvE4M3(r), .gemvAddE4M3(r), .gemvNormE4M3(r), .gemvNormSwiGLUE4M3(r)]
            list += [.gemvTCE4M3(r), .gemvTCAddE4M3(r), .gemvTCNormE4M3(r), .gemvTCNormSwiGLUE4M3(r)]
        }
        list += [.moeGemvGateUpE4M3, .moeGemvDownE4M3, .moeGemvTCGateUpE4M3, .moeGemvTCDownE4M3, .matmul(.e4m3), .moeGateUp(.e4m3), .moeDown(.e4m3)]
        list += [.quantizeE4M3(.f32), .quantizeE4M3(.bf16), .fp8ScaleEpilogue, .fp8ScaleSwiGLU, .moeSwiGLUE4M3, .moeScaleDownE4M3]
        return list
    }
}

/// Compiles kernel files on first use (NVRTC for this device's architecture, through the disk
/// cache) and keeps the loaded modules and functions for the device's lifetime.
final class KernelLibrary: @unchecked Sendable {
    // @unchecked: the dictionaries are only touched under `lock`.
    let device: CUDADevice
    let compiler: KernelCompiler
    private let lock = NSLock()
    private var modules: [KernelFile: CUhandle] = [:]
    private var functions: [Kernel: CUhandle] = [:]
    /// Files compiled (not found in the cache) by this process, for reporting.
    private(set) var compiledFiles: [String] = []

    /// Extra NVRTC options for every file (`MIXTRAL_NVRTC_OPTIONS`, space-separated): tuning
    /// runs set the kernels' compile-time constants with them, e.g. -DE4M3_TC_STEPS=8.
    let options: [String]

    init(device: CUDADevice, compiler: KernelCompiler, options: [String] = []) {
        self.device = device
        self.compiler = compiler
        self.options = options
    }

    func function(_ kernel: Kernel) throws -> CUhandle {
        lock.lock()
        defer { lock.unlock() }
        if let f = functions[kernel] { return f }
        let module: CUhandle
        if let m = modules[kernel.file] {
            module = m
        } else {
            let (cubin, fromCache) = try compiler.cubin(name: kernel.file.rawValue, source: kernel.file.source,
                                                        arch: device.arch, options: options, headers: KernelFile.headers)
            if !fromCache { compiledFiles.append(kernel.file.rawValue) }
            module = try device.loadModule(cubin: cubin)
            modules[kernel.file] = module
        }
        let f = try device.function(module, name: kernel.symbol)
        functions[kernel] = f
        return f
    }

    /// Loads every kernel now (start-up), so a compile error surfaces before the first request.
    func loadAll() throws {
        for k in Kernel.all { _ = try function(k) }
    }
}

extension CUDABackend {
    /// Compiles every embedded kernel file with NVRTC for `arch`, with no GPU and no driver: the
    /// program's own compile path (embedded sources, headers served from memory, same options),
    /// so a machine with only libnvrtc (CI) can check it. Returns each file's CUBIN size.
    public static func compileKernels(nvrtc: NVRTC, arch: String = "sm_90") throws -> [(file: String, cubinBytes: Int)] {
        try KernelFile.allCases.map { file in
            let (cubin, _) = try nvrtc.compile(source: file.source, name: "\(file.rawValue).cu", arch: arch, headers: KernelFile.headers)
            return (file.rawValue, cubin.count)
        }
    }

    /// Every kernel function name the backend launches (for checks against the sources).
    public static var kernelSymbols: [String] { Kernel.all.map(\.symbol) }
}
