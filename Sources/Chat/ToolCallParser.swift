import Tokenizers

/// What the model generated, split into plain content and tool calls.
public struct AssistantOutput: Sendable, Equatable {
    /// Text generated before `[TOOL_CALLS]` (all of it when there is no tool call).
    public var content: String
    /// Calls in OpenAI shape (`arguments` is a JSON string); empty when there are none.
    public var toolCalls: [ToolCall]
    /// Set when `[TOOL_CALLS]` was generated but what followed is not a list of calls; the raw
    /// text after the marker is then appended to `content` so nothing is lost.
    public var toolCallError: String?

    public init(content: String, toolCalls: [ToolCall] = [], toolCallError: String? = nil) {
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallError = toolCallError
    }
}

/// Recognises tool calls in generated output: the control token `[TOOL_CALLS]` followed by a JSON
/// list of `{"name": …, "arguments": {…}}` (v3 models may add `"id"`), the format the v2/v3
/// instruct encoders put in the prompt for earlier calls.
///
/// Works on token ids, because `[TOOL_CALLS]` is a control token that decodes to "" — looking for
/// the text "[TOOL_CALLS]" would also fire on a model that merely writes those characters.
public struct ToolCallParser: Sendable {
    /// nil for a v1 tokenizer, which has no tool calls.
    public let toolCallsTokenID: Int?
    private let tokenizer: SentencePieceTokenizer

    public init(tokenizer: SentencePieceTokenizer) {
        self.tokenizer = tokenizer
        if let id = tokenizer.id(forPiece: "[TOOL_CALLS]"), tokenizer.isControl(id) {
            toolCallsTokenID = id
        } else {
            toolCallsTokenID = nil
        }
    }

    /// Splits `generated` (without the prompt; a trailing `</s>` is fine) at the first
    /// `[TOOL_CALLS]`. `makeID` names calls that carry no valid id of their own; the default gives
    /// 9 random letters and digits, the only id shape v3 accepts back in a later request.
    public func parse(
        generated: [Int], makeID: () -> String = ToolCallParser.randomID
    ) -> AssistantOutput {
        guard let marker = toolCallsTokenID, let cut = generated.firstIndex(of: marker) else {
            return AssistantOutput(content: tokenizer.decode(generated))
        }
        let content = tokenizer.decode(Array(generated[..<cut]))
        let rest = tokenizer.decode(Array(generated[(cut + 1)...]))
        do {
            return AssistantOutput(content: content, toolCalls: try Self.parseCalls(rest, makeID: makeID))
        } catch {
            return AssistantOutput(content: content + rest, toolCallError: error.message)
        }
    }

    /// Parses the text after `[TOOL_CALLS]`: a JSON list of calls (or one call object), possibly
    /// followed by other text, which is ignored.
    public static func parseCalls(_ text: String, makeID: () -> String = ToolCallParser.randomID) throws(ChatError) -> [ToolCall] {
        let value: JSONValue
        do {
            value = try JSONParser.parsePrefix(utf8: Array(text.utf8)).value
        } catch {
            throw ChatError(.invalidJSON, "tool calls are not valid JSON: \(error)")
        }
        let items: [JSONValue]
        switch value {
        case .array(let list): items = list
        case .object: items = [value]
        default: throw ChatError(.invalidShape, "tool calls must be a JSON list, got \(value.pythonTypeName)")
        }
        guard !items.isEmpty else { throw ChatError(.invalidShape, "tool call list is empty") }
        var calls: [ToolCall] = []
        for (i, item) in items.enumerated() {
            guard let object = item.objectValue, case .string(let name)? = object["name"] else {
                throw ChatError(.invalidShape, "tool call \(i) has no string 'name'")
            }
            let arguments: String
            switch object["arguments"] {
            case nil, .null?: arguments = "{}"
            case .string(let s)?: arguments = s
            case let other?: arguments = other.pythonJSON
            }
            var id = makeID()
            if case .string(let given)? = object["id"], RequestValidator.isValidToolCallID(given) { id = given }
            calls.append(ToolCall(id: id, name: name, arguments: arguments))
        }
        return calls
    }

    /// 9 characters from [a-zA-Z0-9], as mistral-common's v3 validator requires of call ids.
    public static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        return randomID(using: &generator)
    }

    public static func randomID<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<9).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }
}
