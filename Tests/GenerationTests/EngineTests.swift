import Foundation
import Generation
import Model
import Testing
import TestSupport

@Suite struct EngineTests {
    func engine(_ model: ScriptedModel, eos: Set<Int> = [49], chunk: Int = 256) -> Engine {
        Engine(model: model, stopTokens: eos, prefillChunk: chunk, makeDecoder: { AngleDecoder() })
    }

    @Test func greedyFollowsTheModelAndStopsAtMaxTokens() async throws {
        let model = ScriptedModel()
        let result = try await engine(model).submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 4)).collect()
        #expect(result.tokens == [4, 5, 6, 7])
        #expect(result.text == "<4><5><6><7>")
        #expect(result.finishReason == .length)
        #expect(result.promptTokens == 3)
        #expect(model.kvBlocks.freeBlocks == 64, "blocks are returned when a sequence ends")
    }

    @Test func stopsAtEndOfSequenceToken() async throws {
        let result = try await engine(ScriptedModel()).submit(promptTokens: [45], sampling: .init(temperature: 0, maxTokens: 20)).collect()
        #expect(result.tokens == [46, 47, 48, 49])
        #expect(result.finishReason == .stop)
    }

    @Test func stopStringIsHeldBackAndNotReturned() async throws {
        let sampling = SamplingParameters(temperature: 0, maxTokens: 20, stop: ["<7><8"])
        let handle = try engine(ScriptedModel()).submit(promptTokens: [3], sampling: sampling)
        var pieces: [String] = []
        var reason: FinishReason?
        for await event in handle.events {
            if case .token(_, let text) = event { pieces.append(text) }
            if case .finished(let r, _, _, _) = event { reason = r }
        }
        #expect(pieces.joined() == "<4><5><6>")
        #expect(!pieces.joined().contains("<7"))
        #expect(reason == .stop)
    }

    @Test func chunkedPrefillReportsProgressAndGivesSameOutput() async throws {
        let model = ScriptedModel()
        let prompt = Array(0..<20)
        let handle = try engine(model, chunk: 6).submit(promptTokens: prompt, sampling: .init(temperature: 0, maxTokens: 3))
        var progress: [Int] = []
        var tokens: [Int] = []
        for await event in handle.events {
            if case .prefillProgress(let done, let total) = event { progress.append(done); #expect(total == 20) }
            if case .token(let id, _) = event { tokens.append(id) }
        }
        #expect(progress == [6, 12, 18, 20])
        #expect(tokens == [20, 21, 22])
        #expect(model.batches.prefix(4).map(\.tokenCount) == [6, 6, 6, 2])
    }

    @Test func batchedRequestsMatchSequentialOnes() async throws {
        let prompts = [[1, 2], [10, 11, 12, 13, 14], [30]]
        var sequential: [[Int]] = []
        for p in prompts {
            sequential.append(try await engine(ScriptedModel()).submit(promptTokens: p, sampling: .init(temperature: 0, maxTokens: 5)).collect().tokens)
        }
        let model = ScriptedModel(stepDelayMicros: 1_000)
        let e = engine(model)
        let handles = try prompts.map { try e.submit(promptTokens: $0, sampling: .init(temperature: 0, maxTokens: 5)) }
        var batched: [[Int]] = []
        for h in handles { batched.append(await h.collect().tokens) }
        #expect(batched == sequential)
        #expect(model.batches.contains { $0.sequences.count > 1 }, "requests shared engine steps")
    }

    @Test func newRequestJoinsRunningBatch() async throws {
        // The late request is submitted from inside the engine's third step, so the check does
        // not depend on how fast the test's own tasks get scheduled.
        let model = ScriptedModel(stepDelayMicros: 1_000)
        let e = engine(model)
        let late = LockedBox<GenerationHandle>()
        model.onStep = { step in
            if step == 3 { late.set(try? e.submit(promptTokens: [2], sampling: .init(temperature: 0, maxTokens: 2))) }
        }
        let long = try await e.submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 30)).collect()
        #expect(long.tokens.count == 30)
        let lateTokens = await late.get()?.collect().tokens
        #expect(lateTokens == [3, 4])
        let shared = model.batches.filter { $0.sequences.count == 2 }.count
        #expect(shared == 2, "the late request's prefill and its one decode step ran inside the long one's steps")
        #expect(model.batches.count == 30, "the late request added no steps of its own")
    }

    @Test func cancellationFinishesWithCancelled() async throws {
        let model = ScriptedModel(stepDelayMicros: 1_000)
        let e = engine(model, eos: [])
        let handle = LockedBox<GenerationHandle>()
        model.onStep = { step in if step >= 3 { handle.get()?.cancel() } }
        let h = try e.submit(promptTokens: [1], sampling: .init(temperature: 0, maxTokens: 100))
        handle.set(h)
        let result = await h.collect()
        #expect(result.finishReason == .cancelled)
        #expect(result.tokens.count < 100)
        try await Task.sleep(for: .milliseconds(20))
        #expect(model.kvBlocks.freeBlocks == 64)
    }

    @Test func rejectsBadRequests() throws {
        let e = engine(ScriptedModel(maxSequenceLength: 16))
        #expect(throws: EngineError.emptyPrompt) { try e.submit(promptTokens: [], sampling: .greedy) }
        #expect(throws: EngineError.self) { try e.submit(promptTokens: Array(0..<16), sampling: .greedy) }
        #expect(throws: EngineError.self) { try e.submit(promptTokens: [1], sampling: .init(temperature: -1)) }
        #expect(throws: EngineError.self) { try e.submit(promptTokens: [1], sampling: .init(topP: 0)) }
    }

    @Test func contextLimitEndsWithLength() async throws {
        let result = try await engine(ScriptedModel(maxSequenceLength: 10)).submit(promptTokens: [1, 2, 3], sampling: .init(temperature: 0, maxTokens: 100)).collect()
        #expect(result.tokens.count == 7)
        #expect(result.finishReason == .length)
    }
}

/// A value handed between the engine's step loop and the test.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T?) { lock.lock(); value = v; lock.unlock() }
    func get() -> T? { lock.lock(); defer { lock.unlock() }; return value }
}
