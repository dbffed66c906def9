import Chat
import Generation

/// `tool_choice`: whether and which tools the model must call.
public enum ToolChoice: Equatable, Sendable {
    case auto
    /// Tools are left out of the prompt and no output is read as a call.
    case none
    /// The prompt ends with `[TOOL_CALLS]`, so the answer is a call list.
    case required
    /// As `required`, with only this tool offered.
    case function(String)
}

/// A `POST /v1/chat/completions` body. Messages and tools go through the Chat target's decoder
/// (mistral-common's `from_openai` rules, with its error messages); the rest is read here.
public struct ChatCompletionRequest: Sendable {
    public var model: String?
    public var chat: ChatRequest
    public var sampling: SamplingRequest
    public var stream: Bool
    public var includeUsage: Bool
    public var toolChoice: ToolChoice
    /// Tool-call ids rewritten for the prompt (see `ToolCallIDMap`).
    var ids: ToolCallIDMap

    public init(_ fields: RequestFields) throws(APIError) {
        model = try fields.string("model")
        do { chat = try ChatRequest(jsonValue: .object(fields.object)) } catch { throw APIError(error) }
        var logprobs: Int?
        if try fields.bool("logprobs") == true {
            logprobs = try fields.int("top_logprobs", in: 0...SamplingParameters.maxTopLogprobs) ?? 0
        } else if fields["top_logprobs"] != nil {
            _ = try fields.int("top_logprobs", in: 0...SamplingParameters.maxTopLogprobs)
            throw .badRequest("'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
        }
        sampling = try SamplingRequest(fields, maxTokensKeys: ["max_tokens", "max_completion_tokens"], logprobs: logprobs)
        stream = try fields.bool("stream") ?? false
        includeUsage = false
        if let options = fields["stream_options"] {
            guard let object = options.objectValue else { throw RequestFields.typeError("stream_options", "an object") }
            includeUsage = try RequestFields(object: object).bool("include_usage") ?? false
        }
        if let format = fields["response_format"] {
            guard case .string("text")? = format.objectValue?["type"] else {
                throw .badRequest("'response_format' other than {\"type\": \"text\"} is not supported", param: "response_format")
            }
        }
        toolChoice = try Self.toolChoice(fields, tools: chat.tools ?? [])
        switch toolChoice {
        case .none: chat.tools = nil
        case .function(let name): chat.tools = chat.tools?.filter { $0.name == name }
        case .auto, .required: break
        }
        ids = ToolCallIDMap(rewriting: &chat)
    }

    private static func toolChoice(_ fields: RequestFields, tools: [ChatTool]) throws(APIError) -> ToolChoice {
        guard let value = fields["tool_choice"] else { return .auto }
        let choice: ToolChoice
        switch value {
        case .string("auto"): choice = .auto
        case .string("none"): choice = .none
        case .string("required"): choice = .required
        case .object(let o):
            guard case .string("function")? = o["type"], case .string(let name)? = o["function"]?.objectValue?["name"] else {
                throw .badRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}}",
                                  param: "tool_choice")
            }
            guard tools.contains(where: { $0.name == name }) else {
                throw .badRequest("'tool_choice' names the function '\(name)', which is not in 'tools'", param: "tool_choice")
            }
            choice = .function(name)
        default:
            throw .badRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or a function", param: "tool_choice")
        }
        if choice == .required && tools.isEmpty {
            throw .badRequest("'tool_choice' is \"required\" but the request has no 'tools'", param: "tool_choice")
        }
        return choice
    }

    /// Whether the prompt ends with `[TOOL_CALLS]`.
    public var forcesToolCall: Bool {
        switch toolChoice {
        case .required, .function: return true
        case .auto, .none: return false
        }
    }

    /// Whether the answer is read for tool calls: always unless `tool_choice` is "none" (a model
    /// may call a tool it saw in the history even when none is offered now).
    public var readsToolCalls: Bool { toolChoice != .none }
}
