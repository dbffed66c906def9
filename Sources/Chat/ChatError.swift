/// Why a chat request could not be decoded or encoded.
///
/// `kind` mirrors the exception mistral-common raises for the same request (named in each case's
/// comment), so front-ends can map errors to HTTP statuses and tests can check that Swift fails
/// exactly where mistral-common fails. `message` is mistral-common's message where it has a
/// stable one, otherwise a message that names the offending field.
public struct ChatError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// The body is not JSON (Python: `json.JSONDecodeError`).
        case invalidJSON
        /// JSON of the wrong shape: a missing or mistyped field, an unknown role or content part
        /// type (Python: pydantic `ValidationError`, `KeyError`, `ValueError` from `from_openai`).
        case invalidShape
        /// Role order, empty conversation, last message role, tool call/result counts
        /// (`InvalidMessageStructureException`).
        case messageStructure
        case userMessage           // InvalidUserMessageException
        case assistantMessage      // InvalidAssistantMessageException
        case toolMessage           // InvalidToolMessageException
        case systemPrompt          // InvalidSystemPromptException
        case functionCall          // InvalidFunctionCallException
        case tool                  // InvalidToolException
        case toolSchema            // InvalidToolSchemaException
        case request               // InvalidRequestException
        /// The instruct format of this tokenizer cannot express the request, e.g. tools with v1
        /// (`TokenizerException`).
        case tokenizer
        case unsupportedFeature    // UnsupportedTokenizerFeatureException
        /// An assistant turn with both content and tool calls after merging consecutive assistant
        /// messages (Python: `ValueError` from the v2/v3 encoder).
        case contentAndToolCalls
        /// The tokenizer lacks a control token the chosen instruct version needs.
        case tokenizerVocabulary
        /// Even the last turn alone exceeds the token budget (`encode(_:maxTokens:)`).
        case promptTooLong
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
