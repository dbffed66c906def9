import Generation
import Model
import Testing
import TestSupport

/// Prefix caching through the Engine on the paged test double: a hit reads KV another request
/// wrote, so any mistake in hashing, sharing or eviction changes the output.
@Suite struct EnginePrefixCachingTests {
    /// Turns of one conversation (each prompt extends the previous one), a shared "system"
    /// opening with different questions, and repeats.
    static let prompts: [[Int]] = {
        let system = (0..<13).map { ($0 * 11 + 5) % 50 }
        var conversation = system
        var out: [[Int]] = []
        for turn in 0..<4 {
            conversation += [40 + turn, 41, 42 - turn]
            out.append(conversation)
        }
        for q in 0..<3 { out.append(system + [q, q + 1]) }
        out.append(out[0])
        out.append(out[5])
        return out
    }()

    /// Submits the prompts one after another (so later ones can hit what earlier ones cached).
    func outputs(caching: Bool, blocks: Int, sampling: (Int) -> SamplingParameters) async throws
        -> (results: [GenerationResult], statistics: EngineStatistics, computed: Int) {
        let model = PagedEchoModel(blocks: blocks)
        let e = Engine(model: model, stopTokens: [], prefillChunk: 8, prefixCaching: caching, makeDecoder: { AngleDecoder() })
        var results: [GenerationResult] = []
        for (i, p) in Self.prompts.enumerated() { results.append(try await e.submit(promptTokens: p, sampling: sampling(i)).collect()) }
        #expect(model.kvBlocks.freeBlocks == blocks)
        return (results, e.statistics(), model.batches.reduce(0) { $0 + $1.tokenCount })
    }

    @Test(arguments: ["greedy", "seeded"])
    func outputsAreIdenticalWithAndWithoutTheCache(mode: String) async throws {
        let sampling: (Int) -> SamplingParameters = { i in
            mode == "greedy" ? .init(temperature: 0, maxTokens: 10)
                : .init(temperature: 1.0, presencePenalty: 0.5, seed: UInt64(i), maxTokens: 10)
        }
        let cached = try await outputs(caching: true, blocks: 128, sampling: sampling)
        let plain = try await outputs(caching: false, blocks: 128, sampling: sampling)
        #expect(cached.results == plain.results)
        #expect(cached.statistics.prefixCacheHitTokens > 0)
        #expect(plain.statistics.prefixCacheHitTokens == 0 && plain.statistics.kvBlocksCached == 0)
        #expect(cached.statistics.prefixCacheQueryTokens == Self.prompts.reduce(0) { $0 + $1.count })
        #expect(cached.computed == plain.computed - cached.statistics.prefixCacheHitTokens,
                "every hit token is one the forward pass did not compute")
        // A small pool evicts as it goes and must still give the same outputs.
        let evicting = try await outputs(caching: true, blocks: 14, sampling: sampling)
        #expect(evicting.results == plain.results)
    }

    @Test func concurrentRequestsWithSharedPrefixesAndPreemptionMatchSequentialOnes() async throws {
        let sampling = SamplingParameters(temperature: 0.9, seed: 3, maxTokens: 16)
        let model = PagedEchoModel(blocks: 20, stepDelayMicros: 200)
        let e = Engine(model: model, stopTokens: [], prefillChunk: 8, makeDecoder: { AngleDecoder() })
        let handles = try Self.prompts.map { try e.submit(promptTokens: $0, sampling: sampling) }
        var together: [GenerationResult] = []
        for h in handles { together.append(await h.collect()) }
        let alone = try await outputs(caching: false, blocks: 256, sampling: { _ in sampling }).results
        #expect(together == alone)
        #expect(e.statistics().preemptions > 0)
        #expect(model.kvBlocks.freeBlocks == 20)
    }
}
