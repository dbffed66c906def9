import Checkpoints
import Tensors

/// A model's weights on a backend, in their stored dtype.
///
/// Legend: L layers, D dim, H query heads, G KV heads, Dh head dim, F FFN hidden (per expert),
/// E experts, V vocabulary.
public struct TransformerWeights<Backend: ComputeBackend>: @unchecked Sendable {
    // @unchecked: backend tensors are immutable after upload and only read by the forward pass.
    public struct Layer {
        public var attentionNorm: Backend.Tensor   // (D)
        /// wq (H·Dh, D), wk (G·Dh, D), wv (G·Dh, D) joined by rows: one product per step.
        public var wqkv: Backend.Tensor            // ((H + 2G)·Dh, D)
        public var wo: Backend.Tensor              // (D, H·Dh)
        public var ffnNorm: Backend.Tensor         // (D)
        public var ffn: FFN
    }

    public enum FFN {
        /// w13 = w1 (F, D) and w3 (F, D) joined by rows, so gate and up come from one product.
        case dense(w13: Backend.Tensor, w2: Backend.Tensor)  // (2F, D), (D, F)
        case moe(gate: Backend.Tensor, w1: Backend.Tensor, w2: Backend.Tensor, w3: Backend.Tensor)
        // gate (E, D); w1, w3 stacked (E, F, D); w2 stacked (E, D, F)
    }

    public var tokEmbeddings: Backend.Tensor       // (V, D)
    public var layers: [Layer]                     // (L)
    public var finalNorm: Backend.Tensor           // (D)
    public var output: Backend.Tensor              // (V, D)

    /// Uploads every weight of `source`, layer by layer, calling `progress(done, total)` after
    /// each tensor so front-ends can show a progress bar. Each matrix's dtype is checked against
    /// the op that reads it (`ComputeBackend.supports`) before its upload: an unsupported
    /// combination throws `BackendError.unsupported` naming the op, dtype and weight.
    public init(source: any WeightSource, backend: Backend,
                progress: ((Int, Int) -> Void)? = nil) throws {
        let c = source.config
        let total = WeightKey.all(for: c).count
        var done = 0
        // `op`: the op that reads the weight's matrix, asked of the backend before the upload
        // (nil for norm vectors and the router, which every scheme keeps bf16/f16/f32).
        func load(_ key: WeightKey, for op: WeightOp? = nil) throws -> Backend.Tensor {
            let tensor = try source.tensor(key)
            if let op { try backend.requireSupport(op, weights: tensor.dtype, for: key.nativeName) }
            let t = try backend.upload(tensor)
            done += 1
            progress?(done, total)
            return t
        }
        func stack(_ keys: [WeightKey], for op: WeightOp) throws -> Backend.Tensor {
            let parts = try keys.map { try source.tensor($0) }
            for (key, part) in zip(keys, parts) { try backend.requireSupport(op, weights: part.dtype, for: key.nativeName) }
            let t = try backend.upload(stacking: parts)
            done += keys.count
            progress?(done, total)
            return t
        }
        func join(_ keys: [WeightKey], for op: WeightOp) throws -> Backend.Tensor {
            let parts = try keys.map { try source.tensor($0) }
            for (key, part) in zip(keys, parts) { try backend.requireSupport(op, weights: part.dtype, for: key.nativeName) }
            let t = try backend.upload(concatenatingRows: parts)
            done += keys.count
            progress?(done, total)
            return t
        }
        tokEmbeddings = try load(.tokEmbeddings, for: .embed)
        var layers: [Layer] = []
        for l in 0..<c.nLayers {
            let attentionNorm = try load(.attentionNorm(layer: l))
            let wqkv = try join([.wq(layer: l), .wk(layer: l), .wv(layer: l)], for: .normedMatmul)
            let wo = try load(.wo(layer: l), for: .matmulAdd)
            let ffnNorm = try load(.ffnNorm(layer: l))
            let ffn: FFN
            if let moe = c.moe {
                let experts = 0..<moe.numExperts
                ffn = .moe(gate: try load(.moeGate(layer: l)),
                           w1: try stack(experts.map { .expertW1(layer: l, expert: $0) }, for: .normedMoE),
                           w2: try stack(experts.map { .expertW2(layer: l, expert: $0) }, for: .normedMoE),
                           w3: try stack(experts.map { .expertW3(layer: l, expert: $0) }, for: .normedMoE))
            } else {
                ffn = .dense(w13: try join([.w1(layer: l), .w3(layer: l)], for: .normedMatmul), w2: try load(.w2(layer: l), for: .matmulAdd))
            }
            layers.append(Layer(attentionNorm: attentionNorm, wqkv: wqkv, wo: wo, ffnNorm: ffnNorm, ffn: ffn))
        }
        self.layers = layers
        finalNorm = try load(.finalNorm)
        output = try load(.output, for: .normedMatmul)
    }
}
