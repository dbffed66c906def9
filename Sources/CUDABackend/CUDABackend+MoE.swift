import CUDADriver
import Tensors

/// Mixture-of-experts ops: routing, then the experts by one of three kernel families chosen by
/// the number of (token, expert) pairs (gpu-notes: "MoE decode at batch 1–8" and the tensor-core
/// sections). No path synchronises with the host except the prefill GEMM path, which is never
/// recorded into a graph.
extension CUDABackend {
    /// Mixtral routing of gate logits (T, E) into ids, weights (T, K): top-k, then softmax over
    /// the k chosen; ties → lower index. normedMoE's general path.
    func moeRoute(logits: CUDATensor, ids: CUDATensor, weights: CUDATensor, rows: Int, experts: Int, topK: Int) throws {
        guard topK >= 1, topK <= experts else { throw BackendError.shapeMismatch("moeRoute: top-\(topK) of \(experts) experts") }
        try require(logits, rows * experts, f32Only, "moeRoute logits")
        try require(ids, rows * topK, i32Only, "moeRoute ids")
        try require(weights, rows * topK, f32Only, "moeRoute weights")
        guard rows > 0 else { return }
        try launch(.moeRoute, grid: ((rows + 127) / 128, 1, 1), block: (128, 1, 1),
                   [.pointer(logits.pointer), .pointer(ids.pointer), .pointer(weights.pointer),
                    .int32(Int32(rows)), .int32(Int32(experts)), .int32(Int32(topK))])
    }

    /// Decode (T·K ≤ 16, bf16, E ≤ 32): five launches per layer at T ≤ 4 (old order: eight) —
    /// the router GEMV with the norm inside that also writes x̂ = rmsNorm(x) (one per 4 tokens),
    /// `moe_route_sort` (routing and grouping in one warp), the GEMV-style gate/up and down, and
    /// the combine adding into the residual. Larger steps: rmsNorm into scratch, the router
    /// product, route, sort, the grouped experts, the accumulating combine. Logits, x̂, ids,
    /// weights, offsets and sorted live in scratch: nothing reaches the host, and every launch
    /// depends only on T (graph-safe).
    public func normedMoE(_ x: CUDATensor, norm: CUDATensor, eps: Float, router: CUDATensor, w1: CUDATensor, w2: CUDATensor,
                          w3: CUDATensor, into out: CUDATensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        guard topK >= 1, topK <= experts else { throw BackendError.shapeMismatch("normedMoE: top-\(topK) of \(experts) experts") }
        try require(x, rows * dim, f32Only, "normedMoE x")
        try require(out, rows * dim, f32Only, "normedMoE out")
        try require(norm, dim, weightDTypes, "normedMoE norm")
        try require(router, experts * dim, weightDTypes, "normedMoE router (E, D)")
        try requireExperts(w1: w1, w2: w2, w3: w3, dim: dim, hidden: hidden, experts: experts, "normedMoE")
        guard rows > 0 else { return }
        let pairs = rows * topK
        // Legend: P = T*K pairs. x̂ (T, D), logits (T, E) f32; ids, weights (T, K); h (P, F),
        // y (P, D) f32; offsets (E+1), sorted (P) i32.
        func view(_ slot: ScratchSlot, _ dtype: DType, _ shape: [Int]) throws -> CUDATensor {
            let bytes = shape.reduce(1, *) * 4
            return CUDATensor(pointer: try scratch(slot, bytes: bytes), byteCount: bytes, dtype: dtype, shape: shape,
                              device: device, ownsMemory: false)
        }
        let normed = try view(.moeNormed, .f32, [rows, dim])
        let logits = try view(.moeLogits, .f32, [rows, experts])
        let ids = try view(.moeIDs, .i32, [rows, topK])
        let weights = try view(.moeWeights, .f32, [rows, topK])
        let h = try scratch(.moeHidden, bytes: pairs * hidden * 4)
        let y = try scratch(.moeOut, bytes: pairs * dim * 4)
        let offsets = try scratch(.moeOffsets, bytes: (experts + 1) * 4)
        let sorted = try scratch(.moeSorted, bytes: pairs * 4)
        let path = normedMoEPath(experts: w1.dtype, router: router.dtype, norm: norm.dtype, rows: rows, dim: dim,
                                 hidden: hidden, experts: experts, topK: topK)
        if path == .decode {
            // Bounds: moe_route_sort's one warp (P ≤ 32, E ≤ 32); the GEMV experts' P ≤ 16.
            let (grid, _, split) = gemvGrid(outputs: experts)
            let chunk = KernelLimits.moeRouterGemvTokens
            for first in stride(from: 0, to: rows, by: chunk) {
                let n = min(chunk, rows - first)
                let staged = try normStaging(.gemvNormEmit(n), rows: n, inDim: dim)
                try launch(.gemvNormEmit(n), grid: grid, sharedBytes: staged, programmatic: true,
                           [.pointer(x.pointer + UInt64(first * dim * 4)), .pointer(router.pointer),
                            .pointer(logits.pointer + UInt64(first * experts * 4)), .int32(Int32(dim)),
                            .int32(Int32(experts)), .int32(Int32(split)), .pointer(norm.pointer), .float(eps),
                            .pointer(normed.pointer + UInt64(first * dim * 4))])
            }
            // Top-k on the gate logits, then softmax over the k chosen (Mixtral's order), and the
            // counting sort by expert.
            try launch(.moeRouteSort, grid: (1, 1, 1), block: (32, 1, 1),
                       [.pointer(logits.pointer), .pointer(ids.pointer), .pointer(weights.pointer), .pointer(offsets),
                        .pointer(sorted), .int32(Int32(rows)), .int32(Int32(experts)), .int32(Int32(topK))])
            let slots = min(experts, pairs)
            try launchGemvGateUp(x: normed.pointer, w1: w1, w3: w3, offsets: offsets, sorted: sorted, h: h, dim: dim,
                                 hidden: hidden, topK: topK, experts: experts, slots: slots)
            try launchGemvDown(h: h, w2: w2, offsets: offsets, sorted: sorted, y: y, dim: dim, hidden: hidden,
                               experts: experts, slots: slots)
            try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts,
                        accumulate: true)
            return
        }
        let tensorPaths = moeTensorPaths(experts: w1.dtype, dim: dim, hidden: hidden)
        if path == .normRoute {
            // Norm, router, routing and the bf16 operand in one launch (moe_norm_route_*); the f32
            // normed rows only where the SIMT experts will read them.
            let xb = try scratch(.moeInputBF16, bytes: rows * dim * 2)   // (T, D) bf16
            try launch(.moeNormRoute(router.dtype), grid: (rows, 1, 1), block: (256, 1, 1), sharedBytes: (dim + experts) * 4,
                       [.pointer(x.pointer), .pointer(norm.pointer), .float(eps), .pointer(router.pointer),
                        .int32(Int32(dim)), .int32(Int32(experts)), .int32(Int32(topK)),
                        .pointer(tensorPaths ? 0 : normed.pointer), .pointer(xb), .pointer(ids.pointer), .pointer(weights.pointer)])
            try launch(.moeSort, grid: (1, 1, 1), block: (1024, 1, 1), sharedBytes: 2 * experts * 4,
                       [.pointer(ids.pointer), .int32(Int32(pairs)), .int32(Int32(experts)), .pointer(offsets), .pointer(sorted)])
            try groupedExperts(normed, narrowed: tensorPaths ? xb : nil, w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                               offsets: offsets, sorted: sorted, h: h, y: y, out: out, accumulate: true, rows: rows, dim: dim,
                               hidden: hidden, experts: experts, topK: topK)
            return
        }
        try rmsNorm(x, weight: norm, eps: eps, out: normed, rows: rows, dim: dim)
        // The router product with f32 activations at every step size (moe_router_*): routing is a
        // discrete choice, and a bf16-narrowed x (the cuBLASLt operand) flipped a near-tied expert
        // against the f32 reference (H200 conformance, T 40). (The general SIMT tile kernel was
        // tried first: 2 blocks at T = 64, ≈ 300 µs per layer of k-tile latency, H100.)
        try launch(.moeRouter(router.dtype), grid: (rows, 1, 1),
                   [.pointer(normed.pointer), .pointer(router.pointer), .pointer(logits.pointer),
                    .int32(Int32(dim)), .int32(Int32(experts))])
        // Top-k on the gate logits, then softmax over the k chosen (Mixtral's order).
        try moeRoute(logits: logits, ids: ids, weights: weights, rows: rows, experts: experts, topK: topK)
        try launch(.moeSort, grid: (1, 1, 1), block: (1024, 1, 1), sharedBytes: 2 * experts * 4,
                   [.pointer(ids.pointer), .int32(Int32(pairs)), .int32(Int32(experts)), .pointer(offsets), .pointer(sorted)])
        try groupedExperts(normed, w1: w1, w2: w2, w3: w3, ids: ids, weights: weights, offsets: offsets, sorted: sorted,
                           h: h, y: y, out: out, accumulate: true, rows: rows, dim: dim, hidden: hidden,
                           experts: experts, topK: topK)
    }

    /// The experts past the GEMV sizes (ids/weights routed and offsets/sorted filled by the
    /// caller): for bf16 weights the cuBLASLt paths (`cublasMoEPath`) or the tensor-core kernels,
    /// for e4m3 cuBLASLt on FP8 tensor cores, else the SIMT tile kernels; then out = (or +=, with `accumulate`) the weighted combine.
    /// x (T, D) f32, or `narrowed`: x already in bf16 (T, D) for the tensor paths, in which case
    /// x itself is not read by them.
    private func groupedExperts(_ x: CUDATensor, narrowed xb: CUdeviceptr? = nil, w1: CUDATensor, w2: CUDATensor, w3: CUDATensor,
                                ids: CUDATensor, weights: CUDATensor, offsets: CUdeviceptr, sorted: CUdeviceptr,
                                h: CUdeviceptr, y: CUdeviceptr, out: CUDATensor, accumulate: Bool,
                                rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        let pairs = rows * topK
        let shape = MoEShape(tokens: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)
        let path = groupedExpertsPath(experts: w1.dtype, rows: rows, dim: dim, hidden: hidden)
        switch path {
        case .dense:
            guard let blas else { throw BackendError.device("MoE experts: cuBLASLt path chosen without cuBLASLt") }
            try moeDense(xb ?? narrowed(x, count: rows * dim), w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                         out: out, accumulate: accumulate, shape, blas: blas)
        case .grouped:
            guard let blas else { throw BackendError.device("MoE experts: cuBLASLt path chosen without cuBLASLt") }
            try moeGrouped(xb ?? narrowed(x, count: rows * dim), w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                           offsets: offsets, sorted: sorted, out: out, accumulate: accumulate, shape, blas: blas)
        case .denseFP8, .groupedFP8:
            guard let blas else { throw BackendError.device("MoE experts: cuBLASLt FP8 path chosen without cuBLASLt") }
            try moeFP8(xb ?? narrowed(x, count: rows * dim), w1: w1, w2: w2, w3: w3, ids: ids, weights: weights,
                       offsets: offsets, sorted: sorted, out: out, accumulate: accumulate, shape, grouped: path == .groupedFP8,
                       blas: blas)
        case .tensorCore:
            // Tensor-core experts: x narrowed to bf16 once, h kept in bf16 (its slot is big enough).
            let xb = try xb ?? narrowed(x, count: rows * dim)   // (T, D) bf16
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
            try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts,
                        accumulate: accumulate)
        case .simt:
            // e4m3: the tiles widen the codes; each output is multiplied by its row's scale.
            let rowTiles = (pairs + 31) / 32
            let e4m3 = w1.dtype == .e4m3
            var gateUp: [KernelArgument] = [.pointer(x.pointer), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets),
                                            .pointer(sorted), .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)),
                                            .int32(Int32(topK))]
            if e4m3 { gateUp += [.pointer(w1.rowScales), .pointer(w3.rowScales)] }
            try launch(.moeGateUp(w1.dtype), grid: ((hidden + 63) / 64, rowTiles, experts), gateUp)
            var down: [KernelArgument] = [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                                          .int32(Int32(dim)), .int32(Int32(hidden))]
            if e4m3 { down.append(.pointer(w2.rowScales)) }
            try launch(.moeDown(w2.dtype), grid: ((dim + 63) / 64, rowTiles, experts), down)
            try combine(y: y, ids: ids, weights: weights, out: out, rows: rows, dim: dim, topK: topK, experts: experts,
                        accumulate: accumulate)
        }
    }

    /// Checks the stacked expert weights of a MoE op: w1, w3 (E, F, D), w2 (E, D, F), one dtype.
    private func requireExperts(w1: CUDATensor, w2: CUDATensor, w3: CUDATensor, dim: Int, hidden: Int, experts: Int,
                                _ op: String) throws {
        for (w, name, rows) in [(w1, "w1", hidden), (w2, "w2", dim), (w3, "w3", hidden)] {
            try require(w, experts * hidden * dim, matrixDTypes, "\(op) \(name)")
            try requireRowScales(w, rows: experts * rows, "\(op) \(name)")   // (E, rows) stacked
        }
        guard w1.dtype == w2.dtype, w1.dtype == w3.dtype else {
            throw BackendError.shapeMismatch("\(op): w1/w2/w3 dtypes differ (\(w1.dtype), \(w2.dtype), \(w3.dtype))")
        }
        guard experts <= 1024 else { throw BackendError.unsupported("\(op) with \(experts) > 1024 experts") }
    }

    /// h[p] = silu(w1[e] · x[t]) · (w3[e] · x[t]) by the GEMV-style gate/up kernel: a warp per
    /// hidden row, grid (ceil(F / 8), slots). e4m3 weights take the kernel that dequantises in
    /// place, with the stacked (E, F) row scales.
    private func launchGemvGateUp(x: CUdeviceptr, w1: CUDATensor, w3: CUDATensor, offsets: CUdeviceptr, sorted: CUdeviceptr,
                                  h: CUdeviceptr, dim: Int, hidden: Int, topK: Int, experts: Int, slots: Int) throws {
        let e4m3 = w1.dtype == .e4m3
        var arguments: [KernelArgument] = [.pointer(x), .pointer(w1.pointer), .pointer(w3.pointer), .pointer(offsets), .pointer(sorted),
                                           .pointer(h), .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(topK)),
                                           .int32(Int32(experts))]
        if e4m3 { arguments += [.pointer(w1.rowScales), .pointer(w3.rowScales)] }
        if e4m3, e4m3GemvPath(inDims: dim, hidden) == .tensorCore {
            let (grid, block, split) = e4m3GemvGrid(outputs: hidden, slots: slots)
            try launch(.moeGemvTCGateUpE4M3, grid: grid, block: (block, 1, 1), arguments + [.int32(Int32(split))])
            return
        }
        try launch(e4m3 ? .moeGemvGateUpE4M3 : .moeGemvGateUp, grid: ((hidden + 7) / 8, slots, 1), arguments)
    }

    /// y[p] = w2[e] · h[p] by the GEMV-style down kernel: 4 rows of w2 per warp, grid
    /// (ceil(D / 32), slots) with block row j serving the j-th touched expert (e4m3: with the
    /// (E, D) row scales).
    private func launchGemvDown(h: CUdeviceptr, w2: CUDATensor, offsets: CUdeviceptr, sorted: CUdeviceptr, y: CUdeviceptr,
                                dim: Int, hidden: Int, experts: Int, slots: Int) throws {
        let e4m3 = w2.dtype == .e4m3
        var arguments: [KernelArgument] = [.pointer(h), .pointer(w2.pointer), .pointer(offsets), .pointer(sorted), .pointer(y),
                                           .int32(Int32(dim)), .int32(Int32(hidden)), .int32(Int32(experts))]
        if e4m3 { arguments.append(.pointer(w2.rowScales)) }
        if e4m3, e4m3GemvPath(inDims: dim, hidden) == .tensorCore {
            let (grid, block, split) = e4m3GemvGrid(outputs: dim, slots: slots)
            try launch(.moeGemvTCDownE4M3, grid: grid, block: (block, 1, 1), arguments + [.int32(Int32(split))])
            return
        }
        try launch(e4m3 ? .moeGemvDownE4M3 : .moeGemvDown, grid: ((dim + 31) / 32, slots, 1), arguments)
    }

    /// out[t] = Σ_k weights[t, k] · y[row(t, k)], the row as `moe_combine` documents: `rowOf`
    /// (P) i32 when non-zero, else e·denseRows + t when denseRows > 0, else the pair index.
    /// `accumulate` adds onto out (the residual stream) instead of overwriting it.
    func combine(y: CUdeviceptr, ids: CUDATensor, weights: CUDATensor, out: CUDATensor, rows: Int, dim: Int,
                 topK: Int, experts: Int, rowOf: CUdeviceptr = 0, denseRows: Int = 0, accumulate: Bool = false,
                 yBF16: Bool = false) throws {
        try launch(.moeCombine, grid: gridFor(rows * dim),
                   [.pointer(y), .pointer(ids.pointer), .pointer(weights.pointer), .pointer(out.pointer),
                    .int32(Int32(rows)), .int32(Int32(dim)), .int32(Int32(topK)), .int32(Int32(experts)),
                    .pointer(rowOf), .int32(Int32(denseRows)), .int32(accumulate ? 1 : 0), .int32(yBF16 ? 1 : 0)])
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
