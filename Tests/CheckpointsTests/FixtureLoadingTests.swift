import Foundation
import Testing
import Checkpoints
import Tensors

/// The tiny models written by tools/fixtures/make_tiny_models.py.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelTests/Fixtures")
    static func dir(_ name: String) -> URL { root.appendingPathComponent(name) }
}

@Suite struct FixtureLoadingTests {
    @Test func denseNativeSafetensors() throws {
        let ckpt = try MistralCheckpoint.load(directory: Fixtures.dir("dense"))
        let c = ckpt.config
        #expect(c == ModelConfig(dim: 32, nLayers: 2, headDim: 16, hiddenDim: 64, nHeads: 4, nKVHeads: 2,
                                 normEps: 1e-5, vocabSize: 300, ropeTheta: 10000, slidingWindow: 6))
        #expect(ckpt.layout == .native)
        #expect(ckpt.dtype == .bf16)
        #expect(ckpt.weightFiles.map(\.lastPathComponent) == ["consolidated.safetensors"])
        #expect(ckpt.tokenizerURL == nil)
        for key in WeightKey.all(for: c) {
            let t = try ckpt.tensor(key)
            #expect(t.shape == key.shape(c))
            #expect(t.dtype == .bf16)
        }
        #expect(try ckpt.tensor(.wq(layer: 1)).shape == [64, 32])
        #expect(try ckpt.tensor(.wk(layer: 0)).shape == [32, 32])
        #expect(throws: CheckpointError.self) { try ckpt.tensor(.moeGate(layer: 0)) }
    }
}
