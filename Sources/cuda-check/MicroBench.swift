import CUDABackend
import Dispatch
import CUDADriver
import Tensors
import BackendConformance
import Foundation

/// Per-op time of the decode-step ops at Mistral-7B shapes (batch 1): where a step's time goes,
/// without a profiler. Two columns: 50 launches between host syncs on the host clock (launch
/// overhead included, as a step without graphs pays it) and the same 50 launches recorded as one
/// CUDA graph and replayed (close to the kernels' own time; bandwidth is from this column).
extension Bench {
    func microbench(bandwidth: Double) throws {
        var graphKey = 1_000_000
        say("  " + "op".padding(toLength: 46, withPad: " ", startingAt: 0) + "  launched  from graph")
        func time(_ label: String, bytes: Double, _ body: () throws -> Void) throws {
            for _ in 0..<3 { try body() }
            try backend.synchronize()
            let iterations = 50
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { try body() }
            try backend.synchronize()
            let us = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3 / Double(iterations)
            // A shape of its own (tokens == sequences, so it is recorded) for this op's 50 launches.
            graphKey += 1
            let shape = StepShape(tokens: 1, sequences: 1, logitRows: graphKey)
            let fifty = { for _ in 0..<iterations { try body() } }
            for _ in 0..<3 { try backend.replayable(shape, fifty) }
            try backend.synchronize()
            let replays = 10
            let t1 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<replays { try backend.replayable(shape, fifty) }
            try backend.synchronize()
            let graphUs = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e3 / Double(iterations * replays)
            let gbs = bytes / (graphUs * 1e-6) / 1e9
            let padded = label.count < 46 ? label + String(repeating: " ", count: 46 - label.count) : label
            say("  " + padded + String(format: " %8.1f us %8.1f us", us, graphUs)
                + (bytes > 0 ? String(format: "  %7.0f GB/s (%4.1f%% of copy)", gbs, 100 * gbs * 1e9 / bandwidth) : ""))
        }
        var rng = SplitMix64(seed: 3)
        func act(_ n: Int) throws -> CUDATensor { let t = try backend.makeActivation([n]); try backend.write(rng.floats(n), to: t); return t }
        func w(_ n: Int, _ k: Int) throws -> CUDATensor {
            try backend.upload(HostTensor.owning(rng.floats(n * k, scale: 0.05), shape: [n, k], dtype: .bf16))
        }
        let x = try act(32768 * 4), out = try act(32768 * 4)
        for (n, k) in [(14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096), (32768, 4096)] {
            let weight = try w(n, k)
            for rows in [1, 4] {
                try time("matmulAdd T=\(rows) \(n)x\(k) bf16 (GEMV)", bytes: Double(n * k * 2)) {
                    try backend.matmulAdd(x, weight: weight, into: out, rows: rows, inDim: k, outDim: n)
                }
            }
        }
        // The fused products of the forward pass (row-joined weights).
        for (parts, k) in [([4096, 1024, 1024], 4096)] {
            let joined = try backend.upload(concatenatingRows: parts.map {
                HostTensor.owning(rng.floats($0 * k, scale: 0.05), shape: [$0, k], dtype: .bf16) })
            let n = parts.reduce(0, +)
            try time("matmulAdd T=1 wqkv \(n)x\(k) joined (GEMV)", bytes: Double(n * k * 2)) {
                try backend.matmulAdd(x, weight: joined, into: out, rows: 1, inDim: k, outDim: n)
            }
        }
        let w13 = try w(2 * 14336, 4096)
        let norm = try backend.upload(HostTensor.owning(rng.floats(4096), shape: [4096], dtype: .bf16))
        for rows in [1, 4] {
            try time("normedMatmul gated T=\(rows) 2x14336x4096 (GEMV)", bytes: Double(2 * 14336 * 4096 * 2)) {
                try backend.normedMatmul(x, norm: norm, eps: 1e-5, weight: w13, out: out, rows: rows, inDim: 4096,
                                         outDim: 14336, gated: true)
            }
        }
        let wqkv = try w(6144, 4096)
        try time("normedMatmul T=1 6144x4096 (GEMV, norm inside)", bytes: Double(6144 * 4096 * 2)) {
            try backend.normedMatmul(x, norm: norm, eps: 1e-5, weight: wqkv, out: out, rows: 1, inDim: 4096, outDim: 6144, gated: false)
        }
        let row0 = try backend.makeIndices(1)
        try backend.write([Int32(0)], to: row0)
        try time("gatherRows 1x1 (launch floor)", bytes: 0) { try backend.gatherRows(x, rows: row0, out: out, count: 1, dim: 1) }
        let pos = try backend.makeIndices(1)
        try backend.write([Int32(517)], to: pos)
        // Attention: one sequence with 1024 cached tokens, 8 KV heads.
        let ctx = 1024, bs = 16
        let kPool = try backend.makeKVPool(blocks: ctx / bs, blockSize: bs, kvHeads: 8, headDim: 128)
        let vPool = try backend.makeKVPool(blocks: ctx / bs, blockSize: bs, kvHeads: 8, headDim: 128)
        // Fill the pools: ropeAppendKV at position 0 (rotation by 0) writes k and v as they are.
        let qkv = try act(ctx * (32 + 2 * 8) * 128), qOut = try act(ctx * 32 * 128)
        let slots = try backend.makeIndices(ctx), zeros = try backend.makeIndices(ctx)
        try backend.write((0..<ctx).map(Int32.init), to: slots)
        try backend.write([Int32](repeating: 0, count: ctx), to: zeros)
        try backend.ropeAppendKV(qkv: qkv, q: qOut, kPool: kPool, vPool: vPool, positions: zeros, slots: slots,
                                 rows: ctx, heads: 32, kvHeads: 8, headDim: 128, theta: 1e6)
        let qs = try backend.makeIndices(2), cl = try backend.makeIndices(1), bt = try backend.makeIndices(ctx / bs), p = try backend.makeIndices(1)
        try backend.write([Int32(0), 1], to: qs); try backend.write([Int32(ctx)], to: cl)
        try backend.write((0..<Int32(ctx / bs)).map { $0 }, to: bt); try backend.write([Int32(ctx - 1)], to: p)
        let batch = AttentionBatch(sequences: 1, tokens: 1, blockSize: bs, maxBlocksPerSequence: ctx / bs, queryStart: qs, positions: p,
                                   contextLens: cl, blockTables: bt, hostQueryStart: [0, 1], hostContextLens: [Int32(ctx)],
                                   hostPositions: [Int32(ctx - 1)], hostBlockTables: (0..<Int32(ctx / bs)).map { $0 })
        let slot0 = try backend.makeIndices(1)
        try backend.write([Int32(ctx - 1)], to: slot0)
        try time("ropeAppendKV T=1 H=32 G=8 Dh=128", bytes: 0) {
            try backend.ropeAppendKV(qkv: x, q: out, kPool: kPool, vPool: vPool, positions: pos, slots: slot0,
                                     rows: 1, heads: 32, kvHeads: 8, headDim: 128, theta: 1e6)
        }
        try time("attention decode ctx=1024 H=32 G=8 (split-KV)", bytes: Double(ctx * 8 * 128 * 2 * 2)) {
            try backend.attention(q: x, kPool: kPool, vPool: vPool, batch: batch, out: out, heads: 32, kvHeads: 8, headDim: 128, slidingWindow: nil)
        }
    }
}
