import Checkpoints
import Dispatch
import Tensors

/// One model split over N ranks (`TensorShard`), each a `Transformer` on its own backend, stepped
/// together: one engine, one KV block allocator (rank 0's: every rank's pools have the same
/// blocks, each holding that rank's KV heads), and the sampled tokens come from rank 0.
public final class TensorParallelModel<Backend: ComputeBackend>: LanguageModel, @unchecked Sendable {
    // @unchecked: as `Transformer`, stepped from one thread at a time; the rank threads only run
    // inside a step.
    public let ranks: [Transformer<Backend>]
    public let group: any CollectiveGroup
    private let threads: RankThreads

    public var config: ModelConfig { ranks[0].config }
    public var kvBlocks: KVBlockAllocator { ranks[0].kvBlocks }
    public var maxBatchTokens: Int { ranks[0].maxBatchTokens }
    public var maxBatchSequences: Int { ranks[0].maxBatchSequences }
    public var maxSequenceLength: Int { ranks[0].maxSequenceLength }
    /// e.g. "2 × NVIDIA H200", "4 × cpu (1 thread)".
    public var deviceName: String { "\(ranks.count) × \(ranks[0].backend.name)" }
    public var gpuCount: Int { ranks.reduce(0) { $0 + $1.backend.gpuCount } }
    public var kvElementBytes: Int { ranks[0].kvElementBytes }

    /// `ranks[r]` must be built with shard r of one `TensorShard.plan` and a backend in `group`.
    public init(ranks: [Transformer<Backend>], group: any CollectiveGroup) throws {
        guard !ranks.isEmpty, ranks.count == group.size,
              ranks.enumerated().allSatisfy({ $0.element.shard.rank == $0.offset && $0.element.shard.ranks == ranks.count }) else {
            throw BackendError.shapeMismatch("tensor-parallel ranks \(ranks.map { "\($0.shard.rank)/\($0.shard.ranks)" }) for a group of \(group.size)")
        }
        self.ranks = ranks
        self.group = group
        threads = RankThreads(ranks: ranks.count)
    }

    public func forward(_ batch: PackedBatch) throws -> Logits {
        let logits = RankZeroResult<Logits>()
        try together { r in
            if r == 0 { logits.value = try self.ranks[0].forward(batch) } else { try self.ranks[r].follow(batch) }
        }
        return logits.value!
    }

    public func step(_ batch: PackedBatch, sampling: [RowSampling], logprobs: Int) throws -> [SampledToken] {
        let tokens = RankZeroResult<[SampledToken]>()
        try together { r in
            if r == 0 { tokens.value = try self.ranks[0].step(batch, sampling: sampling, logprobs: logprobs) } else { try self.ranks[r].follow(batch) }
        }
        return tokens.value ?? []
    }

    /// Seconds one all-reduce of `elements` f32 takes on this group, as a step issues them:
    /// `perRound` back to back on every rank with one device synchronization at the end, the
    /// median round over `perRound` (after a warm-up round). What a step's 2 per layer cost on
    /// their own, for `bench --tp`.
    public func secondsPerAllReduce(elements: Int, perRound: Int = 32, rounds: Int = 5) throws -> Double {
        let buffers = try ranks.map { try $0.backend.makeActivation([max(1, elements)]) }
        let ranks = self.ranks, count = max(1, perRound)
        let round: @Sendable (Int) throws -> Void = { r in
            for _ in 0..<count { try ranks[r].backend.allReduceSum(buffers[r], into: buffers[r], count: elements) }
            try ranks[r].backend.synchronize()
        }
        try together(round)
        var times: [Double] = []
        for _ in 0..<max(1, rounds) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try together(round)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(count))
        }
        return times.sorted()[times.count / 2]
    }

    /// Runs every rank's part at once. When one fails, the others are released from their
    /// collectives (`group.abort`), and the group is reset once all are back, so a failed step
    /// fails its requests and the next step runs normally.
    private func together(_ body: @escaping @Sendable (Int) throws -> Void) throws {
        let group = self.group
        do {
            try threads.run(body, failed: { group.abort($0) })
        } catch {
            group.reset()
            throw error
        }
    }
}

/// Rank 0's answer, written on the calling thread inside `RankThreads.run` and read after it.
private final class RankZeroResult<Value>: @unchecked Sendable {
    // @unchecked: written by rank 0 during the step and read once the step is over.
    var value: Value?
}

/// A model whose steps run collectives (tensor parallelism, or a group of one), as `bench`
/// reports it without knowing the backend type.
public protocol RankedModel {
    /// Ranks whose collectives a step runs; 0 for a model on one device without a group.
    var collectiveRanks: Int { get }
    func secondsPerAllReduce(elements: Int, perRound: Int, rounds: Int) throws -> Double
}

extension TensorParallelModel: RankedModel {
    public var collectiveRanks: Int { ranks.count }
}

extension Transformer: RankedModel {
    public var collectiveRanks: Int { shard.collective ? 1 : 0 }

    /// As `TensorParallelModel.secondsPerAllReduce`, on this rank alone (a group of one).
    public func secondsPerAllReduce(elements: Int, perRound: Int = 32, rounds: Int = 5) throws -> Double {
        let buffer = try backend.makeActivation([max(1, elements)])
        let count = max(1, perRound)
        func round() throws {
            for _ in 0..<count { try backend.allReduceSum(buffer, into: buffer, count: elements) }
            try backend.synchronize()
        }
        try round()
        var times: [Double] = []
        for _ in 0..<max(1, rounds) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try round()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(count))
        }
        return times.sorted()[times.count / 2]
    }
}
