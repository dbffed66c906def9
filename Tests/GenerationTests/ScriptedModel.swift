import Checkpoints
import Generation
import Model

/// A test double for the scheduler: its "forward pass" makes token (last + 1) mod V the most
/// likely next token, so the expected output of any prompt is known exactly, and it records
/// every batch it was given so tests can check how the scheduler packed them.
final class ScriptedModel: LanguageModel, @unchecked Sendable {
    // @unchecked: `batches` is only appended to by the engine's single step loop and read by the
    // test after generation finished.
    let config = ModelConfig(dim: 8, nLayers: 1, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                             normEps: 1e-5, vocabSize: 50)
    let kvBlocks: KVBlockAllocator
    let maxBatchTokens: Int
    let maxBatchSequences: Int
    let maxSequenceLength: Int
    let deviceName = "scripted"
    var batches: [PackedBatch] = []
    /// Called from the engine's step loop before each forward pass with the step number (1, 2,
    /// …), so a test can submit or cancel at an exact step instead of racing the event consumer.
    var onStep: (@Sendable (Int) -> Void)?
    /// Each forward pass sleeps this long, so tests can submit work mid-generation.
    let stepDelayMicros: UInt32

    init(maxBatchTokens: Int = 64, maxBatchSequences: Int = 8, maxSequenceLength: Int = 128,
         blocks: Int = 64, stepDelayMicros: UInt32 = 0) {
        self.kvBlocks = KVBlockAllocator(blockCount: blocks, blockSize: 4)
        self.maxBatchTokens = maxBatchTokens
        self.maxBatchSequences = maxBatchSequences
        self.maxSequenceLength = maxSequenceLength
        self.stepDelayMicros = stepDelayMicros
    }

    func forward(_ batch: PackedBatch) throws -> Logits {
        batches.append(batch)
        onStep?(batches.count)
        if stepDelayMicros > 0 { usleep(stepDelayMicros) }
        let V = config.vocabSize
        var values = [Float](repeating: 0, count: batch.sequences.count * V)
        for (s, seq) in batch.sequences.enumerated() {
            let next = (seq.tokens[seq.tokens.count - 1] + 1) % V
            for v in 0..<V { values[s * V + v] = -Float((v - next + V) % V) }  // next: 0, others < 0
        }
        return Logits(rows: batch.sequences.count, vocabularySize: V, values: values)
    }
}

#if canImport(Glibc)
import Glibc
#endif
