import Tensors

/// Every weight of a Mistral model, by role. Checkpoint key strings live here and nowhere else.
public enum WeightKey: Hashable, Sendable {
    case tokEmbeddings                  // (V, D)
    case finalNorm                      // (D)
    case output                         // (V, D)
    case attentionNorm(layer: Int)      // (D)
    case ffnNorm(layer: Int)            // (D)
    case wq(layer: Int)                 // (H·Dh, D)
    case wk(layer: Int)                 // (G·Dh, D)
    case wv(layer: Int)                 // (G·Dh, D)
    case wo(layer: Int)                 // (D, H·Dh)
    case w1(layer: Int)                 // (F, D)  dense FFN gate projection
    case w2(layer: Int)                 // (D, F)  dense FFN down projection
    case w3(layer: Int)                 // (F, D)  dense FFN up projection
    case moeGate(layer: Int)            // (E, D)
    case expertW1(layer: Int, expert: Int)  // (F, D)
    case expertW2(layer: Int, expert: Int)  // (D, F)
    case expertW3(layer: Int, expert: Int)  // (F, D)

    /// The key in Mistral's native layout (`consolidated.safetensors` / `consolidated.00.pth`).
    public var nativeName: String {
        switch self {
        case .tokEmbeddings: return "tok_embeddings.weight"
        case .finalNorm: return "norm.weight"
        case .output: return "output.weight"
        case .attentionNorm(let l): return "layers.\(l).attention_norm.weight"
        case .ffnNorm(let l): return "layers.\(l).ffn_norm.weight"
        case .wq(let l): return "layers.\(l).attention.wq.weight"
        case .wk(let l): return "layers.\(l).attention.wk.weight"
        case .wv(let l): return "layers.\(l).attention.wv.weight"
        case .wo(let l): return "layers.\(l).attention.wo.weight"
        case .w1(let l): return "layers.\(l).feed_forward.w1.weight"
        case .w2(let l): return "layers.\(l).feed_forward.w2.weight"
        case .w3(let l): return "layers.\(l).feed_forward.w3.weight"
        case .moeGate(let l): return "layers.\(l).feed_forward.gate.weight"
        case .expertW1(let l, let e): return "layers.\(l).feed_forward.experts.\(e).w1.weight"
        case .expertW2(let l, let e): return "layers.\(l).feed_forward.experts.\(e).w2.weight"
        case .expertW3(let l, let e): return "layers.\(l).feed_forward.experts.\(e).w3.weight"
        }
    }

    /// The key in Hugging Face transformers' layout (`MistralForCausalLM` / `MixtralForCausalLM`).
    /// wq/wk rows there are permuted for rotate-half RoPE; `MistralCheckpoint` undoes that.
    public var huggingFaceName: String {
        switch self {
        case .tokEmbeddings: return "model.embed_tokens.weight"
        case .finalNorm: return "model.norm.weight"
        case .output: return "lm_head.weight"
        case .attentionNorm(let l): return "model.layers.\(l).input_layernorm.weight"
        case .ffnNorm(let l): return "model.layers.\(l).post_attention_layernorm.weight"
        case .wq(let l): return "model.layers.\(l).self_attn.q_proj.weight"
        case .wk(let l): return "model.layers.\(l).self_attn.k_proj.weight"
        case .wv(let l): return "model.layers.\(l).self_attn.v_proj.weight"
        case .wo(let l): return "model.layers.\(l).self_attn.o_proj.weight"
        case .w1(let l): return "model.layers.\(l).mlp.gate_proj.weight"
        case .w2(let l): return "model.layers.\(l).mlp.down_proj.weight"
        case .w3(let l): return "model.layers.\(l).mlp.up_proj.weight"
        case .moeGate(let l): return "model.layers.\(l).block_sparse_moe.gate.weight"
        case .expertW1(let l, let e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w1.weight"
        case .expertW2(let l, let e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w2.weight"
        case .expertW3(let l, let e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w3.weight"
        }
    }

    /// The name in `layout`.
    public func name(in layout: CheckpointLayout) -> String {
        layout == .native ? nativeName : huggingFaceName
    }

    /// What an FP8 weight's scale tensor appends to the weight's name, in both layouts:
    /// `….weight` → `….weight_scale` (our native FP8 files and HF compressed-tensors alike).
    public static let scaleSuffix = "_scale"

    /// The name of this weight's FP8 scale tensor in `layout`.
    public func scaleName(in layout: CheckpointLayout) -> String { name(in: layout) + Self.scaleSuffix }

    /// Tensors some checkpoints carry that no Mistral model reads (transformers' cached RoPE
    /// frequencies; the static activation scales of HF FP8 checkpoints, `….input_scale`, which
    /// this engine does not use: activations stay f32/bf16, scaled dynamically where a kernel
    /// needs FP8); loaders skip them instead of reporting them as unexpected.
    public static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix("rotary_emb.inv_freq") || name.hasSuffix(".input_scale")
    }

    /// A name that marks the layout: every native checkpoint has it, no HF one does (and back).
    static func layoutMarker(_ layout: CheckpointLayout) -> String {
        WeightKey.tokEmbeddings.name(in: layout)
    }

    /// Expected shape under `config`.
    public func shape(_ c: ModelConfig) -> [Int] {
        switch self {
        case .tokEmbeddings, .output: return [c.vocabSize, c.dim]
        case .finalNorm, .attentionNorm, .ffnNorm: return [c.dim]
        case .wq: return [c.nHeads * c.headDim, c.dim]
        case .wk, .wv: return [c.nKVHeads * c.headDim, c.dim]
        case .wo: return [c.dim, c.nHeads * c.headDim]
        case .w1, .w3, .expertW1, .expertW3: return [c.hiddenDim, c.dim]
        case .w2, .expertW2: return [c.dim, c.hiddenDim]
        case .moeGate: return [c.moe?.numExperts ?? 0, c.dim]
        }
    }

    /// Every key a model with `config` must have, in file order.
    public static func all(for c: ModelConfig) -> [WeightKey] {
        var keys: [WeightKey] = [.tokEmbeddings]
        for l in 0..<c.nLayers {
            keys += [.attentionNorm(layer: l), .wq(layer: l), .wk(layer: l), .wv(layer: l), .wo(layer: l), .ffnNorm(layer: l)]
            if let moe = c.moe {
                keys.append(.moeGate(layer: l))
                for e in 0..<moe.numExperts {
                    keys += [.expertW1(layer: l, expert: e), .expertW2(layer: l, expert: e), .expertW3(layer: l, expert: e)]
                }
            } else {
                keys += [.w1(layer: l), .w2(layer: l), .w3(layer: l)]
            }
        }
        keys += [.finalNorm, .output]
        return keys
    }
}

/// The two factors of a LoRA adapter on one linear weight W (out, in): the update is B·A.
public enum LoRAFactor: String, Sendable, CaseIterable {
    case a = "lora_A"   // (r, in)
    case b = "lora_B"   // (out, r)
}

extension WeightKey {
    /// The adapter's tensor name for this weight, as mistral-finetune saves `lora.safetensors`
    /// (`layers.0.attention.wq.lora_A.weight`), or nil for weights no adapter touches
    /// (embeddings, norms, output). The MoE router (`feed_forward.gate`) is a linear layer too
    /// and is accepted, so an adapter trained with it is not refused.
    public func loraName(_ factor: LoRAFactor) -> String? {
        switch self {
        case .tokEmbeddings, .finalNorm, .output, .attentionNorm, .ffnNorm: return nil
        default:
            let base = nativeName
            guard base.hasSuffix(".weight") else { return nil }
            return String(base.dropLast(".weight".count)) + ".\(factor.rawValue).weight"
        }
    }

    /// Every adapter tensor name a model with `config` can have, mapped to its weight and factor.
    public static func loraNames(for c: ModelConfig) -> [String: (key: WeightKey, factor: LoRAFactor)] {
        var names: [String: (key: WeightKey, factor: LoRAFactor)] = [:]
        for key in all(for: c) {
            for factor in LoRAFactor.allCases {
                if let name = key.loraName(factor) { names[name] = (key, factor) }
            }
        }
        return names
    }
}

/// How a checkpoint names its tensors and orders its wq/wk rows.
public enum CheckpointLayout: String, Sendable, Equatable {
    /// Mistral's own files: interleaved (complex-pair) RoPE row order.
    case native
    /// transformers' files: q/k rows permuted per head for rotate-half RoPE.
    case huggingFace
}

/// Where a model's weights come from: a loaded checkpoint, or seeded random weights for benches.
public protocol WeightSource: Sendable {
    var config: ModelConfig { get }
    /// The tensor for `key`, shape-checked against `config`, in its stored dtype.
    func tensor(_ key: WeightKey) throws -> HostTensor
}
