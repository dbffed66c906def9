/// Why a sequence stopped.
public enum FinishReason: String, Sendable, Codable {
    case stop        // end-of-sequence token or a stop string
    case length      // max tokens, or the context is full
    case cancelled
    case error
}

/// What a running generation reports, in order: progress during prefill, one `.token` per
/// generated token (preceded by its `.logprobs` when the request asked for them), and exactly
/// one `.finished` last.
public enum GenerationEvent: Sendable, Equatable {
    case prefillProgress(done: Int, total: Int)
    /// The log-probabilities of the token whose `.token` event comes next.
    case logprobs(TokenLogprobs)
    /// `text` holds the newly completed characters (may be empty while a UTF-8 character or a
    /// possible stop string is incomplete).
    case token(id: Int, text: String)
    /// `error` is set exactly when `reason` is `.error` or `.cancelled` (then `.cancelled`).
    case finished(reason: FinishReason, promptTokens: Int, generatedTokens: Int, error: GenerationError?)
}

/// One token and its log-probability under the model (log-softmax of the raw logits).
public struct TokenLogprob: Sendable, Equatable, Hashable {
    public var id: Int
    public var logprob: Float
    public init(id: Int, logprob: Float) { self.id = id; self.logprob = logprob }
}

/// The chosen token's log-probability and the most likely tokens' (most likely first; as many as
/// the request's `logprobs`).
public struct TokenLogprobs: Sendable, Equatable {
    public var chosen: TokenLogprob
    public var top: [TokenLogprob]
    public init(chosen: TokenLogprob, top: [TokenLogprob]) { self.chosen = chosen; self.top = top }
}

/// Turns generated token ids into text incrementally (see `StreamingDetokenizer`).
public protocol IncrementalDecoder: Sendable {
    /// Newly completed text after `id`.
    mutating func append(_ id: Int) -> String
    /// Whatever remains buffered at the end.
    mutating func finish() -> String
}

/// A running request: its events and a way to stop it.
public struct GenerationHandle: Sendable {
    public let id: Int
    public let events: AsyncStream<GenerationEvent>
    let onCancel: @Sendable () -> Void

    public func cancel() { onCancel() }
}

/// Everything a finished generation produced, for callers that do not stream.
public struct GenerationResult: Sendable, Equatable {
    public var tokens: [Int]
    public var text: String
    public var finishReason: FinishReason
    public var promptTokens: Int
    public var error: GenerationError?
    /// One entry per token when the request asked for log-probabilities, else empty.
    public var logprobs: [TokenLogprobs] = []
}

extension GenerationHandle {
    /// Waits for the end and collects the whole output.
    public func collect() async -> GenerationResult {
        var tokens: [Int] = [], text = "", logprobs: [TokenLogprobs] = []
        for await event in events {
            switch event {
            case .prefillProgress: break
            case .logprobs(let entry): logprobs.append(entry)
            case let .token(id, piece):
                tokens.append(id)
                text += piece
            case let .finished(reason, prompt, _, error):
                return GenerationResult(tokens: tokens, text: text, finishReason: reason, promptTokens: prompt, error: error,
                                        logprobs: logprobs)
            }
        }
        return GenerationResult(tokens: tokens, text: text, finishReason: .cancelled, promptTokens: 0, error: nil)
    }
}
