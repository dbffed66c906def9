import Tokenizers

/// The instruct (chat) formats of Mistral's SentencePiece tokenizers, as mistral-common names them.
public enum InstructVersion: String, Sendable, CaseIterable {
    /// `tokenizer.model` (32000 pieces, e.g. Mistral 7B v0.1/v0.2, Mixtral 8x7B): `[INST]` is
    /// plain text, no tools, the system prompt goes before the *first* user message.
    case v1
    /// `*.model.v2` (32768 pieces): control tokens for `[INST]` and tools; the system prompt and
    /// the tool list go before the *last* user message; tool history before it is dropped.
    case v2
    /// `*.model.v3` (Mistral 7B v0.3, Mixtral 8x22B, Codestral): like v2, but tool calls carry
    /// their ids and all tool calls/results stay in the prompt.
    case v3

    /// Picks the version from the vocabulary: no control `[INST]` → v1; control `[IMG]` or
    /// `[PREFIX]` (v3 replaced v2's `[control_8]`, `[control_9]` with them) → v3; else v2.
    /// A v7+ SentencePiece vocabulary (control `[SYSTEM_PROMPT]`) is refused: its format differs.
    public static func detect(_ tokenizer: SentencePieceTokenizer) throws(ChatError) -> InstructVersion {
        func isControl(_ piece: String) -> Bool {
            guard let id = tokenizer.id(forPiece: piece) else { return false }
            return tokenizer.isControl(id)
        }
        if !isControl("[INST]") { return .v1 }
        if isControl("[SYSTEM_PROMPT]") {
            throw ChatError(
                .tokenizerVocabulary,
                "this tokenizer has a [SYSTEM_PROMPT] control token (instruct format v7 or newer), which is not supported; only v1, v2 and v3 are")
        }
        if isControl("[IMG]") || isControl("[PREFIX]") { return .v3 }
        return .v2
    }
}

/// Turns a chat request into prompt token ids exactly as mistral-common 1.13.1's
/// `MistralTokenizer.from_file(path).encode_chat_completion(request).tokens` does for the v1, v2 and
/// v3 SentencePiece tokenizers: validation (same errors), normalisation, then encoding.
///
/// Control tokens (`[INST]`, `[TOOL_CALLS]`, `</s>`, …) are appended by id and every piece of text
/// is tokenized on its own, so text that spells `[INST]` or `</s>` stays ordinary text. (v1 is the
/// exception by design of that format: its `[INST]` markers *are* text, tokenized together with
/// the message, as mistral-common does.)
public struct InstructEncoder: Sendable {
    public let version: InstructVersion
    let tokenizer: SentencePieceTokenizer
    let controls: ControlIDs

    /// `version` nil: detected from the vocabulary (`InstructVersion.detect`).
    public init(tokenizer: SentencePieceTokenizer, version: InstructVersion? = nil) throws(ChatError) {
        let resolved: InstructVersion
        if let version { resolved = version } else { resolved = try InstructVersion.detect(tokenizer) }
        self.version = resolved
        self.tokenizer = tokenizer
        self.controls = try ControlIDs(tokenizer: tokenizer, version: resolved)
    }

    /// mistral-common `encode_chat_completion(...).tokens`, BOS included. Throws `ChatError`.
    public func encode(_ request: ChatRequest) throws(ChatError) -> [Int] {
        let messages = try RequestValidator(version: version).validate(request)
        let normalized = RequestNormalizer.normalize(messages, tools: request.tools)
        if version == .v2 { try checkV2ToolResults(normalized) }
        var tokens = [controls.bos]
        let firstUser = normalized.firstUserIndex
        let lastUser = normalized.lastUserIndex
        for (index, message) in normalized.messages.enumerated() {
            switch message {
            case .user(let text, let hasNonTextParts):
                if hasNonTextParts {
                    throw ChatError(
                        .unsupportedFeature, "images and audio cannot be encoded with a SentencePiece tokenizer (message \(index))")
                }
                tokens += encodeUser(text, isFirst: index == firstUser, isLast: index == lastUser, normalized)
            case .assistant(let content, let toolCalls, let prefix):
                tokens += try encodeAssistant(
                    content: content, toolCalls: toolCalls, prefix: prefix,
                    beforeLastUser: lastUser.map { index < $0 } ?? false)
            case .tool(let content, let toolCallID, let name):
                tokens += try encodeToolResult(
                    content: content, toolCallID: toolCallID, name: name, beforeLastUser: lastUser.map { index < $0 } ?? false)
            }
        }
        return tokens
    }

    // MARK: messages

    private func encodeUser(_ text: String, isFirst: Bool, isLast: Bool, _ request: NormalizedRequest) -> [Int] {
        let systemPrompt = request.systemPrompt ?? ""
        switch version {
        case .v1:
            // The system prompt joins the first user message; the markers are text.
            let content = isFirst && !systemPrompt.isEmpty ? systemPrompt + "\n\n" + text : text
            return tokenizer.encode("[INST] " + content + " [/INST]")
        case .v2, .v3:
            var tokens: [Int] = []
            if isLast, let tools = request.tools, !tools.isEmpty {
                tokens.append(controls.beginTools)
                tokens += tokenizer.encode(Self.toolsJSON(tools))
                tokens.append(controls.endTools)
            }
            let content = isLast && !systemPrompt.isEmpty ? systemPrompt + "\n\n" + text : text
            tokens.append(controls.beginInst)
            tokens += tokenizer.encode(content)
            tokens.append(controls.endInst)
            return tokens
        }
    }

    private func encodeAssistant(
        content: String, toolCalls: [NormalizedToolCall]?, prefix: Bool, beforeLastUser: Bool
    ) throws(ChatError) -> [Int] {
        var tokens: [Int]
        let calls = toolCalls ?? []
        switch version {
        case .v1:
            if !calls.isEmpty { throw ChatError(.tokenizer, "Tools not implemented for tokenizer V1") }
            guard !content.isEmpty else {
                throw ChatError(.tokenizer, "\(content) // \(toolCalls == nil ? "None" : "[…]")")
            }
            tokens = tokenizer.encode(content)
        case .v2, .v3:
            if !calls.isEmpty, !content.isEmpty {
                throw ChatError(.contentAndToolCalls, "Cannot have tool calls and content defined in the same assistant message")
            }
            if !calls.isEmpty {
                // v2 drops tool calls before the last user message (v3 keeps them) — and then
                // also their `</s>`.
                if version == .v2, beforeLastUser { return [] }
                let list = JSONValue.array(calls.map { functionCallJSON($0) })
                tokens = [controls.toolCalls] + tokenizer.encode(list.pythonJSON)
            } else if !content.isEmpty {
                tokens = tokenizer.encode(Self.rstripSpaces(content))
            } else {
                throw ChatError(.tokenizer, "Invalid assistant message: \(content)")
            }
        }
        if !prefix { tokens.append(controls.eos) }
        return tokens
    }

    private func encodeToolResult(
        content: JSONValue, toolCallID: String?, name: String?, beforeLastUser: Bool
    ) throws(ChatError) -> [Int] {
        let json: JSONValue
        switch version {
        case .v1:
            throw ChatError(.tokenizer, "Tools not implemented for tokenizer V1")
        case .v2:
            if beforeLastUser { return [] }
            json = .array([.object(JSONObject([("name", name.map(JSONValue.string) ?? .null), ("content", content)]))])
        case .v3:
            guard let toolCallID else {
                throw ChatError(.request, "Tool message has to have the tool call id defined in v3")
            }
            json = .object(JSONObject([("content", content), ("call_id", .string(toolCallID))]))
        }
        return [controls.beginToolResults] + tokenizer.encode(json.pythonJSON) + [controls.endToolResults]
    }

    // MARK: JSON as mistral-common writes it

    /// `[tool.model_dump(exclude={"function": {"strict": True}}) for tool in tools]`.
    static func toolsJSON(_ tools: [ChatTool]) -> String {
        JSONValue.array(
            tools.map { tool in
                .object(
                    JSONObject([
                        ("type", .string("function")),
                        (
                            "function",
                            .object(
                                JSONObject([
                                    ("name", .string(tool.name)), ("description", .string(tool.description)),
                                    ("parameters", .object(tool.parameters)),
                                ]))
                        ),
                    ]))
            }
        ).pythonJSON
    }

    /// `_prepare_function_call`: v3 adds the id (unless it is empty or the default "null").
    private func functionCallJSON(_ call: NormalizedToolCall) -> JSONValue {
        var object = JSONObject([("name", .string(call.name)), ("arguments", call.arguments)])
        if version == .v3, !call.id.isEmpty, call.id != "null" { object["id"] = .string(call.id) }
        return .object(object)
    }

    /// Python `str.rstrip(" ")`: only U+0020 is removed.
    static func rstripSpaces(_ s: String) -> String {
        var scalars = Array(s.unicodeScalars)
        while scalars.last == " " { scalars.removeLast() }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// `InstructTokenizerV2._validate_tool_results`: from the last user message on, one assistant
    /// tool-call turn may be followed by at most one tool result in v2.
    private func checkV2ToolResults(_ request: NormalizedRequest) throws(ChatError) {
        let lastUser = request.lastUserIndex ?? -1
        var inToolCallTurn = false
        var results = 0
        for (index, message) in request.messages.enumerated() where index >= lastUser {
            switch message {
            case .assistant(_, let calls, _):
                inToolCallTurn = !(calls ?? []).isEmpty
                results = 0
            case .tool:
                if inToolCallTurn {
                    results += 1
                    if results > 1 {
                        throw ChatError(
                            .unsupportedFeature, "Tokenizer v2 does not support multiple tool results for one assistant turn.")
                    }
                }
            case .user:
                inToolCallTurn = false
                results = 0
            }
        }
    }
}

/// The control token ids a version emits, looked up once.
struct ControlIDs: Sendable {
    var bos = 0, eos = 0
    var beginInst = 0, endInst = 0, toolCalls = 0, beginTools = 0, endTools = 0
    var beginToolResults = 0, endToolResults = 0
    /// Fill-in-the-middle markers: only vocabularies with `[PREFIX]`/`[SUFFIX]` control pieces
    /// (v3 on, e.g. Codestral's) have them; nil elsewhere, and `encodeFIM` refuses.
    var fimPrefix: Int?, fimSuffix: Int?

    init(tokenizer: SentencePieceTokenizer, version: InstructVersion) throws(ChatError) {
        bos = tokenizer.bosID
        eos = tokenizer.eosID
        guard version != .v1 else { return }
        func control(_ piece: String) throws(ChatError) -> Int {
            guard let id = tokenizer.id(forPiece: piece), tokenizer.isControl(id) else {
                throw ChatError(
                    .tokenizerVocabulary,
                    "instruct format \(version.rawValue) needs the control token \(piece), which this tokenizer does not have")
            }
            return id
        }
        beginInst = try control("[INST]")
        endInst = try control("[/INST]")
        toolCalls = try control("[TOOL_CALLS]")
        beginTools = try control("[AVAILABLE_TOOLS]")
        endTools = try control("[/AVAILABLE_TOOLS]")
        beginToolResults = try control("[TOOL_RESULTS]")
        endToolResults = try control("[/TOOL_RESULTS]")
        func optionalControl(_ piece: String) -> Int? {
            guard let id = tokenizer.id(forPiece: piece), tokenizer.isControl(id) else { return nil }
            return id
        }
        fimPrefix = optionalControl("[PREFIX]")
        fimSuffix = optionalControl("[SUFFIX]")
    }
}
