import Dispatch
import Generation

/// The sequences of one request (one per choice, `n` of them; for text completions one per
/// prompt × n) and their events merged into one stream tagged with the choice index.
///
/// Cancelling — explicitly, or by dropping the merged stream (a client that went away) — cancels
/// every sequence, which frees its KV blocks at the engine's next step.
final class ChoiceRun: Sendable {
    let handles: [GenerationHandle]
    let promptTokens: [Int]          // per choice
    let startNanos: UInt64

    /// Submits every choice, or none: if one submit fails (the queue filled up meanwhile), the
    /// ones already queued are cancelled and the error is the request's.
    init(engine: Engine, choices: [(prompt: [Int], sampling: SamplingParameters)], timeout: Duration? = nil,
         startNanos: UInt64) throws(APIError) {
        var handles: [GenerationHandle] = []
        for choice in choices {
            do {
                handles.append(try engine.submit(promptTokens: choice.prompt, sampling: choice.sampling, timeout: timeout))
            } catch {
                for h in handles { h.cancel() }
                throw APIError(error)
            }
        }
        self.handles = handles
        self.promptTokens = choices.map(\.prompt.count)
        self.startNanos = startNanos
    }

    func cancel() { for h in handles { h.cancel() } }

    /// All choices' events, each tagged with its choice, in the order they happen; the stream
    /// ends after every choice's `.finished`. Token timings go to `metrics` as they arrive.
    func events(metrics: ServerMetrics?) -> AsyncStream<(choice: Int, event: GenerationEvent)> {
        let (stream, continuation) = AsyncStream.makeStream(of: (choice: Int, event: GenerationEvent).self)
        let start = startNanos
        let task = Task { [handles] in
            await withTaskGroup(of: Void.self) { group in
                for (index, handle) in handles.enumerated() {
                    group.addTask {
                        var last: UInt64?
                        for await event in handle.events {
                            if case .token = event, let metrics {
                                let now = DispatchTime.now().uptimeNanoseconds
                                if let last { metrics.interToken(nanoseconds: now - last) } else { metrics.firstToken(nanoseconds: now - start) }
                                last = now
                            }
                            continuation.yield((index, event))
                        }
                    }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { [handles] termination in
            if case .cancelled = termination {
                task.cancel()
                for h in handles { h.cancel() }
            }
        }
        return stream
    }
}
