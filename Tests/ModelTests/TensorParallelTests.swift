import CPUBackend
import Checkpoints
import Model
import ModelChecks
import Tensors
import Testing

/// Tensor parallelism on the CPU: the fixture models split over 2 and 4 ranks (threads of one
/// process, `CPUParallelGroup`) give the logits of the whole model within f32 tolerance, and keep
/// the forward invariants (cached == recompute, batched == sequential). The fixtures cover MoE,
/// dense with a sliding window, and MQA (one KV head, replicated on every rank).
@Suite struct TensorParallelTests {
    /// 1 rank goes through the collectives of a group of one (the path NCCL takes on one GPU).
    static let cases: [(String, Int)] = TinyModels.names.flatMap { name in [1, 2, 4].map { (name, $0) } }

    /// `source` split over `ranks` CPU ranks of one thread each.
    static func parallel(_ source: any WeightSource, ranks: Int, maxSequenceLength: Int = 64) throws -> TensorParallelModel<CPUBackend> {
        let group = CPUParallelGroup(size: ranks)
        let models = try TensorShard.plan(source.config, ranks: ranks, collectiveWhenAlone: true).map { shard in
            let backend = CPUBackend(threads: 1, parallel: (group, shard.rank))
            let weights = try TransformerWeights(source: ShardedWeights(base: source, shard: shard), backend: backend)
            return try Transformer(backend: backend, weights: weights, config: source.config, maxBatchTokens: 96, maxBatchSequences: 8,
                                   maxSequenceLength: maxSequenceLength, kvBlockCount: 128, kvBlockSize: 4, shard: shard)
        }
        return try TensorParallelModel(ranks: models, group: group)
    }

    func promptLogits(_ model: any LanguageModel, _ prompt: [Int]) throws -> [Float] {
        var table: [Int] = []
        #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
        defer { model.kvBlocks.release(table) }
        return try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true)).values
    }

    @Test(arguments: cases)
    func splitModelGivesTheWholeModelsLogits(_ name: String, _ ranks: Int) throws {
        let ckpt = try TinyModels.checkpoint(name)
        let whole = try TinyModels.model(ckpt)
        let split = try Self.parallel(ckpt, ranks: ranks)
        let ref = try TinyModels.reference(name)
        for (prompt, file) in zip(ref.prompts, ref.logits) {
            let a = try promptLogits(split, prompt), b = try promptLogits(whole, prompt)
            #expect(a.count == b.count)
            let err = relativeError(a, b)
            #expect(err < 1e-5, "\(name) TP \(ranks) vs TP 1: relative error \(err)")
            let reference = try TinyModels.referenceLogits(name, file)
            #expect(relativeError(a, reference.values) < 1e-4, "\(name) TP \(ranks) vs numpy")
        }
    }

    /// The check `cuda-check --tp N` runs on N GPUs (ModelChecks.TensorParallelCheck), here on 2
    /// CPU ranks: so the harness itself is tested where CI can run it.
    @Test(arguments: TinyModels.names)
    func sharedTensorParallelCheckPassesOnCPURanks(_ name: String) throws {
        let group = CPUParallelGroup(size: 2)
        let check = TensorParallelCheck<CPUBackend>(
            ranks: 2, tolerance: 1e-5, referenceTolerance: 1e-4, group: group,
            makeRankBackend: { CPUBackend(threads: 1, parallel: (group, $0)) }, makeWholeBackend: { CPUBackend(threads: 1) })
        let results = check.check(try TinyModelFixture(name, in: TinyModels.directory))
        #expect(results.count == 9)
        for r in results { #expect(r.passed, "\(r)") }
    }

    @Test(arguments: cases)
    func splitModelCachedDecodeEqualsRecomputeAndFollowsTheReference(_ name: String, _ ranks: Int) throws {
        let ref = try TinyModels.reference(name)
        let split = try Self.parallel(try TinyModels.checkpoint(name), ranks: ranks)
        let sequence = ref.prompts[2] + ref.greedy[2]      // longer than the dense model's sliding window
        var table: [Int] = []
        #expect(split.kvBlocks.ensureCapacity(&table, tokens: sequence.count))
        let full = try split.forward(PackedBatch(sequences: [.init(tokens: sequence, startPosition: 0, blockTable: table)], allLogits: true))
        var incremental = try split.forward(PackedBatch(sequences: [.init(tokens: Array(sequence[0..<3]), startPosition: 0, blockTable: table)], allLogits: true)).values
        for p in 3..<sequence.count {
            incremental += try split.forward(PackedBatch(sequences: [.init(tokens: [sequence[p]], startPosition: p, blockTable: table)])).values
        }
        split.kvBlocks.release(table)
        let err = relativeError(incremental, full.values)
        #expect(err < 1e-5, "\(name) TP \(ranks): cached vs recompute relative error \(err)")
        // Greedy continuation from the cached path equals the numpy reference's.
        for (prompt, greedy) in zip(ref.prompts, ref.greedy) {
            var t: [Int] = []
            #expect(split.kvBlocks.ensureCapacity(&t, tokens: prompt.count + greedy.count))
            var logits = try split.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: t)]))
            var out: [Int] = []
            for _ in greedy.indices {
                out.append(argmax(logits.row(0)))
                logits = try split.forward(PackedBatch(sequences: [.init(tokens: [out.last!], startPosition: prompt.count + out.count - 1, blockTable: t)]))
            }
            split.kvBlocks.release(t)
            #expect(out == greedy, "\(name) TP \(ranks): greedy continuation")
        }
    }

    @Test(arguments: cases)
    func splitModelBatchedEqualsSequential(_ name: String, _ ranks: Int) throws {
        let ref = try TinyModels.reference(name)
        let split = try Self.parallel(try TinyModels.checkpoint(name), ranks: ranks)
        let sequential = try ref.prompts.flatMap { try promptLogits(split, $0) }
        var tables: [[Int]] = []
        for prompt in ref.prompts {
            var t: [Int] = []
            #expect(split.kvBlocks.ensureCapacity(&t, tokens: prompt.count))
            tables.append(t)
        }
        let batch = PackedBatch(sequences: zip(ref.prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) }, allLogits: true)
        let batched = try split.forward(batch).values
        tables.forEach(split.kvBlocks.release)
        let err = relativeError(batched, sequential)
        #expect(err < 1e-6, "\(name) TP \(ranks): batched vs sequential relative error \(err)")
    }

    @Test(arguments: cases)
    func splitModelSamplesTheWholeModelsTokens(_ name: String, _ ranks: Int) throws {
        let ckpt = try TinyModels.checkpoint(name)
        let whole = try TinyModels.model(ckpt)
        let split = try Self.parallel(ckpt, ranks: ranks)
        let prompts = try TinyModels.reference(name).prompts
        func steps(_ model: any LanguageModel) throws -> [[SampledToken]] {
            var tables: [[Int]] = []
            for p in prompts {
                var t: [Int] = []
                #expect(model.kvBlocks.ensureCapacity(&t, tokens: p.count))
                tables.append(t)
            }
            defer { tables.forEach(model.kvBlocks.release) }
            let batch = PackedBatch(sequences: zip(prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) })
            let greedy = prompts.map { _ in RowSampling(temperature: 0) }
            let seeded = prompts.indices.map { i in RowSampling(temperature: 0.9, topK: 20, topP: 0.95, uniform: Float(i) * 0.3 + 0.05) }
            return [try model.step(batch, sampling: greedy, logprobs: 2), try model.step(batch, sampling: seeded, logprobs: -1)]
        }
        let a = try steps(split), b = try steps(whole)
        #expect(a.map { $0.map(\.id) } == b.map { $0.map(\.id) }, "\(name) TP \(ranks): sampled tokens")
        for (x, y) in zip(a[0], b[0]) { #expect(abs(x.logprob - y.logprob) < 1e-4) }
    }

    @Test func indivisibleModelsAreRefusedWithTheDimension() throws {
        let c = try TinyModels.checkpoint("moe").config      // 4 heads, 2 KV heads, hidden 48, vocabulary 300
        #expect(throws: TensorParallelError.indivisible(what: "query heads", value: 4, ranks: 3)) { try TensorShard.plan(c, ranks: 3) }
        #expect(throws: TensorParallelError.badRankCount(0)) { try TensorShard.plan(c, ranks: 0) }
        let mqa = try TensorShard.plan(try TinyModels.checkpoint("mqa").config, ranks: 4)
        #expect(mqa.map(\.kvHeads) == [1, 1, 1, 1] && mqa.map(\.firstKVHead) == [0, 0, 0, 0])
        let gqa = try TensorShard.plan(c, ranks: 4)
        #expect(gqa.map(\.firstKVHead) == [0, 0, 1, 1] && gqa.map(\.heads) == [1, 1, 1, 1] && gqa.map(\.hidden) == [12, 12, 12, 12])
    }
}
