import BackendConformance
import Checkpoints
import Foundation
import Model
import ModelChecks
import Tensors

/// The full forward pass on a backend against the tiny fixture models' numpy reference, and
/// its invariances: the same checks as `swift test`'s ForwardTests (ModelChecks.ForwardInvariants),
/// printed one line each. Returns (passed, total) over all checks of the models `names` in
/// `directory`.
func runModelChecks<Backend: ComputeBackend>(_ invariants: ForwardInvariants<Backend>, directory: URL, names: [String],
                                               say: (String) -> Void) -> (Int, Int) {
    var passed = 0, total = 0
    for name in names {
        let results: [ForwardCheckResult]
        let referenceFile = invariants.fp8 ? "reference_fp8.json" : "reference.json"
        do { results = invariants.check(try TinyModelFixture(name, in: directory, referenceFile: referenceFile)) } catch {
            results = [ForwardCheckResult(name: name, passed: false, detail: "\(error)")]
        }
        for r in results {
            total += 1
            if r.passed { passed += 1 }
            say("  \(r)")
        }
    }
    return (passed, total)
}

/// The fp8 fixture checks: the tiny models quantized while loading against reference_fp8.json,
/// and the native FP8 (compressed-tensors) fixture as stored against its reference.
func runFP8ModelChecks<Backend: ComputeBackend>(_ invariants: ForwardInvariants<Backend>, directory: URL,
                                                say: (String) -> Void) -> (Int, Int) {
    var quantized = invariants, stored = invariants
    quantized.fp8 = true
    stored.fp8 = false
    let (passed, count) = runModelChecks(quantized, directory: directory, names: TinyModelFixture.names, say: say)
    let (hfPassed, hfCount) = runModelChecks(stored, directory: directory, names: ["moe-hf-fp8"], say: say)
    return (passed + hfPassed, count + hfCount)
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
        let err = normalisedError(a, b)
        let ok = err <= tolerance
        say("  \(ok ? "ok  " : "FAIL") \(label) (\(promptLength) tokens) vs CPU: err \(fmt(err)) (tol \(fmt(tolerance)))")
        return ok
    } catch {
        say("  FAIL \(label): \(error)")
        return false
    }
}

typealias CheckError = CheckFailure

func fmt(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "\(x)" }
