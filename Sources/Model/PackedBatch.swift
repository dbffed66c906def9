/// One engine step's work: several sequences' new tokens packed end to end, no padding.
///
/// Worked example (B = 4 tokens per block): sequence A prefills 5 tokens from position 0,
/// sequence B decodes 1 token at position 9:
/// ```
/// sequences[0] = (tokens: [t0…t4], startPosition: 0, blockTable: [7, 2])    // slots 28…31, 8
/// sequences[1] = (tokens: [u9],    startPosition: 9, blockTable: [0, 5, 9]) // slot 9·4 + 1 = 37
/// flat ids     = [t0 t1 t2 t3 t4 u9], positions = [0 1 2 3 4 9]
/// ```
/// The block table must already cover `startPosition + tokens.count` positions; the caller
/// (the scheduler) allocates blocks from `KVBlockAllocator` before the step.
public struct PackedBatch: Sendable {
    public struct Sequence: Sendable {
        public var tokens: [Int]
        public var startPosition: Int
        public var blockTable: [Int]
        public init(tokens: [Int], startPosition: Int, blockTable: [Int]) {
            self.tokens = tokens
            self.startPosition = startPosition
            self.blockTable = blockTable
        }
    }

    public var sequences: [Sequence]
    /// Return logits for every token (for `--dump-logits` and tests) instead of only the last
    /// token of each sequence.
    public var allLogits: Bool

    public init(sequences: [Sequence], allLogits: Bool = false) {
        self.sequences = sequences
        self.allLogits = allLogits
    }

    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.tokens.count } }
}

/// Logits of the rows a step asked for: the last token of each sequence, or every token.
public struct Logits: Sendable {
    public var rows: Int
    public var vocabularySize: Int
    public var values: [Float]   // (rows, V)

    public init(rows: Int, vocabularySize: Int, values: [Float]) {
        self.rows = rows
        self.vocabularySize = vocabularySize
        self.values = values
    }

    public func row(_ r: Int) -> ArraySlice<Float> {
        values[(r * vocabularySize)..<((r + 1) * vocabularySize)]
    }
}
