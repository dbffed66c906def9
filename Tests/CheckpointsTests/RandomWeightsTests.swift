import Testing
import Checkpoints
import Tensors

@Suite struct RandomWeightsTests {
    static let dense = ModelConfig(dim: 64, nLayers: 2, headDim: 16, hiddenDim: 512, nHeads: 4, nKVHeads: 2,
                                   normEps: 1e-5, vocabSize: 1000)
    static let moe = ModelConfig(dim: 32, nLayers: 1, headDim: 8, hiddenDim: 48, nHeads: 4, nKVHeads: 1,
                                 normEps: 1e-5, vocabSize: 100, moe: .init(numExperts: 3, numExpertsPerTok: 2))

    @Test func shapesDTypeAndDeterminism() throws {
        let a = try RandomWeights(config: Self.dense, seed: 7)
        let b = try RandomWeights(config: Self.dense, seed: 7)
        let c = try RandomWeights(config: Self.dense, seed: 8)
        for key in WeightKey.all(for: Self.dense) {
            let t = try a.tensor(key)
            #expect(t.shape == key.shape(Self.dense))
            #expect(t.dtype == .bf16)
            #expect(bytes(t) == bytes(try b.tensor(key)))
            #expect(bytes(t) != bytes(try c.tensor(key)))
        }
        #expect(bytes(try a.tensor(.wq(layer: 0))) != bytes(try a.tensor(.wq(layer: 1))), "layers must differ")
        expectCheckpointError(.missingTensor) { _ = try a.tensor(.moeGate(layer: 0)) }
    }

    @Test func statistics() throws {
        let w = try RandomWeights(config: Self.dense, seed: 1)
        // (F, D) = (512, 64): fan_in 64 → std 1/8. (D, F): fan_in 512 → std ≈ 0.0442.
        for (key, std) in [(WeightKey.w1(layer: 0), 0.125), (.w2(layer: 1), 1 / Double(512).squareRoot())] {
            let v = try w.tensor(key).floats().map(Double.init)
            #expect(!v.contains(0))
            let mean = v.reduce(0, +) / Double(v.count)
            let sd = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
            #expect(abs(mean) < 0.02 * std * 10, "\(key): mean \(mean)")
            #expect(abs(sd / std - 1) < 0.03, "\(key): std \(sd) vs \(std)")
            // Normal, not merely the right variance: 68.3% within one σ, 95.4% within two.
            let within1 = Double(v.filter { abs($0) < std }.count) / Double(v.count)
            let within2 = Double(v.filter { abs($0) < 2 * std }.count) / Double(v.count)
            #expect(abs(within1 - 0.6827) < 0.015, "\(key): \(within1) within 1σ")
            #expect(abs(within2 - 0.9545) < 0.01, "\(key): \(within2) within 2σ")
        }
        let norm = try w.tensor(.attentionNorm(layer: 0)).floats()
        #expect(norm.allSatisfy { abs($0 - 1) < 0.1 })
        #expect(Set(norm).count > 1)
    }

    @Test func moeAndOtherDTypes() throws {
        let w = try RandomWeights(config: Self.moe, seed: 3, dtype: .f16)
        #expect(try w.tensor(.moeGate(layer: 0)).shape == [3, 32])
        #expect(try w.tensor(.expertW2(layer: 0, expert: 2)).dtype == .f16)
        #expect(!(try w.tensor(.expertW1(layer: 0, expert: 1)).floats().contains(0)))
        expectCheckpointError(.unsupportedDType) { _ = try RandomWeights(config: Self.moe, dtype: .i32) }
        var bad = Self.dense
        bad.nKVHeads = 3
        expectCheckpointError(.badConfig) { _ = try RandomWeights(config: bad) }
    }
}
