import Tensors

/// How one logits row of a step is sampled: the sequence's parameters plus this step's random
/// draw and penalty counts (what `ComputeBackend.sample` reads for the row).
public struct RowSampling: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    public var minP: Float
    public var repetitionPenalty: Float
    public var presencePenalty: Float
    public var frequencyPenalty: Float
    /// The row's random draw in [0, 1).
    public var uniform: Float
    /// Flattened (token, times in the output) pairs, one per distinct token of prompt + output;
    /// empty when no penalty is on.
    public var penalties: [Int32]

    public init(temperature: Float, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, uniform: Float = 0, penalties: [Int32] = []) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.uniform = uniform
        self.penalties = penalties
    }

    /// Rows that need a token this step but whose draw is thrown away (a prompt chunk that is
    /// not the last): greedy, the cheapest.
    public static let unused = RowSampling(temperature: 0)

    /// The row's `SamplingColumn` values.
    public var columns: [Float] {
        var c = [Float](repeating: 0, count: SamplingColumn.count)
        c[SamplingColumn.temperature.rawValue] = temperature
        c[SamplingColumn.topK.rawValue] = Float(topK)
        c[SamplingColumn.topP.rawValue] = topP
        c[SamplingColumn.minP.rawValue] = minP
        c[SamplingColumn.repetitionPenalty.rawValue] = repetitionPenalty
        c[SamplingColumn.presencePenalty.rawValue] = presencePenalty
        c[SamplingColumn.frequencyPenalty.rawValue] = frequencyPenalty
        c[SamplingColumn.uniform.rawValue] = uniform
        return c
    }
}

/// One sampled token and, when asked, log-probabilities under the model's raw distribution.
public struct SampledToken: Sendable, Equatable {
    /// −1 when the row's logits were unusable (NaN, or no finite value).
    public var id: Int
    public var logprob: Float
    /// The most likely tokens, most likely first (as many as the step's `logprobs`).
    public var topIDs: [Int]
    public var topLogprobs: [Float]

    public init(id: Int, logprob: Float, topIDs: [Int] = [], topLogprobs: [Float] = []) {
        self.id = id
        self.logprob = logprob
        self.topIDs = topIDs
        self.topLogprobs = topLogprobs
    }
}

/// The `sample` op's host-side inputs for a step's rows, packed as the op reads them.
struct PackedSampling {
    var parameters: [Float] = []     // (R, SamplingColumn.count)
    var penaltyOffsets: [Int32] = [0] // (R+1)
    var penalties: [Int32] = []       // (P, 2)

    init(_ rows: [RowSampling]) {
        parameters.reserveCapacity(rows.count * SamplingColumn.count)
        for row in rows {
            parameters += row.columns
            penalties += row.penalties
            penaltyOffsets.append(Int32(penalties.count / 2))
        }
    }

    /// Reads the op's output (R, 2 + 2·N).
    static func unpack(_ values: [Float], rows: Int, logprobs: Int) -> [SampledToken] {
        let n = max(logprobs, 0), stride = 2 + 2 * n
        return (0..<rows).map { r in
            let o = r * stride
            return SampledToken(id: Int(values[o]), logprob: values[o + 1],
                                topIDs: (0..<n).map { Int(values[o + 2 + $0]) },
                                topLogprobs: (0..<n).map { values[o + 2 + n + $0] })
        }
    }
}

extension LanguageModel {
    /// For models without a device (test doubles): the forward pass, then the reference sampler
    /// on the host logits.
    public func step(_ batch: PackedBatch, sampling: [RowSampling], logprobs: Int) throws -> [SampledToken] {
        let logits = try forward(batch)
        precondition(sampling.count == logits.rows, "one RowSampling per logits row")
        let packed = PackedSampling(sampling)
        let stride = 2 + 2 * max(logprobs, 0)
        var out = [Float](repeating: 0, count: logits.rows * stride)
        let sampler = RowSampler()
        logits.values.withUnsafeBufferPointer { z in
            packed.parameters.withUnsafeBufferPointer { p in
                packed.penalties.withUnsafeBufferPointer { pairs in
                    out.withUnsafeMutableBufferPointer { o in
                        for r in 0..<logits.rows {
                            let start = Int(packed.penaltyOffsets[r]), end = Int(packed.penaltyOffsets[r + 1])
                            sampler.sample(z.baseAddress! + r * logits.vocabularySize, vocabularySize: logits.vocabularySize,
                                           parameters: p.baseAddress! + r * SamplingColumn.count,
                                           penalties: UnsafeBufferPointer(rebasing: pairs[(2 * start)..<(2 * end)]),
                                           logprobs: logprobs, out: o.baseAddress! + r * stride)
                        }
                    }
                }
            }
        }
        return PackedSampling.unpack(out, rows: logits.rows, logprobs: logprobs)
    }
}
