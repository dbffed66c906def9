import Model
import Tensors

/// A sequence's sampling state: its parameters, its own random stream (so a seed reproduces
/// the same output whatever the batchmates and whatever the backend's batch layout), and, when
/// a penalty is on, how often each token occurs. The token itself is picked by
/// `ComputeBackend.sample` on the device, from the `RowSampling` this makes for each step.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: Xoshiro256
    /// token → times in the output so far; prompt tokens enter with 0. Kept only when a
    /// penalty is on (the repetition penalty covers prompt and output, presence and frequency
    /// the output).
    private var counts: [Int32: Int32] = [:]

    public init(parameters: SamplingParameters, prompt: [Int] = []) {
        self.parameters = parameters
        self.rng = Xoshiro256(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
        if parameters.hasPenalties {
            for token in prompt { counts[Int32(truncatingIfNeeded: token), default: 0] += 0 }
        }
    }

    /// This step's row for the sample op; draws the next number of the sequence's stream.
    public mutating func nextRow() -> RowSampling {
        let p = parameters
        var penalties: [Int32] = []
        if p.hasPenalties {
            penalties.reserveCapacity(2 * counts.count)
            for (token, count) in counts { penalties.append(token); penalties.append(count) }
        }
        return RowSampling(temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP,
                           repetitionPenalty: p.repetitionPenalty, presencePenalty: p.presencePenalty,
                           frequencyPenalty: p.frequencyPenalty, uniform: rng.nextFloat(), penalties: penalties)
    }

    /// Counts a generated token for the presence and frequency penalties.
    public mutating func record(_ token: Int) {
        if parameters.hasPenalties { counts[Int32(truncatingIfNeeded: token), default: 0] += 1 }
    }

    /// Host convenience (tests, tools): picks a token from one row of logits with the reference
    /// sampler, as the sample op would, treating `history` as tokens already generated (each
    /// occurrence counts for the presence and frequency penalties).
    public mutating func sample(_ logits: ArraySlice<Float>, history: [Int]) -> Int {
        var row = nextRow()
        if parameters.hasPenalties {
            var seen: [Int32: Int32] = [:]
            for token in history { seen[Int32(truncatingIfNeeded: token), default: 0] += 1 }
            row.penalties = seen.flatMap { [$0.key, $0.value] }
        }
        let columns = row.columns
        var out: [Float] = [0, 0]
        let sampler = RowSampler()
        Array(logits).withUnsafeBufferPointer { z in
            columns.withUnsafeBufferPointer { p in
                row.penalties.withUnsafeBufferPointer { pairs in
                    out.withUnsafeMutableBufferPointer { o in
                        sampler.sample(z.baseAddress!, vocabularySize: z.count, parameters: p.baseAddress!, penalties: pairs,
                                       logprobs: -1, out: o.baseAddress!)
                    }
                }
            }
        }
        return Int(out[0])
    }
}

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

    /// Uniform in [0, 1) with 24 random bits: exactly representable in f32, so the CPU and a GPU
    /// sampler see the same draw.
    mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1.0p-24 }
}
