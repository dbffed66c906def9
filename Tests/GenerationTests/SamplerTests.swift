import Generation
import Testing

@Suite struct SamplerTests {
    let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5, 2.0]

    @Test func greedyPicksLowestIndexOfTheMaximum() {
        var s = Sampler(parameters: .greedy)
        #expect(s.sample(logits[...], history: []) == 1)
    }

    @Test func sameSeedSameSequence() {
        let p = SamplingParameters(temperature: 1.0, seed: 42)
        var a = Sampler(parameters: p), b = Sampler(parameters: p)
        let xs = (0..<50).map { _ in a.sample(logits[...], history: []) }
        let ys = (0..<50).map { _ in b.sample(logits[...], history: []) }
        #expect(xs == ys)
        #expect(Set(xs).count > 2, "temperature 1 explores several tokens")
    }

    @Test func topKRestrictsCandidates() {
        var s = Sampler(parameters: .init(temperature: 5, topK: 2, seed: 7))
        let picks = Set((0..<200).map { _ in s.sample(logits[...], history: []) })
        #expect(picks == [1, 5])
    }

    @Test func topPKeepsTheNucleus() {
        // Probabilities ≈ [0.88, 0.12, ~0]: top_p 0.5 keeps only the first.
        var s = Sampler(parameters: .init(temperature: 1, topP: 0.5, seed: 3))
        let row: [Float] = [2, 0, -10]
        #expect(Set((0..<100).map { _ in s.sample(row[...], history: []) }) == [0])
    }

    @Test func repetitionPenaltyDemotesSeenTokens() {
        var s = Sampler(parameters: .init(temperature: 0, repetitionPenalty: 2))
        #expect(s.sample(logits[...], history: [1, 5]) == 3)
    }

    @Test func samplingFollowsTheDistribution() {
        var s = Sampler(parameters: .init(temperature: 1, seed: 11))
        let row: [Float] = [0, Float(log(3.0))]   // p = [0.25, 0.75]
        let ones = (0..<4000).filter { _ in s.sample(row[...], history: []) == 1 }.count
        #expect(abs(Double(ones) / 4000 - 0.75) < 0.03)
    }
}

#if canImport(Glibc)
import Glibc
#endif
