import Tensors

extension CPUBackend {
    public func sample(logits: CPUTensor, parameters: CPUTensor, penaltyOffsets: CPUTensor, penalties: CPUTensor,
                       out: CPUTensor, rows: Int, vocabularySize v: Int, logprobs: Int) throws {
        let stride = 2 + 2 * max(logprobs, 0)
        try check(logits, .f32, atLeast: rows * v, "sample logits")
        try check(parameters, .f32, atLeast: rows * SamplingColumn.count, "sample parameters")
        try check(penaltyOffsets, .i32, atLeast: rows + 1, "sample penaltyOffsets")
        try check(out, .f32, atLeast: rows * stride, "sample out")
        guard rows > 0 else { return }
        let offsets = penaltyOffsets.ints
        let pairCount = Int(offsets[rows])
        try check(penalties, .i32, atLeast: 2 * pairCount, "sample penalties")
        for r in 0..<rows where offsets[r] < 0 || offsets[r] > offsets[r + 1] {
            throw BackendError.shapeMismatch("sample penaltyOffsets are not ascending at row \(r)")
        }
        locked {
            let z = logits.floats, p = parameters.floats, pairs = penalties.ints, o = out.floats
            pool.run(tasks: rows) { r, thread in
                let start = Int(offsets[r]), end = Int(offsets[r + 1])
                samplers[thread].sample(z + r * v, vocabularySize: v, parameters: p + r * SamplingColumn.count,
                                        penalties: UnsafeBufferPointer(start: pairs + 2 * start, count: 2 * (end - start)),
                                        logprobs: logprobs, out: o + r * stride)
            }
        }
    }
}
