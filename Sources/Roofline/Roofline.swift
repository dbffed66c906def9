import Foundation
import Checkpoints

/// The bytes and FLOPs one forward step must move or compute, for "% of bandwidth" and "% of
/// peak" figures. One model, shared by `mixtral-chat bench` and `cuda-check --bench`, so the same
/// run reports the same roofline whichever tool measured it.
///
/// Weights are counted at their stored size (bf16, or the FP8 scheme's 1 byte an element plus a
/// 4-byte scale per output row; embeddings, output, router and norms stay bf16).
public enum Roofline {
    /// Experts a decode step of `batch` tokens is expected to read per MoE layer when each token
    /// picks `topK` of `experts` uniformly at random (independently of the other tokens):
    ///
    ///     E · (1 − (1 − K/E)^B)
    ///
    /// A token misses a given expert with probability C(E−1, K) / C(E, K) = 1 − K/E, so all B
    /// tokens miss it with probability (1 − K/E)^B; summing the hit probability over the E
    /// experts gives the expectation. min(E, B·K) is the upper bound (every token on distinct
    /// experts), which overstates the bytes of a small batch: at E = 8, K = 2, B = 4 it counts
    /// 8 experts where 5.47 are expected. Real routers are not uniform, so this is a model, not
    /// a measurement.
    public static func expectedExpertsTouched(experts: Int, topK: Int, batch: Int) -> Double {
        precondition(experts >= 1 && topK >= 0 && topK <= experts && batch >= 0)
        let e = Double(experts), k = Double(topK)
        return e * (1 - Foundation.pow(1 - k / e, Double(batch)))
    }

    /// All weights at their stored size: bf16, or with `quantization` the FP8 scheme's.
    public static func weightBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        let experts = c.moe?.numExperts ?? 1
        let perLayer = attentionBytes(c, quantization) + experts * expertBytes(c, quantization)
            + (c.moe != nil ? c.moe!.numExperts * c.dim * 2 : 0) + 2 * c.dim * 2
        return c.nLayers * perLayer + 2 * c.vocabSize * c.dim * 2 + c.dim * 2
    }

    /// A matrix of `elements` with `rows` output rows as stored: bf16 (2 bytes an element), or
    /// fp8 (1 byte an element + one f32 scale per row).
    public static func matrixBytes(elements: Int, rows: Int, _ quantization: WeightQuantization?) -> Int {
        switch quantization {
        case nil: return elements * 2
        case .fp8: return elements + rows * 4
        }
    }

    /// wq, wk, wv (joined, (H + 2G)·Dh rows) and wo (D rows).
    public static func attentionBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        let qkvRows = (c.nHeads + 2 * c.nKVHeads) * c.headDim
        return matrixBytes(elements: qkvRows * c.dim, rows: qkvRows, quantization)
            + matrixBytes(elements: c.dim * c.nHeads * c.headDim, rows: c.dim, quantization)
    }

    /// w1, w3 (F rows each) and w2 (D rows) of one expert (or the dense FFN).
    public static func expertBytes(_ c: ModelConfig, _ quantization: WeightQuantization? = nil) -> Int {
        matrixBytes(elements: 3 * c.dim * c.hiddenDim, rows: 2 * c.hiddenDim + c.dim, quantization)
    }

    /// FLOPs of prefilling one prompt of `tokens` tokens from position 0: 2 per multiply-add of
    /// every matrix a token passes through (attention projections, the K experts it is routed
    /// to, the router), causal attention (QKᵀ and PV: 2·H·Dh·(p+1) each for the query at p),
    /// and the output matrix for the last token only (the only logits a prefill produces).
    public static func prefillFLOPs(_ c: ModelConfig, tokens: Int) -> Double {
        let t = Double(tokens)
        let experts = Double(c.moe?.numExpertsPerTok ?? 1)
        let router = Double((c.moe?.numExperts ?? 0) * c.dim)
        let perTokenMACs = Double(attentionBytes(c) / 2) + experts * Double(expertBytes(c) / 2) + router
        let attention = 4 * Double(c.nHeads * c.headDim) * t * (t + 1) / 2
        return Double(c.nLayers) * (2 * perTokenMACs * t + attention) + 2 * Double(c.vocabSize * c.dim)
    }

    /// Bytes one decode step of `batch` sequences at `context` cached tokens each must read:
    /// every attention weight, the norms and the router, the experts the batch is expected to
    /// touch (`expectedExpertsTouched`, per layer), the output matrix, the batch's embedding
    /// rows, and each sequence's cached K and V (`kvBytesPerElement` each).
    ///
    /// With `ranks` N > 1 (tensor parallelism, `TensorShard`), the bytes each GPU reads: its
    /// 1/N of the heads (KV heads replicated when there are fewer than N), of every expert's
    /// hidden rows and of the vocabulary, with the norms, the router and the embedding rows
    /// replicated; the step's time is the slowest rank's, so this over one GPU's bandwidth is
    /// the roofline of the N-GPU step.
    public static func bytesPerDecodeStep(_ c: ModelConfig, batch: Int, context: Int, kvBytesPerElement: Int,
                                          quantization: WeightQuantization? = nil, ranks: Int = 1) -> Int {
        let n = max(1, ranks)
        let expertsTouched = c.moe.map { expectedExpertsTouched(experts: $0.numExperts, topK: $0.numExpertsPerTok, batch: batch) } ?? 1
        let kvHeads = c.nKVHeads >= n ? c.nKVHeads / n : 1
        let qkvRows = (c.nHeads / n + 2 * kvHeads) * c.headDim
        let attention = matrixBytes(elements: qkvRows * c.dim, rows: qkvRows, quantization)
            + matrixBytes(elements: c.dim * (c.nHeads / n) * c.headDim, rows: c.dim, quantization)
        let expert = matrixBytes(elements: 3 * c.dim * (c.hiddenDim / n), rows: 2 * (c.hiddenDim / n) + c.dim, quantization)
        let perLayer = Double(attention + 2 * c.dim * 2 + (c.moe?.numExperts ?? 0) * c.dim * 2)
            + expertsTouched * Double(expert)
        let kv = Double(batch * context * 2 * c.nLayers * kvHeads * c.headDim * kvBytesPerElement)
        return Int(Double(c.nLayers) * perLayer + Double((c.vocabSize / n) * c.dim * 2 + batch * c.dim * 2) + kv)
    }
}
