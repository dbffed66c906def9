/// mistral-common's `MistralRequestValidator` (v1/v2) and `MistralRequestValidatorV3` in the mode
/// `MistralTokenizer.from_file` uses (`ValidationMode.test`), check for check and in the same
/// order, so the first error raised and its message are the same as mistral-common's.
struct RequestValidator {
    let version: InstructVersion

    /// `_map_continue_final_message`, then `validate_request`.
    func validate(_ request: ChatRequest) throws(ChatError) -> [ChatMessage] {
        var messages = request.messages
        if request.continueFinalMessage {
            guard messages.last?.role == .assistant else {
                throw ChatError(.messageStructure, "continue_final_message=True requires final message to be an assistant.")
            }
            messages[messages.count - 1].prefix = true
        }
        try validateStructure(messages)
        try validateContent(messages)
        for tool in request.tools ?? [] {
            try validateTool(tool)
        }
        return messages
    }

    // MARK: structure (`_validate_message_list_structure`)

    private func validateStructure(_ messages: [ChatMessage]) throws(ChatError) {
        guard let last = messages.last else {
            throw ChatError(.messageStructure, "Conversation must have at least one message")
        }
        if messages.count == 1, last.role != .user, last.role != .system {
            throw ChatError(.messageStructure, "Conversation must start with a user message or system message")
        }
        if messages.count > 1, last.role == .assistant, !last.prefix {
            throw ChatError(
                .messageStructure,
                "Expected last role User or Tool (or Assistant with prefix) for serving but got assistant")
        }
        // `_validate_message_order`
        var previous: ChatRole?
        for message in messages {
            if let previous {
                let allowed: Set<ChatRole>
                switch previous {
                case .system: allowed = [.user, .assistant, .system]
                case .user: allowed = [.assistant, .system, .user]
                case .assistant: allowed = [.assistant, .user, .tool]
                case .tool: allowed = [.assistant, .tool, .user]
                }
                if !allowed.contains(message.role) {
                    throw ChatError(
                        .messageStructure, "Unexpected role '\(message.role.rawValue)' after role '\(previous.rawValue)'")
                }
            }
            previous = message.role
        }
        // `_validate_tool_calls_followed_by_tool_messages`: the first message is skipped, and in
        // test mode calls left unanswered at the end are allowed.
        var expectedToolMessages = 0
        for message in messages.dropFirst() {
            switch message.role {
            case .tool:
                expectedToolMessages -= 1
            case .assistant:
                if expectedToolMessages != 0 {
                    throw ChatError(.messageStructure, "Not the same number of function calls and responses")
                }
                if let calls = message.toolCalls { expectedToolMessages = calls.count }
            default:
                break
            }
        }
    }

    // MARK: content (`_validate_message_list_content`)

    private func validateContent(_ messages: [ChatMessage]) throws(ChatError) {
        for (index, message) in messages.enumerated() {
            switch message.role {
            case .user:
                let allowed: Set<String> = version == .v3 ? ["TextChunk", "ImageChunk", "ImageURLChunk"] : ["TextChunk"]
                try checkPartTypes(message.content, allowed: allowed, role: "user", kind: .userMessage)
            case .assistant:
                try validateAssistant(message, isLast: index == messages.count - 1)
            case .tool:
                try checkPartTypes(message.content, allowed: ["TextChunk"], role: "tool", kind: .toolMessage)
                if let name = message.name, !Self.isValidFunctionName(name) {
                    throw ChatError(.toolMessage, Self.badNameMessage(name))
                }
                if version == .v3 {
                    guard let id = message.toolCallID else {
                        throw ChatError(.request, "Tool call id has to be defined.")
                    }
                    if !Self.isValidToolCallID(id) {
                        throw ChatError(
                            .toolMessage, "Tool call id was \(id) but must be a-z, A-Z, 0-9, with a length of 9.")
                    }
                }
            case .system:
                try checkPartTypes(message.content, allowed: ["TextChunk"], role: "system", kind: .systemPrompt)
            }
        }
    }

    private func validateAssistant(_ message: ChatMessage, isLast: Bool) throws(ChatError) {
        try checkPartTypes(message.content, allowed: ["TextChunk"], role: "assistant", kind: .assistantMessage)
        if message.content.isTruthy == !(message.toolCalls ?? []).isEmpty {
            throw ChatError(.assistantMessage, "Assistant message must have either content or tool_calls, but not both.")
        }
        for call in message.toolCalls ?? [] {
            if version == .v3 {
                if call.id == "null" {
                    throw ChatError(
                        .functionCall,
                        "Tool call id 'null' is only allowed for the last assistant message in finetuning mode.")
                }
                if !Self.isValidToolCallID(call.id) {
                    throw ChatError(
                        .functionCall, "Tool call id was \(call.id) but must be a-z, A-Z, 0-9, with a length of 9.")
                }
            }
            if !Self.isValidFunctionName(call.name) {
                throw ChatError(.functionCall, Self.badNameMessage(call.name))
            }
        }
        if message.prefix, !isLast {
            throw ChatError(.assistantMessage, "Assistant message with prefix True must be last message")
        }
    }

    /// `_validate_content_chunk_types`: the message lists the offending classes, sorted.
    private func checkPartTypes(
        _ content: ChatContent?, allowed: Set<String>, role: String, kind: ChatError.Kind
    ) throws(ChatError) {
        guard case .parts(let parts)? = content else { return }
        let invalid = Set(parts.map(\.mistralCommonClass)).subtracting(allowed).sorted()
        if !invalid.isEmpty {
            let list = "[" + invalid.map { "'\($0)'" }.joined(separator: ", ") + "]"
            throw ChatError(kind, "Unexpected content chunk types in \(role) message: \(list)")
        }
    }

    // MARK: tools (`_validate_tools`)

    private func validateTool(_ tool: ChatTool) throws(ChatError) {
        if let problem = Draft7SchemaCheck.firstProblem(in: .object(tool.parameters)) {
            throw ChatError(.toolSchema, "Invalid tool schema: \(problem)")
        }
        if !Self.isValidFunctionName(tool.name) {
            throw ChatError(.tool, Self.badNameMessage(tool.name))
        }
    }

    // MARK: name and id patterns

    static func badNameMessage(_ name: String) -> String {
        "Function name was \(name) but must be a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64."
    }

    /// Python `re.match(r"^[a-zA-Z0-9_-]{1,64}$", name)`. Note `$` also matches before one final
    /// "\n", so "name\n" passes in mistral-common and therefore here.
    static func isValidFunctionName(_ name: String) -> Bool {
        matches(name, count: 1...64) { isASCIIAlnum($0) || $0 == "_" || $0 == "-" }
    }

    /// Python `re.match(r"^[a-zA-Z0-9]{9}$", id)` (same `$` rule).
    static func isValidToolCallID(_ id: String) -> Bool {
        matches(id, count: 9...9, isASCIIAlnum)
    }

    private static func isASCIIAlnum(_ u: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u)
    }

    private static func matches(_ s: String, count: ClosedRange<Int>, _ allowed: (Unicode.Scalar) -> Bool) -> Bool {
        var scalars = Array(s.unicodeScalars)
        if scalars.last == "\n" { scalars.removeLast() }
        return count.contains(scalars.count) && scalars.allSatisfy(allowed)
    }
}

extension Optional where Wrapped == ChatContent {
    /// Python truthiness of the content: "" and [] are false; a list with any part is true.
    var isTruthy: Bool {
        switch self {
        case nil: return false
        case .text(let s)?: return !s.isEmpty
        case .parts(let p)?: return !p.isEmpty
        }
    }
}
