#if canImport(Glibc)
import Glibc
#endif
import Checkpoints
import Generation
import Model

/// A test double with a real paged KV cache. Each step writes its tokens into the pool slots the
/// block tables name, then reads every position of the sequence's context back through its block
/// table; the most likely next token is a hash of that whole context (positions and tokens). So a
/// wrong block table, a sequence that was not recomputed after preemption, or a prefix-cache hit
/// on blocks with other content changes the output — while the right schedule, whatever it is,
/// gives exactly the output of one sequence alone.
///
/// Logits: the next token gets 0, the others −(distance from it) mod V, so sampling at a
/// temperature explores and penalties matter, as with `ScriptedModel`.
final class PagedEchoModel: LanguageModel, @unchecked Sendable {
    // @unchecked: `pool`, `batches` and `failing` are touched by the engine's single step loop;
    // tests read them after generation finished.
    let config = ModelConfig(dim: 8, nLayers: 1, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                             normEps: 1e-5, vocabSize: 50)
    let kvBlocks: KVBlockAllocator
    let maxBatchTokens: Int
    let maxBatchSequences: Int
    let maxSequenceLength: Int
    let deviceName = "paged-echo"
    /// (blocks · blockSize) token ids as written; −1 = never written.
    private var pool: [Int]
    var batches: [PackedBatch] = []
    let stepDelayMicros: UInt32
    /// Steps (1, 2, …) whose forward pass throws, as a device error would.
    var failingSteps: Set<Int> = []

    struct InjectedFailure: Error, CustomStringConvertible {
        var step: Int
        var description: String { "injected device failure in step \(step)" }
    }

    init(blocks: Int, blockSize: Int = 4, maxBatchTokens: Int = 64, maxBatchSequences: Int = 8,
         maxSequenceLength: Int = 128, stepDelayMicros: UInt32 = 0) {
        kvBlocks = KVBlockAllocator(blockCount: blocks, blockSize: blockSize)
        self.maxBatchTokens = maxBatchTokens
        self.maxBatchSequences = maxBatchSequences
        self.maxSequenceLength = maxSequenceLength
        self.stepDelayMicros = stepDelayMicros
        pool = Array(repeating: -1, count: blocks * blockSize)
    }

    /// The next token after `context` (positions 0…): what the model predicts with a correct cache.
    static func next(after context: [Int], vocabularySize: Int) -> Int {
        var h: UInt64 = 1469598103934665603
        for (p, t) in context.enumerated() {
            h = (h ^ UInt64(p &* 131 &+ t)) &* 1099511628211
        }
        return Int(h % UInt64(vocabularySize))
    }

    func forward(_ batch: PackedBatch) throws -> Logits {
        batches.append(batch)
        if stepDelayMicros > 0 { usleep(stepDelayMicros) }
        if failingSteps.contains(batches.count) { throw InjectedFailure(step: batches.count) }
        let bs = kvBlocks.blockSize, V = config.vocabSize
        func slot(_ table: [Int], _ p: Int) -> Int { table[p / bs] * bs + p % bs }
        for seq in batch.sequences {
            for (i, t) in seq.tokens.enumerated() { pool[slot(seq.blockTable, seq.startPosition + i)] = t }
        }
        var values = [Float](repeating: 0, count: batch.sequences.count * V)
        for (s, seq) in batch.sequences.enumerated() {
            let end = seq.startPosition + seq.tokens.count
            let context = (0..<end).map { pool[slot(seq.blockTable, $0)] }
            if context.contains(-1) {
                // Reading a slot nothing wrote: unusable logits (the engine fails the request).
                for v in 0..<V { values[s * V + v] = .nan }
                continue
            }
            let next = Self.next(after: context, vocabularySize: V)
            for v in 0..<V { values[s * V + v] = -Float((v - next + V) % V) }
        }
        return Logits(rows: batch.sequences.count, vocabularySize: V, values: values)
    }
}
