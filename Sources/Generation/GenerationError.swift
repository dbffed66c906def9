/// Why a request was refused (thrown by `Engine.submit`) or why it ended early (the error of its
/// `.finished` event). One type for both, so a front-end maps every failure in one place:
/// `category` says which HTTP status / AIME result / CLI message it is, the associated values
/// carry the numbers a user needs to fix the request.
public enum GenerationError: Error, Sendable, Equatable, CustomStringConvertible {
    // Refused at submit: the request itself is wrong.
    case invalidParameters(String)
    case emptyPrompt
    /// A prompt token id the model's vocabulary does not have.
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    /// The prompt leaves no room in the context (`limit` = the longest sequence, prompt + at
    /// least one generated token).
    case promptTooLong(tokens: Int, limit: Int)
    /// The prompt plus one generated token needs more KV blocks than the whole pool has, so it
    /// could never run, whatever else finishes.
    case promptExceedsKVPool(tokens: Int, blocksNeeded: Int, poolBlocks: Int, blockSize: Int)

    // Refused at submit: the engine's state, not the request.
    /// The waiting queue already holds `limit` requests (`maxQueued`): try again later.
    case queueFull(limit: Int)
    case shutDown

    // Ends a running request.
    /// The forward pass threw (a device error, out of memory while growing scratch…). Only the
    /// requests of the failed step end with it; the engine goes on with the next step.
    case deviceFailure(String)
    /// The model's logits for this sequence were NaN or had no finite value.
    case nonFiniteLogits
    /// `cancel()` was called, or the event stream's consumer went away.
    case cancelled
    /// The request's deadline (`Engine.submit(…, timeout:)`) passed before it finished: it ends
    /// at the next step boundary after that, with what it has streamed so far.
    case deadlineExceeded(seconds: Double)

    /// How a front-end should answer.
    public enum Category: String, Sendable {
        /// The client must change the request (HTTP 400).
        case invalidRequest
        /// Try again later (HTTP 429 / 503).
        case overloaded
        /// The engine is shutting down (HTTP 503).
        case unavailable
        /// The server failed this request (HTTP 500).
        case internalFailure
        /// The client stopped it.
        case cancelled
        /// It ran out of the time it was given (HTTP 504).
        case timedOut
    }

    public var category: Category {
        switch self {
        case .invalidParameters, .emptyPrompt, .tokenOutOfRange, .promptTooLong, .promptExceedsKVPool: return .invalidRequest
        case .queueFull: return .overloaded
        case .shutDown: return .unavailable
        case .deviceFailure, .nonFiniteLogits: return .internalFailure
        case .cancelled: return .cancelled
        case .deadlineExceeded: return .timedOut
        }
    }

    public var description: String {
        switch self {
        case .invalidParameters(let why): return "invalid sampling parameters: \(why)"
        case .emptyPrompt: return "the prompt has no tokens"
        case let .tokenOutOfRange(t, v): return "prompt token id \(t) is outside the vocabulary (size \(v))"
        case let .promptTooLong(t, limit): return "prompt of \(t) tokens does not fit the context (\(limit) tokens incl. at least one generated)"
        case let .promptExceedsKVPool(t, needed, pool, size):
            return "prompt of \(t) tokens needs \(needed) KV blocks of \(size) tokens (incl. one generated token) but the whole KV pool has \(pool) blocks (\(pool * size) tokens)"
        case .queueFull(let limit): return "server busy: \(limit) requests are already waiting"
        case .shutDown: return "the engine is shutting down"
        case .deviceFailure(let why): return "the forward pass failed: \(why)"
        case .nonFiniteLogits: return "the model produced NaN or infinite logits"
        case .cancelled: return "the request was cancelled"
        case .deadlineExceeded(let seconds): return "the request did not finish within its \(seconds) s deadline"
        }
    }
}

/// The earlier name of `GenerationError` (it covered only the refusals at submit).
public typealias EngineError = GenerationError
