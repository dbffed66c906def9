import Checkpoints
import Foundation
import Tensors
import Testing

/// Adapters that do not fit the model are refused at load, naming the tensor.
@Suite struct LoRAAdapterTests {
    let dense: MistralCheckpoint   // D 32, H·Dh 64, G·Dh 32, F 64, 2 layers
    let moe: MistralCheckpoint     // D 32, F 48, 4 experts, 2 layers

    init() throws {
        dense = try MistralCheckpoint.load(directory: Fixtures.model("dense"))
        moe = try MistralCheckpoint.load(directory: Fixtures.model("moe"))
    }

    func bf16(_ name: String, _ shape: [Int]) -> RawEntry {
        RawEntry(name: name, dtype: "BF16", shape: shape, bytes: [UInt8](repeating: 0x3c, count: 2 * shape.reduce(1, *)))
    }

    func f32(_ name: String, _ shape: [Int]) -> RawEntry {
        RawEntry(name: name, dtype: "F32", shape: shape, bytes: [UInt8](repeating: 0x3c, count: 4 * shape.reduce(1, *)))
    }

    /// Loads `entries` as an adapter for `base`.
    func load(_ entries: [RawEntry], for base: MistralCheckpoint) throws -> LoRAAdapter {
        let dir = try TempDir()
        let url = dir.file("lora.safetensors")
        try writeSafetensors(entries, to: url)
        return try LoRAAdapter.load(url, config: base.config, baseDType: base.dtype)
    }

    let wqA = "layers.0.attention.wq.lora_A.weight", wqB = "layers.0.attention.wq.lora_B.weight"

    @Test func acceptsAWellFormedAdapter() throws {
        let adapter = try load([bf16(wqA, [2, 32]), bf16(wqB, [64, 2]),
                                bf16("layers.1.feed_forward.w2.lora_A.weight", [2, 64]),
                                bf16("layers.1.feed_forward.w2.lora_B.weight", [32, 2])], for: dense)
        #expect(adapter.pairs.count == 2)
        #expect(adapter.pairs[.wq(layer: 0)]?.rank == 2)
        #expect(adapter.pairs[.w2(layer: 1)]?.a.shape == [2, 64])
        let expert = try load([bf16("layers.1.feed_forward.experts.3.w1.lora_A.weight", [4, 32]),
                               bf16("layers.1.feed_forward.experts.3.w1.lora_B.weight", [48, 4]),
                               bf16("layers.0.feed_forward.gate.lora_A.weight", [1, 32]),
                               bf16("layers.0.feed_forward.gate.lora_B.weight", [4, 1])], for: moe)
        #expect(expert.pairs[.expertW1(layer: 1, expert: 3)]?.rank == 4)
        #expect(expert.pairs[.moeGate(layer: 0)]?.rank == 1)
    }

    @Test func refusesTensorsThatAreNotLoRAFactors() throws {
        let e = expectCheckpointError(.unexpectedTensor) {
            _ = try load([bf16(wqA, [2, 32]), bf16(wqB, [64, 2]), bf16("layers.0.attention.wq.weight", [64, 32])], for: dense)
        }
        #expect(e?.tensor == "layers.0.attention.wq.weight")
        #expect(e?.message.contains("not a LoRA factor") == true)
    }

    @Test func refusesModulesTheModelDoesNotHave() throws {
        for name in ["layers.2.attention.wq.lora_A.weight",              // past the last layer
                     "layers.0.feed_forward.experts.0.w1.lora_A.weight", // experts on a dense model
                     "layers.0.feed_forward.gate.lora_A.weight",         // router on a dense model
                     "output.lora_A.weight", "layers.0.attention_norm.lora_A.weight"] {
            let e = expectCheckpointError(.unexpectedTensor) { _ = try load([bf16(name, [2, 32])], for: dense) }
            #expect(e?.tensor == name)
            #expect(e?.message.contains("does not have") == true, "\(e?.message ?? "")")
        }
        for name in ["layers.0.feed_forward.w1.lora_B.weight", "layers.0.feed_forward.experts.4.w2.lora_A.weight"] {
            let e = expectCheckpointError(.unexpectedTensor) { _ = try load([bf16(name, [2, 32])], for: moe) }
            #expect(e?.message.contains("4 experts") == true, "\(e?.message ?? "")")
        }
    }

    @Test func refusesAFactorWithoutItsPartner() throws {
        let e = expectCheckpointError(.missingTensor) { _ = try load([bf16(wqA, [2, 32])], for: dense) }
        #expect(e?.tensor == wqB)
        let f = expectCheckpointError(.missingTensor) { _ = try load([bf16(wqB, [64, 2])], for: dense) }
        #expect(f?.tensor == wqA)
    }

    @Test func refusesWrongShapes() throws {
        var e = expectCheckpointError(.wrongShape) { _ = try load([bf16(wqA, [2, 31]), bf16(wqB, [64, 2])], for: dense) }
        #expect(e?.tensor == wqA)
        e = expectCheckpointError(.wrongShape) { _ = try load([bf16(wqA, [2, 32]), bf16(wqB, [32, 2])], for: dense) }
        #expect(e?.tensor == wqB)
        e = expectCheckpointError(.wrongShape) { _ = try load([bf16(wqA, [2, 32]), bf16(wqB, [64, 3])], for: dense) }
        #expect(e?.message.contains("rank") == true)
        e = expectCheckpointError(.wrongShape) { _ = try load([bf16(wqA, [64]), bf16(wqB, [64, 2])], for: dense) }
        #expect(e?.tensor == wqA)
        e = expectCheckpointError(.wrongShape) { _ = try load([bf16(wqA, [0, 32]), bf16(wqB, [64, 0])], for: dense) }
        #expect(e?.tensor == wqA)
    }

    @Test func refusesMixedOrForeignDTypes() throws {
        let e = expectCheckpointError(.dtypeMismatch) { _ = try load([f32(wqA, [2, 32]), bf16(wqB, [64, 2])], for: dense) }
        #expect(e?.message.contains("one dtype") == true)
        let f = expectCheckpointError(.dtypeMismatch) { _ = try load([f32(wqA, [2, 32]), f32(wqB, [64, 2])], for: dense) }
        #expect(f?.message.contains("bf16") == true)
    }

    @Test func refusesEmptyMissingAndFolderPaths() throws {
        expectCheckpointError(.missingTensor) { _ = try load([], for: dense) }
        let dir = try TempDir()
        let e = expectCheckpointError(.fileNotFound) {
            _ = try LoRAAdapter.load(dir.file("nope.safetensors"), config: dense.config, baseDType: .bf16)
        }
        #expect(e?.message.contains("does not exist") == true)
        let f = expectCheckpointError(.fileNotFound) { _ = try LoRAAdapter.load(dir.url, config: dense.config, baseDType: .bf16) }
        #expect(f?.message.contains("folder") == true)
        try dir.write("bad.safetensors", "not a safetensors file")
        do {
            _ = try LoRAAdapter.load(dir.file("bad.safetensors"), config: dense.config, baseDType: .bf16)
            Issue.record("a broken file loaded")
        } catch is CheckpointError {}
    }
}
