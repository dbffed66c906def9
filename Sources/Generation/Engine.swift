import Dispatch
import Model
import Synchronization

/// Errors raised when a request cannot be accepted at all.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case invalidParameters(String)
    case emptyPrompt
    case promptTooLong(tokens: Int, limit: Int)
    case shutDown
    /// The waiting queue already holds `limit` requests (`maxQueued`): try again later.
    case queueFull(limit: Int)

    public var description: String {
        switch self {
        case .invalidParameters(let why): return "invalid sampling parameters: \(why)"
        case .emptyPrompt: return "the prompt has no tokens"
        case let .promptTooLong(t, limit): return "prompt of \(t) tokens does not fit the context (\(limit) tokens incl. at least one generated)"
        case .shutDown: return "the engine is shutting down"
        case .queueFull(let limit): return "server busy: \(limit) requests are already waiting"
        }
    }
}

/// Continuous batching over one model: requests join and leave at any engine step.
///
/// Each step packs the next token of every decoding sequence plus prefill chunks of newly
/// admitted prompts (up to `maxBatchTokens` in total) into one forward pass, so a new request
/// starts at the next step instead of waiting for running ones to finish. Steps run on one
/// dedicated dispatch queue — the only caller of `LanguageModel.forward`.
public final class Engine: Sendable {
    public let model: any LanguageModel
    /// Token ids that end a sequence (the model's EOS).
    public let stopTokens: Set<Int>
    /// Longest prompt chunk a sequence may prefill in one step (smaller chunks let decoding
    /// sequences keep streaming while a long prompt is read).
    public let prefillChunk: Int
    /// Most requests that may wait for admission; a submit past it throws `.queueFull` (nil: unbounded).
    public let maxQueued: Int?
    private let makeDecoder: @Sendable () -> any IncrementalDecoder
    private let state = Mutex(SharedState())
    private let wake = DispatchSemaphore(value: 0)
    private let queue = DispatchQueue(label: "mixtral-chat.engine")

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
    }

    public init(model: any LanguageModel, stopTokens: Set<Int>, prefillChunk: Int = 256, maxQueued: Int? = nil,
                makeDecoder: @escaping @Sendable () -> any IncrementalDecoder) {
        self.model = model
        self.stopTokens = stopTokens
        self.prefillChunk = max(1, min(prefillChunk, model.maxBatchTokens))
        self.maxQueued = maxQueued
        self.makeDecoder = makeDecoder
    }

    /// Queues a request; its events arrive on the handle's stream.
    public func submit(promptTokens: [Int], sampling: SamplingParameters) throws -> GenerationHandle {
        if let why = sampling.validationError() { throw EngineError.invalidParameters(why) }
        guard !promptTokens.isEmpty else { throw EngineError.emptyPrompt }
        let limit = model.maxSequenceLength
        guard promptTokens.count < limit,
              model.kvBlocks.blocksNeeded(forTokens: promptTokens.count + 1) <= model.kvBlocks.blockCount else {
            throw EngineError.promptTooLong(tokens: promptTokens.count, limit: min(limit, model.kvBlocks.blockCount * model.kvBlocks.blockSize))
        }
        let (stream, continuation) = AsyncStream.makeStream(of: GenerationEvent.self, bufferingPolicy: .unbounded)
        let startLoop: Bool
        let id: Int
        (id, startLoop) = try state.withLock { s in
            if s.shuttingDown { throw EngineError.shutDown }
            if let limit = maxQueued, s.incoming.count + s.waiting >= limit { throw EngineError.queueFull(limit: limit) }
            let id = s.nextID
            s.nextID += 1
            s.incoming.append(SequenceState(id: id, prompt: promptTokens, sampling: sampling,
                                            decoder: makeDecoder(), continuation: continuation))
            let start = !s.loopRunning
            s.loopRunning = true
            return (id, start)
        }
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel(id) }
        }
        if startLoop { queue.async { self.runLoop() } } else { wake.signal() }
        return GenerationHandle(id: id, events: stream, onCancel: { [weak self] in self?.cancel(id) })
    }

    /// Stops a request at the next step; it finishes with `.cancelled`.
    public func cancel(_ id: Int) {
        state.withLock { _ = $0.cancelled.insert(id) }
        wake.signal()
    }

    /// A snapshot of the engine's load, for metrics and status lines.
    public func statistics() -> EngineStatistics {
        let (running, waiting, incoming, steps) = state.withLock { ($0.running, $0.waiting, $0.incoming.count, $0.steps) }
        return EngineStatistics(running: running, waiting: waiting + incoming, steps: steps,
                                kvBlocksUsed: model.kvBlocks.blockCount - model.kvBlocks.freeBlocks,
                                kvBlocksTotal: model.kvBlocks.blockCount)
    }

    /// Refuses new requests; running ones continue to completion.
    public func shutdown() { state.withLock { $0.shuttingDown = true } }

    // MARK: the step loop (runs on `queue` only)

    private func runLoop() {
        var waiting: [SequenceState] = []
        var running: [SequenceState] = []
        while true {
            let (incoming, cancelled) = state.withLock { s -> ([SequenceState], Set<Int>) in
                defer { s.incoming.removeAll(); s.cancelled.removeAll() }
                return (s.incoming, s.cancelled)
            }
            waiting += incoming
            if !cancelled.isEmpty {
                for seq in waiting + running where cancelled.contains(seq.id) { finish(seq, .cancelled) }
                waiting.removeAll { cancelled.contains($0.id) }
                running.removeAll { cancelled.contains($0.id) }
            }
            admit(&waiting, into: &running)
            state.withLock { [running = running.count, waiting = waiting.count] s in
                s.running = running
                s.waiting = waiting
            }
            if running.isEmpty {
                let idle = state.withLock { s -> Bool in
                    if s.incoming.isEmpty && s.cancelled.isEmpty && waiting.isEmpty { s.loopRunning = false; return true }
                    return false
                }
                if idle { return }
                if !waiting.isEmpty && running.isEmpty {
                    // Nothing fits right now and nothing runs to free memory: cannot happen
                    // with up-front reservation unless the pool is smaller than one request.
                    for seq in waiting { finish(seq, .error, message: "not enough KV cache memory for this request") }
                    waiting.removeAll()
                }
                continue
            }
            step(&running)
            state.withLock { $0.steps += 1 }
        }
    }

    /// Moves waiting requests into the running set while sequence slots and KV blocks allow.
    /// Blocks for the whole request (prompt + max tokens, capped at the context) are reserved
    /// up front, so a running sequence never has to be preempted.
    private func admit(_ waiting: inout [SequenceState], into running: inout [SequenceState]) {
        while let seq = waiting.first, running.count < model.maxBatchSequences {
            let total = min(seq.prompt.count + seq.sampling.maxTokens, model.maxSequenceLength)
            guard model.kvBlocks.ensureCapacity(&seq.blockTable, tokens: total) else { break }
            seq.reservedTokens = total
            waiting.removeFirst()
            running.append(seq)
        }
    }

    private func step(_ running: inout [SequenceState]) {
        // Decode tokens first (one per sequence), then prefill chunks with the remaining budget.
        var budget = model.maxBatchTokens
        var members: [(SequenceState, PackedBatch.Sequence)] = []
        for seq in running where seq.isDecoding && budget > 0 {
            members.append((seq, .init(tokens: [seq.tokens[seq.tokens.count - 1]], startPosition: seq.tokens.count - 1,
                                       blockTable: seq.blockTable)))
            budget -= 1
        }
        for seq in running where !seq.isDecoding && budget > 0 {
            let n = min(prefillChunk, budget, seq.prompt.count - seq.prefilled)
            members.append((seq, .init(tokens: Array(seq.prompt[seq.prefilled..<(seq.prefilled + n)]),
                                       startPosition: seq.prefilled, blockTable: seq.blockTable)))
            budget -= n
        }
        // One sampling row per sequence (its last token's logits); a prompt chunk that is not
        // the last samples nothing that is kept.
        var rows: [RowSampling] = []
        var logprobs = -1
        for (seq, part) in members {
            if seq.isDecoding || seq.prefilled + part.tokens.count >= seq.prompt.count {
                rows.append(seq.sampler.nextRow())
                if let n = seq.sampling.logprobs { logprobs = max(logprobs, n) }
            } else {
                rows.append(.unused)
            }
        }
        let sampled: [SampledToken]
        do {
            sampled = try model.step(PackedBatch(sequences: members.map(\.1)), sampling: rows, logprobs: logprobs)
        } catch {
            for seq in running { finish(seq, .error, message: "forward pass failed: \(error)") }
            running.removeAll()
            return
        }
        var done: Set<Int> = []
        for (row, (seq, part)) in members.enumerated() {
            if !seq.isDecoding {
                seq.prefilled += part.tokens.count
                if seq.prefilled < seq.prompt.count {
                    seq.continuation.yield(.prefillProgress(done: seq.prefilled, total: seq.prompt.count))
                    continue
                }
                seq.continuation.yield(.prefillProgress(done: seq.prefilled, total: seq.prompt.count))
            }
            let pick = sampled[row]
            guard pick.id >= 0 else {
                finish(seq, .error, message: "the model produced NaN or infinite logits")
                done.insert(seq.id)
                continue
            }
            if let n = seq.sampling.logprobs {
                let top = zip(pick.topIDs, pick.topLogprobs).prefix(n).map { TokenLogprob(id: $0.0, logprob: $0.1) }
                seq.continuation.yield(.logprobs(TokenLogprobs(chosen: TokenLogprob(id: pick.id, logprob: pick.logprob), top: top)))
            }
            let token = pick.id
            if let reason = seq.accept(token, stopTokens: stopTokens) {
                finish(seq, reason)
                done.insert(seq.id)
            }
        }
        running.removeAll { done.contains($0.id) }
    }

    private func finish(_ seq: SequenceState, _ reason: FinishReason, message: String? = nil) {
        model.kvBlocks.release(seq.blockTable)
        seq.blockTable = []
        seq.continuation.yield(.finished(reason: reason, promptTokens: seq.prompt.count,
                                         generatedTokens: seq.generated, error: message))
        seq.continuation.finish()
    }
}
