import CUDADriver
import Tensors

/// The `sample` op (contract: `ComputeBackend.sample`; reference: `RowSampler`): one launch of
/// sampling.cu's `sample_rows`, one block per logits row, for the whole step.
///
/// Why it can sit inside a recorded decode step: the launch is sized from `rows`,
/// `vocabularySize` and `logprobs` only, every per-row value (parameters, draws, penalty pairs
/// and their offsets) is read on the device, and the one scratch buffer (the penalised copy of
/// the rows, (R, V) f32) comes from the backend's grow-only arena, sized on the step that runs
/// before a shape is recorded.
extension CUDABackend {
    /// Threads per row's block (sampling.cu's SAMPLE_THREADS).
    static let sampleThreads = 1024
    /// Most top log-probabilities one launch can return (sampling.cu's SAMPLE_MAX_TOP).
    public static let maxSampledLogprobs = 64

    public func sample(logits: CUDATensor, parameters: CUDATensor, penaltyOffsets: CUDATensor, penalties: CUDATensor,
                       out: CUDATensor, rows: Int, vocabularySize v: Int, logprobs: Int) throws {
        let n = max(logprobs, 0)
        guard n <= Self.maxSampledLogprobs else {
            throw BackendError.unsupported("\(n) top log-probabilities per token (at most \(Self.maxSampledLogprobs) on CUDA)")
        }
        guard v > 0, v <= Int(Int32.max) / 2 else { throw BackendError.shapeMismatch("sample vocabulary size \(v)") }
        try require(logits, rows * v, f32Only, "sample logits")
        try require(parameters, rows * SamplingColumn.count, f32Only, "sample parameters")
        try require(penaltyOffsets, rows + 1, i32Only, "sample penaltyOffsets")
        try require(penalties, 0, i32Only, "sample penalties")
        try require(out, rows * (2 + 2 * n), f32Only, "sample out")
        guard rows > 0 else { return }
        // The pair count lives on the device (penaltyOffsets[rows]); the kernel clamps the
        // offsets to the buffer's capacity instead, so bad offsets cannot read past it.
        let penalised = try scratch(.samplePenalised, bytes: rows * v * 4)
        try launch(.sampleRows, grid: (rows, 1, 1), block: (Self.sampleThreads, 1, 1),
                   [.pointer(logits.pointer), .pointer(parameters.pointer), .pointer(penaltyOffsets.pointer),
                    .pointer(penalties.pointer), .pointer(out.pointer), .pointer(penalised),
                    .int32(Int32(v)), .int32(Int32(SamplingColumn.count)), .int32(Int32(logprobs)),
                    .int32(Int32(min(penalties.elementCount / 2, Int(Int32.max))))])
    }
}
