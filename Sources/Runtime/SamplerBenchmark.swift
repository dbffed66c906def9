import Dispatch
import Model
import Tensors

/// Times the `sample` op alone: `rows` rows of random logits over `vocabularySize` tokens, all
/// sampled with `row`'s parameters, median of `repeats` calls (after one untimed call).
enum SamplerBenchmark {
    static func secondsPerCall<B: ComputeBackend>(_ backend: B, rows: Int, vocabularySize v: Int, row: RowSampling,
                                                  logprobs: Int, repeats: Int) throws -> Double {
        var state: UInt64 = 0x1234_5678
        let values = (0..<(rows * v)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 8000) / 1000 - 4
        }
        let logits = try backend.makeActivation([rows, v])
        try backend.write(values, to: logits)
        let params = try backend.makeActivation([rows, SamplingColumn.count])
        var columns: [Float] = []
        for r in 0..<rows {
            var c = row.columns
            c[SamplingColumn.uniform.rawValue] = Float(r) / Float(rows)
            columns += c
        }
        try backend.write(columns, to: params)
        let offsets = try backend.makeIndices(rows + 1)
        try backend.write([Int32](repeating: 0, count: rows + 1), to: offsets)
        let pairs = try backend.makeIndices(2)
        let out = try backend.makeActivation([rows, 2 + 2 * max(logprobs, 0)])
        func call() throws {
            try backend.sample(logits: logits, parameters: params, penaltyOffsets: offsets, penalties: pairs, out: out,
                               rows: rows, vocabularySize: v, logprobs: logprobs)
            _ = try backend.readFloats(out, count: rows * 2)
        }
        try call()
        var times: [Double] = []
        for _ in 0..<max(1, repeats) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try call()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.sort()
        return times[times.count / 2]
    }
}
