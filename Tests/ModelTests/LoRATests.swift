import Checkpoints
import Foundation
import Model
import ModelChecks
import Tensors
import Testing

/// LoRA merged at load against the numpy reference (tools/fixtures/make_lora_fixtures.py): the
/// merged weights bit for bit (up to one bf16 step where f32 and f64 sums round differently),
/// and the logits of the tiny models with the adapter.
@Suite struct LoRATests {
    struct Reference: Decodable {
        var prompts: [[Int]]
        var scales: [String: [String]]
        var base_relative_change: Double
    }

    static func directory(_ name: String) -> URL { TinyModels.directory.appendingPathComponent("lora-\(name)") }

    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory(name).appendingPathComponent("reference.json")))
    }

    static func merged(_ base: MistralCheckpoint, adapterOf name: String, scale: Float) throws -> LoRAMergedWeights {
        let adapter = try LoRAAdapter.load(directory(name).appendingPathComponent("lora.safetensors"),
                                           config: base.config, baseDType: base.dtype)
        return LoRAMergedWeights(base: base, adapter: adapter, scale: scale)
    }

    @Test(arguments: ["dense", "moe"])
    func mergedWeightsMatchNumpy(_ name: String) throws {
        let base = try TinyModels.checkpoint(name)
        let merged = try Self.merged(base, adapterOf: name, scale: 2.0)
        #expect(merged.adapter.pairs.count == 10)
        let expected = try TensorArchive.safetensors(Self.directory(name).appendingPathComponent("merged.safetensors"))
        let keys = Dictionary(uniqueKeysWithValues: WeightKey.all(for: base.config).map { ($0.nativeName, $0) })
        var adapted = Set<WeightKey>()
        for tensorName in expected.names {
            let key = try #require(keys[tensorName])
            adapted.insert(key)
            let want = try expected.tensor(named: tensorName)
            let got = try merged.tensor(key)
            #expect(got.shape == want.shape && got.dtype == .bf16)
            let a = got.data.bindMemory(to: UInt16.self), b = want.data.bindMemory(to: UInt16.self)
            var differing = 0
            for i in 0..<a.count where a[i] != b[i] {
                differing += 1
                #expect(abs(Int(a[i]) - Int(b[i])) == 1, "\(tensorName)[\(i)]: \(a[i]) vs \(b[i]) is more than one bf16 step")
            }
            #expect(differing * 100 <= a.count, "\(tensorName): \(differing) of \(a.count) elements differ")
            // The merge changed the weight.
            #expect(Array(got.data) != Array(try base.tensor(key).data), "\(tensorName) was not merged")
        }
        #expect(adapted == Set(merged.adapter.pairs.keys))
        for key in WeightKey.all(for: base.config) where !adapted.contains(key) {
            #expect(Array(try merged.tensor(key).data) == Array(try base.tensor(key).data), "\(key.nativeName) changed")
        }
    }

    @Test(arguments: [("dense", "dense", 2.0), ("dense", "dense", 0.5), ("moe", "moe", 2.0), ("moe", "moe", 0.5),
                      ("dense-hf", "dense", 2.0), ("moe-hf", "moe", 2.0)])
    func logitsMatchReference(_ model: String, _ adapter: String, _ scale: Double) throws {
        let ref = try Self.reference(adapter)
        // A model that ignored the adapter would be this far off: far beyond the tolerance.
        #expect(ref.base_relative_change > 0.05)
        let base = try TinyModels.checkpoint(model)
        let lm = try TinyModels.model(try Self.merged(base, adapterOf: adapter, scale: Float(scale)))
        let files = try #require(ref.scales["\(scale)"])
        for (prompt, file) in zip(ref.prompts, files) {
            var table: [Int] = []
            #expect(lm.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
            let logits = try lm.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
            lm.kvBlocks.release(table)
            let expected = try NPY.readFloat32(Self.directory(adapter).appendingPathComponent(file))
            #expect(expected.shape == [prompt.count, base.config.vocabSize])
            let err = relativeError(logits.values, expected.values)
            #expect(err < 1e-4, "\(model) + lora-\(adapter) scale \(scale) \(file): relative error \(err)")
        }
    }
}
