import Checkpoints
import Tensors

/// Errors of the forward pass that come from the caller's batch, not from the device.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case batchTooLarge(tokens: Int, sequences: Int, maxTokens: Int, maxSequences: Int)
    case blockTableTooShort(sequence: Int, needed: Int, has: Int)
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    case sequenceTooLong(positions: Int, maxPositions: Int)

    public var description: String {
        switch self {
        case let .batchTooLarge(t, s, mt, ms):
            return "batch of \(t) tokens in \(s) sequences exceeds the step limit of \(mt) tokens / \(ms) sequences"
        case let .blockTableTooShort(s, needed, has):
            return "sequence \(s) needs \(needed) KV blocks but its block table has \(has)"
        case let .tokenOutOfRange(t, v): return "token id \(t) is outside the vocabulary (size \(v))"
        case let .sequenceTooLong(p, m): return "sequence of \(p) positions exceeds the maximum of \(m)"
        }
    }
}

/// A language model the scheduler can step: one forward pass over a packed batch.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    var kvBlocks: KVBlockAllocator { get }
    var maxBatchTokens: Int { get }
    var maxBatchSequences: Int { get }
    /// Longest sequence (prompt + generated) the block tables can describe.
    var maxSequenceLength: Int { get }
    var deviceName: String { get }
    /// GPUs the model runs on (0 on the CPU).
    var gpuCount: Int { get }
    /// Bytes of one cached K or V element.
    var kvElementBytes: Int { get }
    /// The logits of `batch`'s logit rows (for `--dump-logits` and tests: every value crosses
    /// to the host).
    func forward(_ batch: PackedBatch) throws -> Logits
    /// The forward pass of `batch` and one sampled token per logits row, picked on the device:
    /// only the tokens and the log-probabilities asked for cross to the host. `sampling` has one
    /// entry per logits row (the last token of each sequence); `logprobs` as
    /// `ComputeBackend.sample` (< 0: none).
    func step(_ batch: PackedBatch, sampling: [RowSampling], logprobs: Int) throws -> [SampledToken]
}

extension LanguageModel {
    public var gpuCount: Int { 0 }
    public var kvElementBytes: Int { 4 }
}

/// The Mistral transformer (dense and MoE), written once against `ComputeBackend`.
///
/// Per layer, on a packed batch of T tokens:
/// ```
/// h = rmsNorm(x) ; q,k,v = h·[wq;wk;wv]ᵀ ; rope(q), rope(k) ; append k,v to the paged pool
/// x += attention(q, pool)·woᵀ
/// h = rmsNorm(x) ; x += FFN(h)     FFN = w2·(silu(w1·h) * w3·h), or the top-k MoE mixture
/// ```
/// Weights that multiply the same input are joined by rows at upload (wq/wk/wv, w1/w3) and the
/// norms and residual adds happen inside the products (`normedMatmul`, `matmulAdd`), so a dense
/// layer is 6 ops:
/// ```
/// normedMatmul(wqkv), ropeAppendKV, attention, matmulAdd(wo), normedMatmul(w13, gated), matmulAdd(w2)
/// ```
/// and a MoE layer replaces the last two with one `normedMoE` (norm, router, routing, experts and
/// residual add inside), then logits = rmsNorm(x[rows])·outputᵀ for the rows that sample.
///
/// Split over N ranks (`shard`, one `Transformer` per rank driven by `TensorParallelModel`), the
/// same code runs with the rank's heads, hidden size and vocabulary; the two residual adds become
/// partial product → all-reduce, and the logits are gathered from the vocabulary shards.
public final class Transformer<Backend: ComputeBackend>: LanguageModel, @unchecked Sendable {
    // @unchecked: `forward` mutates the step buffers and KV pools; the scheduler calls it from
    // one thread at a time (the engine's step loop), which is the documented contract.
    public let config: ModelConfig
    public let backend: Backend
    public let weights: TransformerWeights<Backend>
    public let kvBlocks: KVBlockAllocator
    public let maxBatchTokens: Int
    public let maxBatchSequences: Int
    public let maxSequenceLength: Int
    /// This rank's share of the model (the whole model on one rank).
    public let shard: TensorShard
    private let kPools: [Backend.Tensor]    // (L) × (N, B, G, Dh)
    private let vPools: [Backend.Tensor]    // (L) × (N, B, G, Dh)
    private let buffers: StepBuffers<Backend>

    public var deviceName: String { backend.name }
    public var gpuCount: Int { backend.gpuCount }
    public var kvElementBytes: Int { backend.kvElementBytes }

    /// - Parameters:
    ///   - kvBlockCount: blocks in the shared KV pool (each holds `kvBlockSize` tokens for every layer).
    ///   - maxSequenceLength: the longest prompt + generation a sequence may reach.
    public init(backend: Backend, weights: TransformerWeights<Backend>, config: ModelConfig,
                maxBatchTokens: Int, maxBatchSequences: Int, maxSequenceLength: Int,
                kvBlockCount: Int, kvBlockSize: Int = 16, shard: TensorShard? = nil) throws {
        let shard = shard ?? .whole(config)
        self.shard = shard
        self.config = config
        self.backend = backend
        self.weights = weights
        self.maxBatchTokens = maxBatchTokens
        self.maxBatchSequences = maxBatchSequences
        self.maxSequenceLength = maxSequenceLength
        self.kvBlocks = KVBlockAllocator(blockCount: kvBlockCount, blockSize: kvBlockSize)
        var k: [Backend.Tensor] = [], v: [Backend.Tensor] = []
        for _ in 0..<config.nLayers {
            k.append(try backend.makeKVPool(blocks: kvBlockCount, blockSize: kvBlockSize, kvHeads: shard.kvHeads, headDim: config.headDim))
            v.append(try backend.makeKVPool(blocks: kvBlockCount, blockSize: kvBlockSize, kvHeads: shard.kvHeads, headDim: config.headDim))
        }
        kPools = k
        vPools = v
        let maxBlocks = (maxSequenceLength + kvBlockSize - 1) / kvBlockSize
        buffers = try StepBuffers(backend: backend, config: config, shard: shard, maxTokens: maxBatchTokens,
                                  maxSequences: maxBatchSequences, maxBlocksPerSequence: maxBlocks,
                                  maxSequenceLength: maxSequenceLength)
    }

    public func forward(_ batch: PackedBatch) throws -> Logits {
        let c = config
        guard batch.tokenCount > 0 else { return Logits(rows: 0, vocabularySize: c.vocabSize, values: []) }
        let rows = try run(batch, sampling: nil)
        let values = try backend.readFloats(buffers.logits, count: rows * c.vocabSize)        // (R, V)
        return Logits(rows: rows, vocabularySize: c.vocabSize, values: values)
    }

    public func step(_ batch: PackedBatch, sampling: [RowSampling], logprobs: Int) throws -> [SampledToken] {
        guard batch.tokenCount > 0 else { return [] }
        guard !batch.allLogits else { throw BackendError.unsupported("sampling a batch that asks for every position's logits") }
        guard sampling.count == batch.sequences.count else {
            throw BackendError.shapeMismatch("\(sampling.count) sampling rows for \(batch.sequences.count) sequences")
        }
        let n = min(logprobs, StepBuffers<Backend>.maxTopLogprobs)
        let rows = try run(batch, sampling: (PackedSampling(sampling), n))
        let values = try backend.readFloats(buffers.sampled, count: rows * (2 + 2 * max(n, 0)))  // (R, 2 + 2N)
        return PackedSampling.unpack(values, rows: rows, logprobs: n)
    }

    /// A rank after the first of a split model: the same forward pass as rank 0's `forward` or
    /// `step` of `batch` (its collectives meet rank 0's), without sampling or reading anything.
    func follow(_ batch: PackedBatch) throws {
        guard batch.tokenCount > 0 else { return }
        _ = try run(batch, sampling: nil)
    }

    /// The forward pass up to the logits (R, V) in `buffers.logits`, then, with `sampling`, the
    /// sample op into `buffers.sampled`. Returns R.
    private func run(_ batch: PackedBatch, sampling: (packed: PackedSampling, logprobs: Int)?) throws -> Int {
        let c = config, b = buffers, be = backend
        let T = batch.tokenCount, S = batch.sequences.count
        guard T <= b.maxTokens, S <= b.maxSequences else {
            throw ModelError.batchTooLarge(tokens: T, sequences: S, maxTokens: b.maxTokens, maxSequences: b.maxSequences)
        }
        let index = try packIndices(batch)
        try be.write(index.ids, to: b.tokenIDs)
        try be.write(index.positions, to: b.positions)
        try be.write(index.slots, to: b.slots)
        try be.write(index.queryStart, to: b.queryStart)
        try be.write(index.contextLens, to: b.contextLens)
        try be.write(index.blockTables, to: b.blockTables)
        try be.write(index.logitRows, to: b.logitRows)
        if let sampling {
            try be.write(sampling.packed.parameters, to: b.samplingParameters)
            try be.write(sampling.packed.penaltyOffsets, to: b.penaltyOffsets)
            try be.write(sampling.packed.penalties, to: b.penalties)
        }
        let attentionBatch = AttentionBatch(
            sequences: S, tokens: T, blockSize: kvBlocks.blockSize, maxBlocksPerSequence: b.maxBlocksPerSequence,
            queryStart: b.queryStart, positions: b.positions, contextLens: b.contextLens, blockTables: b.blockTables,
            hostQueryStart: index.queryStart, hostContextLens: index.contextLens,
            hostPositions: index.positions, hostBlockTables: index.blockTables)

        // This rank's heads, KV heads, hidden size and vocabulary (the model's own on one rank).
        let D = c.dim, H = shard.heads, G = shard.kvHeads, Dh = c.headDim, F = shard.hidden, Vr = shard.vocabulary
        let R = index.logitRows.count
        /// x += the layer's product: into x itself on one rank; split, each rank's partial sum
        /// (rank 0's already holding x) is all-reduced into every rank's x.
        func addIntoResidual(_ product: (Backend.Tensor) throws -> Void) throws {
            guard shard.collective else { return try product(b.x) }
            let target = shard.rank == 0 ? b.x : b.partial
            if shard.rank != 0 { try be.zero(b.partial, count: T * D) }
            try product(target)                                                                  // (T, D)
            try be.allReduceSum(target, into: b.x, count: T * D)
        }
        // Everything below depends only on the step's shape and on device buffers, so a GPU may
        // record it once per shape and replay it (decode steps repeat the same few shapes).
        try be.replayable(StepShape(tokens: T, sequences: S, logitRows: R, sampledLogprobs: sampling?.logprobs)) {
            try be.embed(ids: b.tokenIDs, table: weights.tokEmbeddings, out: b.x, rows: T, dim: D)   // x (T, D)
            for (l, w) in weights.layers.enumerated() {
                // Attention block.
                try be.normedMatmul(b.x, norm: w.attentionNorm, eps: c.normEps, weight: w.wqkv, out: b.qkv,
                                    rows: T, inDim: D, outDim: (H + 2 * G) * Dh, gated: false)          // (T, H+2G, Dh)
                try be.ropeAppendKV(qkv: b.qkv, q: b.q, kPool: kPools[l], vPool: vPools[l], positions: b.positions,
                                    slots: b.slots, rows: T, heads: H, kvHeads: G, headDim: Dh, theta: c.ropeTheta)
                try be.attention(q: b.q, kPool: kPools[l], vPool: vPools[l], batch: attentionBatch, out: b.attn,
                                 heads: H, kvHeads: G, headDim: Dh, slidingWindow: c.slidingWindow)   // (T, H·Dh)
                try addIntoResidual { try be.matmulAdd(b.attn, weight: w.wo, into: $0, rows: T, inDim: H * Dh, outDim: D) }  // x += attn·woᵀ

                // Feed-forward block.
                switch w.ffn {
                case let .dense(w13, w2):
                    try be.normedMatmul(b.x, norm: w.ffnNorm, eps: c.normEps, weight: w13, out: b.gate,
                                        rows: T, inDim: D, outDim: F, gated: true)                    // (T, F)
                    try addIntoResidual { try be.matmulAdd(b.gate, weight: w2, into: $0, rows: T, inDim: F, outDim: D) }  // x += ·w2ᵀ
                case let .moe(gate, w1, w2, w3):
                    guard let moe = c.moe else { throw BackendError.unsupported("MoE weights without MoE config") }
                    // x += Σ_k softmax(top-k router logits)_k · expert_k(rmsNorm(x)): top-k first, then
                    // softmax over the k chosen (Mixtral's order), all inside the op.
                    try addIntoResidual {
                        try be.normedMoE(b.x, norm: w.ffnNorm, eps: c.normEps, router: gate, w1: w1, w2: w2, w3: w3,
                                         into: $0, rows: T, dim: D, hidden: F, experts: moe.numExperts,
                                         topK: moe.numExpertsPerTok)                                   // (T, D)
                    }
                }
            }
            try be.gatherRows(b.x, rows: b.logitRows, out: b.gathered, count: R, dim: D)         // (R, D)
            let logits = shard.collective ? b.logitShard : b.logits
            try be.normedMatmul(b.gathered, norm: weights.finalNorm, eps: c.normEps, weight: weights.output, out: logits,
                                rows: R, inDim: D, outDim: Vr, gated: false)                           // (R, V/N)
            if shard.collective {
                try be.allGatherColumns(b.logitShard, into: b.logits, rows: R, columns: Vr)           // (R, V)
            }
            if let sampling {
                try be.sample(logits: b.logits, parameters: b.samplingParameters, penaltyOffsets: b.penaltyOffsets,
                              penalties: b.penalties, out: b.sampled, rows: R, vocabularySize: c.vocabSize,
                              logprobs: sampling.logprobs)                                               // (R, 2 + 2N)
            }
        }
        return R
    }

    /// Host-side index arrays of a packed batch (see `AttentionBatch` for the layout).
    private func packIndices(_ batch: PackedBatch) throws -> (ids: [Int32], positions: [Int32], slots: [Int32],
                                                               queryStart: [Int32], contextLens: [Int32],
                                                               blockTables: [Int32], logitRows: [Int32]) {
        let bs = kvBlocks.blockSize, maxBlocks = buffers.maxBlocksPerSequence
        var ids: [Int32] = [], positions: [Int32] = [], slots: [Int32] = [], rows: [Int32] = []
        var queryStart: [Int32] = [0], contextLens: [Int32] = []
        var tables = [Int32](repeating: 0, count: batch.sequences.count * maxBlocks)
        for (s, seq) in batch.sequences.enumerated() {
            let end = seq.startPosition + seq.tokens.count
            guard end <= maxSequenceLength else { throw ModelError.sequenceTooLong(positions: end, maxPositions: maxSequenceLength) }
            let needed = (end + bs - 1) / bs
            guard seq.blockTable.count >= needed else {
                throw ModelError.blockTableTooShort(sequence: s, needed: needed, has: seq.blockTable.count)
            }
            for (i, block) in seq.blockTable.prefix(maxBlocks).enumerated() { tables[s * maxBlocks + i] = Int32(block) }
            for (i, token) in seq.tokens.enumerated() {
                guard token >= 0, token < config.vocabSize else {
                    throw ModelError.tokenOutOfRange(token: token, vocabularySize: config.vocabSize)
                }
                let p = seq.startPosition + i
                ids.append(Int32(token))
                positions.append(Int32(p))
                slots.append(Int32(seq.blockTable[p / bs] * bs + p % bs))
                if batch.allLogits || i == seq.tokens.count - 1 { rows.append(Int32(ids.count - 1)) }
            }
            queryStart.append(Int32(ids.count))
            contextLens.append(Int32(end))
        }
        return (ids, positions, slots, queryStart, contextLens, tables, rows)
    }
}
