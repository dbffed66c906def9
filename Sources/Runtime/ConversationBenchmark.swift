import Chat
import Generation

/// A multi-turn chat through the Engine, encoded by the real instruct encoder the way a chat
/// front-end does it: every turn re-encodes the whole conversation (earlier answers included)
/// and submits it, so the prefix cache decides how much of it is computed again.
///
/// mistral-common puts the system prompt into the *last* user message, so with one the prompt
/// of turn n + 1 shares with turn n only what comes before turn n's user message; without one,
/// turn n + 1 starts with all of turn n.
public struct ConversationBenchmark: Sendable {
    public var turns: Int
    public var systemPrompt: String?
    public var maxTokens: Int

    /// Cycled through, one per turn (short chat questions the demo model was trained on).
    public static let userMessages = [
        "Hello Chloe!", "What is 12 plus 7?", "My name is Ana.", "What is my name?", "What is the capital of France?",
        "Tell me a short story about a cat.", "What is 9 times 6?", "Name three colors.", "How are you today?",
        "Thank you, goodbye!",
    ]

    public init(turns: Int, systemPrompt: String?, maxTokens: Int) {
        self.turns = turns
        self.systemPrompt = systemPrompt
        self.maxTokens = maxTokens
    }

    public struct Turn: Sendable, Encodable {
        public var turn: Int
        public var prompt_tokens: Int
        /// Prompt tokens whose KV came from the prefix cache.
        public var cached_tokens: Int
        public var generated_tokens: Int
    }

    public struct Result: Sendable, Encodable {
        public var system_prompt: Bool
        public var prefix_caching: Bool
        public var turns: [Turn]
        public var prompt_tokens: Int
        public var cached_tokens: Int
        /// cached ÷ prompt tokens over all turns.
        public var hit_rate: Double
        public var wall_s: Double
    }

    public func run(engine: Engine, encoder: InstructEncoder) async throws -> Result {
        let clock = ContinuousClock()
        let start = clock.now
        var history: [ChatMessage] = []
        var rows: [Turn] = []
        for turn in 0..<turns {
            history.append(.user(Self.userMessages[turn % Self.userMessages.count]))
            var messages = history
            if let systemPrompt { messages.insert(.system(systemPrompt), at: 0) }
            let prompt = try encoder.encode(ChatRequest(messages: messages))
            let before = engine.statistics()
            let result = try await engine.submit(promptTokens: prompt, sampling: .init(temperature: 0, maxTokens: maxTokens))
                .collect()
            if let error = result.error { throw error }
            let after = engine.statistics()
            rows.append(Turn(turn: turn + 1, prompt_tokens: prompt.count,
                             cached_tokens: after.prefixCacheHitTokens - before.prefixCacheHitTokens,
                             generated_tokens: result.tokens.count))
            history.append(.assistant(result.text))
        }
        let d = clock.now - start
        let prompts = rows.reduce(0) { $0 + $1.prompt_tokens }, cached = rows.reduce(0) { $0 + $1.cached_tokens }
        return Result(system_prompt: systemPrompt != nil, prefix_caching: engine.configuration.prefixCaching, turns: rows,
                      prompt_tokens: prompts, cached_tokens: cached, hit_rate: prompts == 0 ? 0 : Double(cached) / Double(prompts),
                      wall_s: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
}
