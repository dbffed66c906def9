import Tensors

extension BackendConformance {
    /// Every case (or those named in `only`); a case that throws is reported as a failure with
    /// the error, and the rest run.
    public mutating func runAll(only: Set<String>? = nil, log: (ConformanceResult) -> Void = { _ in }) -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        let cases: [(String, (inout Self) throws -> [ConformanceResult])] = [
            ("embed", { try $0.embedCase() }),
            ("matmulAdd", { try $0.matmulAddCases() }),
            ("joined products", { try $0.joinedProductCases() }),
            ("ropeAppendKV", { try $0.ropeAppendKVCase() }),
            ("appendKV+attention", { try $0.attentionCases() }),
            ("normedMoE", { try $0.normedMoECases() }),
            ("fp8 weights", { try $0.fp8Cases() }),
            ("gatherRows", { try $0.gatherRowsCase() }),
            ("sample", { try $0.sampleCases() }),
        ]
        for (name, body) in cases where only?.contains(name) ?? true {
            do {
                for r in try body(&self) { results.append(r); log(r) }
            } catch {
                let r = ConformanceResult(name: name, error: .nan, tolerance: 0, mismatch: "threw: \(error)")
                results.append(r)
                log(r)
            }
        }
        return results
    }

    mutating func embedCase() throws -> [ConformanceResult] {
        let (v, d, t) = (1000, 256, 7)
        let table = try weight(rng.floats(v * d), [v, d])
        let ids = try indices((0..<t).map { _ in Int32.random(in: 0..<Int32(v), using: &rng) })
        let out = try output([t, d])
        try test.embed(ids: ids.t, table: table.t, out: out.t, rows: t, dim: d)
        try reference.embed(ids: ids.r, table: table.r, out: out.r, rows: t, dim: d)
        return [try compare("embed bf16 (T 7, V 1000, D 256)", out, count: t * d, tolerance: ConformanceTolerance.exact)]
    }

    /// The product alone (out += x · Wᵀ onto a random residual): bf16 weights at several row
    /// counts (decode 1, small batch, prefill chunk) and shapes that are not multiples of the
    /// tiles; f16 and f32 weights too.
    mutating func matmulAddCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        let shapes: [(rows: Int, inDim: Int, outDim: Int, dtype: DType)] = [
            (1, 4096, 1024, .bf16), (2, 4096, 333, .bf16), (3, 512, 384, .bf16), (4, 1024, 1000, .bf16), (7, 512, 384, .bf16), (64, 1024, 1000, .bf16), (133, 256, 70, .bf16),
            (5, 320, 96, .f16), (3, 200, 130, .f32),
        ]
        for s in shapes {
            let x = try activation(rng.floats(s.rows * s.inDim), [s.rows, s.inDim])
            let w = try weight(rng.floats(s.outDim * s.inDim, scale: 0.05), [s.outDim, s.inDim], s.dtype)
            // The residual is of the product's size, so the product's own error shows.
            let out = try activation(rng.floats(s.rows * s.outDim), [s.rows, s.outDim])
            try test.matmulAdd(x.t, weight: w.t, into: out.t, rows: s.rows, inDim: s.inDim, outDim: s.outDim)
            try reference.matmulAdd(x.r, weight: w.r, into: out.r, rows: s.rows, inDim: s.inDim, outDim: s.outDim)
            // A backend may narrow activations to bf16 for the tensor cores: bf16-operand tolerance.
            results.append(try compare("matmulAdd \(s.dtype.rawValue) (T \(s.rows), K \(s.inDim), N \(s.outDim))", out,
                                       count: s.rows * s.outDim,
                                       tolerance: s.dtype == .bf16 ? ConformanceTolerance.bf16Operands : ConformanceTolerance.f32))
        }
        return results
    }

    /// The fused products of the forward pass on row-joined weights: q/k/v in one product,
    /// products added into a residual, and the normed (and gated SwiGLU) products that open the
    /// sub-blocks; decode row counts (GEMV kernels) and larger ones (general product), bf16 and
    /// f32 weights.
    mutating func joinedProductCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        for (rows, dtype) in [(1, DType.bf16), (3, .bf16), (4, .bf16), (9, .bf16), (70, .bf16), (2, .f32), (33, .f32)] {
            let (k, parts) = (512, [256, 64, 64])
            let tol = dtype == .bf16 ? ConformanceTolerance.bf16Operands : ConformanceTolerance.f32
            let x = try activation(rng.floats(rows * k), [rows, k])
            let n = parts.reduce(0, +)
            let w = try joined(parts.map { rng.floats($0 * k, scale: 0.05) }, rows: parts, k: k, dtype)
            let residual = try activation(rng.floats(rows * n, scale: 2), [rows, n])
            try test.matmulAdd(x.t, weight: w.t, into: residual.t, rows: rows, inDim: k, outDim: n)
            try reference.matmulAdd(x.r, weight: w.r, into: residual.r, rows: rows, inDim: k, outDim: n)
            results.append(try compare("matmulAdd joined \(dtype.rawValue) (T \(rows), K \(k), N 256+64+64)", residual,
                                       count: rows * n, tolerance: tol))

            // The products that open a sub-block, with their RMSNorm (plain and gated) — the
            // residual stream x is scaled up so the norm matters; norm weight bf16 or f32.
            let f = 200
            let stream = try activation(rng.floats(rows * k, scale: 5), [rows, k])
            for normType in [DType.bf16, .f32] {
                let norm = try weight(rng.floats(k, scale: 2), [k], normType)
                let normed = try output([rows, n])
                try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w.t, out: normed.t, rows: rows, inDim: k, outDim: n, gated: false)
                try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w.r, out: normed.r, rows: rows, inDim: k, outDim: n, gated: false)
                results.append(try compare("normedMatmul \(dtype.rawValue), norm \(normType.rawValue) (T \(rows), K \(k), N \(n))", normed,
                                           count: rows * n, tolerance: tol))
                let w13 = try joined([rng.floats(f * k, scale: 0.08), rng.floats(f * k, scale: 0.08)], rows: [f, f], k: k, dtype)
                let gated = try output([rows, f])
                try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w13.t, out: gated.t, rows: rows, inDim: k, outDim: f, gated: true)
                try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w13.r, out: gated.r, rows: rows, inDim: k, outDim: f, gated: true)
                results.append(try compare("normedMatmul gated \(dtype.rawValue), norm \(normType.rawValue) (T \(rows), K \(k), F \(f))", gated,
                                           count: rows * f, tolerance: tol))
            }
        }
        // Model widths at decode row counts: a GEMV that stages the normed rows in shared memory
        // needs exactly the 48 KiB default at 3 rows of 4096 (Mistral-7B, Mixtral-8x7B) and 2 of
        // 6144 (Mixtral-8x22B, Codestral), more at 4 rows.
        for (rows, k) in [(3, 4096), (4, 4096), (2, 6144)] {
            let stream = try activation(rng.floats(rows * k, scale: 5), [rows, k])
            let norm = try weight(rng.floats(k, scale: 2), [k], .bf16)
            let (n, f) = (96, 48)
            let w = try weight(rng.floats(n * k, scale: 0.05), [n, k], .bf16)
            let out = try output([rows, n])
            try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w.t, out: out.t, rows: rows, inDim: k, outDim: n, gated: false)
            try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w.r, out: out.r, rows: rows, inDim: k, outDim: n, gated: false)
            results.append(try compare("normedMatmul bf16, norm bf16 (T \(rows), K \(k), N \(n))", out,
                                       count: rows * n, tolerance: ConformanceTolerance.bf16Operands))
            let w13 = try joined([rng.floats(f * k, scale: 0.08), rng.floats(f * k, scale: 0.08)], rows: [f, f], k: k, .bf16)
            let gated = try output([rows, f])
            try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w13.t, out: gated.t, rows: rows, inDim: k, outDim: f, gated: true)
            try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w13.r, out: gated.r, rows: rows, inDim: k, outDim: f, gated: true)
            results.append(try compare("normedMatmul gated bf16, norm bf16 (T \(rows), K \(k), F \(f))", gated,
                                       count: rows * f, tolerance: ConformanceTolerance.bf16Operands))
        }
        return results
    }

    /// rope of the q and k heads of a joined projection, q out and k/v into every slot of a pool
    /// (slots scrambled); the pool is bf16 on a GPU, hence the bf16 tolerance for it.
    mutating func ropeAppendKVCase() throws -> [ConformanceResult] {
        let (t, h, g, dh, blocks, bs) = (16, 8, 2, 128, 4, 4)
        let qkv = try activation(rng.floats(t * (h + 2 * g) * dh), [t, h + 2 * g, dh])
        let q = try output([t, h, dh])
        let pos = try indices((0..<t).map { _ in Int32.random(in: 0..<32768, using: &rng) })
        let slots = try indices((0..<Int32(t)).shuffled(using: &rng))
        let kPool = Pair(t: try test.makeKVPool(blocks: blocks, blockSize: bs, kvHeads: g, headDim: dh),
                         r: try reference.makeKVPool(blocks: blocks, blockSize: bs, kvHeads: g, headDim: dh))
        let vPool = Pair(t: try test.makeKVPool(blocks: blocks, blockSize: bs, kvHeads: g, headDim: dh),
                         r: try reference.makeKVPool(blocks: blocks, blockSize: bs, kvHeads: g, headDim: dh))
        try test.ropeAppendKV(qkv: qkv.t, q: q.t, kPool: kPool.t, vPool: vPool.t, positions: pos.t, slots: slots.t,
                              rows: t, heads: h, kvHeads: g, headDim: dh, theta: 1_000_000)
        try reference.ropeAppendKV(qkv: qkv.r, q: q.r, kPool: kPool.r, vPool: vPool.r, positions: pos.r, slots: slots.r,
                                   rows: t, heads: h, kvHeads: g, headDim: dh, theta: 1_000_000)
        let shape = "T 16, H 8, G 2, Dh 128, pos < 32768"
        return [try compare("ropeAppendKV q (\(shape))", q, count: t * h * dh, tolerance: ConformanceTolerance.f32),
                try compare("ropeAppendKV k pool (\(shape))", kPool, count: t * g * dh, tolerance: ConformanceTolerance.bf16Operands),
                try compare("ropeAppendKV v pool (\(shape))", vPool, count: t * g * dh, tolerance: ConformanceTolerance.bf16Operands),
                try compare("ropeAppendKV leaves qkv as it was", qkv, count: t * (h + 2 * g) * dh, tolerance: ConformanceTolerance.exact)]
    }

    mutating func gatherRowsCase() throws -> [ConformanceResult] {
        let (t, d, s) = (13, 300, 4)
        let x = try activation(rng.floats(t * d), [t, d])
        let rows = try indices([12, 0, 5, 12])
        let out = try output([s, d])
        try test.gatherRows(x.t, rows: rows.t, out: out.t, count: s, dim: d)
        try reference.gatherRows(x.r, rows: rows.r, out: out.r, count: s, dim: d)
        return [try compare("gatherRows (T 13, S 4, D 300)", out, count: s * d, tolerance: ConformanceTolerance.exact)]
    }

}
