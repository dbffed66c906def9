import Checkpoints

/// The published shapes of the Mistral family (from each release's params.json).
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

    /// All weights in bf16.
    static func weightBytes(_ c: ModelConfig) -> Int {
        let experts = c.moe?.numExperts ?? 1
        let perLayer = attentionBytes(c) + experts * expertBytes(c) + (c.moe != nil ? c.moe!.numExperts * c.dim * 2 : 0) + 2 * c.dim * 2
        return c.nLayers * perLayer + 2 * c.vocabSize * c.dim * 2 + c.dim * 2
    }

    static func attentionBytes(_ c: ModelConfig) -> Int {
        2 * (c.dim * c.nHeads * c.headDim * 2 + c.dim * c.nKVHeads * c.headDim * 2)
    }

    static func expertBytes(_ c: ModelConfig) -> Int { 3 * c.dim * c.hiddenDim * 2 }

    /// FLOPs of prefilling one prompt of `tokens` tokens from position 0: 2 per multiply-add of
    /// every matrix a token passes through (attention projections, the K experts it is routed
    /// to, the router), causal attention (QKᵀ and PV: 2·H·Dh·(p+1) each for the query at p),
    /// and the output matrix for the last token only (the only logits a prefill produces).
    static func prefillFLOPs(_ c: ModelConfig, tokens: Int) -> Double {
        let t = Double(tokens)
        let experts = Double(c.moe?.numExpertsPerTok ?? 1)
        let router = Double((c.moe?.numExperts ?? 0) * c.dim)
        let perTokenMACs = Double(attentionBytes(c) / 2) + experts * Double(expertBytes(c) / 2) + router
        let attention = 4 * Double(c.nHeads * c.headDim) * t * (t + 1) / 2
        return Double(c.nLayers) * (2 * perTokenMACs * t + attention) + 2 * Double(c.vocabSize * c.dim)
    }

    /// Bytes one decode step must read: every attention weight, the experts a batch of `batch`
    /// tokens is expected to touch (random routing: E·(1 − (1 − K/E)^batch) per layer), the
    /// output matrix, the embedding rows, and each sequence's cached K and V.
    static func bytesPerDecodeStep(_ c: ModelConfig, batch: Int, context: Int, kvBytesPerElement: Int) -> Int {
        var expertsTouched = 1.0
        if let moe = c.moe {
            let e = Double(moe.numExperts), k = Double(moe.numExpertsPerTok)
            expertsTouched = e * (1 - Foundation.pow(1 - k / e, Double(batch)))
        }
        let perLayer = Double(attentionBytes(c) + 2 * c.dim * 2 + (c.moe?.numExperts ?? 0) * c.dim * 2)
            + expertsTouched * Double(expertBytes(c))
        let kv = Double(batch * context * 2 * c.nLayers * c.nKVHeads * c.headDim * kvBytesPerElement)
        return Int(Double(c.nLayers) * perLayer + Double(c.vocabSize * c.dim * 2 + batch * c.dim * 2) + kv)
    }
}

import Foundation
