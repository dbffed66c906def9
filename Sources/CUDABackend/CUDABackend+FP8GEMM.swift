import CUDADriver
import Tensors

/// e4m3 products past the GEMV sizes on FP8 tensor cores (sm_89+), through cuBLASLt with unit
/// scales: the activations are quantized per row (dynamic per-token scales, absmax / 448, as the
/// weights), the weights are already e4m3 with a scale per row, and fp8.cu applies both scale
/// vectors to the product. The CPU reference keeps f32 activations, so these paths differ from it
/// by the activations' rounding (3 mantissa bits): conformance compares them against the
/// reference fed the same quantized activations, and docs/fp8.md gives the end-to-end effect.
extension CUDABackend {
    /// The largest grid y of the scale passes (one row per block row).
    private static let maxGridRows = 65_535

    /// x (T, K) f32 or bf16 rows → e4m3 codes (T, K) and scales (T) in the given slots.
    private func quantizeRows(_ x: CUdeviceptr, bf16 input: Bool, rows: Int, cols: Int,
                              codes: ScratchSlot, scales: ScratchSlot) throws -> (codes: CUdeviceptr, scales: CUdeviceptr) {
        let q = try scratch(codes, bytes: rows * cols)
        let s = try scratch(scales, bytes: rows * 4)
        try launch(.quantizeE4M3(input ? .bf16 : .f32), grid: (rows, 1, 1),
                   [.pointer(x), .pointer(q), .pointer(s), .int32(Int32(cols))])
        return (q, s)
    }

    /// What the scale pass of an FP8 product does with the scaled values.
    enum FP8Epilogue: Equatable {
        case store, accumulate
        /// The product is the joined [w1; w3] (2F rows): out (T, F) = silu(gate) · up.
        case swiGLU
    }

    /// out (T, N) (+)= x (T, K) f32 · W (N, K)ᵀ for an e4m3 W with row scales: x quantized per
    /// row, one cuBLASLt e4m3 product into f32 (into out itself when storing), then the scale pass:
    /// out (+)= product · sx[t] · sw[n], or with `.swiGLU` (W (2F, K), out (T, F)) the gated
    /// FFN's silu(gate) · up of the scaled product in the same pass.
    func fp8Product(_ x: CUdeviceptr, _ weight: CUDATensor, into out: CUdeviceptr, rows: Int, inDim: Int, outDim: Int,
                    epilogue: FP8Epilogue, blas: BLASLtMatmul) throws {
        let (xq, xs) = try quantizeRows(x, bf16: false, rows: rows, cols: inDim, codes: .activationE4M3, scales: .activationScales)
        let product = epilogue == .store ? out : try scratch(.fp8Product, bytes: rows * outDim * 4)
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        try blas.multiply(BLASLtMatmul.Problem(rows: rows, inDim: inDim, outDim: outDim, fp8: true), x: xq,
                          weight: weight.pointer, out: product, workspace: workspace, stream: stream)
        let outWidth = epilogue == .swiGLU ? outDim / 2 : outDim
        for first in stride(from: 0, to: rows, by: Self.maxGridRows) {
            let n = min(Self.maxGridRows, rows - first)
            let grid = ((outWidth / 4 + 255) / 256, n, 1)
            let source = product + CUdeviceptr(first * outDim * 4), target = out + CUdeviceptr(first * outWidth * 4)
            let rowScales = xs + CUdeviceptr(first * 4)
            if epilogue == .swiGLU {
                try launch(.fp8ScaleSwiGLU, grid: grid, [.pointer(source), .pointer(target), .pointer(rowScales),
                                                         .pointer(weight.rowScales), .int32(Int32(outWidth))])
            } else {
                try launch(.fp8ScaleEpilogue, grid: grid, [.pointer(source), .pointer(target), .pointer(rowScales),
                                                           .pointer(weight.rowScales), .int32(Int32(outDim)),
                                                           .int32(epilogue == .accumulate ? 1 : 0)])
            }
        }
    }

    /// The MoE experts with e4m3 weights on FP8 tensor cores, from x narrowed to bf16 (T, D).
    /// `grouped`: each expert's gathered rows (padded blocks, one host sync for the counts, as
    /// `moeGrouped`); else every expert on every token (graph-safe, as `moeDense`). Both: x rows
    /// quantized; G, U = e4m3 products in bf16; h = silu(G·sx·s1)·(U·sx·s3) quantized per row
    /// (moe_swiglu_e4m3); y = e4m3 products in f32, scaled by sh·s2 in place; the weighted combine.
    func moeFP8(_ xb: CUdeviceptr, w1: CUDATensor, w2: CUDATensor, w3: CUDATensor, ids: CUDATensor, weights: CUDATensor,
                offsets: CUdeviceptr, sorted: CUdeviceptr, out: CUDATensor, accumulate: Bool, _ s: MoEShape,
                grouped: Bool, blas: BLASLtMatmul) throws {
        let (t, d, f, e) = (s.tokens, s.dim, s.hidden, s.experts)
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        guard grouped else {
            let (xq, xs) = try quantizeRows(xb, bf16: true, rows: t, cols: d, codes: .moeInputE4M3, scales: .moeInputScales)
            let g = try scratch(.moeGate, bytes: t * e * f * 2)   // (T, E·F) bf16, unscaled
            let u = try scratch(.moeUp, bytes: t * e * f * 2)
            let gateUp = BLASLtMatmul.Problem(rows: t, inDim: d, outDim: e * f, bf16Output: true, fp8: true)
            try blas.multiply(gateUp, x: xq, weight: w1.pointer, out: g, workspace: workspace, stream: stream)
            try blas.multiply(gateUp, x: xq, weight: w3.pointer, out: u, workspace: workspace, stream: stream)
            let hq = try scratch(.moeHiddenE4M3, bytes: t * e * f)   // (T, E·F) e4m3: row t·E + e per segment
            let hs = try scratch(.moeHiddenScales, bytes: t * e * 4)
            try launch(.moeSwiGLUE4M3, grid: (t * e, 1, 1),
                       [.pointer(g), .pointer(u), .pointer(xs), .pointer(w1.rowScales), .pointer(w3.rowScales),
                        .pointer(hq), .pointer(hs), .pointer(offsets), .int32(Int32(f)), .int32(Int32(e)), .int32(1),
                        .int32(Int32(e))])
            let y = try scratch(.moeOut, bytes: e * t * d * 4)   // (E, T, D) f32
            let down = BLASLtMatmul.Problem(rows: t, inDim: f, outDim: d, fp8: true, batch: e, xRowStride: e * f,
                                            xBatchStride: f, weightBatchStride: d * f, outBatchStride: t * d)
            try blas.multiply(down, x: hq, weight: w2.pointer, out: y, workspace: workspace, stream: stream)
            try launch(.moeScaleDownE4M3, grid: ((d / 4 + 255) / 256, e * t, 1),
                       [.pointer(y), .pointer(hs), .pointer(w2.rowScales), .pointer(offsets), .int32(Int32(d)),
                        .int32(Int32(e)), .int32(1), .int32(Int32(t))])
            try combine(y: y, ids: ids, weights: weights, out: out, rows: t, dim: d, topK: s.topK, experts: e, denseRows: t,
                        accumulate: accumulate)
            return
        }
        let pad = Self.moeGroupedRowPad
        let (blocks, total) = try paddedExpertBlocks(offsets: offsets, experts: e)
        guard total > 0 else {
            try combine(y: 0, ids: ids, weights: weights, out: out, rows: t, dim: d, topK: s.topK, experts: e,
                        accumulate: accumulate)
            return
        }
        // Sized for the most rows any routing needs (as moeGrouped), so the buffers don't follow it.
        let most = s.pairs + e * (pad - 1)
        let xs = try scratch(.moeGathered, bytes: most * d * 2)   // (rows, D) bf16
        let rowOf = try scratch(.moeRowOf, bytes: s.pairs * 4)
        try launch(.moeGatherPadded, grid: (total, 1, 1), block: (128, 1, 1),
                   [.pointer(xb), .pointer(offsets), .pointer(sorted), .pointer(xs), .pointer(rowOf),
                    .int32(Int32(d)), .int32(Int32(s.topK)), .int32(Int32(e)), .int32(Int32(pad))])
        let xq = try scratch(.moeInputE4M3, bytes: most * d)
        let sx = try scratch(.moeInputScales, bytes: most * 4)
        try launch(.quantizeE4M3(.bf16), grid: (total, 1, 1), [.pointer(xs), .pointer(xq), .pointer(sx), .int32(Int32(d))])
        let g = try scratch(.moeGate, bytes: most * f * 2)   // (rows, F) bf16, unscaled
        let u = try scratch(.moeUp, bytes: most * f * 2)
        for (i, b) in blocks.enumerated() where b.rows > 0 {
            let p = BLASLtMatmul.Problem(rows: b.rows, inDim: d, outDim: f, bf16Output: true, fp8: true)
            let x = xq + CUdeviceptr(b.start * d), expert = CUdeviceptr(i * f * d), o = CUdeviceptr(b.start * f * 2)
            try blas.multiply(p, x: x, weight: w1.pointer + expert, out: g + o, workspace: workspace, stream: stream)
            try blas.multiply(p, x: x, weight: w3.pointer + expert, out: u + o, workspace: workspace, stream: stream)
        }
        let hq = try scratch(.moeHiddenE4M3, bytes: most * f)
        let hs = try scratch(.moeHiddenScales, bytes: most * 4)
        try launch(.moeSwiGLUE4M3, grid: (total, 1, 1),
                   [.pointer(g), .pointer(u), .pointer(sx), .pointer(w1.rowScales), .pointer(w3.rowScales),
                    .pointer(hq), .pointer(hs), .pointer(offsets), .int32(Int32(f)), .int32(Int32(e)), .int32(Int32(pad)),
                    .int32(0)])
        let y = try scratch(.moeOut, bytes: most * d * 4)   // (rows, D) f32
        for (i, b) in blocks.enumerated() where b.rows > 0 {
            let p = BLASLtMatmul.Problem(rows: b.rows, inDim: f, outDim: d, fp8: true)
            try blas.multiply(p, x: hq + CUdeviceptr(b.start * f), weight: w2.pointer + CUdeviceptr(i * d * f),
                              out: y + CUdeviceptr(b.start * d * 4), workspace: workspace, stream: stream)
        }
        try launch(.moeScaleDownE4M3, grid: ((d / 4 + 255) / 256, total, 1),
                   [.pointer(y), .pointer(hs), .pointer(w2.rowScales), .pointer(offsets), .int32(Int32(d)),
                    .int32(Int32(e)), .int32(Int32(pad)), .int32(0)])
        try combine(y: y, ids: ids, weights: weights, out: out, rows: t, dim: d, topK: s.topK, experts: e, rowOf: rowOf,
                    accumulate: accumulate)
    }
}
