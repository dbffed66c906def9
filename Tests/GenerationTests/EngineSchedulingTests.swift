import Generation
import Model
import Testing
import TestSupport

/// KV blocks on demand through the Engine: preemption must not change any output, a request
/// that can never fit is refused at once, and the pool bounds a sequence's length.
@Suite struct EngineSchedulingTests {
    func engine(_ model: any LanguageModel) -> Engine {
        Engine(model: model, stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
    }

    static let prompts: [[Int]] = (0..<6).map { i in (0..<(3 + 2 * i)).map { ($0 * 7 + i * 3) % 50 } }

    /// Every prompt's output, all submitted at once to one engine.
    func outputs(_ model: PagedEchoModel, sampling: (Int) -> SamplingParameters) async throws -> [GenerationResult] {
        let e = engine(model)
        let handles = try Self.prompts.indices.map { try e.submit(promptTokens: Self.prompts[$0], sampling: sampling($0)) }
        var results: [GenerationResult] = []
        for h in handles { results.append(await h.collect()) }
        #expect(model.kvBlocks.freeBlocks == model.kvBlocks.blockCount, "every block is back")
        if model.kvBlocks.blockCount < 40 { #expect(e.statistics().preemptions > 0, "the small pool preempted") }
        return results
    }

    @Test(arguments: ["greedy", "seeded"])
    func preemptionInATinyPoolGivesTheOutputsOfALargePool(mode: String) async throws {
        let sampling: (Int) -> SamplingParameters = { i in
            mode == "greedy" ? .init(temperature: 0, maxTokens: 24)
                : .init(temperature: 1.0, topK: 20, frequencyPenalty: 0.7, seed: UInt64(100 + i), maxTokens: 24)
        }
        // 12 blocks of 4 = 48 positions for six sequences that grow to 27…37: at most one or two
        // fit at full length.
        let small = try await outputs(PagedEchoModel(blocks: 12, stepDelayMicros: 200), sampling: sampling)
        let large = try await outputs(PagedEchoModel(blocks: 256), sampling: sampling)
        #expect(small == large)
        for (r, prompt) in zip(large, Self.prompts) {
            #expect(r.finishReason == .length && r.tokens.count == 24 && r.error == nil)
            #expect(r.text == r.tokens.map { "<\($0)>" }.joined(), "the stream has no gap and no duplicate")
            if mode == "greedy" {
                var context = prompt
                for token in r.tokens {
                    #expect(token == PagedEchoModel.next(after: context, vocabularySize: 50))
                    context.append(token)
                }
            }
        }
        if mode == "seeded" { #expect(Set(large.flatMap(\.tokens)).count > 10, "sampling explored") }
    }

    @Test func aPromptLargerThanThePoolIsRefusedAtOnceWithTheNumbers() throws {
        let e = engine(PagedEchoModel(blocks: 4))
        #expect(throws: GenerationError.promptExceedsKVPool(tokens: 16, blocksNeeded: 5, poolBlocks: 4, blockSize: 4)) {
            try e.submit(promptTokens: Array(repeating: 1, count: 16), sampling: .greedy)
        }
        let error = GenerationError.promptExceedsKVPool(tokens: 16, blocksNeeded: 5, poolBlocks: 4, blockSize: 4)
        #expect(error.category == .invalidRequest)
        #expect(error.description.contains("16 tokens") && error.description.contains("4 blocks (16 tokens)"))
        #expect(throws: GenerationError.tokenOutOfRange(token: 50, vocabularySize: 50)) {
            try e.submit(promptTokens: [1, 50], sampling: .greedy)
        }
    }

    @Test func aSequenceGrowsUntilThePoolIsFullThenEndsWithLength() async throws {
        // max_tokens 100 with 16 positions in the whole pool: the old up-front reservation refused
        // this; now it runs until the pool is full.
        let model = PagedEchoModel(blocks: 4)
        let result = try await engine(model).submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 100)).collect()
        #expect(result.finishReason == .length)
        #expect(result.tokens.count == 13)
    }

    @Test func statisticsCountBlocksAndPreemptions() async throws {
        let model = PagedEchoModel(blocks: 12, stepDelayMicros: 200)
        let e = engine(model)
        let handles = try Self.prompts.map { try e.submit(promptTokens: $0, sampling: .init(temperature: 0, maxTokens: 24)) }
        for h in handles { _ = await h.collect() }
        let s = e.statistics()
        #expect(s.kvBlocksTotal == 12 && s.kvBlocksFree == 12 && s.kvBlocksUsed == 0)
        #expect(s.running == 0 && s.waiting == 0 && s.preemptions > 0 && s.failedSteps == 0)
    }

    @Test func cancelledRequestsFinishWithTheCancelledError() async throws {
        let model = PagedEchoModel(blocks: 64, stepDelayMicros: 1_000)
        let h = try engine(model).submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 1_000))
        h.cancel()
        let result = await h.collect()
        #expect(result.finishReason == .cancelled && result.error == .cancelled)
    }
}
