import Generation
import Model
import Testing
import TestSupport

/// A forward pass that throws fails the requests of that step only; the engine goes on.
@Suite struct EngineFailureTests {
    @Test func aFailedStepFailsItsRequestsAndTheEngineServesTheNextOnes() async throws {
        let model = PagedEchoModel(blocks: 64, stepDelayMicros: 500)
        model.failingSteps = [3]
        let e = Engine(model: model, stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
        let first = try e.submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 10))
        let second = try e.submit(promptTokens: [4, 5], sampling: .init(temperature: 0, maxTokens: 10))
        let a = await first.collect(), b = await second.collect()
        for r in [a, b] {
            #expect(r.finishReason == .error)
            #expect(r.error == .deviceFailure("injected device failure in step 3"))
            #expect(r.error?.category == .internalFailure)
            #expect(r.tokens.count < 10, "tokens streamed before the failure stay delivered")
        }
        #expect(e.statistics().failedSteps == 1)
        #expect(model.kvBlocks.freeBlocks == 64, "the failed sequences' blocks are back")
        // The same prompts again: served normally, with what a fresh engine gives (the failed
        // step's KV was never registered in the prefix cache).
        let again = try await e.submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 10)).collect()
        let fresh = try await Engine(model: PagedEchoModel(blocks: 64), stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
            .submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 10)).collect()
        #expect(again == fresh && again.finishReason == .length)
        #expect(Array(a.tokens) == Array(fresh.tokens.prefix(a.tokens.count)))
    }

    @Test func requestsNotInTheFailedStepAreUnaffected() async throws {
        // One sequence slot: the second request waits while the first one's step fails.
        let model = PagedEchoModel(blocks: 64, maxBatchSequences: 1, stepDelayMicros: 500)
        model.failingSteps = [2]
        let e = Engine(model: model, stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
        let failing = try e.submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 10))
        let waiting = try e.submit(promptTokens: [9, 8], sampling: .init(temperature: 0, maxTokens: 5))
        let f = await failing.collect(), w = await waiting.collect()
        #expect(f.finishReason == .error && f.tokens.count == 1)
        #expect(w.finishReason == .length && w.tokens.count == 5 && w.error == nil)
    }
}
