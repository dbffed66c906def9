import CPUBackend
import Checkpoints
import DemoEvaluation
import Foundation
import Model
import Runtime
import Testing
import Tokenizers
import TestSupport

/// `QuantizationComparison` (behind `mixtral-chat compare-quantization`): zero against itself,
/// a small but non-zero divergence for fp8 against bf16 on the demo model, and its KL formula
/// against a hand computation.
@Suite struct QuantizationComparisonTests {
    static func model(_ source: any WeightSource) throws -> Transformer<CPUBackend> {
        try cpuTransformer(source, threads: 2, maxBatchTokens: 256, maxBatchSequences: 1, maxSequenceLength: 512,
                           kvBlockCount: 64, kvBlockSize: 16)
    }

    static func prompts() throws -> [[Int]] {
        let items = try HeldOutItem.load(DemoModelTests.modelDir.appendingPathComponent("eval/heldout.jsonl"))
        return items.prefix(3).map(\.promptTokens)
    }

    @Test func aModelAgreesWithItself() throws {
        let ckpt = try MistralCheckpoint.load(directory: DemoModelTests.modelDir)
        let a = try Self.model(ckpt), b = try Self.model(ckpt)
        let r = try QuantizationComparison.run(reference: a, test: b, prompts: try Self.prompts(), tokens: 16, stopToken: nil)
        #expect(r.prompts == 3 && r.positions == 48)
        #expect(r.meanKL == 0 && r.top1Agreement == 1 && r.identicalContinuations == 1 && r.meanIdenticalPrefix == 16)
    }

    /// Up to the answer's end (past EOS the demo model was never trained, and the two drift).
    @Test func fp8DivergesALittleFromBF16() throws {
        let ckpt = try MistralCheckpoint.load(directory: DemoModelTests.modelDir)
        let eos = try SentencePieceTokenizer(contentsOf: try #require(ckpt.tokenizerURL)).eosID
        let a = try Self.model(ckpt), b = try Self.model(FP8QuantizingSource(ckpt))
        let r = try QuantizationComparison.run(reference: a, test: b, prompts: try Self.prompts(), tokens: 16, stopToken: eos)
        #expect(r.positions > 0)
        #expect(r.meanKL > 0 && r.meanKL < 0.01, "mean KL \(r.meanKL)")
        #expect(r.top1Agreement > 0.8, "top-1 agreement \(r.top1Agreement)")
    }

    @Test func klMatchesAHandComputation() {
        // p = softmax(0, ln 2, ln 3) = (1, 2, 3)/6; q = uniform.
        let p: [Float] = [0, log(2), log(3)], q: [Float] = [5, 5, 5]
        let expected = (1.0 * log(1.0 / 2) + 2 * log(2.0 / 2) + 3 * log(3.0 / 2)) / 6
        #expect(abs(QuantizationComparison.klDivergence(p[...], q[...]) - expected) < 1e-6)
    }
}
