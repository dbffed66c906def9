/// Hyper-parameters of a Mistral-family model, as Mistral's `params.json` spells them.
///
/// Decoded 1:1 from `params.json` (explicit coding keys); Hugging Face `config.json` is mapped
/// onto the same struct by `HFConfig`. Defaults follow mistral-inference: `rope_theta` 1e6 when
/// absent (`ModelArgs.rope_theta`), no sliding window, dense FFN.
public struct ModelConfig: Sendable, Equatable, Codable {
    public var dim: Int               // D
    public var nLayers: Int           // L
    public var headDim: Int           // Dh (independent of D / H, e.g. Mistral-Nemo)
    public var hiddenDim: Int         // F, per expert for MoE
    public var nHeads: Int            // H
    public var nKVHeads: Int          // G (GQA/MQA)
    public var normEps: Float
    public var vocabSize: Int         // V
    public var ropeTheta: Float
    public var slidingWindow: Int?    // W: a position sees W keys including itself
    public var moe: MoE?

    public struct MoE: Sendable, Equatable, Codable {
        public var numExperts: Int        // E
        public var numExpertsPerTok: Int  // K
        enum CodingKeys: String, CodingKey {
            case numExperts = "num_experts"
            case numExpertsPerTok = "num_experts_per_tok"
        }
        public init(numExperts: Int, numExpertsPerTok: Int) {
            self.numExperts = numExperts
            self.numExpertsPerTok = numExpertsPerTok
        }
    }

    enum CodingKeys: String, CodingKey {
        case dim
        case nLayers = "n_layers"
        case headDim = "head_dim"
        case hiddenDim = "hidden_dim"
        case nHeads = "n_heads"
        case nKVHeads = "n_kv_heads"
        case normEps = "norm_eps"
        case vocabSize = "vocab_size"
        case ropeTheta = "rope_theta"
        case slidingWindow = "sliding_window"
        case moe
    }

    public init(dim: Int, nLayers: Int, headDim: Int, hiddenDim: Int, nHeads: Int, nKVHeads: Int,
                normEps: Float, vocabSize: Int, ropeTheta: Float = 1_000_000, slidingWindow: Int? = nil,
                moe: MoE? = nil) {
        self.dim = dim
        self.nLayers = nLayers
        self.headDim = headDim
        self.hiddenDim = hiddenDim
        self.nHeads = nHeads
        self.nKVHeads = nKVHeads
        self.normEps = normEps
        self.vocabSize = vocabSize
        self.ropeTheta = ropeTheta
        self.slidingWindow = slidingWindow
        self.moe = moe
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dim = try c.decode(Int.self, forKey: .dim)
        nLayers = try c.decode(Int.self, forKey: .nLayers)
        nHeads = try c.decode(Int.self, forKey: .nHeads)
        // Older params.json files (Mistral 7B v0.1) omit head_dim: it is then dim / n_heads.
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? (dim / max(nHeads, 1))
        hiddenDim = try c.decode(Int.self, forKey: .hiddenDim)
        nKVHeads = try c.decode(Int.self, forKey: .nKVHeads)
        normEps = try c.decode(Float.self, forKey: .normEps)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 1_000_000
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
        moe = try c.decodeIfPresent(MoE.self, forKey: .moe)
    }

    /// Query heads per KV head.
    public var groupSize: Int { nHeads / nKVHeads }
    public var isMoE: Bool { moe != nil }
}
