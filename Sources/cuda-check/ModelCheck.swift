import Checkpoints
import Foundation
import Model
import Tensors

/// The full forward pass on a backend, against the tiny fixture models' independent numpy
/// reference (Tests/ModelTests/Fixtures, made by tools/fixtures/*.py), plus the invariances:
/// cached greedy decode reproduces the reference tokens, batched == sequential, cached decode ==
/// full recompute. Same checks as Tests/ModelTests/ForwardTests, runnable where there is no Swift.
struct ModelCheck<Backend: ComputeBackend> {
    let makeBackend: () throws -> Backend
    /// Logits vs the f64 numpy reference.
    let referenceTolerance: Double
    /// Between two runs of this backend (batched/sequential, cached/recompute).
    let selfTolerance: Double
    let say: (String) -> Void
    /// Quantize while loading (`FP8QuantizingSource`, the `--quantize fp8` path) and compare
    /// against each fixture's FP8 reference (`reference_fp8.json`: numpy simulating the scheme).
    var fp8 = false
    /// Runs the model as one rank of a tensor-parallel group of one (through the backend's
    /// collectives, e.g. NCCL on one GPU) instead of without a group.
    var groupOfOne = false

    struct Reference: Decodable { var prompts: [[Int]]; var logits: [String]; var greedy: [[Int]] }

    func model(_ source: any WeightSource) throws -> Transformer<Backend> {
        let backend = try makeBackend()
        let weights = try TransformerWeights(source: source, backend: backend)
        let shard = groupOfOne ? try TensorShard.plan(source.config, ranks: 1, collectiveWhenAlone: true)[0] : nil
        return try Transformer(backend: backend, weights: weights, config: source.config, maxBatchTokens: 96,
                               maxBatchSequences: 8, maxSequenceLength: 64, kvBlockCount: 128, kvBlockSize: 4, shard: shard)
    }

    /// Returns (passed, total) over all checks of all models in `directory` (dense, moe, mqa, …).
    func run(directory: URL, names: [String]) -> (Int, Int) {
        var passed = 0, total = 0
        func record(_ ok: Bool, _ line: String) {
            total += 1
            if ok { passed += 1 }
            say("  \(ok ? "ok  " : "FAIL") \(line)")
        }
        for name in names {
            do {
                let dir = directory.appendingPathComponent(name)
                let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent(fp8 ? "reference_fp8.json" : "reference.json")))
                let ckpt = try MistralCheckpoint.load(directory: dir)
                let m = try model(fp8 ? FP8QuantizingSource(ckpt) : ckpt)
                let tag = fp8 ? "\(name) fp8" : name
                // 1. Prompt logits vs the numpy reference.
                var sequential: [[Float]] = []
                for (prompt, file) in zip(ref.prompts, ref.logits) {
                    var table: [Int] = []
                    guard m.kvBlocks.ensureCapacity(&table, tokens: prompt.count) else { throw CheckError("KV blocks") }
                    let logits = try m.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true))
                    m.kvBlocks.release(table)
                    sequential.append(logits.values)
                    let expected = try readNPY(dir.appendingPathComponent(file))
                    let err = normalisedErrorF(logits.values, expected)
                    record(err <= referenceTolerance, "\(tag) \(file) (\(prompt.count) tokens) vs numpy f64: err \(fmt(err)) (tol \(fmt(referenceTolerance)))")
                }
                // 2. Cached greedy decode reproduces the reference continuation.
                for (i, (prompt, greedy)) in zip(ref.prompts, ref.greedy).enumerated() {
                    var table: [Int] = []
                    guard m.kvBlocks.ensureCapacity(&table, tokens: prompt.count + greedy.count) else { throw CheckError("KV blocks") }
                    var logits = try m.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)]))
                    var out: [Int] = []
                    for _ in greedy {
                        let next = argmaxF(logits.row(0))
                        out.append(next)
                        logits = try m.forward(PackedBatch(sequences: [.init(tokens: [next], startPosition: prompt.count + out.count - 1, blockTable: table)]))
                    }
                    m.kvBlocks.release(table)
                    record(out == greedy, "\(tag) prompt \(i) greedy \(out == greedy ? "== reference" : "\(out) vs reference \(greedy)")")
                }
                // 3. Batched == sequential.
                var tables: [[Int]] = []
                for prompt in ref.prompts {
                    var t: [Int] = []
                    guard m.kvBlocks.ensureCapacity(&t, tokens: prompt.count) else { throw CheckError("KV blocks") }
                    tables.append(t)
                }
                let batched = try m.forward(PackedBatch(sequences: zip(ref.prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) },
                                                        allLogits: true)).values
                tables.forEach(m.kvBlocks.release)
                let berr = normalisedErrorF(batched, sequential.flatMap { $0 })
                record(berr <= selfTolerance, "\(tag) batched vs sequential: err \(fmt(berr)) (tol \(fmt(selfTolerance)))")
                // 4. Cached decode == full recompute (past the sliding window where there is one).
                let sequence = ref.prompts[ref.prompts.count - 1] + ref.greedy[ref.greedy.count - 1]
                var table: [Int] = []
                guard m.kvBlocks.ensureCapacity(&table, tokens: sequence.count) else { throw CheckError("KV blocks") }
                let full = try m.forward(PackedBatch(sequences: [.init(tokens: sequence, startPosition: 0, blockTable: table)], allLogits: true)).values
                var incremental = try m.forward(PackedBatch(sequences: [.init(tokens: Array(sequence[0..<3]), startPosition: 0, blockTable: table)], allLogits: true)).values
                for p in 3..<sequence.count {
                    incremental += try m.forward(PackedBatch(sequences: [.init(tokens: [sequence[p]], startPosition: p, blockTable: table)])).values
                }
                m.kvBlocks.release(table)
                let cerr = normalisedErrorF(incremental, full)
                record(cerr <= selfTolerance, "\(tag) cached decode vs full recompute (\(sequence.count) tokens): err \(fmt(cerr)) (tol \(fmt(selfTolerance)))")
            } catch {
                record(false, "\(name): \(error)")
            }
        }
        return (passed, total)
    }
}

/// Real-shape layers with seeded random weights (Checkpoints.RandomWeights): `test` vs
/// `reference` backend logits on one prompt. Catches what tiny dims cannot (K = 4096, 14336, 8
/// experts of 14336, 32 heads / 8 KV heads).
func compareRandomModel<T: ComputeBackend, R: ComputeBackend>(
    _ label: String, config: ModelConfig, test: T, reference: R, promptLength: Int, tolerance: Double,
    fp8: Bool = false, say: (String) -> Void) -> Bool {
    do {
        let random = try RandomWeights(config: config, seed: 11)
        // fp8: both backends get the same e4m3 weights, quantized per tensor while loading.
        let source: any WeightSource = fp8 ? FP8QuantizingSource(random) : random
        func logits<B: ComputeBackend>(_ backend: B) throws -> [Float] {
            let weights = try TransformerWeights(source: source, backend: backend)
            let model = try Transformer(backend: backend, weights: weights, config: config, maxBatchTokens: promptLength,
                                        maxBatchSequences: 1, maxSequenceLength: promptLength + 16, kvBlockCount: 16, kvBlockSize: 16)
            var table: [Int] = []
            _ = model.kvBlocks.ensureCapacity(&table, tokens: promptLength)
            let prompt = (0..<promptLength).map { (($0 * 7919) % (config.vocabSize - 2)) + 1 }
            return try model.forward(PackedBatch(sequences: [.init(tokens: prompt, startPosition: 0, blockTable: table)], allLogits: true)).values
        }
        let a = try logits(test)
        let b = try logits(reference)
        let err = normalisedErrorF(a, b)
        let ok = err <= tolerance
        say("  \(ok ? "ok  " : "FAIL") \(label) (\(promptLength) tokens) vs CPU: err \(fmt(err)) (tol \(fmt(tolerance)))")
        return ok
    } catch {
        say("  FAIL \(label): \(error)")
        return false
    }
}

struct CheckError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func fmt(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "\(x)" }

func normalisedErrorF(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .nan }
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

func argmaxF(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}

/// Little-endian float32 C-order `.npy` (what the fixture scripts write).
func readNPY(_ url: URL) throws -> [Float] {
    let bytes = [UInt8](try Data(contentsOf: url))
    guard bytes.count > 10, bytes[0] == 0x93 else { throw CheckError("\(url.lastPathComponent): not .npy") }
    let (headerLen, start) = bytes[6] == 1 ? (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
        : (Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24, 12)
    let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
    guard header.contains("'<f4'"), header.contains("'fortran_order': False") else {
        throw CheckError("\(url.lastPathComponent): not little-endian f32 C order")
    }
    let body = start + headerLen
    guard (bytes.count - body) % 4 == 0 else { throw CheckError("\(url.lastPathComponent): truncated") }
    var values = [Float](repeating: 0, count: (bytes.count - body) / 4)
    values.withUnsafeMutableBytes { dst in bytes.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[body...])) } }
    return values
}
