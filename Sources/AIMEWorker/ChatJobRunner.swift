/// What the worker needs from the generation side, kept this small on purpose: the worker's job
/// loop can be tested over real sockets without loading a model, and the one real implementation
/// (`EngineJobRunner`, Engine + InstructEncoder) stays a thin adapter.

/// One chat turn of an AIME job, after validation.
public struct JobMessage: Sendable, Equatable {
    public enum Role: String, Sendable, Equatable, CaseIterable {
        case system, user, assistant, tool
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// Sampling settings of one job, already range-checked (see `JobInput`).
public struct JobSampling: Sendable, Equatable {
    /// 0 means greedy decoding.
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    /// Upper bound on generated tokens; the context window may stop generation earlier.
    public var maxGenTokens: Int

    public init(temperature: Double, topK: Int, topP: Double, maxGenTokens: Int) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.maxGenTokens = maxGenTokens
    }
}

/// Events a running job reports, in order: `prompt` once (after encoding, before prefill
/// completes), any number of `prefill` and `text`, then exactly one `finished`.
public enum JobEvent: Sendable, Equatable {
    /// The prompt was encoded to this many tokens.
    case prompt(tokens: Int)
    /// Prefill progress (tokens of the prompt processed so far).
    case prefill(done: Int, total: Int)
    /// Newly generated text (a delta, possibly empty) and the total number of generated tokens.
    case text(String, generatedTokens: Int)
    /// Generation ended. `error` is non-nil when it failed; `text` deltas already delivered are the
    /// whole answer.
    case finished(promptTokens: Int, generatedTokens: Int, error: String?)
}

/// A started job: its events, and a way to stop it early.
public struct JobStream: Sendable {
    public let events: AsyncStream<JobEvent>
    private let cancelAction: @Sendable () -> Void

    public init(events: AsyncStream<JobEvent>, cancel: @escaping @Sendable () -> Void) {
        self.events = events
        self.cancelAction = cancel
    }

    /// Stops generation; the stream then ends (with or without a `finished` event).
    public func cancel() { cancelAction() }
}

/// Starts generation for validated jobs. Throwing from `start` (bad role order for the model's
/// instruct format, prompt too long, …) fails only that job: it gets an `error` result.
public protocol ChatJobRunner: Sendable {
    func start(messages: [JobMessage], sampling: JobSampling) throws -> JobStream
}
