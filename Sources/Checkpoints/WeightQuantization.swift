import Tensors

/// A weight format a model can be quantized to while it loads (`--quantize fp8`).
public enum WeightQuantization: String, Sendable, CaseIterable, Codable {
    /// FP8 e4m3 with one f32 scale per output row (`FP8Quantization`).
    case fp8

    /// The stored dtype it produces.
    public var dtype: DType {
        switch self {
        case .fp8: return .e4m3
        }
    }
}

extension WeightKey {
    /// Whether the FP8 scheme stores this weight as e4m3: every 2-D weight except
    /// `tok_embeddings`, `output` and the MoE router `gate`, which stay as stored (as in the
    /// published FP8 Mixtral checkpoints: the router picks experts from small logit differences,
    /// and the embeddings and output are read one row per token or are a small share of the bytes).
    /// Norm weights are 1-D and stay as stored.
    public var takesFP8: Bool {
        switch self {
        case .tokEmbeddings, .output, .moeGate, .finalNorm, .attentionNorm, .ffnNorm: return false
        case .wq, .wk, .wv, .wo, .w1, .w2, .w3, .expertW1, .expertW2, .expertW3: return true
        }
    }
}

/// `base` with every weight the FP8 scheme covers quantized to e4m3 as it is handed out, one
/// tensor per call: the model is never held twice, the extra memory at any moment is the tensor
/// being quantized (for a stacked expert upload, the E parts of that one stack). Weights already
/// stored as e4m3 (an FP8 checkpoint) pass through unchanged.
public struct FP8QuantizingSource: WeightSource {
    public let base: any WeightSource

    public init(_ base: any WeightSource) { self.base = base }

    public var config: ModelConfig { base.config }

    public func tensor(_ key: WeightKey) throws -> HostTensor {
        let t = try base.tensor(key)
        guard key.takesFP8, t.dtype != .e4m3 else { return t }
        do {
            return try FP8Quantization.quantize(t)
        } catch {
            throw CheckpointError(.unsupported, file: "--quantize fp8", tensor: key.nativeName, "\(error)")
        }
    }
}
