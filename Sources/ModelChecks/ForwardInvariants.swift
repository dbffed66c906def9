import BackendConformance
import Checkpoints
import Foundation
import Model
import Tensors

/// One tiny fixture model (Tests/ModelTests/Fixtures/<name>, made by
/// tools/fixtures/make_tiny_models.py) and its reference outputs from the independent numpy
/// float64 forward pass (tools/fixtures/reference_forward.py).
public struct TinyModelFixture: Sendable {
    public struct Reference: Decodable, Sendable {
        public var prompts: [[Int]]
        /// `.npy` file names, one (prompt length, V) logits array per prompt.
        public var logits: [String]
        /// Greedy continuations of each prompt.
        public var greedy: [[Int]]
    }

    public let name: String
    public let directory: URL
    public let reference: Reference

    public static let names = ["dense", "moe", "mqa"]

    /// The fixture `name` under `fixtures` (the folder holding dense/, moe/, mqa/, …), with the
    /// reference outputs of `referenceFile` (reference_fp8.json: the FP8 scheme's numpy forward).
    public init(_ name: String, in fixtures: URL, referenceFile: String = "reference.json") throws {
        self.name = name
        directory = fixtures.appendingPathComponent(name)
        reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory.appendingPathComponent(referenceFile)))
    }

    public func checkpoint() throws -> MistralCheckpoint { try MistralCheckpoint.load(directory: directory) }

    public func referenceLogits(_ file: String) throws -> NPY.Array2D { try NPY.readFloat32(directory.appendingPathComponent(file)) }
}

/// One forward-pass check and its outcome.
public struct ForwardCheckResult: Sendable, CustomStringConvertible {
    public var name: String
    public var passed: Bool
    public var detail: String
    public init(name: String, passed: Bool, detail: String) {
        self.name = name
        self.passed = passed
        self.detail = detail
    }
    public var description: String { "\(passed ? "ok  " : "FAIL") \(name): \(detail)" }
}

/// The forward pass of a fixture model on a backend, checked once for every backend: `swift
/// test` runs it on the CPU (ModelTests/ForwardTests), `cuda-check --models` on the GPU.
///
/// Checks, per fixture: each prompt's logits against the numpy reference (normalised error ≤
/// `tolerances.reference`); cached greedy decode reproduces each reference continuation; the
/// prompts batched in one step == one at a time (`batched`); cached decode of the longest
/// sequence, token by token, == its full recompute, past the sliding window where there is one
/// (`cached`); a chunked prefill (7 tokens a step) ends on the whole prefill's last logits
/// (`cached`).
public struct ForwardInvariants<Backend: ComputeBackend> {
    public struct Tolerances: Sendable {
        public var reference: Double
        public var batched: Double
        public var cached: Double
        public init(reference: Double, batched: Double, cached: Double) {
            self.reference = reference
            self.batched = batched
            self.cached = cached
        }
    }

    public let makeBackend: () throws -> Backend
    public let tolerances: Tolerances
    /// Runs the model as the one rank of a tensor-parallel group of one (through the backend's
    /// collectives, e.g. NCCL on one GPU) instead of without a group.
    public var groupOfOne = false
    /// Quantizes the weights to the FP8 scheme while loading (`FP8QuantizingSource`); pair with
    /// the fixture's reference_fp8.json.
    public var fp8 = false
    /// Only the logits against the numpy reference (check 1): for a path that is an approximation
    /// of the reference's numbers by design (FP8 tensor cores round prefill activations to e4m3,
    /// the decode GEMVs don't), where greedy ties and the self-consistency checks can't hold.
    public var referenceLogitsOnly = false
    /// Appended to every check's name (e.g. the path it ran on).
    public var label = ""

    public init(tolerances: Tolerances, makeBackend: @escaping () throws -> Backend) {
        self.tolerances = tolerances
        self.makeBackend = makeBackend
    }

    /// A transformer for `source` with room for the fixtures' batches.
    public func model(_ source: any WeightSource) throws -> Transformer<Backend> {
        let backend = try makeBackend()
        let weights = try TransformerWeights(source: source, backend: backend)
        let shard = groupOfOne ? try TensorShard.plan(source.config, ranks: 1, collectiveWhenAlone: true)[0] : nil
        return try Transformer(backend: backend, weights: weights, config: source.config, maxBatchTokens: 96,
                               maxBatchSequences: 8, maxSequenceLength: 64, kvBlockCount: 128, kvBlockSize: 4, shard: shard)
    }

    /// Every check on `fixture`; a check that throws is a failed result carrying the error.
    public func check(_ fixture: TinyModelFixture) -> [ForwardCheckResult] {
        var results: [ForwardCheckResult] = []
        let name = (fp8 ? "\(fixture.name) fp8" : fixture.name) + label
        func record(_ check: String, _ ok: Bool, _ detail: String) {
            results.append(ForwardCheckResult(name: "\(name) \(check)", passed: ok, detail: detail))
        }
        func errorText(_ err: Double, _ tol: Double) -> String { "err \(format(err)) (tol \(format(tol)))" }
        let ref = fixture.reference
        let m: Transformer<Backend>
        do {
            let checkpoint = try fixture.checkpoint()
            m = try model(fp8 ? FP8QuantizingSource(checkpoint) : checkpoint)
        } catch {
            record("load", false, "\(error)")
            return results
        }
        func blocks(_ tokens: Int) throws -> [Int] {
            var table: [Int] = []
            guard m.kvBlocks.ensureCapacity(&table, tokens: tokens) else { throw CheckFailure("no KV blocks for \(tokens) tokens") }
            return table
        }
        func prefill(_ tokens: [Int], all: Bool, _ table: [Int]) throws -> [Float] {
            try m.forward(PackedBatch(sequences: [.init(tokens: tokens, startPosition: 0, blockTable: table)], allLogits: all)).values
        }
        var sequential: [[Float]] = []
        do {
            // 1. Prompt logits vs the numpy float64 reference.
            for (prompt, file) in zip(ref.prompts, ref.logits) {
                let table = try blocks(prompt.count)
                let logits = try prefill(prompt, all: true, table)
                m.kvBlocks.release(table)
                sequential.append(logits)
                let expected = try fixture.referenceLogits(file)
                guard expected.shape == [prompt.count, m.config.vocabSize] else {
                    record("\(file) vs numpy", false, "reference shape \(expected.shape), model gives (\(prompt.count), \(m.config.vocabSize))")
                    continue
                }
                let err = normalisedError(logits, expected.values)
                record("\(file) (\(prompt.count) tokens) vs numpy f64", err <= tolerances.reference, errorText(err, tolerances.reference))
            }
            if referenceLogitsOnly { return results }
            // 2. Cached greedy decode reproduces the reference continuations.
            for (i, (prompt, greedy)) in zip(ref.prompts, ref.greedy).enumerated() {
                let out = try cachedGreedy(m, prompt: prompt, count: greedy.count)
                record("prompt \(i) cached greedy decode", out == greedy, out == greedy ? "== reference" : "\(out) vs reference \(greedy)")
            }
            // 3. Batched == sequential.
            let tables = try ref.prompts.map { try blocks($0.count) }
            let batched = try m.forward(PackedBatch(sequences: zip(ref.prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) },
                                                    allLogits: true)).values
            tables.forEach(m.kvBlocks.release)
            let berr = normalisedError(batched, sequential.flatMap { $0 })
            record("batched vs sequential", berr <= tolerances.batched, errorText(berr, tolerances.batched))
            // 4. Cached decode == full recompute, on the longest sequence.
            let sequence = ref.prompts[ref.prompts.count - 1] + ref.greedy[ref.greedy.count - 1]
            var table = try blocks(sequence.count)
            let full = try prefill(sequence, all: true, table)
            var incremental = try prefill(Array(sequence[0..<3]), all: true, table)
            for p in 3..<sequence.count {
                incremental += try m.forward(PackedBatch(sequences: [.init(tokens: [sequence[p]], startPosition: p, blockTable: table)])).values
            }
            m.kvBlocks.release(table)
            let cerr = normalisedError(incremental, full)
            record("cached decode vs full recompute (\(sequence.count) tokens)", cerr <= tolerances.cached, errorText(cerr, tolerances.cached))
            // 5. Chunked prefill == whole prefill (the last position's logits).
            let prompt = ref.prompts[ref.prompts.count - 1]
            table = try blocks(prompt.count)
            let whole = try prefill(prompt, all: false, table)
            var last: [Float] = []
            for start in stride(from: 0, to: prompt.count, by: 7) {
                let end = min(start + 7, prompt.count)
                last = try m.forward(PackedBatch(sequences: [.init(tokens: Array(prompt[start..<end]), startPosition: start, blockTable: table)])).values
            }
            m.kvBlocks.release(table)
            let perr = normalisedError(last, whole)
            record("chunked prefill (7 a step) vs whole", perr <= tolerances.cached, errorText(perr, tolerances.cached))
        } catch {
            record("run", false, "\(error)")
        }
        return results
    }
}

/// `count` greedy tokens after `prompt`: the prompt in one forward pass, then one cached decode
/// step per token (the path the engine takes).
public func cachedGreedy<B: ComputeBackend>(_ model: Transformer<B>, prompt: [Int], count: Int) throws -> [Int] {
    var table: [Int] = []
    guard model.kvBlocks.ensureCapacity(&table, tokens: prompt.count + count) else {
        throw CheckFailure("no KV blocks for \(prompt.count + count) tokens")
    }
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

/// Index of the largest value of a row (the first of equal ones), counted from the row's start.
public func argmax(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}

public struct CheckFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

func format(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "\(x)" }
