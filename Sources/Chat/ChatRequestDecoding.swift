/// Decoding of messages, tools and tool calls from the OpenAI JSON shape, accepting and rejecting
/// what mistral-common's `from_openai` converters and pydantic models accept and reject.
/// Every error names the field by its JSON path (e.g. `messages[2].tool_calls[0].function.name`).

extension ChatMessage {
    init(jsonValue: JSONValue, path: String) throws(ChatError) {
        guard let object = jsonValue.objectValue else {
            throw ChatError(.invalidShape, "\(path) must be an object, got \(jsonValue.pythonTypeName)")
        }
        let roleName: String
        switch object["role"] {
        case .string(let s)?: roleName = s
        case nil, .null?: throw ChatError(.invalidShape, "Unknown message role: None (\(path).role)")
        case let other?: throw ChatError(.invalidShape, "Unknown message role: \(other.pythonJSON) (\(path).role)")
        }
        switch roleName {
        case "user":
            self.init(role: .user, content: try Self.requiredContent(object, role: .user, path: path))
        case "system", "developer":
            self.init(role: .system, content: try Self.requiredContent(object, role: .system, path: path))
        case "assistant":
            try self.init(assistant: object, path: path)
        case "tool":
            let content = try Self.requiredContent(object, role: .tool, path: path)
            guard let idValue = object["tool_call_id"] else {
                throw ChatError(.invalidShape, "\(path) (a tool message) has no 'tool_call_id' field")
            }
            self.init(
                role: .tool, content: content,
                toolCallID: try optionalString(idValue, path: "\(path).tool_call_id"),
                name: try optionalString(object["name"], path: "\(path).name"))
        default:
            throw ChatError(.invalidShape, "Unknown message role: \(roleName) (\(path).role)")
        }
    }

    private init(assistant object: JSONObject, path: String) throws(ChatError) {
        var content = try Self.content(object["content"], role: .assistant, path: "\(path).content")
        var toolCalls: [ToolCall]?
        switch object["tool_calls"] {
        case nil, .null?: toolCalls = nil
        case .array(let items)?:
            var calls: [ToolCall] = []
            for (i, item) in items.enumerated() {
                calls.append(try ToolCall(jsonValue: item, path: "\(path).tool_calls[\(i)]"))
            }
            toolCalls = calls
        case let other?:
            throw ChatError(.invalidShape, "\(path).tool_calls must be a list, got \(other.pythonTypeName)")
        }
        // OpenAI-style reasoning fields become a leading thinking part, as in mistral-common
        // (which v1–v3 then reject as an unsupported content type).
        let reasoningContent = try optionalString(object["reasoning_content"], path: "\(path).reasoning_content")
        let reasoning = try optionalString(object["reasoning"], path: "\(path).reasoning")
        if let a = reasoningContent, let b = reasoning, !a.unicodeScalars.elementsEqual(b.unicodeScalars) {
            throw ChatError(.invalidShape, "`reasoning_content` and `reasoning` should be equal. (\(path))")
        }
        if reasoningContent != nil || reasoning != nil {
            let think = ContentPart.other(type: "thinking")
            switch content {
            case nil: content = .parts([think])
            case .text(let s)?: content = .parts([think, .text(s)])
            case .parts(let parts)?:
                if parts.contains(think) {
                    throw ChatError(
                        .assistantMessage,
                        "Message cannot have both thinking chunks in `content` and a top-level `reasoning` or `reasoning_content` field."
                    )
                }
                content = .parts([think] + parts)
            }
        }
        var prefix = false
        switch object["prefix"] {
        case nil, .null?: break
        case .bool(let b)?: prefix = b
        case let other?: throw ChatError(.invalidShape, "\(path).prefix must be a boolean, got \(other.pythonTypeName)")
        }
        self.init(role: .assistant, content: content, toolCalls: toolCalls, prefix: prefix)
    }

    /// `content` of user, system and tool messages: the key must exist and not be null.
    private static func requiredContent(_ object: JSONObject, role: ChatRole, path: String) throws(ChatError) -> ChatContent {
        guard let value = object["content"] else {
            throw ChatError(.invalidShape, "\(path) (a \(role.rawValue) message) has no 'content' field")
        }
        guard let content = try content(value, role: role, path: "\(path).content") else {
            throw ChatError(.invalidShape, "\(path).content of a \(role.rawValue) message must be a string or a list of parts, not null")
        }
        return content
    }

    /// Part types pydantic allows per role (`_allowed_content_chunks`); others fail at decoding.
    private static func allowedPartTypes(_ role: ChatRole) -> Set<String> {
        switch role {
        case .user, .tool: return ["text", "image", "image_url", "input_audio", "audio_url"]
        case .system: return ["text", "input_audio", "thinking"]
        case .assistant: return ["text", "thinking"]
        }
    }

    private static let knownPartTypes: Set<String> = ["text", "image", "image_url", "input_audio", "audio_url", "thinking"]

    private static func content(_ value: JSONValue?, role: ChatRole, path: String) throws(ChatError) -> ChatContent? {
        switch value {
        case nil, .null?: return nil
        case .string(let s)?: return .text(s)
        case .array(let items)?:
            var parts: [ContentPart] = []
            for (i, item) in items.enumerated() {
                let partPath = "\(path)[\(i)]"
                guard let part = item.objectValue else {
                    throw ChatError(.invalidShape, "\(partPath) must be an object, got \(item.pythonTypeName)")
                }
                guard case .string(let type)? = part["type"] else {
                    throw ChatError(.invalidShape, "Content chunk must have a type field. (\(partPath).type)")
                }
                guard knownPartTypes.contains(type) else {
                    throw ChatError(.invalidShape, "'\(type)' is not a valid ChunkTypes (\(partPath).type)")
                }
                if type == "text" {
                    guard case .string(let text)? = part["text"] else {
                        throw ChatError(.invalidShape, "\(partPath).text must be a string")
                    }
                    parts.append(.text(text))
                } else {
                    let other = ContentPart.other(type: type)
                    guard allowedPartTypes(role).contains(type) else {
                        throw ChatError(
                            .invalidShape,
                            "\(other.mistralCommonClass) cannot be used in \(role.rawValue) message. (\(partPath))")
                    }
                    parts.append(other)
                }
            }
            return .parts(parts)
        case let other?:
            throw ChatError(.invalidShape, "Unknown content type: \(other.pythonTypeName) (\(path))")
        }
    }
}

extension ToolCall {
    init(jsonValue: JSONValue, path: String) throws(ChatError) {
        guard let object = jsonValue.objectValue else {
            throw ChatError(.invalidShape, "\(path) must be an object, got \(jsonValue.pythonTypeName)")
        }
        var id = "null"
        if let idValue = object["id"] {
            guard case .string(let s) = idValue else {
                throw ChatError(.invalidShape, "\(path).id must be a string, got \(idValue.pythonTypeName)")
            }
            id = s
        }
        if let type = object["type"], type != .string("function") {
            throw ChatError(.invalidShape, "\(path).type must be 'function', got \(type.pythonJSON)")
        }
        guard let function = object["function"]?.objectValue else {
            throw ChatError(.invalidShape, "\(path).function must be an object with 'name' and 'arguments'")
        }
        guard case .string(let name)? = function["name"] else {
            throw ChatError(.invalidShape, "\(path).function.name must be a string")
        }
        let arguments: String
        switch function["arguments"] {
        case nil, .null?: arguments = "{}"
        case .string(let s)?: arguments = s
        // pydantic turns a dict into its json.dumps; the normaliser re-parses it, so the exact
        // escaping chosen here does not reach the tokens.
        case .object(let o)?: arguments = JSONValue.object(o).pythonJSON
        case let other?:
            throw ChatError(.invalidShape, "\(path).function.arguments must be a string, got \(other.pythonTypeName)")
        }
        self.init(id: id, name: name, arguments: arguments)
    }
}

extension ChatTool {
    init(jsonValue: JSONValue, path: String) throws(ChatError) {
        guard let object = jsonValue.objectValue else {
            throw ChatError(.invalidShape, "\(path) must be an object, got \(jsonValue.pythonTypeName)")
        }
        if let type = object["type"], type != .string("function") {
            throw ChatError(.invalidShape, "\(path).type must be 'function', got \(type.pythonJSON)")
        }
        guard let function = object["function"]?.objectValue else {
            throw ChatError(.invalidShape, "\(path).function is required and must be an object")
        }
        guard case .string(let name)? = function["name"] else {
            throw ChatError(.invalidShape, "\(path).function.name is required and must be a string")
        }
        let description = try optionalString(function["description"], path: "\(path).function.description") ?? ""
        var parameters = JSONObject()
        switch function["parameters"] {
        case nil, .null?: break
        case .object(let o)?: parameters = o
        case let other?:
            throw ChatError(.invalidShape, "\(path).function.parameters must be an object, got \(other.pythonTypeName)")
        }
        switch function["strict"] {
        case nil, .null?, .bool?: break
        case let other?:
            throw ChatError(.invalidShape, "\(path).function.strict must be a boolean, got \(other.pythonTypeName)")
        }
        self.init(name: name, description: description, parameters: parameters)
    }
}

/// A string field that may be absent or null.
private func optionalString(_ value: JSONValue?, path: String) throws(ChatError) -> String? {
    switch value {
    case nil, .null?: return nil
    case .string(let s)?: return s
    case let other?: throw ChatError(.invalidShape, "\(path) must be a string, got \(other.pythonTypeName)")
    }
}
