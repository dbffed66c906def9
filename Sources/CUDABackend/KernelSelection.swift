import Tensors

/// Kernel choice, one function per op family (issue 12, point 2): each maps (weight dtype, step
/// shape, device, settings) to a path, and the op switches on the result. Adding a weight dtype
/// means adding rows here (and the kernels they name); the ops stay one switch each.
///
/// Rows for e4m3 weights (the FP8 scheme, docs/fp8.md): the GEMV paths as bf16 (their e4m3
/// kernels dequantise in the kernel); past them, on GPUs with FP8 tensor cores (sm_89 and up),
/// cuBLASLt e4m3 × e4m3 with the activations quantized per row (fp8.cu, CUDABackend+FP8GEMM),
/// else the SIMT tile kernels (`matmul_e4m3`, `moe_gate_up_e4m3` / `moe_down_e4m3`). A bf16
/// copy of the weights is never made.
///
/// The thresholds, in one place. Where they come from is in docs/gpu-notes.md.
enum KernelLimits {
    /// GEMVs (gemv.cu) are instantiated for 1…4 activation rows.
    static let gemvMaxRows = 4
    /// A GEMV reads its weight row in chunks of 8 elements (16 bytes of bf16).
    static let gemvChunk = 8
    /// Largest (rows, inDim) f32 staging of a normed GEMV (x ⊙ g in dynamic shared memory); past
    /// the 48 KiB default the launch raises the limit (`normStaging`).
    static let gemvNormMaxStagedBytes = 160 * 1024
    /// The GEMV-style MoE experts serve at most this many (token, expert) pairs: above ~2 pairs
    /// per expert at E = 8 the per-pair activation reads make them L1-bound and the tensor-core
    /// kernels win (gpu-notes, "MoE decode at batch 1–8").
    static let moeGemvMaxPairs = 16
    /// `moe_route_sort` is one warp: at most 32 experts (and 32 pairs).
    static let moeRouteSortMaxExperts = 32
    /// The decode router GEMV goes 4 tokens a launch: its staging is 4 · D f32.
    static let moeRouterGemvTokens = 4
    /// `moe_norm_route_*` keeps (D + E) f32 in the default shared memory.
    static let moeNormRouteMaxSharedBytes = 48 * 1024
    /// Weight dtypes the GEMVs and MoE GEMV experts read (bf16, and e4m3 with row scales).
    static let gemvWeights: Set<DType> = [.bf16, .e4m3]
    /// FP8 tensor cores: Ada (8.9) and Hopper (9.0) on.
    static let fp8MinCapability = (major: 8, minor: 9)
    /// cuBLASLt FP8 wants every row of its operands 16-byte aligned: K (and the MoE hidden size)
    /// a multiple of 16 codes; N a multiple of 16 keeps the scale pass's 4-wide rows aligned.
    static let fp8Alignment = 16
    /// The tensor-core e4m3 GEMVs read 16 codes a lane per load: K a multiple of 16.
    static let e4m3TensorCoreGemvChunk = 16
}

/// How `normedMatmul` runs.
enum NormedMatmulPath: Equatable {
    /// One GEMV launch with the norm inside (`gemv_norm*`, plain or SwiGLU).
    case gemv
    /// The norm writes the bf16 operand (`rmsnorm_to_bf16`), then cuBLASLt (plus `swiglu_split`
    /// when gated).
    case normToBF16ThenBLAS
    /// The norm into f32 scratch, then `product` (which makes its own choice).
    case normThenProduct
}

/// How `product` (matmul, matmulAdd, the gated product) runs.
enum ProductPath: Equatable {
    /// One GEMV launch (store or accumulate; the gated GEMV is `normedMatmul`'s).
    case gemv
    /// A general product (`GeneralProductPath`) plus, where the mode needs it, one elementwise pass.
    case general
}

/// How a general product out (T, N) (+)= x (T, K) · Wᵀ runs.
enum GeneralProductPath: Equatable {
    /// cuBLASLt, x narrowed to bf16 (bf16 weights); can accumulate in its epilogue.
    case cublasLt
    /// The SIMT tile kernel of matmul.cu (f32 activations); only stores.
    case simt
    /// cuBLASLt on FP8 tensor cores: x quantized to e4m3 per row, the scales applied after
    /// (`fp8_scale_epilogue`, which can accumulate).
    case cublasLtFP8
}

/// Which kernels a decode GEMV (or GEMV-style expert) with e4m3 weights runs.
enum E4M3GemvPath: Equatable {
    /// gemv_e4m3.cu: mma.sync on f16, the codes converted by the hardware (sm_89+), the
    /// activations rounded to f16 under a power-of-two scale per warp slice.
    case tensorCore
    /// gemv.cu's e4m3 kernels: the codes widened to f32 in registers, f32 activations.
    case simt
}

/// How `normedMoE` opens and which expert family follows.
enum NormedMoEPath: Equatable {
    /// Router GEMV per 4 tokens writing x̂, `moe_route_sort`, GEMV-style experts, combine.
    case decode
    /// `moe_norm_route_*` (norm, router, routing, bf16 operand in one launch), sort, grouped experts.
    case normRoute
    /// rmsNorm, `moe_router_*`, `moe_route_f32`, sort, grouped experts.
    case separate
}

/// Which grouped expert kernels run past the GEMV sizes.
enum GroupedExpertsPath: Equatable {
    /// Every expert on every token through cuBLASLt (`moeDense`).
    case dense
    /// Each expert's gathered tokens through cuBLASLt (`moeGrouped`, one host sync).
    case grouped
    /// The mma.sync kernels of moe.cu.
    case tensorCore
    /// The SIMT tile kernels of moe.cu (f32 activations, any weight dtype).
    case simt
    /// e4m3 experts on FP8 tensor cores through cuBLASLt, as `dense` (graph-safe) and `grouped`
    /// (one host sync), the scales fused into the SwiGLU and one pass over y (fp8.cu).
    case denseFP8, groupedFP8
}

extension CUDABackend {
    /// The path of `normedMatmul` for a weight (weightRows, inDim) and `rows` tokens.
    func normedMatmulPath(weight: DType, norm: DType, rows: Int, inDim: Int) -> NormedMatmulPath {
        if decodeKernels, KernelLimits.gemvWeights.contains(weight), norm == .bf16, rows <= KernelLimits.gemvMaxRows,
           inDim % KernelLimits.gemvChunk == 0, rows * inDim * 4 <= KernelLimits.gemvNormMaxStagedBytes {
            return .gemv
        }
        if weight == .bf16, matmulPath == .cublasLt, blas != nil { return .normToBF16ThenBLAS }
        return .normThenProduct
    }

    /// The path of `product` for `rows` tokens; the gated mode never takes the GEMV here.
    func productPath(weight: DType, rows: Int, inDim: Int, mode: ProductMode) -> ProductPath {
        if decodeKernels, KernelLimits.gemvWeights.contains(weight), rows <= KernelLimits.gemvMaxRows,
           inDim % KernelLimits.gemvChunk == 0,
           mode != .swiGLU {
            return .gemv
        }
        return .general
    }

    /// The e4m3 decode kernels for products whose K (every K, for the experts) is `inDims`.
    /// (The normed kernels' staging, ≤ `gemvNormMaxStagedBytes`, plus their 16 KiB of partial
    /// sums fits any block.)
    func e4m3GemvPath(inDims: Int...) -> E4M3GemvPath {
        let cc = device.computeCapability, least = KernelLimits.fp8MinCapability
        guard fp8DecodeTensorCores, (cc.major, cc.minor) >= (least.major, least.minor),
              inDims.allSatisfy({ $0 % KernelLimits.e4m3TensorCoreGemvChunk == 0 }) else { return .simt }
        return .tensorCore
    }

    /// Whether e4m3 products past the GEMVs run on FP8 tensor cores (allowed by
    /// `fp8TensorCoreProducts`, cuBLASLt selected and loaded, sm_89 or later).
    public var fp8TensorCores: Bool {
        let cc = device.computeCapability, least = KernelLimits.fp8MinCapability
        return fp8TensorCoreProducts && matmulPath == .cublasLt && blas != nil
            && (cc.major, cc.minor) >= (least.major, least.minor)
    }

    /// The general product's kernel for a weight (outDim, inDim) under the current settings.
    func generalProductPath(weight: DType, inDim: Int, outDim: Int) -> GeneralProductPath {
        if weight == .bf16, matmulPath == .cublasLt, blas != nil { return .cublasLt }
        if weight == .e4m3, fp8TensorCores, inDim % KernelLimits.fp8Alignment == 0, outDim % KernelLimits.fp8Alignment == 0 {
            return .cublasLtFP8
        }
        return .simt
    }

    /// The opening of `normedMoE` for `rows` tokens (pairs = rows · topK).
    func normedMoEPath(experts weight: DType, router: DType, norm: DType, rows: Int, dim: Int, hidden: Int,
                       experts: Int, topK: Int) -> NormedMoEPath {
        if decodeKernels, rows * topK <= KernelLimits.moeGemvMaxPairs, experts <= KernelLimits.moeRouteSortMaxExperts,
           KernelLimits.gemvWeights.contains(weight), router == .bf16, norm == .bf16,
           dim % KernelLimits.gemvChunk == 0, hidden % KernelLimits.gemvChunk == 0,
           KernelLimits.moeRouterGemvTokens * dim * 4 <= KernelLimits.gemvNormMaxStagedBytes {
            return .decode
        }
        if norm == router, (dim + experts) * 4 <= KernelLimits.moeNormRouteMaxSharedBytes { return .normRoute }
        return .separate
    }

    /// Whether the grouped experts of a step take a bf16-operand path (cuBLASLt or tensor cores),
    /// which read x narrowed to bf16 rather than the f32 normed rows.
    func moeTensorPaths(experts weight: DType, dim: Int, hidden: Int) -> Bool {
        if weight == .e4m3 { return fp8Experts(dim: dim, hidden: hidden) }
        return weight == .bf16 && matmulPath == .cublasLt && blas != nil && device.computeCapability.major >= 8
            && dim % 8 == 0 && hidden % 8 == 0
    }

    /// Whether e4m3 experts run on FP8 tensor cores (both products' K and N 16-aligned).
    func fp8Experts(dim: Int, hidden: Int) -> Bool {
        fp8TensorCores && dim % KernelLimits.fp8Alignment == 0 && hidden % KernelLimits.fp8Alignment == 0
    }

    /// The grouped experts' kernels for a step of `rows` tokens.
    func groupedExpertsPath(experts weight: DType, rows: Int, dim: Int, hidden: Int) -> GroupedExpertsPath {
        if weight == .e4m3 {
            guard fp8Experts(dim: dim, hidden: hidden) else { return .simt }
            return cublasMoEPath(tokens: rows, mmaFits: false) == .grouped ? .groupedFP8 : .denseFP8
        }
        let tensorPaths = weight == .bf16 && matmulPath == .cublasLt && device.computeCapability.major >= 8
        let mmaFits = dim % MoEMMATile.dimMultiple == 0 && hidden % MoEMMATile.hiddenMultiple == 0
        if tensorPaths, blas != nil, dim % 8 == 0, hidden % 8 == 0 {
            switch cublasMoEPath(tokens: rows, mmaFits: mmaFits) {
            case .dense: return .dense
            case .grouped: return .grouped
            case .tensorCore, .automatic: break
            }
        }
        return tensorPaths && mmaFits ? .tensorCore : .simt
    }

    /// Whether an e4m3 product (normed with a `norm` weight, or matmulAdd for nil) of `rows`
    /// rows rounds its activations to e4m3: the FP8 tensor-core path (for conformance).
    public func fp8RoundsProduct(rows: Int, inDim: Int, outDim: Int, norm: DType?) -> Bool {
        let general = norm.map { normedMatmulPath(weight: .e4m3, norm: $0, rows: rows, inDim: inDim) != .gemv }
            ?? (productPath(weight: .e4m3, rows: rows, inDim: inDim, mode: .store) == .general)
        return general && generalProductPath(weight: .e4m3, inDim: inDim, outDim: outDim) == .cublasLtFP8
    }

    /// Whether normedMoE with e4m3 experts (bf16 router and norm) rounds x and h to e4m3.
    public func fp8RoundsExperts(tokens: Int, dim: Int, hidden: Int, experts: Int, topK: Int) -> Bool {
        guard normedMoEPath(experts: .e4m3, router: .bf16, norm: .bf16, rows: tokens, dim: dim, hidden: hidden,
                            experts: experts, topK: topK) != .decode else { return false }
        let path = groupedExpertsPath(experts: .e4m3, rows: tokens, dim: dim, hidden: hidden)
        return path == .denseFP8 || path == .groupedFP8
    }
}
