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
    public init(_ error: ChatError) {
        switch error.kind {
        case .invalidJSON: self = .badRequest(error.message, code: "invalid_json")
        case .promptTooLong: self = .badRequest(error.message, param: "messages", code: "context_length_exceeded")
        case .tool, .toolSchema: self = .badRequest(error.message, param: "tools")
        default: self = .badRequest(error.message, param: "messages")
        }
    }

    /// An engine refusal or failure, by the engine's own category: the request's fault is 400
    /// (prompts that do not fit say `context_length_exceeded`); a full queue is 429 (retry
    /// later); a shutdown is 503; a failed forward pass or non-finite logits are 500; a request
    /// past the server's `--request-timeout` is 504.
    public init(_ error: GenerationError) {
        switch error.category {
        case .invalidRequest:
            switch error {
            case .promptTooLong, .promptExceedsKVPool: self = .badRequest(error.description, code: "context_length_exceeded")
            case .emptyPrompt, .tokenOutOfRange: self = .badRequest(error.description, param: "prompt")
            default: self = .badRequest(error.description)
            }
        case .overloaded: self = APIError(status: 429, type: .rateLimit, code: "queue_full", error.description)
        case .unavailable: self = APIError(status: 503, type: .serverError, code: "shutting_down", error.description)
        case .internalFailure, .cancelled: self = APIError(status: 500, type: .serverError, code: "generation_failed", error.description)
        case .timedOut: self = APIError(status: 504, type: .serverError, code: "request_timeout", error.description)
        }
    }

    /// A choice the engine ended with an error after it was accepted: 504 when it ran past the
    /// server's `--request-timeout`, else 500 (a failed step, non-finite logits).
    static func generationFailed(_ error: GenerationError?) -> APIError {
        if let error, error.category == .timedOut { return APIError(error) }
        return APIError(status: 500, type: .serverError, code: "generation_failed", error?.description ?? "generation failed")
    }
}
