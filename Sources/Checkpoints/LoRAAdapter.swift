import Foundation
import Tensors

/// A LoRA adapter as mistral-finetune saves it (`lora.safetensors`): for each adapted linear
/// weight W (out, in) of the base model, `<module>.lora_A.weight` (r, in) and
/// `<module>.lora_B.weight` (out, r), names from `WeightKey.loraName`.
///
/// Loading checks the whole file against the base model up front, as `MistralCheckpoint.load`
/// does for weights, so a wrong adapter fails at start-up naming the tensor: every tensor must be
/// a LoRA factor of a module this model has (a layer or expert index past the config's, a dense
/// FFN key on an MoE model, …, are refused rather than silently skipped as mistral-inference
/// does), both factors of a module must be present with one rank and the shapes W implies, and
/// every factor must share the base weights' dtype (mistral-inference's rule).
public struct LoRAAdapter: Sendable {
    public struct Pair: Sendable {
        public let a: HostTensor   // (r, in)
        public let b: HostTensor   // (out, r)
        public var rank: Int { a.shape[0] }
    }

    public let file: URL
    public let pairs: [WeightKey: Pair]
    public let dtype: DType

    /// The adapter in `url`, checked against the base model's `config` and weight `dtype`.
    public static func load(_ url: URL, config: ModelConfig, baseDType: DType) throws -> LoRAAdapter {
        let fileName = url.lastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue else {
            throw CheckpointError(.fileNotFound, file: url.path,
                                  isDir.boolValue ? "--lora names a folder; give the lora.safetensors file in it" : "LoRA adapter file does not exist")
        }
        let archive = try TensorArchive.safetensors(url)
        let known = WeightKey.loraNames(for: config)
        var factors: [WeightKey: [LoRAFactor: HostTensor]] = [:]
        var dtype: DType?
        var firstName = ""
        for name in archive.names {
            guard let entry = known[name] else {
                throw CheckpointError(.unexpectedTensor, file: fileName, tensor: name, unknownReason(name, config))
            }
            let (key, factor) = (entry.key, entry.factor)
            let t = try archive.tensor(named: name)
            if let d = dtype, d != t.dtype {
                throw CheckpointError(.dtypeMismatch, file: fileName, tensor: name,
                                      "stored as \(t.dtype) but '\(firstName)' is \(d); an adapter must have one dtype")
            }
            if dtype == nil { dtype = t.dtype; firstName = name }
            factors[key, default: [:]][factor] = t
        }
        guard let dtype else {
            throw CheckpointError(.missingTensor, file: fileName, "the adapter has no tensors")
        }
        guard LoRAMergedWeights.mergeable.contains(baseDType) else {
            throw CheckpointError(.unsupported, file: fileName, tensor: firstName,
                                  "the model's weights are stored as \(baseDType); a LoRA adapter merges into bf16, f16 or f32 weights (merge into those, then quantize with --quantize fp8)")
        }
        guard dtype == baseDType else {
            throw CheckpointError(.dtypeMismatch, file: fileName, tensor: firstName,
                                  "the adapter is \(dtype) but the model's weights are \(baseDType); they must match")
        }
        var pairs: [WeightKey: Pair] = [:]
        for (key, both) in factors {
            let expected = key.shape(config)   // (out, in)
            guard let a = both[.a], let b = both[.b] else {
                let have: LoRAFactor = both[.a] == nil ? .b : .a
                let missing: LoRAFactor = have == .a ? .b : .a
                throw CheckpointError(.missingTensor, file: fileName, tensor: key.loraName(missing),
                                      "'\(key.loraName(have) ?? "")' is present but its partner is not")
            }
            let aName = key.loraName(.a) ?? "", bName = key.loraName(.b) ?? ""
            guard a.shape.count == 2, a.shape[1] == expected[1], a.shape[0] > 0 else {
                throw CheckpointError(.wrongShape, file: fileName, tensor: aName,
                                      "shape \(a.shape), expected [rank, \(expected[1])] for \(key.nativeName) \(expected)")
            }
            guard b.shape.count == 2, b.shape[0] == expected[0] else {
                throw CheckpointError(.wrongShape, file: fileName, tensor: bName,
                                      "shape \(b.shape), expected [\(expected[0]), rank] for \(key.nativeName) \(expected)")
            }
            guard b.shape[1] == a.shape[0] else {
                throw CheckpointError(.wrongShape, file: fileName, tensor: bName,
                                      "rank \(b.shape[1]) differs from lora_A's rank \(a.shape[0]) (\(a.shape))")
            }
            pairs[key] = Pair(a: a, b: b)
        }
        return LoRAAdapter(file: url, pairs: pairs, dtype: dtype)
    }

    /// Why `name` is not an adapter tensor of this model, as specifically as the name allows.
    private static func unknownReason(_ name: String, _ c: ModelConfig) -> String {
        guard name.contains(".lora_A.") || name.contains(".lora_B.") else {
            return "not a LoRA factor (expected '<module>.lora_A.weight' / '<module>.lora_B.weight')"
        }
        var shape = "\(c.nLayers) layers"
        if let moe = c.moe { shape += ", \(moe.numExperts) experts per layer (MoE: feed_forward.experts.N.w1/w2/w3 and feed_forward.gate)" } else {
            shape += ", a dense FFN (feed_forward.w1/w2/w3)"
        }
        return "a LoRA factor for a module this model does not have (\(shape); attention.wq/wk/wv/wo)"
    }
}
