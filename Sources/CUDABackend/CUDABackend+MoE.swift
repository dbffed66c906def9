import CUDADriver
import Tensors

/// Mixture-of-experts ops: routing, then the experts by one of three kernel families chosen by
/// the number of (token, expert) pairs (gpu-notes: "MoE decode at batch 1–8" and the tensor-core
/// sections). No path synchronises with the host except the prefill GEMM path, which is never
/// recorded into a graph.
extension CUDABackend {
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
            // Small batch: GEMV-style experts, each touched expert row read once per step. Block
            // row j serves the j-th expert with pairs, so min(E, P) rows cover them all (the grid
            // depends only on T). Above ~2 pairs per expert (P > 16 at E = 8) the per-pair
            // activation reads make these L1-bound and the tensor-core kernels win (gpu-notes).
            let slots = min(experts, pairs)
            try launch(.moeGemvGateUp, grid: ((hidden + 7) / 8, slots, 1),
                       [.pointer(x.pointer), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                        .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK)), .int32(Int32(experts))])
            try launch(.moeGemvDown, grid: ((dim + 31) / 32, slots, 1),
                       [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                        .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(experts))])
            try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts)
            return
        }
        let tensorPaths = w1.dtype == .bf16 && matmulPath == .cublasLt && device.computeCapability.major >= 8
        let mmaFits = dim % MoEMMATile.dimMultiple == 0 && hidden % MoEMMATile.hiddenMultiple == 0
        if tensorPaths, let blas, dim % 8 == 0, hidden % 8 == 0 {
            let shape = MoEShape(tokens: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)
            switch cublasMoEPath(tokens: rows, mmaFits: mmaFits) {
            case .dense:
                try moeDense(narrowed(x, count: rows * dim), w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                             out: out, shape, blas: blas)
                return
            case .grouped:
                try moeGrouped(narrowed(x, count: rows * dim), w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                               offsets: offsets, sorted: sorted, out: out, shape, blas: blas)
                return
            case .tensorCore, .automatic:
                break
            }
        }
        if tensorPaths, mmaFits {
            // Tensor-core experts: x narrowed to bf16 once, h kept in bf16 (its slot is big enough).
            let xb = try narrowed(x, count: rows * dim)
            let small = pairs <= 256
            let gateUp = small ? MoEMMATile.gateUpSmall : MoEMMATile.gateUpLarge
            let down = small ? MoEMMATile.downSmall : MoEMMATile.downLarge
            let gateUpTiles = gateUp.mTiles(pairs: pairs, experts: experts)
            try launchMMA(gateUp, outDim: hidden,
                          [.pointer(xb), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                           .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK)),
                           .int32(Int32(experts)), .int32(Int32(gateUpTiles))], mTiles: gateUpTiles)
            let downTiles = down.mTiles(pairs: pairs, experts: experts)
            try launchMMA(down, outDim: dim,
                          [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                           .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(experts)), .int32(Int32(downTiles))],
                          mTiles: downTiles)
            try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts)
            return
        }
        let rowTiles = (pairs + 31) / 32
        try launch(.moeGateUp(w1.dtype), grid: ((hidden + 63) / 64, rowTiles, experts),
                   [.pointer(x.pointer), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                    .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK))])
        try launch(.moeDown(w2.dtype), grid: ((dim + 63) / 64, rowTiles, experts),
                   [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                    .int32(Int32(dim)), .int32(Int32(hidden))])
        try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts)
    }

    /// out[t] = Σ_k weights[t, k] · y[row(t, k)], the row as `moe_combine` documents: `rowOf`
    /// (P) i32 when non-zero, else e·denseRows + t when denseRows > 0, else the pair index.
    func combine(y: CUdeviceptr, ids: CUDATensor, weights: CUDATensor, out: CUDATensor, rows: Int, dim: Int,
                 topK: Int, experts: Int, rowOf: CUdeviceptr = 0, denseRows: Int = 0) throws {
        try launch(.moeCombine, grid: gridFor(rows * dim),
                   [.pointer(y), .pointer(ids.pointer), .pointer(weights.pointer), .pointer(out.pointer),
                    .int32(Int32(rows)), .int32(Int32(dim)), .int32(Int32(topK)), .int32(Int32(experts)),
                    .pointer(rowOf), .int32(Int32(denseRows)), .int32(0)])
    }

    /// Launches a tensor-core expert kernel: mTiles · (outDim / tile.n) one-dimensional blocks
    /// (blocks past the last live (expert, pair tile) exit at once), dynamic shared memory raised
    /// past the 48 KiB default.
    private func launchMMA(_ tile: MoEMMATile, outDim: Int, _ arguments: [KernelArgument], mTiles: Int) throws {
        let f = try kernels.function(tile.kernel)
        if tile.sharedBytes > 48 * 1024 {
            try device.api.check(device.api.cuFuncSetAttribute(f, 8, Int32(tile.sharedBytes)),  // MAX_DYNAMIC_SHARED_SIZE_BYTES
                                 "cuFuncSetAttribute(\(tile.kernel.symbol), \(tile.sharedBytes) bytes shared)")
        }
        try device.launch(f, grid: (mTiles * (outDim / tile.n), 1, 1), block: (tile.threads, 1, 1),
                          sharedBytes: tile.sharedBytes, stream: stream, arguments: arguments, label: tile.kernel.symbol)
    }
}

/// The tensor-core MoE kernels' block tiles (must match the MOE_MMA_* lines in moe.cu): `n`
/// weight rows × `m` pairs per block, shared bytes = stages · (weight rows + m) · (64 + 8) · 2.
struct MoEMMATile {
    let kernel: Kernel
    let n: Int, m: Int, threads: Int, sharedBytes: Int

    /// Upper bound on the (expert, pair tile) count: Σ ceil(count_e / m) ≤ ceil(P / m) + E.
    func mTiles(pairs: Int, experts: Int) -> Int { (pairs + m - 1) / m + experts }

    static let gateUpSmall = MoEMMATile(kernel: .moeMMAGateUp(32), n: 64, m: 32, threads: 128, sharedBytes: 4 * (128 + 32) * 144)
    static let gateUpLarge = MoEMMATile(kernel: .moeMMAGateUp(128), n: 64, m: 128, threads: 256, sharedBytes: 3 * (128 + 128) * 144)
    static let downSmall = MoEMMATile(kernel: .moeMMADown(64), n: 128, m: 64, threads: 256, sharedBytes: 3 * (128 + 64) * 144)
    static let downLarge = MoEMMATile(kernel: .moeMMADown(128), n: 128, m: 128, threads: 256, sharedBytes: 3 * (128 + 128) * 144)
    /// D is the down kernels' N (tile 128) and the gate/up K (chunk 64); F the gate/up N (64) and
    /// the down K (64).
    static let dimMultiple = 128
    static let hiddenMultiple = 64
}
