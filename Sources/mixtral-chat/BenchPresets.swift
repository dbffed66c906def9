import Checkpoints

/// The published shapes of the Mistral family (from each release's params.json). Their bytes and
/// FLOPs: `Roofline`.
enum BenchPresets {
    static let names = ["mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "codestral-22b", "tiny"]

    static func config(_ name: String) -> ModelConfig? {
        switch name {
        case "mistral-7b":
            return ModelConfig(dim: 4096, nLayers: 32, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                               normEps: 1e-5, vocabSize: 32768, ropeTheta: 1_000_000)
        case "mixtral-8x7b":
            return ModelConfig(dim: 4096, nLayers: 32, headDim: 128, hiddenDim: 14336, nHeads: 32, nKVHeads: 8,
                               normEps: 1e-5, vocabSize: 32000, ropeTheta: 1_000_000, moe: .init(numExperts: 8, numExpertsPerTok: 2))
        case "mixtral-8x22b":
            return ModelConfig(dim: 6144, nLayers: 56, headDim: 128, hiddenDim: 16384, nHeads: 48, nKVHeads: 8,
                               normEps: 1e-5, vocabSize: 32768, ropeTheta: 1_000_000, moe: .init(numExperts: 8, numExpertsPerTok: 2))
        case "codestral-22b":
            return ModelConfig(dim: 6144, nLayers: 56, headDim: 128, hiddenDim: 16384, nHeads: 48, nKVHeads: 8,
                               normEps: 1e-5, vocabSize: 32768, ropeTheta: 1_000_000)
        case "tiny":
            return ModelConfig(dim: 256, nLayers: 4, headDim: 32, hiddenDim: 768, nHeads: 8, nKVHeads: 2,
                               normEps: 1e-5, vocabSize: 4096, ropeTheta: 1_000_000, moe: .init(numExperts: 4, numExpertsPerTok: 2))
        default: return nil
        }
    }
}
