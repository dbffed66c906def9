/// Parsing and validation of one `job_data` entry of a `/worker_job_request` reply.
///
/// The server validates scalar inputs against the endpoint config but passes `chat_context`
/// (type `json`) through unchecked, and skips `0.0` minimums (aime-protocol.md §2.3, §5). So every
/// field is checked here, and a bad one fails only its own job with an error naming the field.

/// Why a job's input was rejected; `description` is what the job's `error` result says.
public struct JobInputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A validated job, ready for a `ChatJobRunner`.
public struct JobInput: Sendable, Equatable {
    public var messages: [JobMessage]
    public var sampling: JobSampling

    /// Endpoint defaults of `mixtral_chat` (aime-protocol.md §5), used when a field is absent.
    public static let defaultSampling = JobSampling(temperature: 0.8, topK: 40, topP: 0.9, maxGenTokens: 2000)

    public init(messages: [JobMessage], sampling: JobSampling) {
        self.messages = messages
        self.sampling = sampling
    }

    /// Reads one `job_data` entry. `key`, `client_session_auth_key` and `wait_for_result` are
    /// ignored, and never appear in an error message.
    public static func parse(_ entry: [String: AIMEJSON]) throws(JobInputError) -> JobInput {
        var messages = try parseChatContext(entry["chat_context"] ?? .null)
        switch entry["prompt_input"] ?? .null {
        case .null: break
        case .string(let prompt):
            if !prompt.isEmpty { messages.append(JobMessage(role: .user, content: prompt)) }
        case let other:
            throw JobInputError("prompt_input must be a string, got \(other.typeName)")
        }
        try validateOrder(messages)
        return JobInput(messages: messages, sampling: try parseSampling(entry))
    }

    static func parseChatContext(_ value: AIMEJSON) throws(JobInputError) -> [JobMessage] {
        let prefix = "Dialog has invalid chat context format!"
        switch value {
        case .null:
            return []
        case .string(let text) where text.isEmpty:
            return []
        case .array(let items):
            var messages: [JobMessage] = []
            for (index, item) in items.enumerated() {
                guard case .object(let fields) = item else {
                    throw JobInputError("\(prefix) chat_context[\(index)] must be an object with role and content, got \(item.typeName)")
                }
                guard let roleName = fields["role"]?.stringValue else {
                    throw JobInputError("\(prefix) chat_context[\(index)].role must be a string")
                }
                guard let role = JobMessage.Role(rawValue: roleName) else {
                    let allowed = JobMessage.Role.allCases.map(\.rawValue).joined(separator: ", ")
                    // Echo the role only when it looks like a role name: client text is never echoed.
                    let shown = roleName.count <= 20 && roleName.allSatisfy({ $0.isLetter || $0 == "_" })
                        ? "'\(roleName)'" : "(a string of \(roleName.count) characters)"
                    throw JobInputError("\(prefix) chat_context[\(index)].role \(shown) is not one of \(allowed)")
                }
                let content = try parseContent(fields["content"], at: "chat_context[\(index)].content", prefix: prefix)
                messages.append(JobMessage(role: role, content: content))
            }
            return messages
        default:
            throw JobInputError("\(prefix) chat_context must be a list of {role, content} objects or null, got \(value.typeName)")
        }
    }

    /// Content is a string, or a list of OpenAI-style text parts (`{"type": "text", "text": …}`),
    /// which are concatenated.
    static func parseContent(_ value: AIMEJSON?, at path: String, prefix: String) throws(JobInputError) -> String {
        switch value {
        case .string(let text)?:
            return text
        case .array(let parts)?:
            var text = ""
            for (index, part) in parts.enumerated() {
                if case .string(let piece) = part {
                    text += piece
                    continue
                }
                guard case .object(let fields) = part, let piece = fields["text"]?.stringValue,
                    (fields["type"]?.stringValue ?? "text") == "text"
                else {
                    throw JobInputError("\(prefix) \(path)[\(index)] must be a text part {\"type\": \"text\", \"text\": …}")
                }
                text += piece
            }
            return text
        case nil:
            throw JobInputError("\(prefix) \(path) is missing")
        case let other?:
            throw JobInputError("\(prefix) \(path) must be a string or a list of text parts, got \(other.typeName)")
        }
    }

    /// Role order as mistral-common's `MistralRequestValidator` allows it (system → user/assistant/
    /// system, user → assistant/system/user, assistant → assistant/user/tool, tool → assistant/tool/
    /// user), plus: at least one user turn, and the last turn is user or tool, or assistant
    /// (which means "continue this answer").
    static func validateOrder(_ messages: [JobMessage]) throws(JobInputError) {
        guard messages.contains(where: { $0.role == .user }) else {
            throw JobInputError("Dialog has no user message: both prompt_input and chat_context are empty")
        }
        for index in messages.indices.dropFirst() {
            let previous = messages[index - 1].role, current = messages[index].role
            let allowed: Set<JobMessage.Role>
            switch previous {
            case .system: allowed = [.user, .assistant, .system]
            case .user: allowed = [.assistant, .system, .user]
            case .assistant: allowed = [.assistant, .user, .tool]
            case .tool: allowed = [.assistant, .tool, .user]
            }
            if !allowed.contains(current) {
                throw JobInputError("Dialog has invalid chat context format! Unexpected role '\(current.rawValue)' after role '\(previous.rawValue)' (message \(index))")
            }
        }
    }

    static func parseSampling(_ entry: [String: AIMEJSON]) throws(JobInputError) -> JobSampling {
        var sampling = defaultSampling
        if let value = entry["temperature"], value != .null {
            guard let temperature = value.doubleValue, temperature.isFinite, temperature >= 0, temperature <= 2 else {
                throw JobInputError("temperature must be a number in 0...2 (0 = greedy), got \(describe(value))")
            }
            sampling.temperature = temperature
        }
        if let value = entry["top_k"], value != .null {
            guard let topK = value.intValue, topK >= 1, topK <= 1000 else {
                throw JobInputError("top_k must be an integer in 1...1000, got \(describe(value))")
            }
            sampling.topK = topK
        }
        if let value = entry["top_p"], value != .null {
            guard let topP = value.doubleValue, topP.isFinite, topP > 0, topP <= 1 else {
                throw JobInputError("top_p must be a number in (0, 1], got \(describe(value))")
            }
            sampling.topP = topP
        }
        if let value = entry["max_gen_tokens"], value != .null {
            guard let maxGen = value.intValue, maxGen >= 1 else {
                throw JobInputError("max_gen_tokens must be a positive integer, got \(describe(value))")
            }
            sampling.maxGenTokens = maxGen
        }
        return sampling
    }

    /// A bad value for an error message: numbers as they are, anything else only by type, so
    /// client text (which could hold a credential, or be huge) is never echoed or logged.
    private static func describe(_ value: AIMEJSON) -> String {
        switch value {
        case .int, .double: return value.description
        default: return value.typeName
        }
    }
}
