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

    /// The norm alone, into f32 rows: the general path of the normed ops (normedMatmul past the
    /// GEMV sizes without cuBLASLt, normedMoE's fallback). x, out (T, D); weight (D).
    func rmsNorm(_ x: CUDATensor, weight: CUDATensor, eps: Float, out: CUDATensor, rows: Int, dim: Int) throws {
        try require(x, rows * dim, f32Only, "rmsNorm x")
        try require(out, rows * dim, f32Only, "rmsNorm out")
        try require(weight, dim, weightDTypes, "rmsNorm weight")
        guard rows > 0 else { return }
        // About D/4 threads (one float4 each), a whole number of warps, at most 1024.
        let threads = min(1024, max(32, ((dim + 3) / 4 + 31) / 32 * 32))
        try launch(.rmsNorm(weight.dtype), grid: (rows, 1, 1), block: (threads, 1, 1),
                   [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer), .int32(Int32(dim)), .float(eps)])
    }

    public func normedMatmul(_ x: CUDATensor, norm: CUDATensor, eps: Float, weight: CUDATensor, out: CUDATensor,
                             rows: Int, inDim: Int, outDim: Int, gated: Bool) throws {
        let weightRows = gated ? 2 * outDim : outDim
        try require(x, rows * inDim, f32Only, "normedMatmul x")
        try require(norm, inDim, weightDTypes, "normedMatmul norm")
        try require(out, rows * outDim, f32Only, "normedMatmul out")
        try require(weight, weightRows * inDim, matrixDTypes, "normedMatmul weight (\(weightRows), \(inDim))")
        try requireRowScales(weight, rows: weightRows, "normedMatmul weight")
        guard rows > 0, outDim > 0 else { return }
        switch normedMatmulPath(weight: weight.dtype, norm: norm.dtype, rows: rows, inDim: inDim) {
        case .gemv:
            let e4m3 = weight.dtype == .e4m3
            let tensorCores = e4m3 && e4m3GemvPath(inDims: inDim) == .tensorCore
            let kernel: Kernel = tensorCores ? (gated ? .gemvTCNormSwiGLUE4M3(rows) : .gemvTCNormE4M3(rows))
                : gated ? (e4m3 ? .gemvNormSwiGLUE4M3(rows) : .gemvNormSwiGLU(rows))
                : (e4m3 ? .gemvNormE4M3(rows) : .gemvNorm(rows))
            let staged = try normStaging(kernel, rows: rows, inDim: inDim, staticBytes: tensorCores ? e4m3GemvStaticBytes : 0)
            let (grid, block, split) = tensorCores ? e4m3GemvGrid(outputs: outDim, rows: rows) : gemvGrid(outputs: outDim)
            var arguments: [KernelArgument] = [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer),
                                               .int32(Int32(inDim)), .int32(Int32(outDim)), .int32(Int32(split)),
                                               .pointer(norm.pointer), .float(eps)]
            if e4m3 { arguments.append(.pointer(weight.rowScales)) }
            try launch(kernel, grid: grid, block: (block, 1, 1), sharedBytes: staged, programmatic: true, arguments)
        case .normToBF16ThenBLAS:
            guard let blas else { throw BackendError.device("normedMatmul: cuBLASLt path chosen without cuBLASLt") }
            // Larger steps through cuBLASLt: the norm writes its bf16 operand directly (one narrow
            // pass instead of an f32 write, a read and a convert).
            let xb = try scratch(.activationBF16, bytes: rows * inDim * 2)
            let threads = min(1024, max(32, ((inDim + 3) / 4 + 31) / 32 * 32))
            try launch(.rmsNormToBF16(norm.dtype), grid: (rows, 1, 1), block: (threads, 1, 1),
                       [.pointer(x.pointer), .pointer(norm.pointer), .pointer(xb), .int32(Int32(inDim)), .float(eps)])
            let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
            if !gated {
                try blas.multiply(x: xb, weight: weight.pointer, out: out.pointer, rows: rows, inDim: inDim, outDim: outDim,
                                  workspace: workspace, stream: stream)
                return
            }
            let both = try scratch(.productOut, bytes: rows * weightRows * 4)   // (T, 2F): gate | up
            try blas.multiply(x: xb, weight: weight.pointer, out: both, rows: rows, inDim: inDim, outDim: weightRows,
                              workspace: workspace, stream: stream)
            try launch(.swigluSplit, grid: gridFor(rows * outDim),
                       [.pointer(both), .pointer(out.pointer), .int32(Int32(rows)), .int32(Int32(outDim))])
        case .normThenProduct:
            // The norm into a scratch activation, then the product.
            let h = CUDATensor(pointer: try scratch(.normed, bytes: rows * inDim * 4), byteCount: rows * inDim * 4,
                               dtype: .f32, shape: [rows, inDim], device: device, ownsMemory: false)
            try rmsNorm(x, weight: norm, eps: eps, out: h, rows: rows, dim: inDim)
            try product(h, weight, out, rows: rows, inDim: inDim, outputs: outDim, gated ? .swiGLU : .store)
        }
    }

    /// Throws unless an e4m3 weight carries a scale for each of its first `rows` rows (the
    /// kernels read them unchecked); nothing to check for other dtypes.
    func requireRowScales(_ weight: CUDATensor, rows: Int, _ what: String) throws {
        guard weight.dtype == .e4m3 else { return }
        guard weight.rowScales != 0, weight.scaleCount >= rows else {
            throw BackendError.shapeMismatch("\(what): e4m3 weight \(weight.shape) has \(weight.scaleCount) row scales, op needs \(rows)")
        }
    }

    /// Dynamic shared memory of a normed GEMV (gemv.cu stages x ⊙ norm, (rows, inDim) f32),
    /// raising the kernel's limit past the 48 KiB default where needed. The kernel's static
    /// arrays (partial sums and the norm's reduction, at most 288 bytes) count against the same
    /// default: staging of exactly 48 KiB (3 rows of 4096, 2 of 6144) failed to launch without
    /// the raise, so the check keeps a 1 KiB margin for them.
    /// `staticBytes`: more static shared memory than that margin (the tensor-core e4m3 kernels').
    func normStaging(_ kernel: Kernel, rows: Int, inDim: Int, staticBytes: Int = 0) throws -> Int {
        let bytes = rows * inDim * 4
        if bytes + max(1024, staticBytes) > 48 * 1024 {
            try device.api.check(device.api.cuFuncSetAttribute(try kernels.function(kernel), 8, Int32(bytes)),  // MAX_DYNAMIC_SHARED_SIZE_BYTES
                                 "cuFuncSetAttribute(\(kernel.symbol), \(bytes) bytes shared)")
        }
        return bytes
    }

    /// Grid and warps per row of a GEMV with `outputs` rows: enough blocks for `gemvBlocksPerSM`
    /// per SM, short matrices splitting each row over up to 8 warps.
    func gemvGrid(outputs: Int) -> (grid: (Int, Int, Int), block: Int, split: Int) {
        var split = 1
        while split < 8, (outputs * split + 7) / 8 < gemvBlocksPerSM * device.multiprocessors { split *= 2 }
        let rowsPerBlock = 8 / split
        return (((outputs + rowsPerBlock - 1) / rowsPerBlock, 1, 1), 256, split)
    }

    /// Grid, block size and warps per tile of the tensor-core e4m3 GEMVs (a warp per 16 rows) for
    /// `rows` activation rows: enough warps for `e4m3GemvBlocksPerSM` blocks of 8 per SM,
    /// splitting K over up to 16 warps (then in blocks of 16 warps).
    func e4m3GemvGrid(outputs: Int, rows: Int) -> (grid: (Int, Int, Int), block: Int, split: Int) {
        let target = e4m3GemvBlocksPerSM.dense(rows: rows) * device.multiprocessors
        return Self.e4m3GemvLaunch(outputs: outputs, slots: 1, targetBlocks: target, maxSplit: e4m3GemvMaxSplit)
    }

    /// The same for the GEMV-style MoE experts, whose grid has a row per touched expert (`slots`).
    func e4m3GemvGrid(outputs: Int, slots: Int) -> (grid: (Int, Int, Int), block: Int, split: Int) {
        Self.e4m3GemvLaunch(outputs: outputs, slots: slots, targetBlocks: e4m3GemvBlocksPerSM.experts * device.multiprocessors,
                            maxSplit: e4m3GemvMaxSplit)
    }

    /// `e4m3GemvGrid`'s arithmetic, without a device (tested on the CPU): the smallest split
    /// (1, 2, 4, … ≤ maxSplit) whose 8-warp blocks, times `slots`, reach `targetBlocks`; split
    /// 16 runs in blocks of 16 warps, so a block always covers whole tiles (warps / split).
    public static func e4m3GemvLaunch(outputs: Int, slots: Int, targetBlocks: Int, maxSplit: Int)
        -> (grid: (Int, Int, Int), block: Int, split: Int) {
        let tiles = (outputs + 15) / 16
        var split = 1
        while split < maxSplit, (tiles * split + 7) / 8 * slots < targetBlocks { split *= 2 }
        let warps = split == 16 ? 16 : 8
        return (((tiles * split + warps - 1) / warps, slots, 1), 32 * warps, split)
    }

    /// Static shared memory of the tensor-core e4m3 GEMVs at most (partial sums of 16 warps and
    /// two tiles, gemv_e4m3.cu, and the norm's reduction).
    var e4m3GemvStaticBytes: Int { 16 * 2 * 16 * 8 * 4 + 128 }

    public func matmulAdd(_ x: CUDATensor, weight: CUDATensor, into out: CUDATensor, rows: Int, inDim: Int, outDim: Int) throws {
        try require(x, rows * inDim, f32Only, "matmulAdd x")
        try require(out, rows * outDim, f32Only, "matmulAdd out")
        try require(weight, outDim * inDim, matrixDTypes, "matmulAdd weight")
        try requireRowScales(weight, rows: outDim, "matmulAdd weight")
        try product(x, weight, out, rows: rows, inDim: inDim, outputs: outDim, .accumulate)
    }

    /// What a product does with its result (see the GEMV modes in gemv.cu).
    enum ProductMode { case store, accumulate, swiGLU }

    /// x (T, K) times the weight into `outputs` columns of out: one GEMV launch for ≤ 4 rows of
    /// bf16 (store or accumulate); otherwise a general product (cuBLASLt or SIMT) plus, where the mode needs
    /// it and the product cannot do it itself, one elementwise pass over a scratch result.
    func product(_ x: CUDATensor, _ weight: CUDATensor, _ out: CUDATensor, rows: Int, inDim: Int,
                 outputs: Int, _ mode: ProductMode) throws {
        guard rows > 0, outputs > 0 else { return }
        let weightRows = mode == .swiGLU ? 2 * outputs : outputs
        if productPath(weight: weight.dtype, rows: rows, inDim: inDim, mode: mode) == .gemv {
            // (The gated product at decode sizes is `normedMatmul`'s GEMV, norm included.)
            let e4m3 = weight.dtype == .e4m3
            let tensorCores = e4m3 && e4m3GemvPath(inDims: inDim) == .tensorCore
            let (grid, block, split) = tensorCores ? e4m3GemvGrid(outputs: outputs, rows: rows) : gemvGrid(outputs: outputs)
            let kernel: Kernel = tensorCores ? (mode == .store ? .gemvTCE4M3(rows) : .gemvTCAddE4M3(rows))
                : mode == .store ? (e4m3 ? .gemvE4M3(rows) : .gemv(rows)) : (e4m3 ? .gemvAddE4M3(rows) : .gemvAdd(rows))
            var arguments: [KernelArgument] = [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out.pointer),
                                               .int32(Int32(inDim)), .int32(Int32(outputs)), .int32(Int32(split))]
            if e4m3 { arguments.append(.pointer(weight.rowScales)) }
            try launch(kernel, grid: grid, block: (block, 1, 1), programmatic: true, arguments)
            return
        }
        // The cuBLASLt paths can accumulate (in the epilogue, or the FP8 scale pass).
        let blasPath = generalProductPath(weight: weight.dtype, inDim: inDim, outDim: weightRows) != .simt
        switch mode {
        case .store:
            try generalProduct(x, weight, into: out.pointer, rows: rows, inDim: inDim, outDim: weightRows, accumulate: false)
        case .accumulate where blasPath:
            try generalProduct(x, weight, into: out.pointer, rows: rows, inDim: inDim, outDim: weightRows, accumulate: true)
        case .accumulate:
            let tmp = try scratch(.productOut, bytes: rows * weightRows * 4)
            try generalProduct(x, weight, into: tmp, rows: rows, inDim: inDim, outDim: weightRows, accumulate: false)
            try launch(.add, grid: gridFor(rows * outputs), [.pointer(out.pointer), .pointer(tmp), .int64(Int64(rows * outputs))])
        case .swiGLU where generalProductPath(weight: weight.dtype, inDim: inDim, outDim: weightRows) == .cublasLtFP8:
            // The scale pass does the SwiGLU too: one pass over the (T, 2F) product.
            guard let blas else { throw BackendError.device("product: cuBLASLt FP8 path chosen without cuBLASLt") }
            try fp8Product(x.pointer, weight, into: out.pointer, rows: rows, inDim: inDim, outDim: weightRows, epilogue: .swiGLU,
                           blas: blas)
        case .swiGLU:
            let both = try scratch(.productOut, bytes: rows * weightRows * 4)   // (T, 2F): gate | up
            try generalProduct(x, weight, into: both, rows: rows, inDim: inDim, outDim: weightRows, accumulate: false)
            try launch(.swigluSplit, grid: gridFor(rows * outputs),
                       [.pointer(both), .pointer(out.pointer), .int32(Int32(rows)), .int32(Int32(outputs))])
        }
    }

    /// out (T, N) (+)= x (T, K) · W (N, K)ᵀ by cuBLASLt (bf16 or, on FP8 tensor cores, e4m3
    /// weights) or the SIMT kernel (which only stores; `accumulate` needs a cuBLASLt path).
    private func generalProduct(_ x: CUDATensor, _ weight: CUDATensor, into out: CUdeviceptr, rows: Int, inDim: Int,
                                outDim: Int, accumulate: Bool) throws {
        switch generalProductPath(weight: weight.dtype, inDim: inDim, outDim: outDim) {
        case .cublasLtFP8:
            guard let blas else { throw BackendError.device("product: cuBLASLt FP8 path chosen without cuBLASLt") }
            try fp8Product(x.pointer, weight, into: out, rows: rows, inDim: inDim, outDim: outDim,
                           epilogue: accumulate ? .accumulate : .store, blas: blas)
        case .cublasLt:
            guard let blas else { throw BackendError.device("product: cuBLASLt path chosen without cuBLASLt") }
            let xb = try scratch(.activationBF16, bytes: rows * inDim * 2)
            try launch(.convertToBF16, grid: gridFor(rows * inDim),
                       [.pointer(x.pointer), .pointer(xb), .int64(Int64(rows * inDim))])
            let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
            try blas.multiply(x: xb, weight: weight.pointer, out: out, rows: rows, inDim: inDim, outDim: outDim,
                              accumulate: accumulate, workspace: workspace, stream: stream)
        case .simt:
            precondition(!accumulate, "the SIMT product only stores")
            // e4m3: the tile kernel widens the codes and multiplies each output by its row scale.
            var arguments: [KernelArgument] = [.pointer(x.pointer), .pointer(weight.pointer), .pointer(out),
                                               .int32(Int32(rows)), .int32(Int32(inDim)), .int32(Int32(outDim))]
            if weight.dtype == .e4m3 { arguments.append(.pointer(weight.rowScales)) }
            try launch(.matmul(weight.dtype), grid: ((outDim + 63) / 64, (rows + 31) / 32, 1), arguments)
        }
    }

    public func ropeAppendKV(qkv: CUDATensor, q: CUDATensor, kPool: CUDATensor, vPool: CUDATensor, positions: CUDATensor,
                             slots: CUDATensor, rows: Int, heads: Int, kvHeads: Int, headDim: Int, theta: Float) throws {
        guard headDim % 2 == 0 else { throw BackendError.shapeMismatch("ropeAppendKV head dim \(headDim) is odd") }
        try require(qkv, rows * (heads + 2 * kvHeads) * headDim, f32Only, "ropeAppendKV qkv")
        try require(q, rows * heads * headDim, f32Only, "ropeAppendKV q")
        try require(positions, rows, i32Only, "ropeAppendKV positions")
        try require(slots, rows, i32Only, "ropeAppendKV slots")
        try checkPool(kPool, kvHeads: kvHeads, headDim: headDim, "kPool")
        try checkPool(vPool, kvHeads: kvHeads, headDim: headDim, "vPool")
        guard rows > 0 else { return }
        try launch(.ropeAppendKV, grid: gridFor(rows * (heads + 2 * kvHeads) * headDim / 2), programmatic: true,
                   [.pointer(qkv.pointer), .pointer(q.pointer), .pointer(kPool.pointer), .pointer(vPool.pointer),
                    .pointer(positions.pointer), .pointer(slots.pointer), .int32(Int32(rows)), .int32(Int32(heads)),
                    .int32(Int32(kvHeads)), .int32(Int32(headDim)), .float(theta)])
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

    /// Whether every sequence of the step has exactly one query token (T == S, token s = sequence s).
    func isDecodeBatch(_ batch: AttentionBatch<CUDATensor>) -> Bool {
        guard batch.tokens == batch.sequences, batch.hostQueryStart.count > batch.sequences else { return false }
        for s in 0...batch.sequences where batch.hostQueryStart[s] != Int32(s) { return false }
        return true
    }

    /// Key splits of attention_decode for `units` = S · G · head chunks blocks per split and at
    /// most `keys` visible keys per query. One split once the units alone give every SM two blocks
    /// (a merge costs more than the imbalance); otherwise enough splits for two blocks per SM, or
    /// more (up to four per SM) so that a split takes at most 512 keys, never under 64 keys a
    /// split (the kernel's `minShare`). Measured on H200: docs/gpu-notes.md, "Decode attention".
    func decodeAttentionSplits(units: Int, keys: Int) -> Int {
        let sms = device.multiprocessors
        guard units < 2 * sms else { return 1 }
        let forSMs = (2 * sms + units - 1) / units
        let forLength = min((keys + 511) / 512, (4 * sms + units - 1) / units)
        return max(1, min(max(forSMs, forLength), (keys + 63) / 64, 256))
    }

    /// Flash-decoding attention (attention_decode_d{64,128}_q{1,2,4,8}, see attention_decode.cu): grid
    /// (S, G · chunks, splits), 4 warps; splits > 1 adds attention_decode_merge. The launch depends
    /// only on the batch shape and, when recording a replayable step, on the block tables'
    /// capacity (each split's key range is computed on the device from the positions).
    func decodeAttention(q: CUDATensor, kPool: CUDATensor, vPool: CUDATensor, batch: AttentionBatch<CUDATensor>,
                         out: CUDATensor, heads: Int, kvHeads: Int, headDim: Int, window: Int) throws {
        let s = batch.sequences
        let group = heads / kvHeads
        let qm = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8
        let chunks = (group + qm - 1) / qm
        let maxContext = recordingStep ? batch.maxBlocksPerSequence * batch.blockSize
            : Int(batch.hostContextLens.prefix(s).max() ?? 1)
        let keys = max(1, window > 0 ? min(maxContext, window) : maxContext)
        let minShare = 64
        let splits = decodeAttentionSplits(units: s * kvHeads * chunks, keys: keys)
        let partials = s * heads * splits
        let pm = splits > 1 ? try scratch(.attnMax, bytes: partials * 4) : 0
        let pl = splits > 1 ? try scratch(.attnSum, bytes: partials * 4) : 0
        let pacc = splits > 1 ? try scratch(.attnAcc, bytes: partials * headDim * 4) : 0
        try launch(.attentionDecode(headDim: headDim, group: qm), grid: (s, kvHeads * chunks, splits), block: (128, 1, 1),
                   programmatic: true, [.pointer(q.pointer), .pointer(kPool.pointer), .pointer(vPool.pointer),
                    .pointer(batch.positions.pointer), .pointer(batch.blockTables.pointer), .pointer(out.pointer),
                    .int32(Int32(heads)), .int32(Int32(kvHeads)), .int32(Int32(batch.blockSize)),
                    .int32(Int32(batch.maxBlocksPerSequence)), .int32(Int32(window)),
                    .float(1 / Float(headDim).squareRoot()), .int32(Int32(splits)), .int32(Int32(minShare)),
                    .pointer(pm), .pointer(pl), .pointer(pacc)])
        if splits > 1 {
            try launch(.attentionDecodeMerge, grid: (s * heads, 1, 1), block: (256, 1, 1), programmatic: true,
                       [.pointer(pm), .pointer(pl), .pointer(pacc), .pointer(out.pointer),
                        .int32(Int32(headDim)), .int32(Int32(splits))])
        }
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
            // tiles of 64 keys double-buffered in shared memory (see attention_prefill.cu).
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
        if decodeKernels, headDim == 64 || headDim == 128, isDecodeBatch(batch) {
            try decodeAttention(q: q, kPool: kPool, vPool: vPool, batch: batch, out: out, heads: heads, kvHeads: kvHeads,
                                headDim: headDim, window: slidingWindow ?? 0)
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
        // A recorded step replays with other context lengths: size the split for the longest
        // context the block tables can describe (each split's share is computed on the device).
        let maxContext = recordingStep ? batch.maxBlocksPerSequence * batch.blockSize
            : Int(batch.hostContextLens.prefix(batch.sequences).max() ?? 1)
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

    public func gatherRows(_ x: CUDATensor, rows: CUDATensor, out: CUDATensor, count: Int, dim: Int) throws {
        try require(rows, count, i32Only, "gatherRows rows")
        try require(out, count * dim, f32Only, "gatherRows out")
        try require(x, dim, f32Only, "gatherRows x")
        guard count > 0 else { return }
        try launch(.gatherRows, grid: gridFor(count * dim),
                   [.pointer(x.pointer), .pointer(rows.pointer), .pointer(out.pointer), .int32(Int32(count)), .int32(Int32(dim))])
    }
}
