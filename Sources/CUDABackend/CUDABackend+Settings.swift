import Foundation
import CUDADriver
import Tensors

/// The settings that choose kernels: set from the environment at start, changed by checks and
/// benchmarks through these properties (each change is seen by the next op).
extension CUDABackend {
    /// The `MIXTRAL_*` variables read once at start, for tuning runs and A/B checks; the device's
    /// capabilities are checked against them in `init`.
    struct EnvironmentSettings {
        /// `MIXTRAL_PDL=0`: no programmatic dependent launch.
        let programmaticLaunch: Bool
        /// `MIXTRAL_GEMV_BLOCKS_PER_SM` (1...32, default 8): see `gemvBlocksPerSM`.
        let gemvBlocksPerSM: Int
        /// `MIXTRAL_MOE_PATH` (a `MoEPath` raw value; default `.automatic`).
        let moePath: MoEPath
        /// `MIXTRAL_CUDA_GRAPHS=0`: no step graphs.
        let stepGraphs: Bool
        /// `MIXTRAL_FP8_TENSOR_CORES=0`: e4m3 products past the GEMVs keep f32 activations (the
        /// SIMT kernels), as the CPU reference does, instead of FP8 tensor cores.
        let fp8TensorCores: Bool
        /// `MIXTRAL_FP8_DECODE_TENSOR_CORES=0`: the e4m3 decode GEMVs and GEMV-style experts
        /// widen the codes to f32 on the SIMT cores (gemv.cu) instead of the tensor cores.
        let fp8DecodeTensorCores: Bool
        /// `MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM`, `MIXTRAL_E4M3_BATCHED_GEMV_BLOCKS_PER_SM` and
        /// `MIXTRAL_E4M3_MOE_GEMV_BLOCKS_PER_SM` (1...32): see `E4M3GemvBlocksPerSM`.
        let e4m3GemvBlocksPerSM: E4M3GemvBlocksPerSM
        /// `MIXTRAL_E4M3_GEMV_MAX_SPLIT` (8 or 16, default 16): see `e4m3GemvMaxSplit`.
        let e4m3GemvMaxSplit: Int
        /// `MIXTRAL_NVRTC_OPTIONS`: extra NVRTC options, space-separated (tuning runs).
        let nvrtcOptions: [String]

        init(_ environment: [String: String]) {
            programmaticLaunch = environment["MIXTRAL_PDL"] != "0"
            gemvBlocksPerSM = environment["MIXTRAL_GEMV_BLOCKS_PER_SM"].flatMap { Int($0) }.map { max(1, min($0, 32)) } ?? 8
            moePath = environment["MIXTRAL_MOE_PATH"].flatMap(MoEPath.init(rawValue:)) ?? .automatic
            stepGraphs = environment["MIXTRAL_CUDA_GRAPHS"] != "0"
            fp8TensorCores = environment["MIXTRAL_FP8_TENSOR_CORES"] != "0"
            fp8DecodeTensorCores = environment["MIXTRAL_FP8_DECODE_TENSOR_CORES"] != "0"
            let blocks = { (name: String, value: Int) in environment[name].flatMap { Int($0) }.map { max(1, min($0, 32)) } ?? value }
            let defaults = E4M3GemvBlocksPerSM.defaults
            e4m3GemvBlocksPerSM = E4M3GemvBlocksPerSM(dense: blocks("MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM", defaults.dense),
                                                      batched: blocks("MIXTRAL_E4M3_BATCHED_GEMV_BLOCKS_PER_SM", defaults.batched),
                                                      experts: blocks("MIXTRAL_E4M3_MOE_GEMV_BLOCKS_PER_SM", defaults.experts))
            e4m3GemvMaxSplit = environment["MIXTRAL_E4M3_GEMV_MAX_SPLIT"] == "8" ? 8 : 16
            nvrtcOptions = (environment["MIXTRAL_NVRTC_OPTIONS"] ?? "").split(separator: " ").map(String.init)
        }
    }

    /// Blocks per multiprocessor the tensor-core e4m3 GEMVs' split aims for (gpu-notes, "Session 8"
    /// and "Session 9"): `dense` at one activation row (4: at 8 the gated product splits K over 16
    /// warps and Mistral-7B batch 1 is 7% slower), `batched` at 2–4 rows (8: there each warp finds
    /// the scale of every row over its slice of K first, which a finer split shortens; batch 4
    /// 13% faster), `experts` for the MoE experts (8: at 4 a batch-4 expert tile gets one warp
    /// over the whole K).
    public struct E4M3GemvBlocksPerSM: Sendable {
        public let dense: Int
        public let batched: Int
        public let experts: Int
        public static let defaults = E4M3GemvBlocksPerSM(dense: 4, batched: 8, experts: 8)

        /// The dense GEMVs' target at `rows` activation rows.
        public func dense(rows: Int) -> Int { rows == 1 ? dense : batched }
    }

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

    /// Whether e4m3 products past the GEMV sizes may run on FP8 tensor cores (activations rounded
    /// to e4m3 per row, `fp8TensorCores`); off, they keep f32 activations (the SIMT kernels,
    /// the CPU reference's numbers, far slower). On by default; `MIXTRAL_FP8_TENSOR_CORES=0`.
    public var fp8TensorCoreProducts: Bool {
        get { lock.withLock { fp8TensorCoresEnabled } }
        set { lock.withLock { fp8TensorCoresEnabled = newValue } }
    }

    /// Whether the e4m3 decode products (GEMVs, GEMV-style experts) run on tensor cores where
    /// the GPU has the e4m3 conversion (sm_89+): activations rounded to f16 under a power-of-two
    /// scale, far fewer instructions per weight. Off, the SIMT e4m3 kernels (f32 activations).
    /// On by default; `MIXTRAL_FP8_DECODE_TENSOR_CORES=0`.
    public var fp8DecodeTensorCores: Bool {
        get { lock.withLock { fp8DecodeTensorCoresEnabled } }
        set {
            lock.withLock { fp8DecodeTensorCoresEnabled = newValue }
            dropGraphs()   // recorded steps hold the other kernels
        }
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
}
