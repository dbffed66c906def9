import Checkpoints
import Tensors

/// One rank's share of a model split over N ranks by tensor parallelism (Megatron style), so that
/// every rank reads 1/N of each layer's weights at the same time:
/// - attention: wq, wk, wv by heads (rank r has query heads r·H/N..<(r+1)·H/N and the KV heads
///   they read; with fewer KV heads than ranks each KV head is replicated on N/G ranks), wo by
///   its input columns;
/// - dense FFN and every MoE expert: w1 and w3 by rows, w2 by columns (all ranks work on every
///   token); the router, the norms and the embeddings are replicated;
/// - output by vocabulary rows; the logits of the sampled rows are gathered before sampling.
/// Each rank's attention and FFN outputs are partial sums: one all-reduce after each.
///
/// Legend as `ComputeBackend`; N ranks, r this rank.
public struct TensorShard: Sendable, Equatable {
    public let rank: Int
    public let ranks: Int
    public let heads: Int          // H / N
    public let kvHeads: Int        // G / N, or 1 when G < N (replicated)
    public let firstKVHead: Int    // of the model's G
    public let hidden: Int         // F / N (per expert for MoE)
    public let vocabulary: Int     // V / N rows of `output`
    /// Whether the forward pass goes through the collectives: whenever the model is split, and on
    /// one rank when asked (to check a group of one, e.g. NCCL on one GPU, against no group).
    public let collective: Bool

    /// The whole model on one rank.
    public static func whole(_ c: ModelConfig) -> TensorShard {
        TensorShard(rank: 0, ranks: 1, heads: c.nHeads, kvHeads: c.nKVHeads, firstKVHead: 0, hidden: c.hiddenDim, vocabulary: c.vocabSize,
                    collective: false)
    }

    /// The N shards of `c`, or an error naming the dimension that does not divide.
    /// `collectiveWhenAlone`: a plan of one rank still calls the collectives.
    public static func plan(_ c: ModelConfig, ranks n: Int, collectiveWhenAlone: Bool = false) throws -> [TensorShard] {
        guard n >= 1 else { throw TensorParallelError.badRankCount(n) }
        func divides(_ what: String, _ value: Int) throws {
            guard value % n == 0 else { throw TensorParallelError.indivisible(what: what, value: value, ranks: n) }
        }
        try divides("query heads", c.nHeads)
        try divides("FFN hidden size", c.hiddenDim)
        try divides("vocabulary", c.vocabSize)
        guard c.nKVHeads % n == 0 || n % c.nKVHeads == 0 else {
            throw TensorParallelError.indivisible(what: "KV heads (nor a divisor of the ranks)", value: c.nKVHeads, ranks: n)
        }
        let kvHeads = max(1, c.nKVHeads / n)
        return (0..<n).map { r in
            TensorShard(rank: r, ranks: n, heads: c.nHeads / n, kvHeads: kvHeads,
                        // G ≥ N: a block of G/N heads; G < N: the head that rank's queries read.
                        firstKVHead: c.nKVHeads >= n ? r * kvHeads : r * c.nKVHeads / n,
                        hidden: c.hiddenDim / n, vocabulary: c.vocabSize / n, collective: n > 1 || collectiveWhenAlone)
        }
    }

    /// Rank r's part of `tensor`, the weight stored under `key` (see the type's comment).
    public func slice(_ tensor: HostTensor, _ key: WeightKey, headDim dh: Int) throws -> HostTensor {
        guard ranks > 1 else { return tensor }
        switch key {
        case .wq: return try tensor.rows((rank * heads * dh)..<((rank + 1) * heads * dh))
        case .wk, .wv: return try tensor.rows((firstKVHead * dh)..<((firstKVHead + kvHeads) * dh))
        case .wo: return try tensor.columns((rank * heads * dh)..<((rank + 1) * heads * dh))
        case .w1, .w3, .expertW1, .expertW3: return try tensor.rows((rank * hidden)..<((rank + 1) * hidden))
        case .w2, .expertW2: return try tensor.columns((rank * hidden)..<((rank + 1) * hidden))
        case .output: return try tensor.rows((rank * vocabulary)..<((rank + 1) * vocabulary))
        case .tokEmbeddings, .finalNorm, .attentionNorm, .ffnNorm, .moeGate: return tensor
        }
    }
}

public enum TensorParallelError: Error, CustomStringConvertible, Equatable {
    case badRankCount(Int)
    case indivisible(what: String, value: Int, ranks: Int)

    public var description: String {
        switch self {
        case .badRankCount(let n): return "--tensor-parallel must be at least 1, got \(n)"
        case let .indivisible(what, value, ranks):
            return "cannot split the model over \(ranks) ranks: its \(what) (\(value)) is not divisible by \(ranks)"
        }
    }
}

/// The weights of one rank: `base`'s tensors, sliced by `shard`. Slicing follows any quantization
/// in `base`, so a rank's e4m3 weights and row scales are exactly those of the whole model.
public struct ShardedWeights: WeightSource {
    public let base: any WeightSource
    public let shard: TensorShard
    public var config: ModelConfig { base.config }

    public init(base: any WeightSource, shard: TensorShard) {
        self.base = base
        self.shard = shard
    }

    public func tensor(_ key: WeightKey) throws -> HostTensor {
        try shard.slice(try base.tensor(key), key, headDim: base.config.headDim)
    }
}
