import BackendConformance
import CUDABackend
import Dispatch
import Tensors

/// Time per step of the `sample` op: R rows of V = 32768 logits with the AIME endpoint's
/// defaults (temperature 0.8, top-k 40, top-p 0.9), and greedy and top-p alone for comparison.
/// Two columns as in `microbench`: 50 launches between host syncs (launch overhead included),
/// and the same 50 recorded as one CUDA graph and replayed (how a decode step runs it).
extension Bench {
    func sampleBench() throws {
        let v = 32768
        var rng = SplitMix64(seed: 11)
        var graphKey = 2_000_000
        say("  " + "sample op, V \(v)".padding(toLength: 58, withPad: " ", startingAt: 0) + "  launched  from graph")
        let settings: [(String, [Float])] = [
            ("AIME: temperature 0.8, top-k 40, top-p 0.9", [0.8, 40, 0.9, 0, 1, 0, 0, 0.5]),
            ("greedy", [0, 0, 1, 0, 1, 0, 0, 0.5]),
            ("temperature 0.8, top-p 0.9 (top-k off)", [0.8, 0, 0.9, 0, 1, 0, 0, 0.5]),
        ]
        let maxRows = 64
        let logits = try backend.makeActivation([maxRows, v])
        // Logits about as spread as a language model's: 2.6 · (a sum of 4 uniforms on [−1, 1)) ≈ N(0, 3²).
        try backend.write((0..<(maxRows * v)).map { _ in 2.6 * rng.floats(4).reduce(0, +) }, to: logits)
        let parameters = try backend.makeActivation([maxRows, SamplingColumn.count])
        let offsets = try backend.makeIndices(maxRows + 1)
        try backend.write([Int32](repeating: 0, count: maxRows + 1), to: offsets)
        let pairs = try backend.makeIndices(2)
        let out = try backend.makeActivation([maxRows, 2 + 2 * 20])
        for (name, columns) in settings {
            try backend.write((0..<maxRows).flatMap { _ in columns }, to: parameters)
            for rows in [1, 8, 64] {
                for logprobs in name.hasPrefix("AIME") ? [-1, 5] : [-1] {
                    let body = {
                        try backend.sample(logits: logits, parameters: parameters, penaltyOffsets: offsets, penalties: pairs,
                                           out: out, rows: rows, vocabularySize: v, logprobs: logprobs)
                    }
                    for _ in 0..<3 { try body() }
                    try backend.synchronize()
                    let iterations = 50
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<iterations { try body() }
                    try backend.synchronize()
                    let launched = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3 / Double(iterations)
                    graphKey += 1
                    let shape = StepShape(tokens: 1, sequences: 1, logitRows: graphKey)
                    let fifty = { for _ in 0..<iterations { try body() } }
                    for _ in 0..<3 { try backend.replayable(shape, fifty) }
                    try backend.synchronize()
                    let replays = 10
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<replays { try backend.replayable(shape, fifty) }
                    try backend.synchronize()
                    let graph = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e3 / Double(iterations * replays)
                    let label = "R \(rows), \(name)" + (logprobs >= 0 ? ", logprobs \(logprobs)" : "")
                    say("  " + label.padding(toLength: 58, withPad: " ", startingAt: 0) + String(format: " %8.1f us %8.1f us", launched, graph))
                }
            }
        }
    }
}
