import CPUBackend
import Chat
import Checkpoints
import DemoEvaluation
import Foundation
import Generation
import Model
import Testing
import Tokenizers
import TestSupport

/// End to end on the trained demo model (models/chloe-tiny): tokenizer, v3 chat encoding, MoE
/// forward pass, KV cache, scheduler and sampler together must reproduce what the model was
/// trained to answer, and what PyTorch computed for it.
@Suite(.serialized) struct DemoModelTests {
    static let modelDir = TestPaths.chloeTiny

    struct Setup {
        let tokenizer: SentencePieceTokenizer
        let encoder: InstructEncoder
        let model: Transformer<CPUBackend>
        let engine: Engine
    }

    /// - Parameter slidingWindow: run the demo weights with this attention window instead of full
    ///   attention (a sliding-window model for scheduler tests; its answers are not the trained ones).
    static func setup(maxSequences: Int = 16, kvBlocks: Int = 640, slidingWindow: Int? = nil,
                      prefixCaching: Bool = true) throws -> Setup {
        let ckpt = try MistralCheckpoint.load(directory: modelDir)
        let tokenizerURL = try #require(ckpt.tokenizerURL)
        let tokenizer = try SentencePieceTokenizer(contentsOf: tokenizerURL)
        let encoder = try InstructEncoder(tokenizer: tokenizer, version: InstructVersion.declared(byFile: tokenizerURL))
        #expect(encoder.version == .v3, "the demo tokenizer is v3 by its file name, as for mistral-common")
        var config = ckpt.config
        if let slidingWindow { config.slidingWindow = slidingWindow }
        let model = try cpuTransformer(ckpt, config: config, maxBatchTokens: 256, maxBatchSequences: maxSequences,
                                       maxSequenceLength: 512, kvBlockCount: kvBlocks, kvBlockSize: 16)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID], prefixCaching: prefixCaching,
                            makeDecoder: { StreamingDetokenizer(tokenizer: tokenizer) })
        return Setup(tokenizer: tokenizer, encoder: encoder, model: model, engine: engine)
    }

    @Test func heldOutAccuracyMeetsTargets() async throws {
        let s = try Self.setup()
        let items = try HeldOutItem.load(Self.modelDir.appendingPathComponent("eval/heldout.jsonl"))
        #expect(items.count >= 100)
        let results = try await DemoEvaluator(engine: s.engine, encoder: s.encoder, tokenizer: s.tokenizer).run(items)
        let scores = DemoEvaluator.scores(results)
        for score in scores {
            print("demo eval \(score.skill): \(score.correct)/\(score.total)")
            if let target = DemoEvaluator.targets[score.skill] {
                #expect(score.accuracy >= target, "\(score.skill): \(score.correct)/\(score.total) is below \(target)")
            }
        }
        #expect(Set(scores.map(\.skill)).isSuperset(of: DemoEvaluator.targets.keys))
    }

    @Test func promptsEncodeExactlyAsMistralCommon() throws {
        let s = try Self.setup()
        let items = try HeldOutItem.load(Self.modelDir.appendingPathComponent("eval/heldout.jsonl"))
        var mismatches: [Int] = []
        for item in items where try s.encoder.encode(item.request) != item.promptTokens { mismatches.append(item.id) }
        #expect(mismatches.isEmpty, "held-out ids whose prompt differs from mistral-common: \(mismatches)")
    }

    struct TorchGreedy: Decodable {
        var id: Int
        var prompt_tokens: [Int]
        var output_tokens: [Int]
        var margins: [Double]
    }

    /// Greedy tokens equal PyTorch's up to the first step where PyTorch's top-2 logits were
    /// within 0.05 of each other (a tie that float rounding may break either way).
    @Test func greedyTokensMatchPyTorch() async throws {
        let s = try Self.setup()
        let lines = try String(contentsOf: Self.modelDir.appendingPathComponent("eval/torch_greedy.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(TorchGreedy.self, from: Data($0.utf8)) }
        #expect(lines.count >= 100)
        var handles: [(TorchGreedy, GenerationHandle)] = []
        for line in lines {
            handles.append((line, try s.engine.submit(promptTokens: line.prompt_tokens, sampling: .init(temperature: 0, maxTokens: 64))))
        }
        var compared = 0
        for (line, handle) in handles {
            let ours = await handle.collect().tokens
            let trusted = line.margins.firstIndex(where: { $0 < 0.05 }) ?? line.output_tokens.count
            let n = min(trusted + 1, line.output_tokens.count)
            #expect(Array(ours.prefix(n)) == Array(line.output_tokens.prefix(n)), "held-out id \(line.id)")
            compared += n
        }
        #expect(compared > 2000)
    }

    struct LogitRecords: Decodable {
        struct Record: Decodable { var id: Int; var prompt_tokens: [Int]; var last_logits: [Float] }
        var records: [Record]
    }

    @Test func lastPromptLogitsMatchPyTorch() throws {
        let s = try Self.setup()
        let data = try Data(contentsOf: Self.modelDir.appendingPathComponent("eval/reference_logits.json"))
        let records = try JSONDecoder().decode(LogitRecords.self, from: data).records
        #expect(!records.isEmpty)
        for r in records {
            var table: [Int] = []
            #expect(s.model.kvBlocks.ensureCapacity(&table, tokens: r.prompt_tokens.count))
            let logits = try s.model.forward(PackedBatch(sequences: [.init(tokens: r.prompt_tokens, startPosition: 0, blockTable: table)]))
            s.model.kvBlocks.release(table)
            var num = 0.0, den = 0.0
            for (a, b) in zip(logits.values, r.last_logits) { num += Double(a - b) * Double(a - b); den += Double(b) * Double(b) }
            let err = (num / den).squareRoot()
            #expect(err < 1e-4, "held-out id \(r.id): relative error \(err)")
        }
    }
}
