import DemoEvaluation
import Foundation
import Runtime
import Testing

/// `--tensor-parallel 2` on the CPU end to end, as a user runs it (`ModelRuntime.load`): the demo
/// model split over two ranks answers the held-out prompts with the same tokens as on one.
@Suite struct DemoTensorParallelTests {
    @Test func twoRanksAnswerAsOne() async throws {
        func answers(_ ranks: Int) async throws -> [[Int]] {
            var options = RuntimeOptions(checkpointDirectory: DemoModelTests.modelDir.path, maxSequenceLength: 512,
                                         maxBatchSize: 8, maxBatchTokens: 256, device: "cpu", threads: 2)
            options.tensorParallel = ranks
            let runtime = try ModelRuntime.load(options, quiet: true)
            #expect(runtime.model.deviceName.hasPrefix(ranks > 1 ? "\(ranks) × cpu" : "cpu"))
            let items = Array(try HeldOutItem.load(DemoModelTests.modelDir.appendingPathComponent("eval/heldout.jsonl")).prefix(24))
            let results = try await DemoEvaluator(engine: runtime.engine, encoder: runtime.encoder, tokenizer: runtime.tokenizer).run(items)
            return results.map(\.outputTokens)
        }
        let one = try await answers(1), two = try await answers(2)
        #expect(one.count == 24 && one.allSatisfy { !$0.isEmpty })
        #expect(two == one)
    }

    @Test func aModelThatDoesNotDivideIsRefusedWithTheDimension() throws {
        var options = RuntimeOptions(checkpointDirectory: DemoModelTests.modelDir.path, device: "cpu", threads: 1)
        options.tensorParallel = 3     // the demo model has 8 query heads
        #expect(throws: (any Error).self) { try ModelRuntime.load(options, quiet: true) }
        do { _ = try ModelRuntime.load(options, quiet: true) } catch {
            #expect("\(error)".contains("query heads (8) is not divisible by 3"), "\(error)")
        }
    }
}
