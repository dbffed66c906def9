import Checkpoints
import Tensors

/// Activation and index buffers for one engine step, allocated once at their largest size
/// (`maxTokens` packed tokens, `maxSequences` sequences) and reused by every step, so the
/// forward pass allocates nothing per token.
///
/// Legend: T tokens (≤ maxTokens), S sequences, D dim, H/G query/KV heads, Dh head dim,
/// F FFN hidden, E experts, K experts per token, V vocabulary.
struct StepBuffers<Backend: ComputeBackend> {
    let maxTokens: Int
    let maxSequences: Int
    let maxBlocksPerSequence: Int

    let tokenIDs: Backend.Tensor      // (T) i32
    let positions: Backend.Tensor     // (T) i32
    let slots: Backend.Tensor         // (T) i32 flat KV pool slot of each token
    let queryStart: Backend.Tensor    // (S+1) i32
    let contextLens: Backend.Tensor   // (S) i32
    let blockTables: Backend.Tensor   // (S, maxBlocksPerSequence) i32
    let logitRows: Backend.Tensor     // (T) i32 rows of x whose logits are wanted

    let x: Backend.Tensor             // (T, D) residual stream
    let qkv: Backend.Tensor           // (T, (H + 2G)·Dh) joined projection
    let q: Backend.Tensor             // (T, H·Dh) roped queries
    let attn: Backend.Tensor          // (T, H·Dh)
    let gate: Backend.Tensor          // (T, F) dense silu(w1·h)·(w3·h)
    let gathered: Backend.Tensor      // (T, D) rows that produce logits
    let logits: Backend.Tensor        // (T, V)
    /// With collectives only (else 1 element): this rank's partial residual sum and logits.
    let partial: Backend.Tensor       // (T, D)
    let logitShard: Backend.Tensor    // (T, V/N)
    let samplingParameters: Backend.Tensor  // (S, SamplingColumn.count) f32
    let penaltyOffsets: Backend.Tensor      // (S+1) i32
    let penalties: Backend.Tensor           // (S · maxSequenceLength, 2) i32 (token, output count)
    let sampled: Backend.Tensor             // (S, 2 + 2·maxTopLogprobs) f32 the sample op's output
    /// Most top log-probabilities a step may ask for.
    static var maxTopLogprobs: Int { 20 }

    /// Sized for `shard`'s heads and hidden size (the whole model's on one rank).
    init(backend: Backend, config c: ModelConfig, shard: TensorShard, maxTokens: Int, maxSequences: Int, maxBlocksPerSequence: Int,
         maxSequenceLength: Int) throws {
        self.maxTokens = maxTokens
        self.maxSequences = maxSequences
        self.maxBlocksPerSequence = maxBlocksPerSequence
        let t = maxTokens
        tokenIDs = try backend.makeIndices(t)
        positions = try backend.makeIndices(t)
        slots = try backend.makeIndices(t)
        queryStart = try backend.makeIndices(maxSequences + 1)
        contextLens = try backend.makeIndices(maxSequences)
        blockTables = try backend.makeIndices(maxSequences * maxBlocksPerSequence)
        logitRows = try backend.makeIndices(t)
        x = try backend.makeActivation([t, c.dim])
        qkv = try backend.makeActivation([t, (shard.heads + 2 * shard.kvHeads) * c.headDim])
        q = try backend.makeActivation([t, shard.heads * c.headDim])
        attn = try backend.makeActivation([t, shard.heads * c.headDim])
        // A MoE layer's temporaries (normed x, router logits, routing) live in the backend's scratch.
        gate = try backend.makeActivation(c.moe == nil ? [t, shard.hidden] : [1])
        gathered = try backend.makeActivation([t, c.dim])
        logits = try backend.makeActivation([t, c.vocabSize])
        partial = try backend.makeActivation(shard.collective ? [t, c.dim] : [1])
        logitShard = try backend.makeActivation(shard.collective ? [t, shard.vocabulary] : [1])
        samplingParameters = try backend.makeActivation([maxSequences, SamplingColumn.count])
        penaltyOffsets = try backend.makeIndices(maxSequences + 1)
        penalties = try backend.makeIndices(2 * maxSequences * maxSequenceLength)
        sampled = try backend.makeActivation([maxSequences, 2 + 2 * Self.maxTopLogprobs])
    }
}
