import Chat
import Foundation
import Generation
import Model
import Testing

/// Prefix caching on the demo model (CPU backend): a multi-turn conversation gives the same
/// tokens with and without the cache, with full attention and with a 16-token sliding window shorter than
/// the prompts. Slow in debug; run in release.
@Suite(.serialized) struct DemoPrefixCachingTests {
    /// Runs a conversation of `turns` turns; each turn's prompt is the whole conversation so far.
    static func conversation(_ s: DemoModelTests.Setup, system: String?, turns: Int, seeded: Bool) async throws -> [[Int]] {
        var history: [ChatMessage] = []
        var outputs: [[Int]] = []
        let questions = ["Hello Chloe!", "What is 12 plus 7?", "My name is Ana.", "What is my name?", "Name three colors."]
        for turn in 0..<turns {
            history.append(.user(questions[turn % questions.count]))
            var messages = history
            if let system { messages.insert(.system(system), at: 0) }
            let prompt = try s.encoder.encode(ChatRequest(messages: messages))
            let sampling: SamplingParameters = seeded ? .init(temperature: 0.8, topK: 40, topP: 0.9, seed: UInt64(turn), maxTokens: 40)
                                                      : .init(temperature: 0, maxTokens: 40)
            let result = try await s.engine.submit(promptTokens: prompt, sampling: sampling).collect()
            #expect(result.error == nil)
            outputs.append(result.tokens)
            history.append(.assistant(result.text))
        }
        return outputs
    }

    @Test(arguments: [(nil, false), (nil, true), (16, false), (16, true)] as [(Int?, Bool)])
    func conversationsGiveTheSameTokensWithAndWithoutTheCache(slidingWindow: Int?, seeded: Bool) async throws {
        for system in [nil, "You are Chloe, a friendly assistant."] as [String?] {
            let cached = try DemoModelTests.setup(slidingWindow: slidingWindow, prefixCaching: true)
            let plain = try DemoModelTests.setup(slidingWindow: slidingWindow, prefixCaching: false)
            let a = try await Self.conversation(cached, system: system, turns: 5, seeded: seeded)
            let b = try await Self.conversation(plain, system: system, turns: 5, seeded: seeded)
            #expect(a == b, "system prompt: \(system != nil), window \(slidingWindow.map(String.init) ?? "none")")
            let stats = cached.engine.statistics()
            #expect(stats.prefixCacheHitTokens > 0)
            #expect(plain.engine.statistics().prefixCacheHitTokens == 0)
            if let w = slidingWindow {
                #expect(stats.prefixCacheQueryTokens / 5 > 2 * w, "the prompts are longer than the window")
            }
        }
    }
}
