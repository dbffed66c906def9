import CUDADriver
import Tensors

/// The model ops (semantics and shapes: the doc comments of `ComputeBackend`). Each checks its
/// buffers' sizes, then queues kernels on the stream; none waits for the device.
extension CUDABackend {
    public func embed(ids: CUDATensor, table: CUDATensor, out: CUDATensor, rows: Int, dim: Int) throws {
        try require(ids, rows, i32Only, "embed ids")
        try require(out, rows * dim, f32Only, "embed out")
        guard table.shape.count == 2, table.shape[1] == dim else {
            throw BackendError.shapeMismatch("embedding table \(table.shape), expected (V, \(dim))")
        }
        try require(table, table.shape[0] * dim, weightDTypes, "embedding table")
        guard rows > 0 else { return }
        try launch(.embed(table.dtype), grid: gridFor(rows * dim),
                   [.pointer(ids.pointer), .pointer(table.pointer), .pointer(out.pointer),
                    .int32(Int32(rows)), .int32(Int32(dim)), .int32(Int32(table.shape[0]))])
    }

    public func rmsNorm(_ x: CUDATensor, weight: CUDATensor, eps: Float, out: CUDATensor, rows: Int, dim: Int) throws {
        try require(x, rows * dim, f32Only, "rmsNorm x")
        try require(out, rows * dim, f32Only, "rmsNorm out")
        try require(weight, dim, weightDTypes, "rmsNorm weight")
        guard rows > 0 else { return }
        try launch(.rmsNorm(weight.dtype), grid: (rows, 1, 1),
                   [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer), .int32(Int32(dim)), .float(eps)])
    }

    public func matmul(_ x: CUDATensor, weight: CUDATensor, out: CUDATensor, rows: Int, inDim: Int, outDim: Int) throws {
        try require(x, rows * inDim, f32Only, "matmul x")
        try require(out, rows * outDim, f32Only, "matmul out")
        try require(weight, outDim * inDim, weightDTypes, "matmul weight")
        guard rows > 0 else { return }
        if weight.dtype == .bf16, rows <= 4, inDim % 8 == 0, decodeKernels {
            // Enough blocks for ~4 per SM: short matrices split each row over up to 8 warps.
            var split = 1
            while split < 8, (outDim * split + 7) / 8 < 4 * device.multiprocessors { split *= 2 }
            let rowsPerBlock = 8 / split
            try launch(.gemv(rows), grid: ((outDim + rowsPerBlock - 1) / rowsPerBlock, 1, 1),
                       [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer),
                        .int32(Int32(inDim)), .int32(Int32(outDim)), .int32(Int32(split))])
        } else if weight.dtype == .bf16, matmulPath == .cublasLt, let blas {
            let xb = try scratch(.activationBF16, bytes: rows * inDim * 2)
            try launch(.convertToBF16, grid: gridFor(rows * inDim),
                       [.pointer(x.pointer), .pointer(xb), .int64(Int64(rows * inDim))])
            let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
            try blas.multiply(x: xb, weight: weight.pointer, out: out.pointer, rows: rows, inDim: inDim, outDim: outDim,
                              workspace: workspace, stream: stream)
        } else {
            try launch(.matmul(weight.dtype), grid: ((outDim + 63) / 64, (rows + 31) / 32, 1),
                       [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer),
                        .int32(Int32(rows)), .int32(Int32(inDim)), .int32(Int32(outDim))])
        }
    }

    public func rope(_ x: CUDATensor, positions: CUDATensor, rows: Int, heads: Int, headDim: Int, theta: Float) throws {
        guard headDim % 2 == 0 else { throw BackendError.shapeMismatch("rope head dim \(headDim) is odd") }
        try require(x, rows * heads * headDim, f32Only, "rope x")
        try require(positions, rows, i32Only, "rope positions")
        guard rows > 0 else { return }
        try launch(.rope, grid: gridFor(rows * heads * headDim / 2),
                   [.pointer(x.pointer), .pointer(positions.pointer), .int32(Int32(rows)), .int32(Int32(heads)),
                    .int32(Int32(headDim)), .float(theta)])
    }

    public func appendKV(k: CUDATensor, v: CUDATensor, kPool: CUDATensor, vPool: CUDATensor, slots: CUDATensor,
                         rows: Int, kvHeads: Int, headDim: Int) throws {
        try require(k, rows * kvHeads * headDim, f32Only, "appendKV k")
        try require(v, rows * kvHeads * headDim, f32Only, "appendKV v")
        try require(slots, rows, i32Only, "appendKV slots")
        try checkPool(kPool, kvHeads: kvHeads, headDim: headDim, "kPool")
        try checkPool(vPool, kvHeads: kvHeads, headDim: headDim, "vPool")
        guard rows > 0 else { return }
        try launch(.appendKV, grid: gridFor(rows * kvHeads * headDim),
                   [.pointer(k.pointer), .pointer(v.pointer), .pointer(kPool.pointer), .pointer(vPool.pointer),
                    .pointer(slots.pointer), .int32(Int32(rows)), .int32(Int32(kvHeads)), .int32(Int32(headDim))])
    }

    private func checkPool(_ pool: CUDATensor, kvHeads: Int, headDim: Int, _ what: String) throws {
        guard pool.dtype == .bf16, pool.shape.count == 4, pool.shape[2] == kvHeads, pool.shape[3] == headDim else {
            throw BackendError.shapeMismatch("\(what) is \(pool.dtype.rawValue) \(pool.shape), expected bf16 (N, B, \(kvHeads), \(headDim))")
        }
    }

    /// The number of 64-row query tiles (Σ_s ceil(n_s / 64)) when `attention_prefill_d64/d128` should
    /// run this step, else nil. Rule, from H100 measurements (docs/gpu-notes.md): at least 64 query
    /// tokens and not a pure decode step (some sequence has ≥ 2 new tokens). With T ≥ 64 the
    /// tensor-core kernel was never slower than attention_paged, even for mixes of many 1–8 token
    /// sequences (4–5× faster there, 20–60× on 512–4096-token prompts), and only ~15% faster on pure decode
    /// batches, which stay on attention_paged and its split-KV path. Needs sm_80+ (mma.sync bf16)
    /// and head dim 64 or 128 (the two instantiations).
    func prefillAttentionTiles(batch: AttentionBatch<CUDATensor>, headDim: Int) -> Int? {
        guard device.computeCapability.major >= 8, headDim == 64 || headDim == 128, batch.tokens >= 64,
              batch.hostQueryStart.count > batch.sequences else { return nil }
        var tiles = 0, longest = 0
        for s in 0..<batch.sequences {
            let n = Int(batch.hostQueryStart[s + 1] - batch.hostQueryStart[s])
            tiles += (n + 63) / 64
            longest = max(longest, n)
        }
        return longest >= 2 ? tiles : nil
    }

    public func attention(q: CUDATensor, kPool: CUDATensor, vPool: CUDATensor, batch: AttentionBatch<CUDATensor>,
                          out: CUDATensor, heads: Int, kvHeads: Int, headDim: Int, slidingWindow: Int?) throws {
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw BackendError.shapeMismatch("attention: \(heads) query heads do not split into \(kvHeads) KV heads")
        }
        let t = batch.tokens
        try require(q, t * heads * headDim, f32Only, "attention q")
        try require(out, t * heads * headDim, f32Only, "attention out")
        try checkPool(kPool, kvHeads: kvHeads, headDim: headDim, "kPool")
        try checkPool(vPool, kvHeads: kvHeads, headDim: headDim, "vPool")
        guard kPool.shape[1] == batch.blockSize else {
            throw BackendError.shapeMismatch("attention: pool block size \(kPool.shape[1]) ≠ batch block size \(batch.blockSize)")
        }
        try require(batch.queryStart, batch.sequences + 1, i32Only, "attention queryStart")
        try require(batch.positions, t, i32Only, "attention positions")
        try require(batch.blockTables, batch.sequences * batch.maxBlocksPerSequence, i32Only, "attention blockTables")
        guard t > 0, batch.sequences > 0 else { return }
        if decodeKernels, let tiles = prefillAttentionTiles(batch: batch, headDim: headDim) {
            // Tensor-core flash-attention kernel: grid (H, query tiles of 64 rows), 4 warps, K/V
            // tiles of 64 keys double-buffered in shared memory (see attention.cu).
            let f = try kernels.function(.attentionPrefill(headDim: headDim))
            let shared = 4 * 64 * (headDim + 8) * 2
            if shared > 48 * 1024 {
                try device.api.check(device.api.cuFuncSetAttribute(f, 8, Int32(shared)),  // MAX_DYNAMIC_SHARED_SIZE_BYTES
                                     "cuFuncSetAttribute(attention_prefill_d\(headDim), \(shared) bytes shared)")
            }
            try device.launch(f, grid: (heads, tiles, 1), block: (128, 1, 1), sharedBytes: shared, stream: stream,
                              arguments: [.pointer(q.pointer), .pointer(kPool.pointer), .pointer(vPool.pointer),
                                          .pointer(batch.queryStart.pointer), .pointer(batch.positions.pointer),
                                          .pointer(batch.blockTables.pointer), .pointer(out.pointer),
                                          .int32(Int32(batch.sequences)), .int32(Int32(heads)), .int32(Int32(kvHeads)),
                                          .int32(Int32(batch.blockSize)), .int32(Int32(batch.maxBlocksPerSequence)),
                                          .int32(Int32(slidingWindow ?? 0)), .float(1 / Float(headDim).squareRoot())],
                              label: "attention_prefill_d\(headDim)")
            return
        }
        let group = heads / kvHeads
        let tile = headDim <= 128 ? 32 : 16
        // q, acc, K tile (padded rows), V tile, scores, m/l/c, then `tile` 8-byte slots (aligned).
        let floats = 2 * group * headDim + tile * (headDim + 1) + tile * headDim + group * tile + 3 * group
            + (group & 1) + 2 * tile
        let shared = floats * 4
        // Split-KV when (T × G) blocks cannot fill the GPU: each split takes a share of the keys.
        let blocks = t * kvHeads
        let maxContext = Int(batch.hostContextLens.prefix(batch.sequences).max() ?? 1)
        var splits = 1
        if decodeKernels, blocks < 2 * device.multiprocessors {
            splits = max(1, min((2 * device.multiprocessors + blocks - 1) / blocks, (maxContext + 31) / 32, 64))
        }
        let partials = t * heads * splits
        let pm = splits > 1 ? try scratch(.attnMax, bytes: partials * 4) : 0
        let pl = splits > 1 ? try scratch(.attnSum, bytes: partials * 4) : 0
        let pacc = splits > 1 ? try scratch(.attnAcc, bytes: partials * headDim * 4) : 0
        let f = try kernels.function(.attention)
        if shared > 48 * 1024 {
            try device.api.check(device.api.cuFuncSetAttribute(f, 8, Int32(shared)),  // MAX_DYNAMIC_SHARED_SIZE_BYTES
                                 "cuFuncSetAttribute(attention_paged, \(shared) bytes shared)")
        }
        try device.launch(f, grid: (t, kvHeads, splits), block: (128, 1, 1), sharedBytes: shared, stream: stream,
                          arguments: [.pointer(q.pointer), .pointer(kPool.pointer), .pointer(vPool.pointer),
                                      .pointer(batch.queryStart.pointer), .pointer(batch.positions.pointer),
                                      .pointer(batch.blockTables.pointer), .pointer(out.pointer),
                                      .int32(Int32(batch.sequences)), .int32(Int32(heads)), .int32(Int32(kvHeads)),
                                      .int32(Int32(headDim)), .int32(Int32(batch.blockSize)),
                                      .int32(Int32(batch.maxBlocksPerSequence)), .int32(Int32(slidingWindow ?? 0)),
                                      .int32(Int32(tile)), .float(1 / Float(headDim).squareRoot()),
                                      .int32(Int32(splits)), .pointer(pm), .pointer(pl), .pointer(pacc)],
                          label: "attention_paged")
        if splits > 1 {
            guard headDim <= 1024 else { throw BackendError.unsupported("split-KV attention with head dim \(headDim) > 1024") }
            try launch(.attentionMerge, grid: (t, heads, 1), block: (headDim, 1, 1),
                       [.pointer(pm), .pointer(pl), .pointer(pacc), .pointer(out.pointer),
                        .int32(Int32(heads)), .int32(Int32(headDim)), .int32(Int32(splits))])
        }
    }

    public func swiGLU(gate: CUDATensor, up: CUDATensor, out: CUDATensor, count: Int) throws {
        try require(gate, count, f32Only, "swiGLU gate")
        try require(up, count, f32Only, "swiGLU up")
        try require(out, count, f32Only, "swiGLU out")
        guard count > 0 else { return }
        try launch(.swiglu, grid: gridFor(count),
                   [.pointer(gate.pointer), .pointer(up.pointer), .pointer(out.pointer), .int64(Int64(count))])
    }

    public func add(_ x: CUDATensor, _ y: CUDATensor, count: Int) throws {
        try require(x, count, f32Only, "add x")
        try require(y, count, f32Only, "add y")
        guard count > 0 else { return }
        try launch(.add, grid: gridFor(count), [.pointer(x.pointer), .pointer(y.pointer), .int64(Int64(count))])
    }

    public func moeRoute(logits: CUDATensor, ids: CUDATensor, weights: CUDATensor, rows: Int, experts: Int, topK: Int) throws {
        guard topK >= 1, topK <= experts else { throw BackendError.shapeMismatch("moeRoute: top-\(topK) of \(experts) experts") }
        try require(logits, rows * experts, f32Only, "moeRoute logits")
        try require(ids, rows * topK, i32Only, "moeRoute ids")
        try require(weights, rows * topK, f32Only, "moeRoute weights")
        guard rows > 0 else { return }
        try launch(.moeRoute, grid: ((rows + 127) / 128, 1, 1), block: (128, 1, 1),
                   [.pointer(logits.pointer), .pointer(ids.pointer), .pointer(weights.pointer),
                    .int32(Int32(rows)), .int32(Int32(experts)), .int32(Int32(topK))])
    }

    public func moeExperts(_ x: CUDATensor, w1: CUDATensor, w2: CUDATensor, w3: CUDATensor, ids: CUDATensor, weights: CUDATensor,
                           out: CUDATensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        try require(x, rows * dim, f32Only, "moeExperts x")
        try require(out, rows * dim, f32Only, "moeExperts out")
        try require(ids, rows * topK, i32Only, "moeExperts ids")
        try require(weights, rows * topK, f32Only, "moeExperts weights")
        for (w, name) in [(w1, "w1"), (w2, "w2"), (w3, "w3")] {
            try require(w, experts * hidden * dim, weightDTypes, "moeExperts \(name)")
        }
        guard w1.dtype == w2.dtype, w1.dtype == w3.dtype else {
            throw BackendError.shapeMismatch("moeExperts: w1/w2/w3 dtypes differ (\(w1.dtype), \(w2.dtype), \(w3.dtype))")
        }
        guard experts <= 1024 else { throw BackendError.unsupported("moeExperts with \(experts) > 1024 experts") }
        guard rows > 0 else { return }
        let pairs = rows * topK
        // Legend: P = T*K pairs. h (P, F), y (P, D) f32; offsets (E+1), sorted (P) i32.
        let h = try scratch(.moeHidden, bytes: pairs * hidden * 4)
        let y = try scratch(.moeOut, bytes: pairs * dim * 4)
        let offsets = try scratch(.moeOffsets, bytes: (experts + 1) * 4)
        let sorted = try scratch(.moeSorted, bytes: pairs * 4)
        try launch(.moeSort, grid: (1, 1, 1), block: (1024, 1, 1), sharedBytes: 2 * experts * 4,
                   [.pointer(ids.pointer), .int32(Int32(pairs)), .int32(Int32(experts)), .pointer(offsets), .pointer(sorted)])
        if decodeKernels, pairs <= 16, w1.dtype == .bf16, dim % 8 == 0, hidden % 8 == 0 {
            // Small batch: GEMV-style experts, each expert row read once per step.
            try launch(.moeGemvGateUp, grid: ((hidden + 7) / 8, experts, 1),
                       [.pointer(x.pointer), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                        .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK))])
            try launch(.moeGemvDown, grid: ((dim + 7) / 8, experts, 1),
                       [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                        .int32(Int32(dim)), .int32(Int32(hidden))])
            try launch(.moeCombine, grid: gridFor(rows * dim),
                       [.pointer(y), .pointer(ids.pointer), .pointer(weights.pointer), .pointer(out.pointer),
                        .int32(Int32(rows)), .int32(Int32(dim)), .int32(Int32(topK)), .int32(Int32(experts))])
            return
        }
        let rowTiles = (pairs + 31) / 32
        try launch(.moeGateUp(w1.dtype), grid: ((hidden + 63) / 64, rowTiles, experts),
                   [.pointer(x.pointer), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                    .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK))])
        try launch(.moeDown(w2.dtype), grid: ((dim + 63) / 64, rowTiles, experts),
                   [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                    .int32(Int32(dim)), .int32(Int32(hidden))])
        try launch(.moeCombine, grid: gridFor(rows * dim),
                   [.pointer(y), .pointer(ids.pointer), .pointer(weights.pointer), .pointer(out.pointer),
                    .int32(Int32(rows)), .int32(Int32(dim)), .int32(Int32(topK)), .int32(Int32(experts))])
    }

    public func gatherRows(_ x: CUDATensor, rows: CUDATensor, out: CUDATensor, count: Int, dim: Int) throws {
        try require(rows, count, i32Only, "gatherRows rows")
        try require(out, count * dim, f32Only, "gatherRows out")
        try require(x, dim, f32Only, "gatherRows x")
        guard count > 0 else { return }
        try launch(.gatherRows, grid: gridFor(count * dim),
                   [.pointer(x.pointer), .pointer(rows.pointer), .pointer(out.pointer), .int32(Int32(count)), .int32(Int32(dim))])
    }
}
