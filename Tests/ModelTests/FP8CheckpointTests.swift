import Checkpoints
import Foundation
import Model
import Tensors
import Testing

/// Native FP8 checkpoints (`FP8CheckpointWriter`, what `mixtral-chat quantize` writes) round-trip,
/// and Hugging Face FP8 checkpoints (compressed-tensors) load and match their numpy reference.
@Suite struct FP8CheckpointTests {
    final class TempDir {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fp8-tests-\(UUID().uuidString)")
        deinit { try? FileManager.default.removeItem(at: url) }
    }

    static let demo = TinyModels.directory.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("models/chloe-tiny")

    /// The written checkpoint loads as FP8 without re-quantizing: the same codes and scales as
    /// quantizing while loading, the unquantized weights byte for byte, and the same logits.
    @Test(arguments: ["dense", "moe"])
    func writtenCheckpointLoadsDirectly(_ name: String) throws {
        let original = try TinyModels.checkpoint(name)
        let dir = TempDir()
        try FP8CheckpointWriter.write(original, to: dir.url)
        let loaded = try MistralCheckpoint.load(directory: dir.url)
        #expect(loaded.quantization == .fp8 && loaded.dtype == .bf16 && loaded.layout == .native)
        #expect(loaded.config == original.config)
        let onTheFly = FP8QuantizingSource(original)
        for key in WeightKey.all(for: original.config) {
            let a = try loaded.tensor(key), b = try onTheFly.tensor(key)
            #expect(a.dtype == b.dtype && a.shape == b.shape, "\(key.nativeName)")
            #expect(Array(a.data) == Array(b.data), "\(key.nativeName): bytes")
            #expect(a.rowScales.map(Array.init) == b.rowScales.map(Array.init), "\(key.nativeName): scales")
        }
        let params = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.url.appendingPathComponent("params.json"))) as? [String: Any]
        #expect((params?["quantization"] as? [String: Any])?["format"] as? String == "fp8_e4m3")

        let ref = try FP8ForwardTests.reference(name)
        let model = try TinyModels.model(loaded)
        let prompt = ref.prompts[1]
        var table: [Int] = []
        #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
        let logits = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
        let err = relativeError(logits.values, try TinyModels.referenceLogits(name, ref.logits[1]).values)
        #expect(err < 1e-4, "\(name): relative error \(err) against the numpy simulation")
    }

    /// The tokenizer files are copied and the result is a complete model folder (the demo model).
    @Test func quantizedDemoModelKeepsItsTokenizer() throws {
        let original = try MistralCheckpoint.load(directory: Self.demo)
        let dir = TempDir()
        try FP8CheckpointWriter.write(original, to: dir.url)
        let loaded = try MistralCheckpoint.load(directory: dir.url)
        let tokenizer = try #require(loaded.tokenizerURL)
        #expect(try Data(contentsOf: tokenizer) == Data(contentsOf: try #require(original.tokenizerURL)))
        let weights = try FileManager.default.attributesOfItem(atPath: dir.url.appendingPathComponent("consolidated.safetensors").path)[.size] as? Int
        let before = try FileManager.default.attributesOfItem(atPath: Self.demo.appendingPathComponent("consolidated.safetensors").path)[.size] as? Int
        #expect((weights ?? 0) < (before ?? 0), "FP8 file \(weights ?? 0) bytes, bf16 \(before ?? 0)")
    }

    @Test func refusesToOverwriteACheckpoint() throws {
        let dir = TempDir()
        try FP8CheckpointWriter.write(try TinyModels.checkpoint("mqa"), to: dir.url)
        #expect(throws: CheckpointError.self) { try FP8CheckpointWriter.write(try TinyModels.checkpoint("mqa"), to: dir.url) }
    }

    /// compressed-tensors FP8 (per-channel F32 (N, 1) scales on attention, per-tensor F32 () and
    /// BF16 (1) scales on the experts, input_scale ignored, q/k permuted) against the numpy
    /// forward pass of its dequantized weights.
    @Test func huggingFaceFP8CheckpointMatchesReference() throws {
        let ckpt = try MistralCheckpoint.load(directory: TinyModels.directory.appendingPathComponent("moe-hf-fp8"))
        #expect(ckpt.quantization == .fp8 && ckpt.layout == .huggingFace)
        #expect(try ckpt.tensor(.wq(layer: 0)).dtype == .e4m3 && ckpt.tensor(.moeGate(layer: 0)).dtype == .bf16)
        let ref = try TinyModels.reference("moe-hf-fp8")
        let model = try TinyModels.model(ckpt)
        for (prompt, file) in zip(ref.prompts, ref.logits) {
            var table: [Int] = []
            #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
            let logits = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
            model.kvBlocks.release(table)
            let err = relativeError(logits.values, try TinyModels.referenceLogits("moe-hf-fp8", file).values)
            #expect(err < 1e-4, "\(file): relative error \(err)")
        }
    }

    /// Schemes the engine cannot compute fail at load, naming the file.
    @Test(arguments: [
        #"{"quant_method": "awq", "bits": 4}"#,
        #"{"quant_method": "fp8", "weight_block_size": [128, 128]}"#,
        #"{"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}}}"#,
        #"{"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "block"}}}}"#,
    ])
    func unsupportedQuantizationIsAClearError(_ config: String) throws {
        let dir = TempDir()
        let source = TinyModels.directory.appendingPathComponent("moe-hf-fp8")
        try FileManager.default.copyItem(at: source, to: dir.url)
        let configURL = dir.url.appendingPathComponent("config.json")
        var root = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        root["quantization_config"] = try JSONSerialization.jsonObject(with: Data(config.utf8))
        try JSONSerialization.data(withJSONObject: root).write(to: configURL)
        #expect {
            try MistralCheckpoint.load(directory: dir.url)
        } throws: { error in
            (error as? CheckpointError)?.kind == .unsupported && (error as? CheckpointError)?.file == "config.json"
        }
    }

    /// An FP8 weight without its scale tensor names the missing tensor.
    @Test func missingScaleIsAClearError() throws {
        let dir = TempDir()
        try FP8CheckpointWriter.write(try TinyModels.checkpoint("mqa"), to: dir.url)
        // Rename the scale in the header (same length keeps the offsets valid).
        let url = dir.url.appendingPathComponent("consolidated.safetensors")
        var bytes = try Data(contentsOf: url)
        let from = Data("layers.0.attention.wq.weight_scale".utf8), to = Data("layers.0.attention.wq.weight_scalX".utf8)
        let range = try #require(bytes.range(of: from))
        bytes.replaceSubrange(range, with: to)
        try bytes.write(to: url)
        #expect {
            try MistralCheckpoint.load(directory: dir.url)
        } throws: { error in
            let e = error as? CheckpointError
            return e?.kind == .missingTensor && e?.tensor == "layers.0.attention.wq.weight_scale"
        }
    }
}
