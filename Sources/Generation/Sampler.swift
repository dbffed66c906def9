/// Picks the next token from one row of logits. One sampler per sequence: it owns the
/// sequence's random generator so a seed reproduces the same output regardless of batchmates.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: Xoshiro256

    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        self.rng = Xoshiro256(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
    }

    /// - Parameters:
    ///   - logits: one row (V) of raw logits.
    ///   - history: token ids already in the sequence (prompt + output), for the repetition penalty.
    public mutating func sample(_ logits: ArraySlice<Float>, history: [Int]) -> Int {
        var row = Array(logits)
        let p = parameters
        if p.repetitionPenalty != 1 {
            for id in Set(history) where id >= 0 && id < row.count {
                row[id] = row[id] > 0 ? row[id] / p.repetitionPenalty : row[id] * p.repetitionPenalty
            }
        }
        if p.temperature == 0 { return Self.argmax(row) }

        // Candidates sorted by logit, descending (ties: lower id first, for determinism).
        var candidates = Array(row.indices)
        let k = p.topK > 0 ? min(p.topK, row.count) : row.count
        candidates.sort { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
        candidates.removeLast(candidates.count - k)

        let maxLogit = row[candidates[0]]
        var probs = candidates.map { Double(((row[$0] - maxLogit) / p.temperature)).exp() }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        if p.topP < 1 {
            var cumulative = 0.0
            var keep = probs.count
            for i in probs.indices {
                cumulative += probs[i]
                if cumulative >= Double(p.topP) { keep = i + 1; break }
            }
            probs.removeLast(probs.count - keep)
            candidates.removeLast(candidates.count - keep)
        }
        let mass = probs.reduce(0, +)
        var u = rng.nextDouble() * mass
        for (i, prob) in probs.enumerated() {
            u -= prob
            if u < 0 { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }

    static func argmax(_ row: [Float]) -> Int {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}

private extension Double {
    func exp() -> Double { _exp(self) }
}

#if canImport(Glibc)
import Glibc
private func _exp(_ x: Double) -> Double { Glibc.exp(x) }
#elseif canImport(Darwin)
import Darwin
private func _exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif

/// xoshiro256** seeded through SplitMix64: small, fast, and identical on every platform, so a
/// seed means the same thing everywhere.
struct Xoshiro256: Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
