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
    /// Reuse the KV of full blocks whose token prefix was computed before (`KVBlockAllocator`).
    public var prefixCaching: Bool

    public init(maxBatchTokens: Int, maxBatchSequences: Int, prefillChunk: Int, maxSequenceLength: Int,
                watermarkBlocks: Int, prefixCaching: Bool = true) {
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.maxBatchSequences = max(1, maxBatchSequences)
        self.prefillChunk = max(1, min(prefillChunk, maxBatchTokens))
        self.maxSequenceLength = maxSequenceLength
        self.watermarkBlocks = max(0, watermarkBlocks)
        self.prefixCaching = prefixCaching
    }

    /// The model's step limits, with a watermark of 1% of the pool (at least one block), as vLLM's.
    public init(model: any LanguageModel, prefillChunk: Int, prefixCaching: Bool = true) {
        self.init(maxBatchTokens: model.maxBatchTokens, maxBatchSequences: model.maxBatchSequences,
                  prefillChunk: prefillChunk, maxSequenceLength: model.maxSequenceLength,
                  watermarkBlocks: max(1, model.kvBlocks.blockCount / 100), prefixCaching: prefixCaching)
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
///
/// Prefix caching: a request being admitted first takes the cached blocks that hold the longest
/// prefix of its tokens (whole blocks, and never its last token, whose logits it needs) and
/// starts computing after them; every block a step fills is registered for later requests. This
/// holds for sliding-window models too: a block's KV is a function of the token prefix alone
/// (the window limits what attention reads, not what a position's K and V are), and blocks
/// stay in the table when they fall out of the window.
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
        /// Chain hashes of the full blocks of `tokens` computed so far (kept across preemption).
        var hashes: [BlockHash] = []
        /// Blocks of `blockTable` registered in the prefix cache (or taken from it).
        var registered = 0
        /// Admitted at least once (prefix-cache statistics count first admissions only).
        var admitted = false
        var remaining: Int { tokens.count - computed }
    }

    /// Arrival order; preempted sequences go back to the front.
    private var waiting: [Request] = []
    /// Admission order: the last is the next to be preempted.
    private var running: [Request] = []
    /// Sequences preempted since the scheduler started.
    public private(set) var preemptions = 0
    /// Prompt tokens of admitted requests, and how many of them were found in the prefix cache
    /// (first admissions only: a preempted sequence's recompute is not a new query).
    public private(set) var prefixCacheQueryTokens = 0
    public private(set) var prefixCacheHitTokens = 0

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
                    back.registered = 0
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
                let hit = takeCachedPrefix(&r)
                let n = min(r.remaining, configuration.prefillChunk, budget)
                let needed = blocks.blocksNeeded(forTokens: r.computed + n) - r.blockTable.count
                // With nothing running there is nothing to leave headroom for (and a prompt as
                // large as the pool must still start).
                let reserve = running.isEmpty ? 0 : configuration.watermarkBlocks
                guard blocks.freeBlocks - needed >= reserve,
                      blocks.ensureCapacity(&r.blockTable, tokens: r.computed + n) else {
                    blocks.release(hit)
                    waiting[0].hashes = r.hashes
                    break
                }
                if !r.admitted {
                    r.admitted = true
                    prefixCacheQueryTokens += r.promptCount
                    prefixCacheHitTokens += hit.count * blocks.blockSize
                }
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

    /// A waiting request's cached prefix: the blocks, now in its table (none without caching).
    private func takeCachedPrefix(_ r: inout Request) -> [Int] {
        guard configuration.prefixCaching, r.blockTable.isEmpty else { return [] }
        let size = blocks.blockSize
        r.hashes = BlockHash.chain(r.tokens, blockSize: size, from: r.hashes)
        let hit = blocks.takeCachedPrefix(r.hashes.prefix((r.tokens.count - 1) / size))
        r.blockTable = hit
        r.computed = hit.count * size
        r.registered = hit.count
        return hit
    }

    /// Records that `step` ran: its tokens' KV is now in the cache, and blocks it filled are
    /// registered for prefix caching.
    public mutating func commit(_ step: SchedulerStep) {
        let size = blocks.blockSize
        for entry in step.entries {
            guard let i = running.firstIndex(where: { $0.id == entry.id }) else { continue }
            running[i].computed = entry.startPosition + entry.tokens.count
            let full = running[i].computed / size
            guard configuration.prefixCaching, full > running[i].registered else { continue }
            running[i].hashes = BlockHash.chain(running[i].tokens, blockSize: size, from: running[i].hashes)
            for j in running[i].registered..<full { blocks.register(running[i].blockTable[j], as: running[i].hashes[j]) }
            running[i].registered = full
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
