/// mistral-common's `InstructRequestNormalizer` (used for v1, v2 and v3): system messages are
/// pulled out into one system prompt, runs of messages with the same role are merged, tool-call
/// arguments and tool results are parsed as JSON where they are JSON, and a conversation that
/// does not start with a user message gets an empty one in front.
struct NormalizedRequest {
    enum Message {
        case user(text: String, hasNonTextParts: Bool)
        case assistant(content: String, toolCalls: [NormalizedToolCall]?, prefix: Bool)
        case tool(content: JSONValue, toolCallID: String?, name: String?)
    }

    var messages: [Message]
    /// nil when no system message had content; may be "" (then it is not used).
    var systemPrompt: String?
    var tools: [ChatTool]?

    var lastUserIndex: Int? {
        messages.lastIndex { if case .user = $0 { return true } else { return false } }
    }

    var firstUserIndex: Int? {
        messages.firstIndex { if case .user = $0 { return true } else { return false } }
    }
}

struct NormalizedToolCall {
    var id: String
    var name: String
    /// The arguments after `json.loads` (a JSON value) or, when they are not JSON, the raw text.
    var arguments: JSONValue
}

enum RequestNormalizer {
    /// Text of messages joined the way `_aggregate_content_chunks_impl` does for v1–v3: every
    /// non-empty text (a string content or a text part) joined by "\n\n".
    static func joinedText(_ contents: [ChatContent?]) -> (text: String, hasNonTextParts: Bool) {
        var pieces: [String] = []
        var hasNonText = false
        for content in contents {
            switch content {
            case nil: break
            case .text(let s)?: if !s.isEmpty { pieces.append(s) }
            case .parts(let parts)?:
                for part in parts {
                    switch part {
                    case .text(let s): if !s.isEmpty { pieces.append(s) }
                    case .other: hasNonText = true
                    }
                }
            }
        }
        return (pieces.joined(separator: "\n\n"), hasNonText)
    }

    /// `_normalize_json_content` followed by the encoder's `_parse_json_content`: empty → `{}`,
    /// JSON → the parsed value, anything else → the text itself.
    static func parsedJSONContent(_ text: String) -> JSONValue {
        if text.isEmpty { return .object(JSONObject()) }
        return JSONParser.pythonLoads(text) ?? .string(text)
    }

    static func normalize(_ messages: [ChatMessage], tools: [ChatTool]?) -> NormalizedRequest {
        var systemParts: [String] = []
        for message in messages where message.role == .system && message.content.isTruthy {
            systemParts.append(joinedText([message.content]).text)
        }
        var result: [NormalizedRequest.Message] = []
        var start = 0
        while start < messages.count {
            let role = messages[start].role
            var end = start
            while end < messages.count, messages[end].role == role { end += 1 }
            let group = messages[start..<end]
            switch role {
            case .system:
                break
            case .user:
                let joined = joinedText(group.map(\.content))
                result.append(.user(text: joined.text, hasNonTextParts: joined.hasNonTextParts))
            case .assistant:
                var calls: [NormalizedToolCall] = []
                for message in group {
                    for call in message.toolCalls ?? [] {
                        calls.append(NormalizedToolCall(id: call.id, name: call.name, arguments: parsedJSONContent(call.arguments)))
                    }
                }
                result.append(
                    .assistant(
                        content: joinedText(group.map(\.content)).text,
                        toolCalls: calls.isEmpty ? nil : calls,
                        prefix: group.contains { $0.prefix }))
            case .tool:
                for message in group {
                    result.append(
                        .tool(
                            content: parsedJSONContent(joinedText([message.content]).text),
                            toolCallID: message.toolCallID, name: message.name))
                }
            }
            start = end
        }
        if let first = result.first, case .user = first {
        } else {
            result.insert(.user(text: "", hasNonTextParts: false), at: 0)
        }
        return NormalizedRequest(
            messages: result,
            systemPrompt: systemParts.isEmpty ? nil : systemParts.joined(separator: "\n\n"),
            tools: tools)
    }
}
