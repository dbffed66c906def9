import Dispatch
import Model
import Synchronization

/// Continuous batching over one model: requests join and leave at any engine step.
///
/// Each step is planned by a `Scheduler` (policy: who runs with how many tokens, who is
/// preempted, no model) and executed here: pack the plan into one `PackedBatch`, run
/// `LanguageModel.step` (forward pass and sampling on the device), then update every sequence
/// from the sampled tokens (stream events, stop conditions). A new request starts at the next
/// step instead of waiting for running ones to finish. Steps run on one dedicated dispatch queue —
/// the only caller of the model.
public final class Engine: Sendable {
    public let model: any LanguageModel
    /// Token ids that end a sequence (the model's EOS).
    public let stopTokens: Set<Int>
    /// Longest prompt chunk a sequence may prefill in one step (smaller chunks let decoding
    /// sequences keep streaming while a long prompt is read).
    public let prefillChunk: Int
    /// Most requests that may wait for admission; a submit past it throws `.queueFull` (nil: unbounded).
    public let maxQueued: Int?
    /// The scheduler's limits (from the model, `prefillChunk` and the admission watermark).
    public let configuration: SchedulerConfiguration
    private let makeDecoder: @Sendable () -> any IncrementalDecoder
    private let state = Mutex(SharedState())
    private let queue = DispatchQueue(label: "mixtral-chat.engine")
    private let loop: LoopState

    /// What the step loop keeps between its runs (it stops when idle and restarts on submit), so
    /// the prefix cache's bookkeeping and the counters live as long as the engine.
    final class LoopState: @unchecked Sendable {
        // @unchecked: only the step loop touches it, and loop runs are serialised on `queue`.
        var scheduler: Scheduler
        var live: [Int: SequenceState] = [:]
        init(_ scheduler: Scheduler) { self.scheduler = scheduler }
    }

    struct SharedState: ~Copyable {
        var nextID = 1
        var incoming: [SequenceState] = []
        var cancelled: Set<Int> = []
        var loopRunning = false
        var shuttingDown = false
        /// Published by the step loop after each step, for `statistics()`.
        var running = 0
        var waiting = 0
        var steps = 0
        var preemptions = 0
        var failedSteps = 0
        var prefixQueryTokens = 0
        var prefixHitTokens = 0
    }

    /// - Parameters:
    ///   - watermarkBlocks: free KV blocks kept back when admitting while others run (nil: 1% of
    ///     the pool, at least one).
    ///   - prefixCaching: reuse the KV of earlier requests' full blocks with the same token prefix.
    public init(model: any LanguageModel, stopTokens: Set<Int>, prefillChunk: Int = 256, maxQueued: Int? = nil,
                watermarkBlocks: Int? = nil, prefixCaching: Bool = true,
                makeDecoder: @escaping @Sendable () -> any IncrementalDecoder) {
        self.model = model
        self.stopTokens = stopTokens
        var configuration = SchedulerConfiguration(model: model, prefillChunk: prefillChunk, prefixCaching: prefixCaching)
        if let watermarkBlocks { configuration.watermarkBlocks = max(0, watermarkBlocks) }
        self.configuration = configuration
        self.loop = LoopState(Scheduler(configuration: configuration, blocks: model.kvBlocks))
        self.prefillChunk = configuration.prefillChunk
        self.maxQueued = maxQueued
        self.makeDecoder = makeDecoder
    }

    /// Queues a request; its events arrive on the handle's stream. Throws `GenerationError` when
    /// the request can never run (with the numbers) or the queue is full. With a `timeout`, a
    /// request still waiting or running that long after submit ends with `.deadlineExceeded`
    /// at the next step boundary (the tokens it streamed stay delivered).
    public func submit(promptTokens: [Int], sampling: SamplingParameters,
                       timeout: Duration? = nil) throws(GenerationError) -> GenerationHandle {
        if let why = sampling.validationError() { throw .invalidParameters(why) }
        guard !promptTokens.isEmpty else { throw .emptyPrompt }
        if let timeout, timeout <= .zero { throw .invalidParameters("timeout must be positive, got \(timeout)") }
        let vocabulary = model.config.vocabSize
        if let bad = promptTokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw .tokenOutOfRange(token: bad, vocabularySize: vocabulary)
        }
        guard promptTokens.count < model.maxSequenceLength else {
            throw .promptTooLong(tokens: promptTokens.count, limit: model.maxSequenceLength)
        }
        let pool = model.kvBlocks
        let needed = pool.blocksNeeded(forTokens: promptTokens.count + 1)
        guard needed <= pool.blockCount else {
            throw .promptExceedsKVPool(tokens: promptTokens.count, blocksNeeded: needed, poolBlocks: pool.blockCount,
                                       blockSize: pool.blockSize)
        }
        let (stream, continuation) = AsyncStream.makeStream(of: GenerationEvent.self, bufferingPolicy: .unbounded)
        let decoder = makeDecoder()
        let queued: Result<(id: Int, startLoop: Bool), GenerationError> = state.withLock { s in
            if s.shuttingDown { return .failure(.shutDown) }
            if let limit = maxQueued, s.incoming.count + s.waiting >= limit { return .failure(.queueFull(limit: limit)) }
            let id = s.nextID
            s.nextID += 1
            s.incoming.append(SequenceState(id: id, prompt: promptTokens, sampling: sampling, decoder: decoder,
                                            continuation: continuation, timeout: timeout))
            let start = !s.loopRunning
            s.loopRunning = true
            return .success((id, start))
        }
        let (id, startLoop) = try queued.get()
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel(id) }
        }
        if startLoop { queue.async { self.runLoop() } }
        return GenerationHandle(id: id, events: stream, onCancel: { [weak self] in self?.cancel(id) })
    }

    /// Stops a request at the next step; it finishes with `.cancelled`.
    public func cancel(_ id: Int) {
        state.withLock { _ = $0.cancelled.insert(id) }
    }

    /// A snapshot of the engine's load, for metrics and status lines.
    public func statistics() -> EngineStatistics {
        let (running, waiting, incoming, steps, preemptions, failed, queried, hit) = state.withLock {
            ($0.running, $0.waiting, $0.incoming.count, $0.steps, $0.preemptions, $0.failedSteps,
             $0.prefixQueryTokens, $0.prefixHitTokens)
        }
        let pool = model.kvBlocks
        var s = EngineStatistics(running: running, waiting: waiting + incoming, steps: steps,
                                 kvBlocksUsed: pool.blockCount - pool.freeBlocks, kvBlocksTotal: pool.blockCount)
        s.kvBlocksFree = pool.freeBlocks
        s.preemptions = preemptions
        s.failedSteps = failed
        s.kvBlocksCached = pool.cachedFreeBlocks
        s.prefixCacheQueryTokens = queried
        s.prefixCacheHitTokens = hit
        return s
    }

    /// Refuses new requests; running ones continue to completion.
    public func shutdown() { state.withLock { $0.shuttingDown = true } }

    // MARK: the step loop (runs on `queue` only)

    private func runLoop() {
        var scheduler = loop.scheduler
        var live = loop.live
        defer {
            loop.scheduler = scheduler
            loop.live = live
        }
        // Finish events wait until the counts are published, so a caller that saw its request
        // finish reads statistics without it.
        var ended: [Ending] = []
        while true {
            let (incoming, cancelled) = state.withLock { s -> ([SequenceState], Set<Int>) in
                defer { s.incoming.removeAll(); s.cancelled.removeAll() }
                return (s.incoming, s.cancelled)
            }
            for seq in incoming {
                live[seq.id] = seq
                scheduler.add(id: seq.id, prompt: seq.prompt)
            }
            for id in cancelled {
                guard let seq = live.removeValue(forKey: id) else { continue }
                scheduler.remove(id)
                ended.append(Ending(seq, .cancelled, .cancelled))
            }
            let now = ContinuousClock.now
            for (id, seq) in live {
                guard let deadline = seq.deadline, deadline.at <= now else { continue }
                live[id] = nil
                scheduler.remove(id)
                ended.append(Ending(seq, .error, .deadlineExceeded(seconds: deadline.seconds)))
            }
            let plan = scheduler.schedule()
            publish(scheduler, &ended)
            if plan.entries.isEmpty {
                if scheduler.isIdle {
                    let idle = state.withLock { s -> Bool in
                        if s.incoming.isEmpty && s.cancelled.isEmpty { s.loopRunning = false; return true }
                        return false
                    }
                    if idle { return }
                } else if scheduler.runningCount == 0 {
                    // Unreachable while `submit` refuses prompts the pool cannot hold (a lone
                    // sequence always fits); kept so a broken invariant fails requests, not spins.
                    let pool = model.kvBlocks
                    for (id, seq) in live {
                        scheduler.remove(id)
                        let needed = pool.blocksNeeded(forTokens: seq.prompt.count + 1)
                        ended.append(Ending(seq, .error, .promptExceedsKVPool(tokens: seq.prompt.count, blocksNeeded: needed,
                                                                               poolBlocks: pool.blockCount, blockSize: pool.blockSize)))
                    }
                    live.removeAll()
                    publish(scheduler, &ended)
                }
                continue
            }
            execute(plan, &scheduler, &live, &ended)
            state.withLock { $0.steps += 1 }
            publish(scheduler, &ended)
        }
    }

    /// A sequence's last event, delivered after the counts that no longer include it.
    struct Ending {
        var sequence: SequenceState
        var reason: FinishReason
        var error: GenerationError?
        init(_ sequence: SequenceState, _ reason: FinishReason, _ error: GenerationError? = nil) {
            self.sequence = sequence
            self.reason = reason
            self.error = error
        }
    }

    /// Publishes the scheduler's counts for `statistics()`, then delivers the finish events.
    private func publish(_ scheduler: borrowing Scheduler, _ ended: inout [Ending]) {
        state.withLock { [running = scheduler.runningCount, waiting = scheduler.waitingCount,
                          preemptions = scheduler.preemptions, queried = scheduler.prefixCacheQueryTokens,
                          hit = scheduler.prefixCacheHitTokens] s in
            s.running = running
            s.waiting = waiting
            s.preemptions = preemptions
            s.prefixQueryTokens = queried
            s.prefixHitTokens = hit
        }
        for e in ended {
            e.sequence.continuation.yield(.finished(reason: e.reason, promptTokens: e.sequence.prompt.count,
                                                    generatedTokens: e.sequence.generated, error: e.error))
            e.sequence.continuation.finish()
        }
        ended.removeAll()
    }

    /// Runs one planned step and updates every sequence in it from the sampled tokens.
    private func execute(_ plan: SchedulerStep, _ scheduler: inout Scheduler, _ live: inout [Int: SequenceState],
                         _ ended: inout [Ending]) {
        // One sampling row per entry (its last token's logits); a chunk that does not reach the
        // sequence's last token draws nothing, so the sequence's random stream stays where it is.
        var rows: [RowSampling] = []
        var logprobs = -1
        for entry in plan.entries {
            if entry.samples, let seq = live[entry.id] {
                rows.append(seq.sampler.nextRow())
                if let n = seq.sampling.logprobs { logprobs = max(logprobs, n) }
            } else {
                rows.append(.unused)
            }
        }
        let batch = PackedBatch(sequences: plan.entries.map {
            .init(tokens: $0.tokens, startPosition: $0.startPosition, blockTable: $0.blockTable)
        })
        let sampled: [SampledToken]
        do {
            sampled = try model.step(batch, sampling: rows, logprobs: logprobs)
        } catch {
            // Only this step's sequences are affected: their blocks go back (the failed step's KV
            // is never committed) and the next step runs without them.
            let failure = GenerationError.deviceFailure(String(describing: error))
            for entry in plan.entries {
                guard let seq = live.removeValue(forKey: entry.id) else { continue }
                scheduler.remove(entry.id)
                ended.append(Ending(seq, .error, failure))
            }
            state.withLock { $0.failedSteps += 1 }
            return
        }
        scheduler.commit(plan)
        for (row, entry) in plan.entries.enumerated() {
            guard let seq = live[entry.id] else { continue }
            let end = entry.startPosition + entry.tokens.count
            if entry.startPosition < seq.prompt.count, min(end, seq.prompt.count) > seq.reportedPrefill {
                seq.reportedPrefill = min(end, seq.prompt.count)
                seq.continuation.yield(.prefillProgress(done: seq.reportedPrefill, total: seq.prompt.count))
            }
            guard entry.samples else { continue }
            let pick = sampled[row]
            guard pick.id >= 0 else {
                live[entry.id] = nil
                scheduler.remove(entry.id)
                ended.append(Ending(seq, .error, .nonFiniteLogits))
                continue
            }
            if let n = seq.sampling.logprobs {
                let top = zip(pick.topIDs, pick.topLogprobs).prefix(n).map { TokenLogprob(id: $0.0, logprob: $0.1) }
                seq.continuation.yield(.logprobs(TokenLogprobs(chosen: TokenLogprob(id: pick.id, logprob: pick.logprob), top: top)))
            }
            let length = scheduler.tokenCount(of: entry.id) ?? 0
            if let reason = seq.accept(pick.id, stopTokens: stopTokens, contextFull: length + 1 >= scheduler.contextLimit) {
                live[entry.id] = nil
                scheduler.remove(entry.id)
                ended.append(Ending(seq, reason))
            } else {
                scheduler.append(pick.id, to: entry.id)
            }
        }
    }
}
