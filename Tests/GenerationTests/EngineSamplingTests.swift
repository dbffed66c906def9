import Foundation
import Checkpoints
import Generation
import Model
import Testing
import TestSupport

/// Sampling through the Engine: seeds, logprobs, penalties, ignore-EOS and unusable logits.
@Suite struct EngineSamplingTests {
    func engine(_ model: any LanguageModel, eos: Set<Int> = [49]) -> Engine {
        Engine(model: model, stopTokens: eos, prefillChunk: 256, makeDecoder: { AngleDecoder() })
    }

    @Test func aSeedReproducesTheOutputWhateverTheBatchmates() async throws {
        let sampling = SamplingParameters(temperature: 1.5, seed: 1234, maxTokens: 12)
        let alone = try await engine(ScriptedModel()).submit(promptTokens: [3, 4], sampling: sampling).collect().tokens
        let model = ScriptedModel(stepDelayMicros: 500)
        let e = engine(model)
        let mates = try (0..<3).map { i in
            try e.submit(promptTokens: [10 + i], sampling: .init(temperature: 1.5, seed: UInt64(i), maxTokens: 9))
        }
        let again = try e.submit(promptTokens: [3, 4], sampling: sampling)
        let withMates = await again.collect().tokens
        for m in mates { _ = await m.collect() }
        #expect(withMates == alone)
        #expect(model.batches.contains { $0.sequences.count > 1 }, "the seeded request shared steps")
        #expect(Set(alone).count > 3, "temperature 1.5 on the scripted model explores: \(alone)")
    }

    @Test func logprobsComeBeforeEachTokenAndDescribeTheModelsDistribution() async throws {
        let sampling = SamplingParameters(temperature: 0, maxTokens: 3, logprobs: 2)
        let result = try await engine(ScriptedModel()).submit(promptTokens: [5], sampling: sampling).collect()
        #expect(result.tokens == [6, 7, 8])
        #expect(result.logprobs.count == 3)
        // Scripted logits: next token 0, then −1, −2, … over 50 tokens: log-softmax by hand.
        let lse = log((0..<50).reduce(0.0) { $0 + exp(-Double($1)) })
        for (entry, token) in zip(result.logprobs, result.tokens) {
            #expect(entry.chosen.id == token)
            #expect(abs(Double(entry.chosen.logprob) + lse) < 1e-5)
            #expect(entry.top.map(\.id) == [token, token + 1])
            #expect(abs(Double(entry.top[1].logprob) - (-1 - lse)) < 1e-5)
        }
        let none = try await engine(ScriptedModel()).submit(promptTokens: [5], sampling: .init(temperature: 0, maxTokens: 2)).collect()
        #expect(none.logprobs.isEmpty)
    }

    @Test func ignoreEOSRunsPastTheEndToken() async throws {
        let result = try await engine(ScriptedModel()).submit(promptTokens: [47], sampling: .init(temperature: 0, maxTokens: 5, ignoreEOS: true)).collect()
        #expect(result.tokens == [48, 49, 0, 1, 2])
        #expect(result.finishReason == .length)
    }

    @Test func frequencyPenaltyStopsAGreedyLoop() async throws {
        // A model that always prefers token 7, then 8: penalties on generated tokens move
        // greedy decoding off 7 once it has been generated.
        let model = FixedLogitsModel(logits: (0..<50).map { $0 == 7 ? 3 : ($0 == 8 ? 2 : 0) })
        let plain = try await engine(model).submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 3)).collect()
        #expect(plain.tokens == [7, 7, 7])
        let penalised = try await engine(FixedLogitsModel(logits: model.logits))
            .submit(promptTokens: [1], sampling: .init(temperature: 0, frequencyPenalty: 1.5, maxTokens: 3)).collect()
        // 7 (3.0); then 7 at 1.5 < 8 at 2.0 → 8; then 7 at 1.5 vs 8 at 0.5 → 7.
        #expect(penalised.tokens == [7, 8, 7])
        let presence = try await engine(FixedLogitsModel(logits: model.logits))
            .submit(promptTokens: [1], sampling: .init(temperature: 0, presencePenalty: 2, maxTokens: 3)).collect()
        // 7; then 7 at 1.0 < 8 at 2.0 → 8; then 7 at 1.0 vs 8 at 0.0 → 7.
        #expect(presence.tokens == [7, 8, 7])
        let repetition = try await engine(FixedLogitsModel(logits: model.logits))
            .submit(promptTokens: [7], sampling: .init(temperature: 0, repetitionPenalty: 2, maxTokens: 1)).collect()
        // 7 is in the prompt: 3/2 = 1.5 < 2 → 8.
        #expect(repetition.tokens == [8])
    }

    @Test func nanLogitsFailOnlyTheirRequest() async throws {
        let model = FixedLogitsModel(logits: (0..<50).map { $0 == 7 ? 3 : 0 }, nanForFirstToken: 13)
        let e = engine(model)
        let bad = try e.submit(promptTokens: [13], sampling: .init(temperature: 0.8, maxTokens: 3))
        let good = try e.submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 3))
        let badResult = await bad.collect(), goodResult = await good.collect()
        #expect(badResult.finishReason == .error)
        #expect(badResult.error == .nonFiniteLogits)
        #expect(goodResult.tokens == [7, 7, 7])
    }
}

/// Every step gives the same logits row (or NaN for sequences whose first token is `nanForFirstToken`).
final class FixedLogitsModel: LanguageModel, @unchecked Sendable {
    // @unchecked: immutable after init; the engine calls `forward` from one thread.
    let config = ModelConfig(dim: 8, nLayers: 1, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                             normEps: 1e-5, vocabSize: 50)
    let kvBlocks = KVBlockAllocator(blockCount: 64, blockSize: 4)
    let maxBatchTokens = 64
    let maxBatchSequences = 8
    let maxSequenceLength = 128
    let deviceName = "fixed"
    let logits: [Float]
    let nanForFirstToken: Int?

    init(logits: [Float], nanForFirstToken: Int? = nil) {
        self.logits = logits
        self.nanForFirstToken = nanForFirstToken
    }

    func forward(_ batch: PackedBatch) throws -> Logits {
        var values: [Float] = []
        for seq in batch.sequences {
            let nan = seq.startPosition == 0 && seq.tokens.first == nanForFirstToken
            values += nan ? logits.map { _ in Float.nan } : logits
        }
        return Logits(rows: batch.sequences.count, vocabularySize: logits.count, values: values)
    }
}
