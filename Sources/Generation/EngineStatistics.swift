/// The engine's load at one moment: what metrics endpoints and status lines show.
public struct EngineStatistics: Sendable, Equatable {
    /// Sequences admitted and stepping (prefilling or decoding).
    public var running: Int
    /// Requests submitted and not yet admitted (preempted ones included).
    public var waiting: Int
    /// Forward steps run since the engine started.
    public var steps: Int
    /// KV blocks held by sequences.
    public var kvBlocksUsed: Int
    /// KV blocks in the pool.
    public var kvBlocksTotal: Int
    /// KV blocks a sequence can take now (unused ones and cached prefixes no sequence holds).
    public var kvBlocksFree: Int = 0
    /// Sequences preempted (blocks freed, recomputed later) since the engine started.
    public var preemptions: Int = 0
    /// Steps whose forward pass threw (their requests ended with `.deviceFailure`).
    public var failedSteps: Int = 0
    /// Of `kvBlocksFree`, blocks that still hold a cached prefix (evicted least recently used first).
    public var kvBlocksCached: Int = 0
    /// Prompt tokens of admitted requests since the engine started, and how many of them were
    /// found in the prefix cache (hit rate = hit ÷ query, as vLLM's prefix-cache metrics).
    public var prefixCacheQueryTokens: Int = 0
    public var prefixCacheHitTokens: Int = 0

    public init(running: Int, waiting: Int, steps: Int, kvBlocksUsed: Int, kvBlocksTotal: Int) {
        self.running = running
        self.waiting = waiting
        self.steps = steps
        self.kvBlocksUsed = kvBlocksUsed
        self.kvBlocksTotal = kvBlocksTotal
    }
}
