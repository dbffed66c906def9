import Checkpoints
import CUDABackend
import CUDADriver
import Dispatch
import Model
import ModelChecks
import Roofline
import Tensors

/// Decode/prefill timing of real model shapes with seeded random bf16 weights (issue 6's
/// measurements, until `mixtral-chat bench` exists): device-to-device copy bandwidth first (the
/// roofline's denominator), then per batch size the prefill rate and the decode step time, with
/// the bytes a step must read (`Roofline.bytesPerDecodeStep`: weights touched + KV) over the
/// measured bandwidth.
struct Bench {
    let backend: CUDABackend
    let say: (String) -> Void

    /// Bytes read + written per second by a 1 GiB device-to-device copy (median of 10).
    func copyBandwidth() throws -> Double { try backend.measureCopyBandwidth() }

    func run(label: String, config c: ModelConfig, batches: [Int], promptLength: Int, steps: Int, bandwidth: Double) throws {
        let source = try RandomWeights(config: c, seed: 5)
        backend.setUploadProgress(totalBytes: nil, nil)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let weights = try TransformerWeights(source: source, backend: backend)
        let up = try backend.finishUploads()
        say(label + String(format: ": weights %.2f GB uploaded in %.1f s (incl. host-side random generation)",
                   Double(up.bytesUploaded) / 1e9, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        let maxBatch = batches.max() ?? 1
        let blockSize = 16
        let perSeqBlocks = (promptLength + steps + blockSize) / blockSize + 1
        let model = try Transformer(backend: backend, weights: weights, config: c, maxBatchTokens: max(promptLength, maxBatch),
                                    maxBatchSequences: maxBatch, maxSequenceLength: promptLength + steps + blockSize,
                                    kvBlockCount: perSeqBlocks * maxBatch, kvBlockSize: blockSize)
        say("  batch | decode kernels | prefill tok/s | decode ms/step | tok/s total | weight+KV GB/step | % of copy BW")
        for batch in batches {
          for decode in [false, true] {
            backend.decodeKernels = decode
            var tables = [[Int]](repeating: [], count: batch)
            let prompts = (0..<batch).map { s in (0..<promptLength).map { (($0 * 7919 + s * 104_729) % (c.vocabSize - 2)) + 1 } }
            for s in 0..<batch { _ = model.kvBlocks.ensureCapacity(&tables[s], tokens: promptLength + steps + 1) }
            // Prefill one sequence at a time (one chunk of promptLength tokens each).
            let p0 = DispatchTime.now().uptimeNanoseconds
            var last: [Int] = []
            for s in 0..<batch {
                let l = try model.forward(PackedBatch(sequences: [.init(tokens: prompts[s], startPosition: 0, blockTable: tables[s])]))
                last.append(argmax(l.row(0)))
            }
            let prefill = Double(DispatchTime.now().uptimeNanoseconds - p0) / 1e9
            var times: [Double] = []
            for step in 0..<steps {
                let seqs = (0..<batch).map { PackedBatch.Sequence(tokens: [last[$0]], startPosition: promptLength + step, blockTable: tables[$0]) }
                let s0 = DispatchTime.now().uptimeNanoseconds
                let l = try model.forward(PackedBatch(sequences: seqs))
                times.append(Double(DispatchTime.now().uptimeNanoseconds - s0) / 1e9)
                last = (0..<batch).map { argmax(l.row($0)) }
            }
            tables.forEach(model.kvBlocks.release)
            let median = times.dropFirst(3).sorted()[(times.count - 3) / 2]
            // The same roofline as `mixtral-chat bench` (experts expected under random routing).
            let bytes = Double(Roofline.bytesPerDecodeStep(c, batch: batch, context: promptLength + steps / 2,
                                                           kvBytesPerElement: backend.kvElementBytes))
            say(String(format: "  %5d | ", batch) + (decode ? "on            " : "off           ") + String(format: " | %13.0f | %14.3f | %11.1f | %17.2f | %5.1f%%",
                       Double(batch * promptLength) / prefill, median * 1e3, Double(batch) / median, bytes / 1e9,
                       100 * bytes / median / bandwidth))
          }
        }
    }
}
