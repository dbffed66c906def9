import CPUBackend
import Checkpoints
import Foundation
import Generation
import Model

/// Where the shared test fixtures live, found from this file's path (tests run from anywhere).
public enum TestPaths {
    /// The repository root (this file is Tests/TestSupport/TestModels.swift).
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    /// The tiny fixture models (dense, moe, mqa, …) of tools/fixtures/make_tiny_models.py.
    public static let tinyModels = repository.appendingPathComponent("Tests/ModelTests/Fixtures")
    /// The Chloe-tiny demo model (models/chloe-tiny, v3 tokenizer, known answers).
    public static let chloeTiny = repository.appendingPathComponent("models/chloe-tiny")
}

/// A Transformer on a CPU backend for `source`: the model assembly the test targets share.
/// `config` overrides the source's (e.g. a sliding window on the demo weights).
public func cpuTransformer(_ source: any WeightSource, config: ModelConfig? = nil, threads: Int? = nil,
                           maxBatchTokens: Int, maxBatchSequences: Int, maxSequenceLength: Int,
                           kvBlockCount: Int, kvBlockSize: Int) throws -> Transformer<CPUBackend> {
    let backend = CPUBackend(threads: threads)
    let weights = try TransformerWeights(source: source, backend: backend)
    return try Transformer(backend: backend, weights: weights, config: config ?? source.config,
                           maxBatchTokens: maxBatchTokens, maxBatchSequences: maxBatchSequences,
                           maxSequenceLength: maxSequenceLength, kvBlockCount: kvBlockCount, kvBlockSize: kvBlockSize)
}

/// TEST DOUBLE decoder: token n decodes to "<n>", so generated text can be checked exactly.
public struct AngleDecoder: IncrementalDecoder {
    public init() {}
    public mutating func append(_ id: Int) -> String { "<\(id)>" }
    public mutating func finish() -> String { "" }
}
