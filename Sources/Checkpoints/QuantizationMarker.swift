import Foundation

/// What a checkpoint's config file says about quantized weights: our native marker in
/// `params.json` (written by `FP8CheckpointWriter`) or Hugging Face's `quantization_config` in
/// `config.json`. The weights themselves are self-describing (F8_E4M3 + `weight_scale`); this
/// refuses, with a clear error, schemes this engine cannot compute (int4, block-wise FP8, …)
/// instead of failing later on a missing scale.
enum QuantizationMarker {
    /// The key in params.json, and what `FP8CheckpointWriter` puts there.
    static let nativeKey = "quantization"
    static var native: [String: Any] { [
        "format": FP8CheckpointWriter.formatName,
        "scales": "per_output_row",
        "scale_tensor_suffix": WeightKey.scaleSuffix,
        "unquantized": ["tok_embeddings", "output", "feed_forward.gate", "norms"],
    ] }
    /// The key in a Hugging Face config.json.
    static let huggingFaceKey = "quantization_config"

    /// The declared quantization, nil when the file declares none.
    static func read(_ url: URL) throws -> WeightQuantization? {
        let name = url.lastPathComponent
        guard let data = try? Data(contentsOf: url),
              let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            return nil   // loadConfig has already reported an unreadable file
        }
        if let marker = root[nativeKey] {
            guard let m = marker as? [String: Any], let format = m["format"] as? String else {
                throw CheckpointError(.badConfig, file: name, "\"\(nativeKey)\" must be an object with a \"format\"")
            }
            guard format == FP8CheckpointWriter.formatName else {
                throw CheckpointError(.unsupported, file: name, "quantization format \"\(format)\" is not supported (only \(FP8CheckpointWriter.formatName))")
            }
            return .fp8
        }
        guard let hf = root[huggingFaceKey] else { return nil }
        guard let q = hf as? [String: Any], let method = q["quant_method"] as? String else {
            throw CheckpointError(.badConfig, file: name, "\"\(huggingFaceKey)\" must be an object with a \"quant_method\"")
        }
        switch method {
        case "compressed-tensors":
            if let format = q["format"] as? String, !["float-quantized", "naive-quantized"].contains(format) {
                throw CheckpointError(.unsupported, file: name, "compressed-tensors format \"\(format)\" is not supported (FP8 float-quantized only)")
            }
            let groups = (q["config_groups"] as? [String: Any]) ?? [:]
            for (group, value) in groups {
                guard let weights = (value as? [String: Any])?["weights"] as? [String: Any] else { continue }
                let bits = (weights["num_bits"] as? NSNumber)?.intValue, type = weights["type"] as? String
                guard bits == 8, type == "float" else {
                    throw CheckpointError(.unsupported, file: name,
                                          "compressed-tensors group \(group): \(bits.map(String.init) ?? "?")-bit \(type ?? "?") weights are not supported (FP8 only)")
                }
                if let strategy = weights["strategy"] as? String, !["tensor", "channel"].contains(strategy) {
                    throw CheckpointError(.unsupported, file: name,
                                          "compressed-tensors group \(group): \"\(strategy)\" weight scales are not supported (per tensor or per channel only)")
                }
            }
            return .fp8
        case "fp8", "fbgemm_fp8":
            if q["weight_block_size"] != nil {
                throw CheckpointError(.unsupported, file: name, "block-wise FP8 scales (weight_block_size) are not supported")
            }
            return .fp8
        default:
            throw CheckpointError(.unsupported, file: name, "quantization method \"\(method)\" is not supported (FP8 e4m3 only)")
        }
    }
}
