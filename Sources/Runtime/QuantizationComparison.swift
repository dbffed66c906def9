import Foundation
import Model

/// How far a quantized model's next-token distributions are from the original's, on given
/// prompts: the measurement behind docs/fp8-accuracy.md (`mixtral-chat compare-quantization`).
///
/// Per prompt: the reference model continues greedily for `tokens` tokens (or to EOS); both models
/// then read prompt + that continuation in one teacher-forced pass, and at every continuation
/// position the report takes KL(p_ref ‖ p_test) (nats, from float64 softmaxes of the logits) and
/// whether the two argmaxes agree. Separately the test model continues greedily on its own, and
/// the report counts how many leading tokens equal the reference's.
public struct QuantizationComparison: Sendable {
    public struct Result: Sendable, Encodable {
        public var prompts: Int
        /// Continuation positions compared (teacher-forced).
        public var positions: Int
        public var meanKL: Double
        public var maxKL: Double
        /// Share of positions where the two models' argmax agree.
        public var top1Agreement: Double
        /// Mean number of leading generated tokens that are identical (free-running, capped at `tokens`).
        public var meanIdenticalPrefix: Double
        /// Share of prompts whose whole greedy continuation is identical.
        public var identicalContinuations: Double
    }

    public static func run(reference: any LanguageModel, test: any LanguageModel, prompts: [[Int]], tokens: Int,
                           stopToken: Int?) throws -> Result {
        var klSum = 0.0, klMax = 0.0, positions = 0, agree = 0, prefixSum = 0, identical = 0
        for prompt in prompts {
            let limit = min(tokens, reference.maxSequenceLength - prompt.count - 1)
            guard limit > 0 else { continue }
            let refTokens = try greedy(reference, prompt, limit, stopToken)
            let testTokens = try greedy(test, prompt, limit, stopToken)
            let prefix = zip(refTokens, testTokens).prefix { $0 == $1 }.count
            prefixSum += prefix
            if prefix == refTokens.count && refTokens.count == testTokens.count { identical += 1 }
            // Teacher-forced: logits at positions prompt.count-1 ..< end predict the continuation.
            let sequence = prompt + refTokens
            let a = try allLogits(reference, sequence), b = try allLogits(test, sequence)
            let v = a.vocabularySize
            for row in (prompt.count - 1)..<(sequence.count - 1) {
                let kl = klDivergence(a.values[(row * v)..<((row + 1) * v)], b.values[(row * v)..<((row + 1) * v)])
                klSum += kl
                klMax = max(klMax, kl)
                positions += 1
                if argmax(a.row(row)) == argmax(b.row(row)) { agree += 1 }
            }
        }
        let n = Double(max(1, prompts.count))
        return Result(prompts: prompts.count, positions: positions, meanKL: klSum / Double(max(1, positions)), maxKL: klMax,
                      top1Agreement: Double(agree) / Double(max(1, positions)),
                      meanIdenticalPrefix: Double(prefixSum) / n, identicalContinuations: Double(identical) / n)
    }

    /// Greedy continuation with the KV cache: prefill, then one token per step.
    static func greedy(_ model: any LanguageModel, _ prompt: [Int], _ count: Int, _ stop: Int?) throws -> [Int] {
        var table: [Int] = []
        guard model.kvBlocks.ensureCapacity(&table, tokens: prompt.count + count) else {
            throw ComparisonError("no KV room for \(prompt.count + count) tokens")
        }
        defer { model.kvBlocks.release(table) }
        var out: [Int] = []
        var logits = try prefill(model, prompt, table)
        while out.count < count {
            let next = argmax(logits.row(0))
            out.append(next)
            if next == stop { break }
            logits = try model.forward(PackedBatch(sequences: [.init(tokens: [next], startPosition: prompt.count + out.count - 1, blockTable: table)]))
        }
        return out
    }

    /// The last position's logits of `prompt`, prefilled in chunks the model can take.
    static func prefill(_ model: any LanguageModel, _ prompt: [Int], _ table: [Int]) throws -> Logits {
        var start = 0
        var logits = Logits(rows: 0, vocabularySize: 0, values: [])
        while start < prompt.count {
            let end = min(prompt.count, start + model.maxBatchTokens)
            logits = try model.forward(PackedBatch(sequences: [.init(tokens: Array(prompt[start..<end]), startPosition: start, blockTable: table)]))
            start = end
        }
        return logits
    }

    /// Logits of every position of `sequence` (chunked prefill with all rows kept).
    static func allLogits(_ model: any LanguageModel, _ sequence: [Int]) throws -> Logits {
        var table: [Int] = []
        guard model.kvBlocks.ensureCapacity(&table, tokens: sequence.count) else {
            throw ComparisonError("no KV room for \(sequence.count) tokens")
        }
        defer { model.kvBlocks.release(table) }
        var values: [Float] = []
        var start = 0, vocabulary = 0
        while start < sequence.count {
            let end = min(sequence.count, start + model.maxBatchTokens)
            let l = try model.forward(PackedBatch(sequences: [.init(tokens: Array(sequence[start..<end]), startPosition: start, blockTable: table)],
                                                  allLogits: true))
            values += l.values
            vocabulary = l.vocabularySize
            start = end
        }
        return Logits(rows: sequence.count, vocabularySize: vocabulary, values: values)
    }

    /// KL(softmax(p) ‖ softmax(q)) in nats, in float64.
    public static func klDivergence(_ p: ArraySlice<Float>, _ q: ArraySlice<Float>) -> Double {
        func logSoftmax(_ z: ArraySlice<Float>) -> [Double] {
            let m = Double(z.max() ?? 0)
            let lse = m + log(z.reduce(0.0) { $0 + exp(Double($1) - m) })
            return z.map { Double($0) - lse }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        var kl = 0.0
        for i in lp.indices { kl += exp(lp[i]) * (lp[i] - lq[i]) }
        return max(0, kl)
    }

    static func argmax(_ row: ArraySlice<Float>) -> Int {
        var best = row.startIndex
        for i in row.indices where row[i] > row[best] { best = i }
        return best - row.startIndex
    }

    public struct ComparisonError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }
}
