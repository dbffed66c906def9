import CUDADriver
import Tensors

/// The MoE experts through cuBLASLt, for the step sizes where the tensor-core kernels of moe.cu
/// fall short (gpu-notes, "MoE experts through cuBLASLt"): decode batches of 16–128 tokens, where
/// every expert is touched and the work is a weight stream, and prefill, where each expert sees
/// hundreds of tokens and the work is GEMM-rate bound.
///
/// Both keep the gate and up products in bf16 (G, U) and form h = silu(G)·U in bf16, as vLLM's
/// fused-MoE caches do; the down product y is f32 in the dense path and bf16 in the grouped one
/// (at prefill y is the largest write of the chain), summed in f32 by `combine`.
struct MoEShape {
    let tokens: Int, dim: Int, hidden: Int, experts: Int, topK: Int
    var pairs: Int { tokens * topK }
}

extension CUDABackend {
    /// Above this many tokens the dense path's E/K-fold arithmetic (every expert on every token)
    /// starts to cost more than the weight stream it shares with the grouped products.
    static let moeDenseMaxTokens = 128

    /// Rows of each expert's block in the grouped path are padded to this multiple: 16-byte
    /// aligned rows for cuBLASLt, ≤ 7 wasted rows per expert. (Plans are cheap per count since
    /// the heuristic is shared by power-of-two buckets, see `BLASLtMatmul`.)
    static let moeGroupedRowPad = 8

    /// The cuBLASLt path for a step of `tokens`, or `.tensorCore` for the kernels.
    func cublasMoEPath(tokens: Int, mmaFits: Bool) -> MoEPath {
        // A recorded step must not read the routing on the host: no grouped path there.
        let recordable = recordingStep ? (mmaFits ? MoEPath.tensorCore : .dense) : .grouped
        switch moePath {
        case .automatic: return tokens <= Self.moeDenseMaxTokens ? .dense : recordable
        case .grouped: return recordable
        case .tensorCore: return mmaFits ? .tensorCore : .dense
        case .dense: return .dense
        }
    }

    /// x (count) f32 narrowed to bf16 in the MoE input scratch.
    func narrowed(_ x: CUDATensor, count: Int) throws -> CUdeviceptr {
        let xb = try scratch(.moeInputBF16, bytes: count * 2)
        try launch(.convertToBF16, grid: gridFor(count), [.pointer(x.pointer), .pointer(xb), .int64(Int64(count))])
        return xb
    }

    /// Every expert on every token. The stacked (E, F, D) w1 and w3 are each one (E·F, D) matrix,
    /// so G and U are one product each over all experts; the down products are one strided
    /// batch over the experts (h[:, e] is a column block of h). Reads each expert's weights once
    /// per step with no dependence on the routing (graph-safe); at T ≥ 16 top-2-of-8 routing
    /// touches every expert with probability ≥ 99%, so nothing extra is read.
    func moeDense(_ xb: CUdeviceptr, w1: CUDATensor, w2: CUDATensor, w3: CUDATensor, ids: CUDATensor, weights: CUDATensor,
                  out: CUDATensor, accumulate: Bool, _ s: MoEShape, blas: BLASLtMatmul) throws {
        let (t, d, f, e) = (s.tokens, s.dim, s.hidden, s.experts)
        let g = try scratch(.moeGate, bytes: t * e * f * 2)   // (T, E·F) bf16: G, then h in place
        let u = try scratch(.moeUp, bytes: t * e * f * 2)     // (T, E·F) bf16
        let y = try scratch(.moeOut, bytes: e * t * d * 4)    // (E, T, D) f32
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        let gateUp = BLASLtMatmul.Problem(rows: t, inDim: d, outDim: e * f, bf16Output: true)
        try blas.multiply(gateUp, x: xb, weight: w1.pointer, out: g, workspace: workspace, stream: stream)
        try blas.multiply(gateUp, x: xb, weight: w3.pointer, out: u, workspace: workspace, stream: stream)
        try launch(.swigluBF16, grid: gridFor(t * e * f / 8), [.pointer(g), .pointer(u), .pointer(g), .int64(Int64(t * e * f))])
        let down = BLASLtMatmul.Problem(rows: t, inDim: f, outDim: d, batch: e, xRowStride: e * f,
                                        xBatchStride: f, weightBatchStride: d * f, outBatchStride: t * d)
        try blas.multiply(down, x: g, weight: w2.pointer, out: y, workspace: workspace, stream: stream)
        try combine(y: y, ids: ids, weights: weights, out: out, rows: t, dim: d, topK: s.topK, experts: e, denseRows: t,
                    accumulate: accumulate)
    }

    /// Each expert's padded block of rows, (first row, rows), as moe_gather_padded lays them out,
    /// and their total: the expert counts brought to the host (one stream sync).
    func paddedExpertBlocks(offsets: CUdeviceptr, experts e: Int) throws -> (blocks: [(start: Int, rows: Int)], total: Int) {
        var bounds = [Int32](repeating: 0, count: e + 1)
        try bounds.withUnsafeMutableBytes { raw in
            try device.api.check(device.api.cuMemcpyDtoHAsync(raw.baseAddress, offsets, raw.count, stream), "cuMemcpyDtoHAsync_v2 (expert counts)")
            try device.api.check(device.api.cuStreamSynchronize(stream), "cuStreamSynchronize (expert counts)")
        }
        let pad = Self.moeGroupedRowPad
        var blocks: [(start: Int, rows: Int)] = []
        var total = 0
        for i in 0..<e {
            let rows = (Int(bounds[i + 1] - bounds[i]) + pad - 1) / pad * pad
            blocks.append((total, rows))
            total += rows
        }
        return (blocks, total)
    }

    /// Each expert's tokens gathered into a padded block of rows, then three cuBLASLt products per
    /// expert that has any. The counts come to the host (one stream sync), which is why this path
    /// never runs while a step is recorded; at prefill sizes that sync is small against the
    /// products (2048 tokens: ≈ 2 ms of expert GEMMs per layer).
    func moeGrouped(_ xb: CUdeviceptr, w1: CUDATensor, w2: CUDATensor, w3: CUDATensor, ids: CUDATensor, weights: CUDATensor,
                    offsets: CUdeviceptr, sorted: CUdeviceptr, out: CUDATensor, accumulate: Bool, _ s: MoEShape,
                    blas: BLASLtMatmul) throws {
        let (d, f, e) = (s.dim, s.hidden, s.experts)
        let pad = Self.moeGroupedRowPad
        let (blocks, total) = try paddedExpertBlocks(offsets: offsets, experts: e)
        guard total > 0 else {
            // No valid pair: the mixture is zero for every token.
            try combine(y: 0, ids: ids, weights: weights, out: out, rows: s.tokens, dim: d, topK: s.topK, experts: e,
                        accumulate: accumulate)
            return
        }
        // Sized for the most rows any routing can need (P + E·(pad − 1)), not this call's total: a
        // size that followed the routing would regrow the buffers (and drop the step graphs) often.
        let most = s.pairs + e * (pad - 1)
        let xs = try scratch(.moeGathered, bytes: most * d * 2)   // (rows, D) bf16
        let rowOf = try scratch(.moeRowOf, bytes: s.pairs * 4)    // (P) i32
        let g = try scratch(.moeGate, bytes: most * f * 2)        // (rows, F) bf16: G, then h in place
        let u = try scratch(.moeUp, bytes: most * f * 2)          // (rows, F) bf16
        let y = try scratch(.moeOut, bytes: most * d * 2)         // (rows, D) bf16
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        try launch(.moeGatherPadded, grid: (total, 1, 1), block: (128, 1, 1),
                   [.pointer(xb), .pointer(offsets), .pointer(sorted), .pointer(xs), .pointer(rowOf),
                    .int32(Int32(d)), .int32(Int32(s.topK)), .int32(Int32(e)), .int32(Int32(pad))])
        for (i, b) in blocks.enumerated() where b.rows > 0 {
            let p = BLASLtMatmul.Problem(rows: b.rows, inDim: d, outDim: f, bf16Output: true)
            let x = xs + CUdeviceptr(b.start * d * 2), expert = CUdeviceptr(i * f * d * 2), o = CUdeviceptr(b.start * f * 2)
            try blas.multiply(p, x: x, weight: w1.pointer + expert, out: g + o, workspace: workspace, stream: stream)
            try blas.multiply(p, x: x, weight: w3.pointer + expert, out: u + o, workspace: workspace, stream: stream)
        }
        try launch(.swigluBF16, grid: gridFor(total * f / 8), [.pointer(g), .pointer(u), .pointer(g), .int64(Int64(total * f))])
        for (i, b) in blocks.enumerated() where b.rows > 0 {
            let p = BLASLtMatmul.Problem(rows: b.rows, inDim: f, outDim: d, bf16Output: true)
            try blas.multiply(p, x: g + CUdeviceptr(b.start * f * 2), weight: w2.pointer + CUdeviceptr(i * d * f * 2),
                              out: y + CUdeviceptr(b.start * d * 2), workspace: workspace, stream: stream)
        }
        try combine(y: y, ids: ids, weights: weights, out: out, rows: s.tokens, dim: d, topK: s.topK, experts: e, rowOf: rowOf,
                    accumulate: accumulate, yBF16: true)
    }
}
