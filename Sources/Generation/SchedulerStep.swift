/// What the scheduler decided for one engine step: a plain value the executor runs (vLLM v1's
/// `SchedulerOutput`). There is no prefill or decode phase: every sequence has tokens whose KV is
/// computed and tokens still to compute; an entry computes the next `tokens` of one sequence, and
/// when they reach its last token the step samples its next one.
///
/// Worked example (block size 4, budget 8 tokens): A decodes at position 9 (10 tokens, 9
/// computed), B was just admitted with a 6-token prompt, C waits:
/// ```
/// entries[0] = (id: A, tokens: [a9],        startPosition: 9, blockTable: [3, 0, 5], samples: true)
/// entries[1] = (id: B, tokens: [b0 … b5],   startPosition: 0, blockTable: [1, 6],    samples: true)
/// preempted  = []                        // C stays waiting: the budget is down to 1 token
/// ```
/// Had A needed a fourth block with none free, the most recently admitted running sequence would
/// have been preempted (listed here, its blocks freed) and A would have taken its block.
public struct SchedulerStep: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var id: Int
        /// The tokens to compute, at positions `startPosition ..< startPosition + tokens.count`.
        public var tokens: [Int]
        public var startPosition: Int
        /// Covers at least `startPosition + tokens.count` positions.
        public var blockTable: [Int]
        /// The chunk ends at the sequence's last token: its logits give the next token. A prompt
        /// chunk that is not the last samples nothing that is kept.
        public var samples: Bool

        public init(id: Int, tokens: [Int], startPosition: Int, blockTable: [Int], samples: Bool) {
            self.id = id
            self.tokens = tokens
            self.startPosition = startPosition
            self.blockTable = blockTable
            self.samples = samples
        }
    }

    /// In the order the sequences were admitted.
    public var entries: [Entry] = []
    /// Sequences preempted this step: their blocks are free and they wait again at the front of
    /// the queue; on readmission they recompute prompt + generated tokens.
    public var preempted: [Int] = []

    public init(entries: [Entry] = [], preempted: [Int] = []) {
        self.entries = entries
        self.preempted = preempted
    }

    public var tokenCount: Int { entries.reduce(0) { $0 + $1.tokens.count } }
}
