import Chat

/// A chat encoded for generation, shortened to fit the context when necessary.
///
/// A prompt longer than `contextLength − maxNewTokens` loses its oldest turns (a turn = a user
/// message and the assistant/tool messages after it) until it fits; system messages are always
/// kept, and the last turn is never dropped. `droppedMessages` says how many went, so the
/// front-end can tell the user.
public struct ChatPrompt: Sendable {
    public let tokens: [Int]
    public let droppedMessages: Int

    public init(request: ChatRequest, encoder: InstructEncoder, contextLength: Int, maxNewTokens: Int) throws {
        let budget = contextLength - maxNewTokens > 0 ? contextLength - maxNewTokens : contextLength - 1
        var current = request
        var dropped = 0
        while true {
            let tokens = try encoder.encode(current)
            if tokens.count <= budget {
                self.tokens = tokens
                self.droppedMessages = dropped
                return
            }
            // Drop the oldest turn: from the first non-system message up to the next user message.
            let body = current.messages.indices.filter { current.messages[$0].role != .system }
            let userStarts = body.filter { current.messages[$0].role == .user }
            guard let first = body.first, let nextUser = userStarts.first(where: { $0 > first }) else {
                throw EngineError.promptTooLong(tokens: tokens.count, limit: budget)
            }
            let removable = current.messages[first..<nextUser].filter { $0.role != .system }.count
            current.messages = current.messages.enumerated().filter { i, m in !(i >= first && i < nextUser && m.role != .system) }.map(\.element)
            dropped += removable
        }
    }

    public init(messages: [ChatMessage], tools: [ChatTool]?, encoder: InstructEncoder, contextLength: Int, maxNewTokens: Int) throws {
        try self.init(request: ChatRequest(messages: messages, tools: tools), encoder: encoder,
                      contextLength: contextLength, maxNewTokens: maxNewTokens)
    }
}
