import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT/SIGTERM handling for `mixtral-chat worker`: the first signal drains the worker (no new
/// jobs; running jobs finish and their results are sent, then `run()` returns and the process
/// exits 0); a second one stops the running jobs and answers them with an error result.
public final class WorkerSignalHandler: @unchecked Sendable {
    // @unchecked: `sources` is written once in init and afterwards only read; `count` is only
    // touched on the serial `queue`, which is also where every signal handler runs.
    private let queue = DispatchQueue(label: "mixtral-chat.worker-signals")
    private var sources: [any DispatchSourceSignal] = []
    private var count = 0
    private let numbers: [Int32]

    /// `notify` receives a one-line message for the console per signal.
    public init(worker: AIMEWorkerService, signals: [Int32] = [SIGINT, SIGTERM],
                notify: @escaping @Sendable (String) -> Void = { _ in }) {
        numbers = signals
        for number in signals {
            signal(number, SIG_IGN)  // let the dispatch source, not the default action, see it
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.count += 1
                let force = self.count > 1
                notify(force
                    ? "second signal: stopping running jobs and sending error results"
                    : "signal received: finishing running jobs, no new jobs (signal again to stop them)")
                Task { await worker.drain(cancelRunningJobs: force) }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Stops listening (signals go back to their default action).
    public func cancel() {
        for source in sources { source.cancel() }
        for number in numbers { signal(number, SIG_DFL) }
    }
}
