import CPUBackend
import Checkpoints
import Foundation
import Model
import Tensors
import Testing

/// The tiny models made by tools/fixtures/make_tiny_models.py, with reference outputs from the
/// independent numpy forward pass in tools/fixtures/reference_forward.py.
enum TinyModels {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let names = ["dense", "moe", "mqa"]

    struct Reference: Decodable {
        var prompts: [[Int]]
        var logits: [String]
        var greedy: [[Int]]
    }

    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory.appendingPathComponent(name).appendingPathComponent("reference.json")))
    }

    static func referenceLogits(_ name: String, _ file: String) throws -> NPY.Array2D {
        try NPY.readFloat32(directory.appendingPathComponent(name).appendingPathComponent(file))
    }

    static func checkpoint(_ name: String) throws -> MistralCheckpoint {
        try MistralCheckpoint.load(directory: directory.appendingPathComponent(name))
    }

    /// A CPU transformer for `source` with room for a few sequences.
    static func model(_ source: any WeightSource, maxTokens: Int = 96, maxSequences: Int = 8,
                      maxSequenceLength: Int = 64, blockSize: Int = 4) throws -> Transformer<CPUBackend> {
        let backend = CPUBackend()
        let weights = try TransformerWeights(source: source, backend: backend)
        return try Transformer(backend: backend, weights: weights, config: source.config,
                               maxBatchTokens: maxTokens, maxBatchSequences: maxSequences,
                               maxSequenceLength: maxSequenceLength, kvBlockCount: 128, kvBlockSize: blockSize)
    }

    /// `count` greedy tokens after `prompt`: the prompt in one forward pass, then one cached
    /// decode step per token (the path the engine takes).
    static func cachedGreedy(_ model: Transformer<CPUBackend>, prompt: [Int], count: Int) throws -> [Int] {
        var table: [Int] = []
        #expect(model.kvBlocks.ensureCapacity(&table, tokens: prompt.count + count))
        defer { model.kvBlocks.release(table) }
        var logits = try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)]))
        var out: [Int] = []
        for _ in 0..<count {
            let next = argmax(logits.row(0))
            out.append(next)
            logits = try model.forward(PackedBatch(sequences: [.init(tokens: [next], startPosition: prompt.count + out.count - 1, blockTable: table)]))
        }
        return out
    }
}

/// ‖a − b‖ / ‖b‖.
func relativeError(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return (num / max(den, 1e-30)).squareRoot()
}

func argmax(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}
