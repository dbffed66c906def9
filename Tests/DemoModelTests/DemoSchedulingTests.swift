import DemoEvaluation
import Foundation
import Generation
import Model
import Testing

/// The scheduler on the real demo model (CPU backend): preemption and recompute must give the
/// same tokens as a pool large enough for everything. Slow in debug; run in release.
@Suite(.serialized) struct DemoSchedulingTests {
    static func prompts() throws -> [[Int]] {
        let items = try HeldOutItem.load(DemoModelTests.modelDir.appendingPathComponent("eval/heldout.jsonl"))
        return items.prefix(12).map(\.promptTokens)
    }

    static func run(kvBlocks: Int, sampling: (Int) -> SamplingParameters) async throws -> ([GenerationResult], EngineStatistics) {
        let s = try DemoModelTests.setup(maxSequences: 12, kvBlocks: kvBlocks)
        let handles = try prompts().enumerated().map { try s.engine.submit(promptTokens: $1, sampling: sampling($0)) }
        var results: [GenerationResult] = []
        for h in handles { results.append(await h.collect()) }
        #expect(s.model.kvBlocks.freeBlocks == kvBlocks)
        return (results, s.engine.statistics())
    }

    @Test(arguments: ["greedy", "seeded"])
    func preemptedOutputsEqualTheOutputsOfALargePool(mode: String) async throws {
        let sampling: (Int) -> SamplingParameters = { i in
            mode == "greedy" ? .init(temperature: 0, maxTokens: 48, ignoreEOS: true)
                : .init(temperature: 0.8, topK: 40, topP: 0.9, seed: UInt64(7 + i), maxTokens: 48, ignoreEOS: true)
        }
        let prompts = try Self.prompts()
        let longest = prompts.map(\.count).max()! + 48
        // 16-token blocks: room for about two of the twelve sequences at full length.
        let small = (2 * longest + 15) / 16
        let (tight, tightStats) = try await Self.run(kvBlocks: small, sampling: sampling)
        let (roomy, roomyStats) = try await Self.run(kvBlocks: 640, sampling: sampling)
        #expect(tightStats.preemptions > 0, "the small pool (\(small) blocks) preempted")
        #expect(roomyStats.preemptions == 0)
        for (i, (a, b)) in zip(tight, roomy).enumerated() {
            #expect(a.tokens == b.tokens, "request \(i)")
            #expect(a.text == b.text && a.finishReason == b.finishReason)
            #expect(a.error == nil)
        }
    }
}
