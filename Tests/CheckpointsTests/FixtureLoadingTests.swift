import Foundation
import Testing
import Checkpoints
import Tensors

/// Loading the tiny fixture models in every layout they come in, and checking that the layouts
/// agree byte for byte (each layout was written by a different writer: our numpy safetensors
/// writer, torch.save, and the numpy HF conversion with rotate-half permutation).
@Suite struct FixtureLoadingTests {
    @Test func denseNativeSafetensors() throws {
        let ckpt = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        let c = ckpt.config
        #expect(c == ModelConfig(dim: 32, nLayers: 2, headDim: 16, hiddenDim: 64, nHeads: 4, nKVHeads: 2,
                                 normEps: 1e-5, vocabSize: 300, ropeTheta: 10000, slidingWindow: 6))
        #expect(ckpt.layout == .native)
        #expect(ckpt.dtype == .bf16)
        #expect(ckpt.weightFiles.map(\.lastPathComponent) == ["consolidated.safetensors"])
        #expect(ckpt.configFile.lastPathComponent == "params.json")
        #expect(ckpt.tokenizerURL == nil)
        for key in WeightKey.all(for: c) {
            let t = try ckpt.tensor(key)
            #expect(t.shape == key.shape(c))
            #expect(t.dtype == .bf16)
            #expect(t.owner is MappedFile, "native weights must be views into the mapping, not copies")
        }
        #expect(try ckpt.tensor(.wq(layer: 1)).shape == [64, 32])
        #expect(try ckpt.tensor(.wk(layer: 0)).shape == [32, 32])
        expectCheckpointError(.missingTensor) { _ = try ckpt.tensor(.moeGate(layer: 0)) }
    }

    @Test func moeNative() throws {
        let ckpt = try MistralCheckpoint.load(directory: Fixtures.model("moe"))
        let c = ckpt.config
        #expect(c.moe == ModelConfig.MoE(numExperts: 4, numExpertsPerTok: 2))
        #expect(c.ropeTheta == 1_000_000, "rope_theta absent from params.json defaults to 1e6 like mistral-inference")
        #expect(c.slidingWindow == nil)
        #expect(try ckpt.tensor(.moeGate(layer: 1)).shape == [4, 32])
        #expect(try ckpt.tensor(.expertW2(layer: 1, expert: 3)).shape == [32, 48])
        expectCheckpointError(.missingTensor) { _ = try ckpt.tensor(.w1(layer: 0)) }
    }

    @Test func mqaNative() throws {
        let ckpt = try MistralCheckpoint.load(directory: Fixtures.model("mqa"))
        #expect(ckpt.config.nKVHeads == 1)
        #expect(ckpt.config.normEps == 1e-6)
        #expect(try ckpt.tensor(.wk(layer: 0)).shape == [8, 32])
        #expect(try ckpt.tensor(.wv(layer: 1)).shape == [8, 32])
    }

    /// First weights in the fixture, decoded by hand from the file bytes the numpy script wrote:
    /// checks the view points at the right bytes (not just the right count).
    @Test func viewsPointAtTheRightBytes() throws {
        let url = Fixtures.model("dense").appendingPathComponent("consolidated.safetensors")
        let raw = try Data(contentsOf: url)
        let headerLength = raw.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        let header = try #require(JSONSerialization.jsonObject(with: raw.subdata(in: 8..<(8 + headerLength))) as? [String: Any])
        let ckpt = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        for key in [WeightKey.output, .wo(layer: 1), .finalNorm] {
            let info = try #require(header[key.nativeName] as? [String: Any])
            let offsets = try #require(info["data_offsets"] as? [Int])
            let expected = Array(raw[(8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1])])
            #expect(bytes(try ckpt.tensor(key)) == expected)
        }
    }

    @Test func pthEqualsSafetensors() throws {
        let dir = try TempDir()
        try dir.copy(Fixtures.model("dense").appendingPathComponent("params.json"))
        try dir.copy(Fixtures.model("dense").appendingPathComponent("consolidated.00.pth"))
        let pth = try MistralCheckpoint.load(directory: dir.url)
        let st = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        #expect(pth.weightFiles.map(\.lastPathComponent) == ["consolidated.00.pth"])
        #expect(pth.config == st.config)
        for key in WeightKey.all(for: st.config) {
            let a = try pth.tensor(key), b = try st.tensor(key)
            #expect(a.shape == b.shape && a.dtype == b.dtype)
            #expect(bytes(a) == bytes(b), "\(key.nativeName)")
            #expect(a.owner is MappedFile)
        }
    }

    @Test func huggingFaceDenseEqualsNativeAfterUnpermute() throws {
        let hf = try MistralCheckpoint.load(directory: Fixtures.model("dense-hf"))
        let native = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        #expect(hf.layout == .huggingFace)
        #expect(hf.configFile.lastPathComponent == "config.json")
        #expect(hf.config == native.config)
        for key in WeightKey.all(for: native.config) {
            #expect(bytes(try hf.tensor(key)) == bytes(try native.tensor(key)), "\(key.huggingFaceName)")
        }
        // The file really is permuted (otherwise the comparison above proves nothing about wq/wk).
        let raw = try TensorArchive.safetensors(Fixtures.model("dense-hf").appendingPathComponent("model.safetensors"))
        #expect(bytes(try raw.tensor(named: WeightKey.wq(layer: 0).huggingFaceName)) != bytes(try native.tensor(.wq(layer: 0))))
        #expect(bytes(try raw.tensor(named: WeightKey.wk(layer: 1).huggingFaceName)) != bytes(try native.tensor(.wk(layer: 1))))
        #expect(try hf.tensor(.wq(layer: 0)).owner is OwnedBytes)
        #expect(try hf.tensor(.wv(layer: 0)).owner is MappedFile)
    }

    @Test func huggingFaceShardedMoEEqualsNative() throws {
        let hf = try MistralCheckpoint.load(directory: Fixtures.model("moe-hf"))
        let native = try MistralCheckpoint.load(directory: Fixtures.model("moe"))
        #expect(hf.weightFiles.map(\.lastPathComponent) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(hf.config == native.config)
        for key in WeightKey.all(for: native.config) {
            #expect(bytes(try hf.tensor(key)) == bytes(try native.tensor(key)), "\(key.huggingFaceName)")
        }
    }

    /// transformers' conventions a config.json may rely on: tied embeddings without lm_head, and the
    /// class default rope_theta (MistralConfig 1e4, MixtralConfig 1e6) when the field is absent.
    @Test func huggingFaceTiedEmbeddingsAndDefaults() throws {
        let dir = try TempDir()
        let src = Fixtures.model("dense-hf")
        let archive = try TensorArchive.safetensors(src.appendingPathComponent("model.safetensors"))
        let entries = try archive.names.filter { $0 != "lm_head.weight" }.map { RawEntry(name: $0, try archive.tensor(named: $0)) }
        try writeSafetensors(entries, to: dir.file("model.safetensors"))
        var config = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as? [String: Any])
        expectCheckpointError(.missingTensor) {
            try dir.write("config.json", String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
            _ = try MistralCheckpoint.load(directory: dir.url)
        }
        config["tie_word_embeddings"] = true
        config["rope_theta"] = nil
        config["head_dim"] = nil
        try dir.write("config.json", String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
        // Without head_dim the HF default is hidden_size / heads = 8, which the weights contradict.
        expectCheckpointError(.wrongShape) { _ = try MistralCheckpoint.load(directory: dir.url) }
        config["head_dim"] = 16
        try dir.write("config.json", String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
        let ckpt = try MistralCheckpoint.load(directory: dir.url)
        #expect(ckpt.config.ropeTheta == 10_000)
        #expect(bytes(try ckpt.tensor(.output)) == bytes(try ckpt.tensor(.tokEmbeddings)))
        config["model_type"] = "mixtral"
        try dir.write("config.json", String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
        #expect(try MistralCheckpoint.load(directory: dir.url).config.ropeTheta == 1_000_000)
    }

    @Test func paramsJSONWinsOverConfigJSON() throws {
        let dir = try TempDir()
        for f in ["params.json", "consolidated.safetensors"] { try dir.copy(Fixtures.model("dense").appendingPathComponent(f)) }
        for f in ["config.json", "model.safetensors"] { try dir.copy(Fixtures.model("dense-hf").appendingPathComponent(f)) }
        let ckpt = try MistralCheckpoint.load(directory: dir.url)
        #expect(ckpt.layout == .native)
        #expect(ckpt.weightFiles.map(\.lastPathComponent) == ["consolidated.safetensors"])
    }

    @Test(arguments: [
        (["tokenizer.model.v3"], "tokenizer.model.v3"),
        (["tokenizer.model.v1", "tokenizer.model.v3"], "tokenizer.model.v3"),
        (["tokenizer.model", "tokenizer.model.v3"], "tokenizer.model"),
        (["tokenizer.model.v1"], "tokenizer.model.v1"),
        (["tokenizer.model.v7", "tokenizer.model.v10"], "tokenizer.model.v10"),
        (["tekken.json"], nil),
    ] as [([String], String?)])
    func tokenizerDiscovery(files: [String], expected: String?) throws {
        let dir = try TempDir()
        for f in ["params.json", "consolidated.safetensors"] { try dir.copy(Fixtures.model("mqa").appendingPathComponent(f)) }
        for f in files { try dir.write(f, "not read by the loader") }
        let ckpt = try MistralCheckpoint.load(directory: dir.url)
        #expect(ckpt.tokenizerURL?.lastPathComponent == expected)
    }
}
