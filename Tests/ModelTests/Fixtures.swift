import BackendConformance
import CPUBackend
import Checkpoints
import Foundation
import Model
import ModelChecks
import Tensors
import Testing
import TestSupport

/// The tiny models made by tools/fixtures/make_tiny_models.py, with reference outputs from the
/// independent numpy forward pass in tools/fixtures/reference_forward.py. The forward checks
/// every backend runs on them: ModelChecks.ForwardInvariants.
enum TinyModels {
    static let directory = TestPaths.tinyModels
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
        try cpuTransformer(source, maxBatchTokens: maxTokens, maxBatchSequences: maxSequences,
                           maxSequenceLength: maxSequenceLength, kvBlockCount: 128, kvBlockSize: blockSize)
    }

    /// `count` greedy tokens after `prompt` by cached decode (ModelChecks.cachedGreedy).
    static func cachedGreedy(_ model: Transformer<CPUBackend>, prompt: [Int], count: Int) throws -> [Int] {
        try ModelChecks.cachedGreedy(model, prompt: prompt, count: count)
    }
}

/// ‖a − b‖ / ‖b‖ (BackendConformance's normalised error).
func relativeError(_ a: [Float], _ b: [Float]) -> Double { normalisedError(a, b) }
