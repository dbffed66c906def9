/// The engine's load at one moment: what metrics endpoints and status lines show.
public struct EngineStatistics: Sendable, Equatable {
    /// Sequences admitted and stepping (prefilling or decoding).
    public var running: Int
    /// Requests submitted and not yet admitted.
    public var waiting: Int
    /// Forward steps run since the engine started.
    public var steps: Int
    /// KV blocks held by sequences.
    public var kvBlocksUsed: Int
    /// KV blocks in the pool.
    public var kvBlocksTotal: Int

    public init(running: Int, waiting: Int, steps: Int, kvBlocksUsed: Int, kvBlocksTotal: Int) {
        self.running = running
        self.waiting = waiting
        self.steps = steps
        self.kvBlocksUsed = kvBlocksUsed
        self.kvBlocksTotal = kvBlocksTotal
    }
}
