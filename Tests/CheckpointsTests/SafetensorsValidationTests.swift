import Foundation
import Testing
import Checkpoints
import Tensors

/// Broken safetensors files and configs, crafted in a temp dir from the `dense` fixture: each must
/// fail with the right `CheckpointError` naming the file (and tensor), never crash.
@Suite struct SafetensorsValidationTests {
    /// A temp folder with the dense params.json and a consolidated.safetensors made from `entries`.
    func folder(_ entries: [RawEntry]) throws -> TempDir {
        let dir = try TempDir()
        try dir.copy(Fixtures.model("dense").appendingPathComponent("params.json"))
        try writeSafetensors(entries, to: dir.file("consolidated.safetensors"))
        return dir
    }

    @Test func roundTripOfTheCraftedFileLoads() throws {
        // The crafting helper itself produces a valid checkpoint (so failures below are the edits).
        let dir = try folder(try fixtureEntries("dense"))
        let a = try MistralCheckpoint.load(directory: dir.url)
        let b = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        #expect(bytes(try a.tensor(.output)) == bytes(try b.tensor(.output)))
    }

    @Test func missingTensor() throws {
        let dir = try folder(try fixtureEntries("dense").filter { $0.name != "layers.1.attention.wv.weight" })
        let e = expectCheckpointError(.missingTensor) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "layers.1.attention.wv.weight")
        #expect(e?.file == "consolidated.safetensors")
    }

    @Test func unexpectedTensor() throws {
        var entries = try fixtureEntries("dense")
        entries.append(RawEntry(name: "layers.0.attention.wz.weight", dtype: "BF16", shape: [2], bytes: [1, 2, 3, 4]))
        let dir = try folder(entries)
        let e = expectCheckpointError(.unexpectedTensor) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "layers.0.attention.wz.weight")
    }

    @Test func ignorableRotaryBufferIsAccepted() throws {
        var entries = try fixtureEntries("dense")
        entries.append(RawEntry(name: "layers.0.attention.rotary_emb.inv_freq", dtype: "F32", shape: [1], bytes: [0, 0, 128, 63]))
        let dir = try folder(entries)
        _ = try MistralCheckpoint.load(directory: dir.url)
    }

    @Test func loraTensorsAreRejected() throws {
        var entries = try fixtureEntries("dense")
        entries.append(RawEntry(name: "layers.0.attention.wq.lora_A.weight", dtype: "BF16", shape: [2], bytes: [1, 2, 3, 4]))
        let dir = try folder(entries)
        let e = expectCheckpointError(.unsupported) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.description.contains("LoRA") == true)
    }

    @Test func loraSectionInParamsIsIgnored() throws {
        let dir = try folder(try fixtureEntries("dense"))
        var params = try String(contentsOf: dir.file("params.json"), encoding: .utf8)
        params = params.replacingOccurrences(of: "\"dim\"", with: "\"lora\": {\"rank\": 16, \"scaling\": 2.0}, \"dim\"")
        try dir.write("params.json", params)
        #expect(try MistralCheckpoint.load(directory: dir.url).config.dim == 32)
    }

    @Test func wrongShape() throws {
        var entries = try fixtureEntries("dense")
        let i = try #require(entries.firstIndex { $0.name == "layers.0.attention.wq.weight" })
        entries[i].shape = [32, 64]    // same byte count, transposed shape
        let dir = try folder(entries)
        let e = expectCheckpointError(.wrongShape) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "layers.0.attention.wq.weight")
        #expect(e?.message.contains("[64, 32]") == true)
    }

    @Test func dtypeMix() throws {
        var entries = try fixtureEntries("dense")
        let i = try #require(entries.firstIndex { $0.name == "norm.weight" })
        entries[i] = RawEntry(name: "norm.weight", dtype: "F32", shape: [32], bytes: [UInt8](repeating: 0, count: 128))
        let dir = try folder(entries)
        let e = expectCheckpointError(.dtypeMismatch) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "norm.weight")
    }

    @Test func unknownDType() throws {
        var entries = try fixtureEntries("dense")
        let i = try #require(entries.firstIndex { $0.name == "norm.weight" })
        entries[i].dtype = "I16"
        let dir = try folder(entries)
        let e = expectCheckpointError(.unsupportedDType) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "norm.weight")
        #expect(e?.file == "consolidated.safetensors")
        #expect(e?.message.contains("I16") == true)
    }

    @Test func truncatedData() throws {
        let dir = try folder(try fixtureEntries("dense"))
        let url = dir.file("consolidated.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        let e = expectCheckpointError(.truncated) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "consolidated.safetensors")
        #expect(e?.tensor != nil)
    }

    @Test func truncatedHeader() throws {
        let dir = try folder(try fixtureEntries("dense"))
        let url = dir.file("consolidated.safetensors")
        try Data(contentsOf: url).prefix(50).write(to: url)
        expectCheckpointError(.truncated) { _ = try MistralCheckpoint.load(directory: dir.url) }
        try Data([1, 2, 3]).write(to: url)
        expectCheckpointError(.truncated) { _ = try MistralCheckpoint.load(directory: dir.url) }
        try Data().write(to: url)
        expectCheckpointError(.truncated) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }

    @Test func badHeaderJSON() throws {
        let dir = try folder([])
        try writeRawSafetensors(headerJSON: Array("{\"norm.weight\": {\"dtype\": ".utf8), data: [], to: dir.file("consolidated.safetensors"))
        let e = expectCheckpointError(.badJSON) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "consolidated.safetensors")
        try writeRawSafetensors(headerJSON: Array("[1, 2]".utf8), data: [], to: dir.file("consolidated.safetensors"))
        expectCheckpointError(.badJSON) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }

    @Test func implausibleHeaderLength() throws {
        let dir = try folder([])
        try Data([UInt8](repeating: 0xFF, count: 64)).write(to: dir.file("consolidated.safetensors"))
        expectCheckpointError(.badHeader) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }

    @Test func offsetsThatDisagreeWithTheShape() throws {
        let dir = try folder([])
        let header = #"{"norm.weight": {"dtype": "BF16", "shape": [32], "data_offsets": [0, 62]}}"#
        try writeRawSafetensors(headerJSON: Array(header.utf8), data: [UInt8](repeating: 0, count: 64),
                                to: dir.file("consolidated.safetensors"))
        let e = expectCheckpointError(.badHeader) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.tensor == "norm.weight")
        let reversed = #"{"norm.weight": {"dtype": "BF16", "shape": [1], "data_offsets": [4, 2]}}"#
        try writeRawSafetensors(headerJSON: Array(reversed.utf8), data: [UInt8](repeating: 0, count: 64),
                                to: dir.file("consolidated.safetensors"))
        expectCheckpointError(.badHeader) { _ = try MistralCheckpoint.load(directory: dir.url) }
        let overflow = #"{"x": {"dtype": "BF16", "shape": [4611686018427387904, 4], "data_offsets": [0, 2]}}"#
        try writeRawSafetensors(headerJSON: Array(overflow.utf8), data: [0, 0], to: dir.file("consolidated.safetensors"))
        expectCheckpointError(.badHeader) { _ = try MistralCheckpoint.load(directory: dir.url) }
        let missingField = #"{"x": {"dtype": "BF16", "data_offsets": [0, 2]}}"#
        try writeRawSafetensors(headerJSON: Array(missingField.utf8), data: [0, 0], to: dir.file("consolidated.safetensors"))
        expectCheckpointError(.badHeader) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }

    @Test func brokenParamsJSON() throws {
        let dir = try folder(try fixtureEntries("dense"))
        try dir.write("params.json", "{\"dim\": 32, ")
        var e = expectCheckpointError(.badJSON) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "params.json")
        try dir.write("params.json", #"{"n_layers": 2, "head_dim": 16, "hidden_dim": 64, "n_heads": 4, "n_kv_heads": 2, "norm_eps": 1e-5, "vocab_size": 300}"#)
        e = expectCheckpointError(.badConfig) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.message.contains("dim") == true)
        try dir.write("params.json", #"{"dim": "32", "n_layers": 2, "head_dim": 16, "hidden_dim": 64, "n_heads": 4, "n_kv_heads": 2, "norm_eps": 1e-5, "vocab_size": 300}"#)
        expectCheckpointError(.badConfig) { _ = try MistralCheckpoint.load(directory: dir.url) }
        try dir.write("params.json", #"{"dim": 32, "n_layers": 2, "head_dim": 16, "hidden_dim": 64, "n_heads": 4, "n_kv_heads": 3, "norm_eps": 1e-5, "vocab_size": 300}"#)
        e = expectCheckpointError(.badConfig) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.message.contains("n_kv_heads") == true)
        try dir.write("params.json", #"{"dim": 32, "n_layers": 2, "head_dim": 16, "hidden_dim": 64, "n_heads": 4, "n_kv_heads": 2, "norm_eps": 1e-5, "vocab_size": 300, "moe": {"num_experts": 2, "num_experts_per_tok": 3}}"#)
        expectCheckpointError(.badConfig) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }

    @Test func brokenHFConfig() throws {
        let dir = try TempDir()
        try dir.copy(Fixtures.model("dense-hf").appendingPathComponent("model.safetensors"))
        try dir.write("config.json", #"{"hidden_size": 32, "num_hidden_layers": 2}"#)
        let e = expectCheckpointError(.badConfig) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "config.json")
    }

    @Test func missingFiles() throws {
        let dir = try TempDir()
        expectCheckpointError(.fileNotFound) { _ = try MistralCheckpoint.load(directory: dir.url) }
        try dir.copy(Fixtures.model("dense").appendingPathComponent("params.json"))
        expectCheckpointError(.fileNotFound) { _ = try MistralCheckpoint.load(directory: dir.url) }
        expectCheckpointError(.fileNotFound) { _ = try MistralCheckpoint.load(directory: dir.file("nope")) }
    }

    @Test func shardIndexProblems() throws {
        let dir = try TempDir()
        let src = Fixtures.model("moe-hf")
        for f in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"] {
            try dir.copy(src.appendingPathComponent(f))
        }
        let e = expectCheckpointError(.fileNotFound) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "model-00002-of-00002.safetensors")
        try dir.copy(src.appendingPathComponent("model-00002-of-00002.safetensors"))
        _ = try MistralCheckpoint.load(directory: dir.url)
        try dir.write("model.safetensors.index.json", #"{"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#)
        expectCheckpointError(.missingTensor) { _ = try MistralCheckpoint.load(directory: dir.url) }
        try dir.write("model.safetensors.index.json", #"{"weight_map": ["#)
        expectCheckpointError(.badJSON) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }
}
