import Model

/// The limits the scheduler plans within.
public struct SchedulerConfiguration: Sendable, Equatable {
    /// Tokens computed in one step, all sequences together.
    public var maxBatchTokens: Int
    /// Sequences running at once.
    public var maxBatchSequences: Int
    /// Longest prompt chunk one sequence computes in a step (smaller chunks let decoding
    /// sequences keep streaming while a long prompt is read).
    public var prefillChunk: Int
    /// Longest sequence (prompt + generated) the model's block tables describe.
    public var maxSequenceLength: Int
    /// Free KV blocks that must remain after admitting a request while others run: the headroom
    /// running sequences grow into before anything has to be preempted.
    public var watermarkBlocks: Int

    public init(maxBatchTokens: Int, maxBatchSequences: Int, prefillChunk: Int, maxSequenceLength: Int,
                watermarkBlocks: Int) {
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.maxBatchSequences = max(1, maxBatchSequences)
        self.prefillChunk = max(1, min(prefillChunk, maxBatchTokens))
        self.maxSequenceLength = maxSequenceLength
        self.watermarkBlocks = max(0, watermarkBlocks)
    }

    /// The model's step limits, with a watermark of 1% of the pool (at least one block), as vLLM's.
    public init(model: any LanguageModel, prefillChunk: Int) {
        self.init(maxBatchTokens: model.maxBatchTokens, maxBatchSequences: model.maxBatchSequences,
                  prefillChunk: prefillChunk, maxSequenceLength: model.maxSequenceLength,
                  watermarkBlocks: max(1, model.kvBlocks.blockCount / 100))
    }
}

/// Who runs in the next step, with how many tokens, and who is preempted: policy only, no model
/// (vLLM v1's scheduler). The engine calls `schedule()`, runs the step, then `commit(_:)` and
/// `append(_:to:)` for each sampled token, and `remove(_:)` when a sequence ends.
///
/// KV blocks are taken as sequences grow, not reserved for `max_tokens` up front, so memory
/// follows the real lengths. When a running sequence cannot get the block it needs, the most
/// recently admitted running sequence is preempted: its blocks are freed and it goes back to the
/// front of the waiting queue; when readmitted it recomputes prompt + generated tokens (nothing
/// is re-sampled: its stream and its sampler continue where they were). The oldest running
/// sequence can therefore always grow, up to `contextLimit`, which the whole pool holds — so
/// the engine never deadlocks, whatever every sequence wants.
///
/// Order within a step: running sequences with one token left (decoding) first, then running
/// chunks, then admissions from the waiting queue in arrival order while the token budget,
/// sequence slots and the free-block watermark allow. Nothing is admitted in a step that
/// preempted (it would take the blocks back that the preemption just freed).
public struct Scheduler: Sendable {
    public let configuration: SchedulerConfiguration
    public let blocks: KVBlockAllocator

    struct Request: Sendable {
        let id: Int
        /// Prompt + generated so far.
        var tokens: [Int]
        let promptCount: Int
        /// Tokens whose KV is in the cache (positions 0 ..< computed).
        var computed = 0
        var blockTable: [Int] = []
        var remaining: Int { tokens.count - computed }
    }

    /// Arrival order; preempted sequences go back to the front.
    private var waiting: [Request] = []
    /// Admission order: the last is the next to be preempted.
    private var running: [Request] = []
    /// Sequences preempted since the scheduler started.
    public private(set) var preemptions = 0

    public init(configuration: SchedulerConfiguration, blocks: KVBlockAllocator) {
        self.configuration = configuration
        self.blocks = blocks
    }

    /// The longest a sequence may grow: the model's limit, or the whole pool if that is smaller
    /// (a sequence alone must always fit, or preemption could not guarantee progress).
    public var contextLimit: Int { min(configuration.maxSequenceLength, blocks.blockCount * blocks.blockSize) }

    public var runningCount: Int { running.count }
    public var waitingCount: Int { waiting.count }
    public var isIdle: Bool { running.isEmpty && waiting.isEmpty }

    /// Prompt + generated tokens of a sequence the scheduler holds.
    public func tokenCount(of id: Int) -> Int? {
        if let r = running.first(where: { $0.id == id }) { return r.tokens.count }
        return waiting.first { $0.id == id }?.tokens.count
    }

    /// Queues a request. The caller has checked that `prompt.count < contextLimit`.
    public mutating func add(id: Int, prompt: [Int]) {
        waiting.append(Request(id: id, tokens: prompt, promptCount: prompt.count))
    }

    /// Plans the next step (allocating the blocks it needs, preempting if it must).
    public mutating func schedule() -> SchedulerStep {
        var budget = configuration.maxBatchTokens
        var counts = [Int](repeating: 0, count: running.count)
        for i in running.indices where running[i].remaining == 1 && budget > 0 {
            counts[i] = 1
            budget -= 1
        }
        for i in running.indices where running[i].remaining > 1 && budget > 0 {
            counts[i] = min(running[i].remaining, configuration.prefillChunk, budget)
            budget -= counts[i]
        }

        // Blocks in admission order; a shortfall preempts from the most recent end.
        var preempted: [Int] = []
        var i = 0
        allocation: while i < running.count {
            if counts[i] > 0 {
                while !blocks.ensureCapacity(&running[i].blockTable, tokens: running[i].computed + counts[i]) {
                    let victim = running.removeLast()
                    counts.removeLast()
                    blocks.release(victim.blockTable)
                    var back = victim
                    back.computed = 0
                    back.blockTable = []
                    waiting.insert(back, at: 0)
                    preempted.append(victim.id)
                    preemptions += 1
                    if running.count == i { break allocation }   // it was the sequence itself
                }
            }
            i += 1
        }
        // Victims were taken last-admitted first and each inserted at the front, so the earliest
        // admitted of them now leads the queue.

        if preempted.isEmpty {
            while running.count < configuration.maxBatchSequences, budget > 0, var r = waiting.first {
                let n = min(r.remaining, configuration.prefillChunk, budget)
                let needed = blocks.blocksNeeded(forTokens: r.computed + n) - r.blockTable.count
                // With nothing running there is nothing to leave headroom for (and a prompt as
                // large as the pool must still start).
                let reserve = running.isEmpty ? 0 : configuration.watermarkBlocks
                guard blocks.freeBlocks - needed >= reserve,
                      blocks.ensureCapacity(&r.blockTable, tokens: r.computed + n) else { break }
                waiting.removeFirst()
                running.append(r)
                counts.append(n)
                budget -= n
            }
        }

        var step = SchedulerStep(preempted: preempted)
        for (r, n) in zip(running, counts) where n > 0 {
            step.entries.append(.init(id: r.id, tokens: Array(r.tokens[r.computed..<(r.computed + n)]), startPosition: r.computed,
                                      blockTable: r.blockTable, samples: r.computed + n == r.tokens.count))
        }
        return step
    }

    /// Records that `step` ran: its tokens' KV is now in the cache.
    public mutating func commit(_ step: SchedulerStep) {
        for entry in step.entries {
            guard let i = running.firstIndex(where: { $0.id == entry.id }) else { continue }
            running[i].computed = entry.startPosition + entry.tokens.count
        }
    }

    /// Appends a sampled token to a running sequence (the next step computes it).
    public mutating func append(_ token: Int, to id: Int) {
        guard let i = running.firstIndex(where: { $0.id == id }) else { return }
        running[i].tokens.append(token)
    }

    /// Drops a sequence (finished, cancelled or failed) and frees its blocks. False if unknown.
    @discardableResult
    public mutating func remove(_ id: Int) -> Bool {
        if let i = running.firstIndex(where: { $0.id == id }) {
            blocks.release(running.remove(at: i).blockTable)
            return true
        }
        if let i = waiting.firstIndex(where: { $0.id == id }) {
            blocks.release(waiting.remove(at: i).blockTable)
            return true
        }
        return false
    }
}
