import Chat

/// The real `JobPromptEncoder`: the Chat module's mistral-common-exact instruct encoder. Control
/// tokens are emitted by id, so text in a job can never forge `[INST]` or `</s>`.
///
/// A trailing assistant turn is sent as `continueFinalMessage` (mistral-common's
/// `AssistantMessage(prefix=True)`): the model continues that answer. Whatever mistral-common
/// rejects (role order, empty content, …) throws `ChatError`, which fails only that job.
public struct InstructJobEncoder: JobPromptEncoder {
    public let encoder: InstructEncoder

    public init(_ encoder: InstructEncoder) {
        self.encoder = encoder
    }

    public func encode(_ messages: [JobMessage]) throws -> [Int] {
        let chat = messages.map { message -> ChatMessage in
            switch message.role {
            case .system: return .system(message.content)
            case .user: return .user(message.content)
            case .assistant: return .assistant(message.content)
            case .tool: return .tool(message.content, toolCallID: nil)
            }
        }
        let request = ChatRequest(messages: chat, continueFinalMessage: messages.last?.role == .assistant)
        return try encoder.encode(request)
    }
}
