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
    let h: Backend.Tensor             // (T, D) normed input of the MoE block
    let qkv: Backend.Tensor           // (T, (H + 2G)·Dh) joined projection
    let q: Backend.Tensor             // (T, H·Dh) roped queries
    let attn: Backend.Tensor          // (T, H·Dh)
    let blockOut: Backend.Tensor      // (T, D) MoE output before the residual add
    let gate: Backend.Tensor          // (T, F) dense silu(w1·h)·(w3·h)
    let routerLogits: Backend.Tensor? // (T, E)
    let expertIDs: Backend.Tensor?    // (T, K) i32
    let expertWeights: Backend.Tensor? // (T, K) f32
    let gathered: Backend.Tensor      // (T, D) rows that produce logits
    let logits: Backend.Tensor        // (T, V)

    init(backend: Backend, config c: ModelConfig, maxTokens: Int, maxSequences: Int, maxBlocksPerSequence: Int) throws {
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
        h = try backend.makeActivation([t, c.dim])
        qkv = try backend.makeActivation([t, (c.nHeads + 2 * c.nKVHeads) * c.headDim])
        q = try backend.makeActivation([t, c.nHeads * c.headDim])
        attn = try backend.makeActivation([t, c.nHeads * c.headDim])
        blockOut = try backend.makeActivation([t, c.dim])
        if let moe = c.moe {
            gate = try backend.makeActivation([1])
            routerLogits = try backend.makeActivation([t, moe.numExperts])
            expertIDs = try backend.makeIndices(t * moe.numExpertsPerTok)
            expertWeights = try backend.makeActivation([t, moe.numExpertsPerTok])
        } else {
            gate = try backend.makeActivation([t, c.hiddenDim])
            routerLogits = nil
            expertIDs = nil
            expertWeights = nil
        }
        gathered = try backend.makeActivation([t, c.dim])
        logits = try backend.makeActivation([t, c.vocabSize])
    }
}
