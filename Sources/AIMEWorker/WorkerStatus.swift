/// The worker's explicit state and its one-line console status.

/// What the worker is doing. Derived from the service's phase, its running jobs and whether the
/// server is answering, so the displayed state can never disagree with what the service does.
public enum WorkerState: Sendable, Equatable, CustomStringConvertible {
    /// Created, `run()` not called yet.
    case idle
    /// Logging in (first start, or again after the server forgot the worker).
    case loggingIn
    /// A long poll is open and no job is running.
    case polling
    /// `jobs` jobs are generating (a long poll stays open while slots are free).
    case running(jobs: Int)
    /// The server has not answered for `seconds`; requests are retried with capped backoff.
    case serverOffline(seconds: Int)
    /// No more polling; `jobs` jobs are still finishing or have results to deliver.
    case draining(jobs: Int)
    /// `run()` has returned.
    case stopped

    public var description: String {
        switch self {
        case .idle: return "idle"
        case .loggingIn: return "logging in"
        case .polling: return "waiting for jobs"
        case .running(let jobs): return "running \(jobs) job\(jobs == 1 ? "" : "s")"
        case .serverOffline(let seconds): return "API server offline for \(seconds) s, retrying"
        case .draining(let jobs): return "draining, \(jobs) job\(jobs == 1 ? "" : "s") left"
        case .stopped: return "stopped"
        }
    }
}

/// Counters since `run()` started.
public struct WorkerStatistics: Sendable, Equatable {
    /// Results accepted by the server (including results that carry an `error`).
    public var resultsDelivered = 0
    /// Of those, results that carry an `error` (bad input, prompt too long, engine failure).
    public var jobsFailed = 0
    /// Jobs stopped because the server no longer had them (progress reply `{}`, HTTP 500 or
    /// `canceled`), or whose result the server refused (`warning`, HTTP 500); no result counted.
    public var jobsDropped = 0
    /// Results given up after the drain deadline while the server was unreachable.
    public var resultsAbandoned = 0
    public var tokensGenerated = 0

    public init() {}
}

/// A snapshot for the console.
public struct WorkerStatus: Sendable, Equatable {
    public var state: WorkerState
    public var statistics: WorkerStatistics
    /// Generated tokens per second over the last few seconds, all jobs together.
    public var tokensPerSecond: Double

    /// The one-line status, e.g. `running 2 jobs | done 14 (1 failed) | 23.4 tok/s`.
    public var line: String {
        var parts = [state.description, "done \(statistics.resultsDelivered)"]
        if statistics.jobsFailed > 0 { parts[1] += " (\(statistics.jobsFailed) failed)" }
        if statistics.jobsDropped > 0 { parts.append("dropped \(statistics.jobsDropped)") }
        let rate = (tokensPerSecond * 10).rounded() / 10
        parts.append("\(rate) tok/s")
        return parts.joined(separator: " | ")
    }
}

/// Tokens per second over a sliding window.
struct ThroughputMeter: Sendable {
    private var samples: [(time: ContinuousClock.Instant, tokens: Int)] = []
    let window: Duration = .seconds(5)

    mutating func record(_ tokens: Int, at time: ContinuousClock.Instant) {
        guard tokens > 0 else { return }
        samples.append((time, tokens))
        prune(now: time)
    }

    mutating func rate(now: ContinuousClock.Instant) -> Double {
        prune(now: now)
        guard let first = samples.first else { return 0 }
        let span = max((now - first.time).seconds, 1)
        return Double(samples.reduce(0) { $0 + $1.tokens }) / min(span, window.seconds)
    }

    private mutating func prune(now: ContinuousClock.Instant) {
        let cutoff = now - window
        if let keep = samples.firstIndex(where: { $0.time >= cutoff }) {
            if keep > 0 { samples.removeFirst(keep) }
        } else {
            samples.removeAll()
        }
    }
}
