/// A prompt that was fitted into a token budget.
public struct FittedPrompt: Sendable, Equatable {
    public var tokens: [Int]
    /// How many messages (user, assistant and tool; never system) were left out, oldest first.
    public var droppedMessages: Int

    public init(tokens: [Int], droppedMessages: Int) {
        self.tokens = tokens
        self.droppedMessages = droppedMessages
    }
}

extension InstructEncoder {
    /// Encodes `request`, leaving out the oldest turns until the prompt has at most `maxTokens`
    /// tokens (e.g. `max_seq_len − max_tokens`). mistral-common has no truncation for v1–v3, so the
    /// rule is ours: a turn is a user message and everything up to the next user message (its
    /// answer, tool calls and tool results), so a cut never separates a tool call from its result;
    /// system messages are always kept (they form the system prompt); the last user turn is never
    /// dropped. The result is exactly `encode` of the shortened request.
    /// Throws `.promptTooLong` when even the last turn alone does not fit.
    public func encode(_ request: ChatRequest, maxTokens: Int) throws(ChatError) -> FittedPrompt {
        let full = try encode(request)
        if full.count <= maxTokens { return FittedPrompt(tokens: full, droppedMessages: 0) }
        let userIndices = request.messages.indices.filter { request.messages[$0].role == .user }
        var shortest = full.count
        for cut in userIndices.dropFirst() {
            let kept = request.messages[..<cut].filter { $0.role == .system } + request.messages[cut...]
            var shorter = request
            shorter.messages = Array(kept)
            let tokens = try encode(shorter)
            shortest = tokens.count
            if tokens.count <= maxTokens {
                return FittedPrompt(tokens: tokens, droppedMessages: request.messages.count - kept.count)
            }
        }
        throw ChatError(
            .promptTooLong,
            "the prompt needs \(shortest) tokens even after dropping all earlier turns, more than the \(maxTokens) available")
    }
}
