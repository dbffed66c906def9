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

    /// All weights at their stored size: bf16, or with `quantization` the FP8 scheme's (the
    /// projections and experts 1 byte an element plus a 4-byte scale per output row; embeddings,
    /// output, router and norms bf16).
    static func weightBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        let experts = c.moe?.numExperts ?? 1
        let perLayer = attentionBytes(c, quantization) + experts * expertBytes(c, quantization)
            + (c.moe != nil ? c.moe!.numExperts * c.dim * 2 : 0) + 2 * c.dim * 2
        return c.nLayers * perLayer + 2 * c.vocabSize * c.dim * 2 + c.dim * 2
    }

    /// A matrix of `elements` with `rows` output rows as stored: bf16 (2 bytes an element), or
    /// fp8 (1 byte an element + one f32 scale per row).
    static func matrixBytes(elements: Int, rows: Int, _ quantization: WeightQuantization?) -> Int {
        switch quantization {
        case nil: return elements * 2
        case .fp8: return elements + rows * 4
        }
    }

    /// wq, wk, wv (joined, (H + 2G)·Dh rows) and wo (D rows).
    static func attentionBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        let qkvRows = (c.nHeads + 2 * c.nKVHeads) * c.headDim
        return matrixBytes(elements: qkvRows * c.dim, rows: qkvRows, quantization)
            + matrixBytes(elements: c.dim * c.nHeads * c.headDim, rows: c.dim, quantization)
    }

    /// w1, w3 (F rows each) and w2 (D rows) of one expert (or the dense FFN).
    static func expertBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        matrixBytes(elements: 3 * c.dim * c.hiddenDim, rows: 2 * c.hiddenDim + c.dim, quantization)
    }

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
    static func bytesPerDecodeStep(_ c: ModelConfig, batch: Int, context: Int, kvBytesPerElement: Int,
                                   quantization: WeightQuantization? = nil) -> Int {
        var expertsTouched = 1.0
        if let moe = c.moe {
            let e = Double(moe.numExperts), k = Double(moe.numExpertsPerTok)
            expertsTouched = e * (1 - Foundation.pow(1 - k / e, Double(batch)))
        }
        let perLayer = Double(attentionBytes(c, quantization) + 2 * c.dim * 2 + (c.moe?.numExperts ?? 0) * c.dim * 2)
            + expertsTouched * Double(expertBytes(c, quantization))
        let kv = Double(batch * context * 2 * c.nLayers * c.nKVHeads * c.headDim * kvBytesPerElement)
        return Int(Double(c.nLayers) * perLayer + Double(c.vocabSize * c.dim * 2 + batch * c.dim * 2) + kv)
    }
}

import Foundation
