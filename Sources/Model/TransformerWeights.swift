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
    /// each tensor so front-ends can show a progress bar.
    public init(source: any WeightSource, backend: Backend,
                progress: ((Int, Int) -> Void)? = nil) throws {
        let c = source.config
        let total = WeightKey.all(for: c).count
        var done = 0
        func load(_ key: WeightKey) throws -> Backend.Tensor {
            let t = try backend.upload(try source.tensor(key))
            done += 1
            progress?(done, total)
            return t
        }
        func stack(_ keys: [WeightKey]) throws -> Backend.Tensor {
            let t = try backend.upload(stacking: try keys.map { try source.tensor($0) })
            done += keys.count
            progress?(done, total)
            return t
        }
        func join(_ keys: [WeightKey]) throws -> Backend.Tensor {
            let t = try backend.upload(concatenatingRows: try keys.map { try source.tensor($0) })
            done += keys.count
            progress?(done, total)
            return t
        }
        tokEmbeddings = try load(.tokEmbeddings)
        var layers: [Layer] = []
        for l in 0..<c.nLayers {
            let attentionNorm = try load(.attentionNorm(layer: l))
            let wqkv = try join([.wq(layer: l), .wk(layer: l), .wv(layer: l)])
            let wo = try load(.wo(layer: l))
            let ffnNorm = try load(.ffnNorm(layer: l))
            let ffn: FFN
            if let moe = c.moe {
                let experts = 0..<moe.numExperts
                ffn = .moe(gate: try load(.moeGate(layer: l)),
                           w1: try stack(experts.map { .expertW1(layer: l, expert: $0) }),
                           w2: try stack(experts.map { .expertW2(layer: l, expert: $0) }),
                           w3: try stack(experts.map { .expertW3(layer: l, expert: $0) }))
            } else {
                ffn = .dense(w13: try join([.w1(layer: l), .w3(layer: l)]), w2: try load(.w2(layer: l)))
            }
            layers.append(Layer(attentionNorm: attentionNorm, wqkv: wqkv, wo: wo, ffnNorm: ffnNorm, ffn: ffn))
        }
        self.layers = layers
        finalNorm = try load(.finalNorm)
        output = try load(.output)
    }
}
