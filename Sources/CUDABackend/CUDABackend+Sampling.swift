import Tensors

extension CUDABackend {
    public func sample(logits: CUDATensor, parameters: CUDATensor, penaltyOffsets: CUDATensor, penalties: CUDATensor,
                       out: CUDATensor, rows: Int, vocabularySize: Int, logprobs: Int) throws {
        // The sampling kernels are being written on the `cuda-sample` branch; until they land a
        // CUDA model cannot sample, and says so instead of guessing.
        throw BackendError.unsupported("sampling on CUDA (kernels not merged yet)")
    }
}
