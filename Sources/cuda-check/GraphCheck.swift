import BackendConformance
import Checkpoints
import CUDABackend
import Foundation
import Model
import ModelChecks
import Tensors

/// Decode steps replayed from CUDA graphs must give the logits the same steps give when every
/// op is launched on its own: three sequences of different lengths decode together (so their
/// contexts cross KV block boundaries at different steps while the recorded shape stays the
/// same), then one drops out (a second shape). Graphs size split-KV attention from the block
/// tables' capacity rather than the current context, so the sums differ in order only.
func checkStepGraphs(directory: URL, ordinal: Int, say: (String) -> Void) -> (passed: Int, total: Int) {
    var passed = 0, total = 0
    func record(_ ok: Bool, _ line: String) {
        total += 1
        if ok { passed += 1 }
        say("  \(ok ? "ok  " : "FAIL") \(line)")
    }
    for name in ["dense", "moe"] {
        do {
            let ckpt = try MistralCheckpoint.load(directory: directory.appendingPathComponent(name))
            func decode(graphs: Bool) throws -> (logits: [[Float]], recorded: Int) {
                let backend = try CUDABackend(ordinal: ordinal)
                backend.stepGraphs = graphs
                let weights = try TransformerWeights(source: ckpt, backend: backend)
                let m = try Transformer(backend: backend, weights: weights, config: ckpt.config, maxBatchTokens: 64,
                                        maxBatchSequences: 4, maxSequenceLength: 64, kvBlockCount: 64, kvBlockSize: 4)
                let prompts = [[1, 5, 9, 13, 2], [3, 4], [7, 8, 9, 10, 11, 12, 13]]
                var tables: [[Int]] = []
                for p in prompts {
                    var t: [Int] = []
                    guard m.kvBlocks.ensureCapacity(&t, tokens: p.count + 16) else { throw CheckError("KV blocks") }
                    tables.append(t)
                }
                var logits: [[Float]] = []
                var next = try m.forward(PackedBatch(sequences: zip(prompts, tables).map { .init(tokens: $0, startPosition: 0, blockTable: $1) }))
                var lengths = prompts.map(\.count)
                for step in 0..<12 {
                    let live = step < 8 ? 3 : 2
                    let seqs = (0..<live).map { s -> PackedBatch.Sequence in
                        let token = argmax(next.row(s))
                        return .init(tokens: [token], startPosition: lengths[s], blockTable: tables[s])
                    }
                    for s in 0..<live { lengths[s] += 1 }
                    next = try m.forward(PackedBatch(sequences: seqs))
                    logits.append(next.values)
                }
                return (logits, backend.recordedSteps)
            }
            let plain = try decode(graphs: false)
            let replayed = try decode(graphs: true)
            let err = normalisedError(replayed.logits.flatMap { $0 }, plain.logits.flatMap { $0 })
            record(err <= 1e-4 && replayed.recorded == 2,
                   "\(name): 12 decode steps replayed from \(replayed.recorded) recorded shapes vs launched op by op: err \(fmt(err)) (tol 1e-4)")
        } catch {
            record(false, "\(name) step graphs: \(error)")
        }
    }
    return (passed, total)
}
