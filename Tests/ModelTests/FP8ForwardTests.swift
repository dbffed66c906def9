import Checkpoints
import Foundation
import Model
import Tensors
import Testing

/// The FP8 scheme end to end on the CPU reference: the fixture models quantized while they load
/// (`FP8QuantizingSource`) against tools/fixtures/fp8_reference.py, an independent numpy
/// simulation of the scheme run through the float64 reference forward pass.
@Suite struct FP8ForwardTests {
    struct Reference: Decodable {
        struct Quantized: Decodable { var codes: [UInt8]; var scales_f32_bits: [UInt32] }
        var prompts: [[Int]]
        var logits: [String]
        var greedy: [[Int]]
        var tensors: [String: Quantized]
    }

    static func reference(_ name: String) throws -> Reference {
        let url = TinyModels.directory.appendingPathComponent(name).appendingPathComponent("reference_fp8.json")
        return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }

    /// The quantized bytes and scales of the tensors the fixture lists equal numpy's, bit for bit.
    @Test(arguments: TinyModels.names)
    func quantizedTensorsMatchNumpyBitForBit(_ name: String) throws {
        let ref = try Self.reference(name)
        let source = FP8QuantizingSource(try TinyModels.checkpoint(name))
        #expect(!ref.tensors.isEmpty)
        for (tensorName, expected) in ref.tensors {
            let key = try #require(WeightKey.all(for: source.config).first { $0.nativeName == tensorName })
            let t = try source.tensor(key)
            #expect(t.dtype == .e4m3)
            #expect(Array(t.data) == expected.codes, "\(name) \(tensorName): codes")
            #expect(t.rowScales!.map(\.bitPattern) == expected.scales_f32_bits, "\(name) \(tensorName): scales")
        }
    }

    /// Which weights the scheme quantizes: every 2-D weight but embeddings, output and router.
    @Test(arguments: TinyModels.names)
    func quantizesExactlyTheSchemesWeights(_ name: String) throws {
        let source = FP8QuantizingSource(try TinyModels.checkpoint(name))
        for key in WeightKey.all(for: source.config) {
            let t = try source.tensor(key)
            let expected: DType
            switch key {
            case .tokEmbeddings, .output, .moeGate, .finalNorm, .attentionNorm, .ffnNorm: expected = .bf16
            default: expected = .e4m3
            }
            #expect(t.dtype == expected, "\(name) \(key.nativeName)")
        }
    }

    @Test(arguments: TinyModels.names)
    func promptLogitsMatchNumpySimulation(_ name: String) throws {
        let ref = try Self.reference(name)
        let bf16 = try TinyModels.reference(name)
        let model = try TinyModels.model(FP8QuantizingSource(try TinyModels.checkpoint(name)))
        for (i, (prompt, file)) in zip(ref.prompts, ref.logits).enumerated() {
            var table: [Int] = []
            #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count))
            let logits = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
            model.kvBlocks.release(table)
            let expected = try TinyModels.referenceLogits(name, file)
            let err = relativeError(logits.values, expected.values)
            #expect(err < 1e-4, "\(name) \(file): relative error \(err)")
            // The test can fail: fp8 logits are measurably not the bf16 ones.
            let fromBF16 = relativeError(logits.values, try TinyModels.referenceLogits(name, bf16.logits[i]).values)
            #expect(fromBF16 > 1e-3, "\(name): fp8 logits are suspiciously close to bf16 (\(fromBF16))")
        }
    }

    @Test(arguments: TinyModels.names)
    func cachedGreedyDecodeMatchesNumpySimulation(_ name: String) throws {
        let ref = try Self.reference(name)
        let model = try TinyModels.model(FP8QuantizingSource(try TinyModels.checkpoint(name)))
        for (prompt, greedy) in zip(ref.prompts, ref.greedy) {
            let out = try TinyModels.cachedGreedy(model, prompt: prompt, count: greedy.count)
            #expect(out == greedy, "\(name): fp8 greedy continuation")
        }
    }
}
