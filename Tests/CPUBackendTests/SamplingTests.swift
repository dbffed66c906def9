import CPUBackend
import Foundation
import Tensors
import Testing

/// The `sample` op (the reference every backend's sampler is checked against) against exact
/// probabilities computed here the slow, obvious way: sort the whole vocabulary, softmax in
/// Double, cut, renormalise.
@Suite struct SamplingTests {
    struct Params {
        var temperature: Float = 1, topK = 0, topP: Float = 1, minP: Float = 0
        var repetition: Float = 1, presence: Float = 0, frequency: Float = 0
        /// (token, output count) pairs.
        var penalties: [(Int, Int)] = []
    }

    /// Runs the op on `rows` copies of `logits`, one uniform draw per row.
    static func sample(_ logits: [Float], _ p: Params, draws: [Float], logprobs: Int = -1,
                       backend: CPUBackend = CPUBackend(threads: 2)) throws -> [[Float]] {
        let v = logits.count, rows = draws.count
        let stride = 2 + 2 * max(logprobs, 0)
        let z = try backend.makeActivation([rows, v])
        try backend.write(Array((0..<rows).map { _ in logits }.joined()), to: z)
        var columns: [Float] = []
        var offsets: [Int32] = [0], pairs: [Int32] = []
        for u in draws {
            var c = [Float](repeating: 0, count: SamplingColumn.count)
            c[SamplingColumn.temperature.rawValue] = p.temperature
            c[SamplingColumn.topK.rawValue] = Float(p.topK)
            c[SamplingColumn.topP.rawValue] = p.topP
            c[SamplingColumn.minP.rawValue] = p.minP
            c[SamplingColumn.repetitionPenalty.rawValue] = p.repetition
            c[SamplingColumn.presencePenalty.rawValue] = p.presence
            c[SamplingColumn.frequencyPenalty.rawValue] = p.frequency
            c[SamplingColumn.uniform.rawValue] = u
            columns += c
            for (t, n) in p.penalties { pairs += [Int32(t), Int32(n)] }
            offsets.append(Int32(pairs.count / 2))
        }
        let params = try backend.makeActivation([rows, SamplingColumn.count])
        try backend.write(columns, to: params)
        let off = try backend.makeIndices(rows + 1)
        try backend.write(offsets, to: off)
        let pen = try backend.makeIndices(max(pairs.count, 1))
        try backend.write(pairs, to: pen)
        let out = try backend.makeActivation([rows, stride])
        try backend.sample(logits: z, parameters: params, penaltyOffsets: off, penalties: pen, out: out,
                           rows: rows, vocabularySize: v, logprobs: logprobs)
        let values = try backend.readFloats(out, count: rows * stride)
        return (0..<rows).map { Array(values[($0 * stride)..<(($0 + 1) * stride)]) }
    }

    /// Exact sampling probabilities of every token, by the op's contract written plainly.
    static func exactProbabilities(_ logits: [Float], _ p: Params) -> [Double] {
        var w = logits.map(Double.init)
        for (t, n) in p.penalties {
            if p.repetition != 1 { w[t] = w[t] > 0 ? w[t] / Double(p.repetition) : w[t] * Double(p.repetition) }
            w[t] -= Double(n) * Double(p.frequency) + (n > 0 ? Double(p.presence) : 0)
        }
        let s = w.map { $0 / Double(p.temperature) }
        let m = s.max()!
        let e = s.map { exp($0 - m) }
        var order = Array(e.indices).sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
        order = order.filter { e[$0] >= Double(p.minP) }                  // e is softmax / max
        if p.topK > 0 { order = Array(order.prefix(p.topK)) }
        if p.topP < 1 {
            let total = order.reduce(0) { $0 + e[$1] }
            var cumulative = 0.0, keep = order.count
            for (j, i) in order.enumerated() {
                cumulative += e[i]
                if cumulative >= Double(p.topP) * total { keep = j + 1; break }
            }
            order = Array(order.prefix(keep))
        }
        let mass = order.reduce(0) { $0 + e[$1] }
        var probs = [Double](repeating: 0, count: logits.count)
        for i in order { probs[i] = e[i] / mass }
        return probs
    }

    /// Pearson's chi-square over the tokens with non-zero expected probability; tokens with zero
    /// probability must never be drawn.
    static func checkFrequencies(_ logits: [Float], _ p: Params, draws: Int = 20000, seed: UInt64 = 1,
                                 _ label: String) throws {
        var rng = SeededRandom(seed: seed)
        let us = (0..<draws).map { _ in rng.uniform() }
        // In chunks of rows, so a full-vocabulary row is not copied thousands of times at once.
        var picks: [Int] = []
        for start in stride(from: 0, to: draws, by: 256) {
            picks += try sample(logits, p, draws: Array(us[start..<min(start + 256, draws)])).map { Int($0[0]) }
        }
        let expected = exactProbabilities(logits, p)
        var counts = [Int](repeating: 0, count: logits.count)
        for t in picks { counts[t] += 1 }
        var chi2 = 0.0, df = -1
        for (i, q) in expected.enumerated() {
            if q == 0 {
                #expect(counts[i] == 0, "\(label): token \(i) has probability 0 but was drawn \(counts[i]) times")
                continue
            }
            let want = q * Double(draws)
            chi2 += (Double(counts[i]) - want) * (Double(counts[i]) - want) / want
            df += 1
        }
        // 99.9% quantiles of chi-square for df 0…10 (df 0: one token, the statistic is 0), and the
        // Wilson–Hilferty approximation past that.
        let table = [0.0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59]
        let k = Double(df)
        let limit = df <= 10 ? table[max(df, 0)] : k * pow(1 - 2 / (9 * k) + 3.09 * (2 / (9 * k)).squareRoot(), 3)
        #expect(chi2 <= limit, "\(label): chi-square \(chi2) over \(df) degrees of freedom (limit \(limit)); counts \(counts), expected \(expected)")
    }

    let row: [Float] = [0.3, 2.0, -1.0, 1.6, 0.5, 1.1, -0.2, 1.9, 0.0, 0.8]

    @Test func frequenciesMatchExactProbabilitiesForEachParameter() throws {
        try Self.checkFrequencies(row, Params(temperature: 1), "temperature 1")
        try Self.checkFrequencies(row, Params(temperature: 0.6), "temperature 0.6")
        try Self.checkFrequencies(row, Params(temperature: 1.7), "temperature 1.7")
        try Self.checkFrequencies(row, Params(temperature: 1, topK: 3), "top-k 3")
        try Self.checkFrequencies(row, Params(temperature: 1, topP: 0.7), "top-p 0.7")
        try Self.checkFrequencies(row, Params(temperature: 1, minP: 0.3), "min-p 0.3")
        try Self.checkFrequencies(row, Params(temperature: 1, repetition: 1.8, penalties: [(1, 0), (7, 2), (2, 1)]), "repetition")
        try Self.checkFrequencies(row, Params(temperature: 1, presence: 1.5, penalties: [(1, 0), (7, 2), (3, 1)]), "presence")
        try Self.checkFrequencies(row, Params(temperature: 1, frequency: 0.7, penalties: [(1, 3), (7, 1)]), "frequency")
    }

    @Test func frequenciesMatchForCombinations() throws {
        try Self.checkFrequencies(row, Params(temperature: 0.8, topK: 4, topP: 0.9), "AIME defaults on a short row")
        try Self.checkFrequencies(row, Params(temperature: 0.9, topK: 6, topP: 0.8, minP: 0.1), "top-k + top-p + min-p")
        try Self.checkFrequencies(row, Params(temperature: 1.2, topK: 5, repetition: 1.3, presence: 0.4, frequency: 0.2,
                                              penalties: [(1, 2), (3, 0), (7, 1)]), "penalties + top-k")
    }

    @Test func aimeDefaultsOnAFullVocabulary() throws {
        // V = 32768: top-k 40 through the heap selection, then top-p over the 40.
        var rng = SeededRandom(seed: 5)
        let logits = (0..<32768).map { _ in 4 * rng.uniform() - 2 }
        try Self.checkFrequencies(logits, Params(temperature: 0.8, topK: 40, topP: 0.9), draws: 4000, "V 32768, AIME defaults")
    }

    @Test func greedyTakesTheLowestIdOfTheMaximum() throws {
        let out = try Self.sample([0.1, 2.0, -1, 1.9, 0.5, 2.0], Params(temperature: 0), draws: [0.99])
        #expect(out[0][0] == 1)
        let penalised = try Self.sample([0.1, 2.0, -1, 1.9, 0.5, 2.0], Params(temperature: 0, repetition: 2, penalties: [(1, 0), (5, 1)]), draws: [0])
        #expect(penalised[0][0] == 3)
    }

    @Test func topPReachedExactlyAndTiesKeepTheLowerIds() throws {
        // Four equal tokens: top-p 0.5 is reached exactly after two, which are ids 0 and 1.
        let grid = (0..<200).map { (Float($0) + 0.5) / 200 }
        let picks = Set(try Self.sample([1, 1, 1, 1], Params(temperature: 1, topP: 0.5), draws: grid).map { Int($0[0]) })
        #expect(picks == [0, 1])
        let topK = Set(try Self.sample([1, 1, 1], Params(temperature: 1, topK: 2), draws: grid).map { Int($0[0]) })
        #expect(topK == [0, 1])
    }

    @Test func topKLargerThanTheVocabularyIsNoCut() throws {
        let grid = (0..<400).map { (Float($0) + 0.5) / 400 }
        let all = try Self.sample(row, Params(temperature: 1), draws: grid).map { $0[0] }
        let big = try Self.sample(row, Params(temperature: 1, topK: 1000), draws: grid).map { $0[0] }
        #expect(all == big)
    }

    @Test func negativeInfinityIsNeverDrawnAndNaNIsAnError() throws {
        let grid = (0..<300).map { (Float($0) + 0.5) / 300 }
        let picks = Set(try Self.sample([0, -.infinity, 0.5, -.infinity], Params(temperature: 1), draws: grid).map { Int($0[0]) })
        #expect(picks == [0, 2])
        let nan = try Self.sample([0, .nan, 1], Params(temperature: 1), draws: [0.3])
        #expect(nan[0][0] == -1)
        let greedyNaN = try Self.sample([0, 1, .nan], Params(temperature: 0), draws: [0.3])
        #expect(greedyNaN[0][0] == -1)
        let allInfinite = try Self.sample([-.infinity, -.infinity], Params(temperature: 1), draws: [0.3])
        #expect(allInfinite[0][0] == -1)
    }

    @Test func logprobsAreTheRawLogSoftmax() throws {
        let out = try Self.sample(row, Params(temperature: 0.7, topK: 3, repetition: 3, penalties: [(1, 1)]), draws: [0.42], logprobs: 4)[0]
        let m = Double(row.max()!)
        let lse = m + log(row.reduce(0) { $0 + exp(Double($1) - m) })
        let chosen = Int(out[0])
        #expect(abs(Double(out[1]) - (Double(row[chosen]) - lse)) < 1e-5)
        // Top 4 by raw logit (penalties do not change the reported distribution): 1, 7, 3, 5.
        #expect(out[2..<6].map { Int($0) } == [1, 7, 3, 5])
        for (j, id) in [1, 7, 3, 5].enumerated() {
            #expect(abs(Double(out[6 + j]) - (Double(row[id]) - lse)) < 1e-5)
        }
        // Ties in the top list keep the lower id first.
        let tied = try Self.sample([0.5, 1, 1, 0.2], Params(temperature: 0), draws: [0], logprobs: 3)[0]
        #expect(tied[2..<5].map { Int($0) } == [1, 2, 0])
    }

    @Test func rowsAreIndependentOfTheirBatchmates() throws {
        // The same draw on the same row gives the same token whether alone or in a batch with
        // other parameters (one sampler per pool thread, no shared state between rows).
        let grid = (0..<64).map { (Float($0) + 0.5) / 64 }
        let alone = try grid.map { try Self.sample(row, Params(temperature: 0.8, topK: 4, topP: 0.9), draws: [$0])[0][0] }
        let batched = try Self.sample(row, Params(temperature: 0.8, topK: 4, topP: 0.9), draws: grid).map { $0[0] }
        #expect(alone == batched)
    }
}

extension SeededRandom {
    /// A uniform draw in [0, 1) with 24 bits, as the engine's per-sequence stream gives.
    mutating func uniform() -> Float { Float(next() >> 40) * 0x1.0p-24 }
}
