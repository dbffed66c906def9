import Foundation

/// Hugging Face `config.json` of `MistralForCausalLM` / `MixtralForCausalLM`, mapped onto
/// `ModelConfig`. Only the fields the model needs; everything else is ignored.
struct HFConfig: Decodable {
    var modelType: String?
    var hiddenSize: Int
    var numHiddenLayers: Int
    var intermediateSize: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int?
    var headDim: Int?
    var rmsNormEps: Float
    var ropeTheta: Float?
    var slidingWindow: Int?
    var numLocalExperts: Int?
    var numExpertsPerTok: Int?
    var vocabSize: Int
    var tieWordEmbeddings: Bool?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case intermediateSize = "intermediate_size"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case slidingWindow = "sliding_window"
        case numLocalExperts = "num_local_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case vocabSize = "vocab_size"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    var modelConfig: ModelConfig {
        let moe: ModelConfig.MoE? = if let e = numLocalExperts, let k = numExpertsPerTok, e > 1 {
            ModelConfig.MoE(numExperts: e, numExpertsPerTok: k)
        } else {
            nil
        }
        // transformers' class defaults when the field is absent: MistralConfig 10000, MixtralConfig 1e6.
        let defaultTheta: Float = (modelType == "mistral") ? 10_000 : 1_000_000
        return ModelConfig(dim: hiddenSize, nLayers: numHiddenLayers,
                           headDim: headDim ?? hiddenSize / max(numAttentionHeads, 1),
                           hiddenDim: intermediateSize, nHeads: numAttentionHeads,
                           nKVHeads: numKeyValueHeads ?? numAttentionHeads, normEps: rmsNormEps,
                           vocabSize: vocabSize, ropeTheta: ropeTheta ?? defaultTheta,
                           slidingWindow: slidingWindow, moe: moe)
    }
}

/// Decodes `type` from a JSON file, turning every failure into a `CheckpointError` that names the
/// file and the offending field.
func decodeJSONFile<T: Decodable>(_ type: T.Type, _ url: URL) throws -> T {
    let name = url.lastPathComponent
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
        throw CheckpointError(.fileNotFound, file: name, "cannot read: \(error.localizedDescription)")
    }
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let DecodingError.dataCorrupted(ctx) where ctx.codingPath.isEmpty {
        throw CheckpointError(.badJSON, file: name, "not valid JSON: \(ctx.debugDescription)")
    } catch let DecodingError.keyNotFound(key, ctx) {
        throw CheckpointError(.badConfig, file: name, "missing field '\(path(ctx.codingPath + [key]))'")
    } catch let DecodingError.typeMismatch(_, ctx) {
        throw CheckpointError(.badConfig, file: name, "field '\(path(ctx.codingPath))' has the wrong type: \(ctx.debugDescription)")
    } catch let DecodingError.valueNotFound(_, ctx) {
        throw CheckpointError(.badConfig, file: name, "field '\(path(ctx.codingPath))' is null")
    } catch let DecodingError.dataCorrupted(ctx) {
        throw CheckpointError(.badConfig, file: name, "field '\(path(ctx.codingPath))': \(ctx.debugDescription)")
    } catch {
        throw CheckpointError(.badJSON, file: name, "cannot decode: \(error)")
    }
}

private func path(_ keys: [CodingKey]) -> String {
    keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
}

extension ModelConfig {
    /// Rejects values the forward pass cannot run with (instead of crashing or dividing by zero
    /// later). `file` is the config file's name, for the message.
    func validate(file: String) throws {
        func bad(_ field: String, _ why: String) -> CheckpointError {
            CheckpointError(.badConfig, file: file, "field '\(field)' \(why)")
        }
        for (field, v) in [("dim", dim), ("n_layers", nLayers), ("head_dim", headDim), ("hidden_dim", hiddenDim),
                           ("n_heads", nHeads), ("n_kv_heads", nKVHeads), ("vocab_size", vocabSize)] where v <= 0 {
            throw bad(field, "must be positive, is \(v)")
        }
        guard headDim % 2 == 0 else { throw bad("head_dim", "must be even for RoPE, is \(headDim)") }
        guard nHeads % nKVHeads == 0 else {
            throw bad("n_kv_heads", "(\(nKVHeads)) must divide n_heads (\(nHeads))")
        }
        guard normEps > 0, normEps.isFinite else { throw bad("norm_eps", "must be positive, is \(normEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw bad("rope_theta", "must be positive, is \(ropeTheta)") }
        if let w = slidingWindow, w <= 0 { throw bad("sliding_window", "must be positive, is \(w)") }
        if let moe {
            guard moe.numExperts > 0 else { throw bad("moe.num_experts", "must be positive, is \(moe.numExperts)") }
            guard moe.numExpertsPerTok > 0, moe.numExpertsPerTok <= moe.numExperts else {
                throw bad("moe.num_experts_per_tok", "must be in 1...\(moe.numExperts), is \(moe.numExpertsPerTok)")
            }
        }
    }
}
