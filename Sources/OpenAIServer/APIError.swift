import Chat
import Generation

/// A failed request as OpenAI reports it: an HTTP status and the body
/// `{"error": {"message", "type", "param", "code"}}`.
///
/// Statuses: 400 malformed body, bad field values, prompt too long; 401 missing or wrong key;
/// 404 unknown route or model; 413 body over `--max-body-bytes`; 429 waiting queue full
/// (`--max-queued`); 503 model still loading or the server shutting down; 500 a generation
/// that failed inside the engine.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// OpenAI's `error.type` values.
    public enum Kind: String, Sendable {
        case invalidRequest = "invalid_request_error"
        case authentication = "authentication_error"
        case notFound = "not_found_error"
        case rateLimit = "rate_limit_error"
        case serverError = "server_error"
    }

    public var status: Int
    public var type: Kind
    public var message: String
    /// The request field at fault, by its JSON name (`messages`, `temperature`, …).
    public var param: String?
    public var code: String?

    public init(status: Int, type: Kind, param: String? = nil, code: String? = nil, _ message: String) {
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.message = message
    }

    public var description: String { "\(status) \(message)" }

    /// A 400 for a field of the request.
    static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, type: .invalidRequest, param: param, code: code, message)
    }

    public var body: JSONValue {
        .object(JSONObject([
            ("error", .object(JSONObject([
                ("message", .string(message)), ("type", .string(type.rawValue)),
                ("param", param.map(JSONValue.string) ?? .null), ("code", code.map(JSONValue.string) ?? .null),
            ]))),
        ]))
    }

    /// The chat encoder's refusals are all the client's fault: 400, with mistral-common's message.
    init(_ error: ChatError) {
        switch error.kind {
        case .invalidJSON: self = .badRequest(error.message, code: "invalid_json")
        case .promptTooLong: self = .badRequest(error.message, param: "messages", code: "context_length_exceeded")
        case .tool, .toolSchema: self = .badRequest(error.message, param: "tools")
        default: self = .badRequest(error.message, param: "messages")
        }
    }

    /// The engine refuses a submit: bad sampling values and prompts that do not fit are the
    /// client's (400); a full queue is 429 (retry later); a shutdown is 503.
    init(_ error: EngineError) {
        switch error {
        case .invalidParameters: self = .badRequest(error.description)
        case .emptyPrompt: self = .badRequest(error.description, param: "prompt")
        case .promptTooLong: self = .badRequest(error.description, param: "messages", code: "context_length_exceeded")
        case .queueFull: self = APIError(status: 429, type: .rateLimit, code: "queue_full", error.description)
        case .shutDown: self = APIError(status: 503, type: .serverError, code: "shutting_down", error.description)
        }
    }
}
