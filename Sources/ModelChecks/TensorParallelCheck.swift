import BackendConformance
import Checkpoints
import Model
import Tensors

/// A fixture model split over the ranks of a collective group, against the same model whole on
/// one backend (TP N == TP 1) and the numpy reference, once for every backend: `swift test` runs
/// it with CPU ranks (`CPUParallelGroup`), `cuda-check --tp N` with N GPUs over NCCL.
///
/// Checks, per fixture: each prompt's logits, split against whole (`tolerance`) and against the
/// reference (`referenceTolerance`); each prompt's cached greedy continuation through the split
/// model equals the reference's.
public struct TensorParallelCheck<Backend: ComputeBackend> {
    public let ranks: Int
    public let tolerance: Double
    public let referenceTolerance: Double
    public let group: any CollectiveGroup
    /// The backend of rank r, joined to `group`.
    public let makeRankBackend: (Int) throws -> Backend
    /// A backend outside the group, for the whole model.
    public let makeWholeBackend: () throws -> Backend

    public init(ranks: Int, tolerance: Double, referenceTolerance: Double, group: any CollectiveGroup,
                makeRankBackend: @escaping (Int) throws -> Backend, makeWholeBackend: @escaping () throws -> Backend) {
        self.ranks = ranks
        self.tolerance = tolerance
        self.referenceTolerance = referenceTolerance
        self.group = group
        self.makeRankBackend = makeRankBackend
        self.makeWholeBackend = makeWholeBackend
    }

    static func transformer(_ source: any WeightSource, backend: Backend, shard: TensorShard?) throws -> Transformer<Backend> {
        let weights = try TransformerWeights(source: shard.map { ShardedWeights(base: source, shard: $0) } ?? source, backend: backend)
        return try Transformer(backend: backend, weights: weights, config: source.config, maxBatchTokens: 96,
                               maxBatchSequences: 8, maxSequenceLength: 64, kvBlockCount: 128, kvBlockSize: 4, shard: shard)
    }

    /// `source` split over the group's ranks (a group of one still goes through its collectives).
    public func splitModel(_ source: any WeightSource) throws -> TensorParallelModel<Backend> {
        let shards = try TensorShard.plan(source.config, ranks: ranks, collectiveWhenAlone: true)
        let models = try shards.map { try Self.transformer(source, backend: makeRankBackend($0.rank), shard: $0) }
        return try TensorParallelModel(ranks: models, group: group)
    }

    public func check(_ fixture: TinyModelFixture) -> [ForwardCheckResult] {
        var results: [ForwardCheckResult] = []
        func record(_ check: String, _ ok: Bool, _ detail: String) {
            results.append(ForwardCheckResult(name: "\(fixture.name) TP \(ranks) \(check)", passed: ok, detail: detail))
        }
        do {
            let checkpoint = try fixture.checkpoint()
            let split = try splitModel(checkpoint)
            let whole = try Self.transformer(checkpoint, backend: makeWholeBackend(), shard: nil)
            func logits(_ model: any LanguageModel, _ prompt: [Int]) throws -> [Float] {
                var table: [Int] = []
                guard model.kvBlocks.ensureCapacity(&table, tokens: prompt.count) else { throw CheckFailure("no KV blocks") }
                defer { model.kvBlocks.release(table) }
                return try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)],
                                                     allLogits: true)).values
            }
            for (prompt, file) in zip(fixture.reference.prompts, fixture.reference.logits) {
                let a = try logits(split, prompt), b = try logits(whole, prompt)
                let err = normalisedError(a, b)
                record("\(file) vs TP 1", err <= tolerance, "err \(format(err)) (tol \(format(tolerance)))")
                let expected = try fixture.referenceLogits(file)
                let rerr = normalisedError(a, expected.values)
                record("\(file) vs numpy f64", rerr <= referenceTolerance, "err \(format(rerr)) (tol \(format(referenceTolerance)))")
            }
            for (i, (prompt, greedy)) in zip(fixture.reference.prompts, fixture.reference.greedy).enumerated() {
                var table: [Int] = []
                guard split.kvBlocks.ensureCapacity(&table, tokens: prompt.count + greedy.count) else { throw CheckFailure("no KV blocks") }
                defer { split.kvBlocks.release(table) }
                var step = try split.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)]))
                var out: [Int] = []
                while out.count < greedy.count {
                    out.append(argmax(step.row(0)))
                    step = try split.forward(PackedBatch(sequences: [.init(tokens: [out.last!], startPosition: prompt.count + out.count - 1,
                                                                           blockTable: table)]))
                }
                record("prompt \(i) cached greedy decode", out == greedy, out == greedy ? "== reference" : "\(out) vs reference \(greedy)")
            }
        } catch {
            record("run", false, "\(error)")
        }
        return results
    }
}
