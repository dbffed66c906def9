/// A chat request in the OpenAI chat-completions shape, as mistral-common's
/// `ChatCompletionRequest.from_openai` reads it.
///
/// Decoding goes through `JSONParser` rather than `Decodable` on purpose: tool parameter schemas
/// and tool-call arguments end up in the prompt re-serialised by Python's `json.dumps`, whose output
/// depends on key order and on `1` vs `1.0`, which `JSONDecoder` does not keep.
/// Fields the encoder does not use (`temperature`, `response_format`, `stream`, …) are ignored;
/// front-ends read those themselves.
public struct ChatRequest: Sendable, Equatable {
    public var messages: [ChatMessage]
    public var tools: [ChatTool]?
    /// Continue the final assistant message instead of starting a new answer (vLLM's and
    /// mistral-common's `continue_final_message`; the same as `prefix: true` on that message).
    public var continueFinalMessage: Bool

    public init(messages: [ChatMessage], tools: [ChatTool]? = nil, continueFinalMessage: Bool = false) {
        self.messages = messages
        self.tools = tools
        self.continueFinalMessage = continueFinalMessage
    }

    /// Decodes a request body. Throws `ChatError` (`.invalidJSON` or `.invalidShape`, naming the field).
    public init(json text: String) throws(ChatError) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            throw ChatError(.invalidJSON, "request is not valid JSON: \(error)")
        }
        try self.init(jsonValue: value)
    }

    /// Decodes a request body given as UTF-8 bytes.
    public init(jsonUTF8 bytes: [UInt8]) throws(ChatError) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ChatError(.invalidJSON, "request is not valid UTF-8")
        }
        try self.init(json: text)
    }

    public init(jsonValue: JSONValue) throws(ChatError) {
        guard let root = jsonValue.objectValue else {
            throw ChatError(.invalidShape, "request must be a JSON object, got \(jsonValue.pythonTypeName)")
        }
        guard let messagesValue = root["messages"] else {
            throw ChatError(.invalidShape, "request has no 'messages' field")
        }
        guard let list = messagesValue.arrayValue else {
            throw ChatError(.invalidShape, "'messages' must be a list, got \(messagesValue.pythonTypeName)")
        }
        var messages: [ChatMessage] = []
        for (i, item) in list.enumerated() {
            messages.append(try ChatMessage(jsonValue: item, path: "messages[\(i)]"))
        }
        var continueFinal = false
        switch root["continue_final_message"] {
        case nil, .null?: break
        case .bool(let b)?: continueFinal = b
        case let other?:
            throw ChatError(.invalidShape, "'continue_final_message' must be a boolean, got \(other.pythonTypeName)")
        }
        var tools: [ChatTool]?
        switch root["tools"] {
        case nil, .null?: tools = nil
        case .array(let items)?:
            var parsed: [ChatTool] = []
            for (i, item) in items.enumerated() {
                parsed.append(try ChatTool(jsonValue: item, path: "tools[\(i)]"))
            }
            tools = parsed
        case let other?:
            throw ChatError(.invalidShape, "'tools' must be a list, got \(other.pythonTypeName)")
        }
        self.init(messages: messages, tools: tools, continueFinalMessage: continueFinal)
    }
}

public enum ChatRole: String, Sendable, Equatable {
    case system, user, assistant, tool
}

/// Message content: OpenAI allows a string or a list of typed parts.
public enum ChatContent: Sendable, Equatable {
    case text(String)
    case parts([ContentPart])
}

/// One part of a list-shaped content. Only text can be encoded by the v1–v3 SentencePiece formats;
/// other part types are kept so validation can reject them the way mistral-common does.
public enum ContentPart: Sendable, Equatable {
    case text(String)
    /// A non-text part (`image_url`, `input_audio`, `thinking`, …), by its OpenAI `type`.
    case other(type: String)

    /// mistral-common's class for this part type (its error messages name the class).
    var mistralCommonClass: String {
        switch self {
        case .text: return "TextChunk"
        case .other(let type):
            switch type {
            case "image": return "ImageChunk"
            case "image_url": return "ImageURLChunk"
            case "input_audio": return "AudioChunk"
            case "audio_url": return "AudioURLChunk"
            case "thinking": return "ThinkChunk"
            default: return type
            }
        }
    }
}

public struct ChatMessage: Sendable, Equatable {
    public var role: ChatRole
    /// nil when the JSON has `null` or no `content` (allowed for assistant messages only).
    public var content: ChatContent?
    /// Assistant messages only; nil when absent or `null`.
    public var toolCalls: [ToolCall]?
    /// Tool messages: the id of the call this result answers (required by v3).
    public var toolCallID: String?
    /// Tool messages: the function name (used by v2's tool-result format).
    public var name: String?
    /// Assistant messages: continue this (final) message rather than close it with `</s>`.
    public var prefix: Bool

    public init(
        role: ChatRole, content: ChatContent?, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil,
        name: String? = nil, prefix: Bool = false
    ) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
        self.prefix = prefix
    }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: .text(text)) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: .text(text)) }
    public static func assistant(_ text: String, prefix: Bool = false) -> ChatMessage {
        ChatMessage(role: .assistant, content: .text(text), prefix: prefix)
    }
    public static func assistant(toolCalls: [ToolCall]) -> ChatMessage {
        ChatMessage(role: .assistant, content: nil, toolCalls: toolCalls)
    }
    public static func tool(_ text: String, toolCallID: String?, name: String? = nil) -> ChatMessage {
        ChatMessage(role: .tool, content: .text(text), toolCallID: toolCallID, name: name)
    }
}

/// A function tool the model may call.
public struct ChatTool: Sendable, Equatable {
    public var name: String
    public var description: String
    /// The JSON-schema object for the arguments, key order as given.
    public var parameters: JSONObject

    public init(name: String, description: String = "", parameters: JSONObject = JSONObject()) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }
}

/// An assistant's call of a tool. `arguments` is a JSON string as in the OpenAI API.
public struct ToolCall: Sendable, Equatable {
    /// mistral-common's default id is the string "null" (v3 rejects it).
    public var id: String
    public var name: String
    public var arguments: String

    public init(id: String = "null", name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}
