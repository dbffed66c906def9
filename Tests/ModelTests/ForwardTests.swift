import Checkpoints
import Model
import Testing

/// The forward pass against the numpy float64 reference, and its invariances: batched ==
/// sequential, cached decode == full recompute, chunked prefill == whole prefill.
@Suite struct ForwardTests {
    @Test(arguments: TinyModels.names)
    func promptLogitsMatchReference(_ name: String) throws {
        let ref = try TinyModels.reference(name)
        let ckpt = try TinyModels.checkpoint(name)
        let model = try TinyModels.model(ckpt)
        for (prompt, file) in zip(ref.prompts, ref.logits) {
            var table: [Int] = []
            #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
            let logits = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
            model.kvBlocks.release(table)
            let expected = try TinyModels.referenceLogits(name, file)
            #expect(expected.shape == [prompt.count, ckpt.config.vocabSize])
            let err = relativeError(logits.values, expected.values)
            #expect(err < 1e-4, "\(name) \(file): relative error \(err)")
        }
    }

    @Test(arguments: TinyModels.names)
    func cachedGreedyDecodeMatchesReference(_ name: String) throws {
        let ref = try TinyModels.reference(name)
        let model = try TinyModels.model(try TinyModels.checkpoint(name))
        for (prompt, greedy) in zip(ref.prompts, ref.greedy) {
            let out = try TinyModels.cachedGreedy(model, prompt: prompt, count: greedy.count)
            #expect(out == greedy, "\(name): greedy continuation")
        }
    }

    @Test(arguments: TinyModels.names)
    func cachedDecodeEqualsFullRecompute(_ name: String) throws {
        let ref = try TinyModels.reference(name)
        let model = try TinyModels.model(try TinyModels.checkpoint(name))
        let sequence = ref.prompts[2] + ref.greedy[2]      // longer than the sliding window
        var table: [Int] = []
        #expect(model.kvBlocks.ensureCapacity(&table, tokens: sequence.count))
        let full = try model.forward(PackedBatch(sequences: [.init(tokens: sequence, startPosition: 0, blockTable: table)], allLogits: true))
        // Incremental: prefill 3 tokens, then one token per step, each step reading the cache.
        var incremental: [Float] = try model.forward(PackedBatch(sequences: [.init(tokens: Array(sequence[0..<3]), startPosition: 0, blockTable: table)], allLogits: true)).values
        for p in 3..<sequence.count {
            incremental += try model.forward(PackedBatch(sequences: [.init(tokens: [sequence[p]], startPosition: p, blockTable: table)])).values
        }
        model.kvBlocks.release(table)
        let err = relativeError(incremental, full.values)
        #expect(err < 1e-5, "\(name): cached vs recompute relative error \(err)")
    }

    @Test(arguments: TinyModels.names)
    func batchedEqualsSequential(_ name: String) throws {
        let ref = try TinyModels.reference(name)
        let model = try TinyModels.model(try TinyModels.checkpoint(name))
        var sequential: [[Float]] = []
        for prompt in ref.prompts {
            var table: [Int] = []
            #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
            sequential.append(try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true)).values)
            model.kvBlocks.release(table)
        }
        var tables: [[Int]] = []
        for prompt in ref.prompts {
            var t: [Int] = []
            #expect(model.kvBlocks.ensureCapacity(&t, tokens: prompt.count))
            tables.append(t)
        }
        let batch = PackedBatch(sequences: zip(ref.prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) }, allLogits: true)
        let batched = try model.forward(batch).values
        tables.forEach(model.kvBlocks.release)
        let err = relativeError(batched, sequential.flatMap { $0 })
        #expect(err < 1e-6, "\(name): batched vs sequential relative error \(err)")
    }

    @Test(arguments: TinyModels.names)
    func chunkedPrefillEqualsWholePrefill(_ name: String) throws {
        let ref = try TinyModels.reference(name)
        let model = try TinyModels.model(try TinyModels.checkpoint(name))
        let prompt = ref.prompts[2]
        var table: [Int] = []
        #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
        let whole = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)])).values
        var last: [Float] = []
        for start in stride(from: 0, to: prompt.count, by: 7) {
            let end = min(start + 7, prompt.count)
            last = try model.forward(PackedBatch(sequences: [.init(tokens: Array(prompt[start..<end]), startPosition: start, blockTable: table)])).values
        }
        model.kvBlocks.release(table)
        #expect(relativeError(last, whole) < 1e-5)
    }

    @Test func rejectsBatchesItCannotRun() throws {
        let model = try TinyModels.model(try TinyModels.checkpoint("dense"), maxTokens: 8)
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: Array(repeating: 1, count: 9), startPosition: 0, blockTable: [0, 1, 2])]))
        }
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: [1, 2, 3, 4, 5], startPosition: 0, blockTable: [0])]))
        }
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: [100_000], startPosition: 0, blockTable: [0])]))
        }
    }
}
