import Generation
import Model
import Testing
import TestSupport

/// Per-request deadlines (`Engine.submit(…, timeout:)`, `serve --request-timeout`): a request
/// still running when its time is up ends at the next step with `.deadlineExceeded`, keeping what
/// it streamed; the others in the batch go on, and its KV blocks come back.
@Suite struct EngineDeadlineTests {
    @Test func aRequestPastItsDeadlineEndsAndItsBatchmatesGoOn() async throws {
        let model = PagedEchoModel(blocks: 64, stepDelayMicros: 2000)
        let e = Engine(model: model, stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
        let timed = try e.submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 100), timeout: .milliseconds(30))
        let untimed = try e.submit(promptTokens: [4, 5], sampling: .init(temperature: 0, maxTokens: 40))
        let a = await timed.collect(), b = await untimed.collect()
        #expect(a.finishReason == .error)
        #expect(a.error?.category == .timedOut)
        if case .deadlineExceeded(let seconds) = a.error { #expect(abs(seconds - 0.03) < 1e-9) } else {
            Issue.record("expected deadlineExceeded, got \(String(describing: a.error))")
        }
        #expect(a.tokens.count < 100, "it stopped early (2 ms a step, 30 ms to live)")
        #expect(b.finishReason == .length && b.tokens.count == 40 && b.error == nil)
        // The timed request's tokens are the prefix of what it would have produced.
        let full = try await Engine(model: PagedEchoModel(blocks: 64), stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
            .submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 100)).collect()
        #expect(Array(full.tokens.prefix(a.tokens.count)) == a.tokens)
        #expect(model.kvBlocks.freeBlocks == 64)
    }

    @Test func aTimeoutMustBePositive() throws {
        let e = Engine(model: PagedEchoModel(blocks: 64), stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
        #expect(throws: GenerationError.self) {
            _ = try e.submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 4), timeout: .zero)
        }
    }
}
