import Tensors

extension BackendConformance {
    /// The FP8 scheme (e4m3 weights, one f32 scale per output row; norms and the router bf16) on
    /// every op that takes a weight matrix: the widening of all 256 codes compared exactly, then
    /// normedMatmul (plain and gated), matmulAdd on row-joined weights and normedMoE on stacked
    /// experts, at decode row counts (the GEMV kernels on CUDA), past them (the general paths)
    /// and at model widths including the 48 KiB staging edge of the normed GEMV. Both backends
    /// get the same quantized tensors (quantized on the host from the same random values).
    mutating func fp8Cases() throws -> [ConformanceResult] {
        var results = try fp8WideningCases()
        results += try fp8ProductCases()
        results += try fp8NormedMoECases()
        return results
    }

    /// e4m3 weights of `values` (rows, k), quantized by the scheme.
    func fp8Weight(_ values: [Float], _ shape: [Int]) throws -> HostTensor {
        try FP8Quantization.quantize(HostTensor.owning(values, shape: shape, dtype: .f32))
    }

    func fp8Joined(_ parts: [[Float]], rows: [Int], k: Int) throws -> Pair {
        let hosts = try zip(parts, rows).map { try fp8Weight($0, [$1, k]) }
        return Pair(t: try test.upload(concatenatingRows: hosts), r: try reference.upload(concatenatingRows: hosts))
    }

    func fp8Stacked(_ parts: [[Float]], _ shape: [Int]) throws -> Pair {
        let hosts = try parts.map { try fp8Weight($0, shape) }
        return Pair(t: try test.upload(stacking: hosts), r: try reference.upload(stacking: hosts))
    }

    /// W (256, K) whose row r is code r throughout, with scales 1 or r/64, times one-hot rows of
    /// x added into zeros: out[t, r] = table[r] × scale[r] exactly on both backends (NaN for the
    /// NaN codes), whichever kernel widens the codes. K 16 at T 1 and 4: the GEMVs; T 5 and
    /// K 19: the general product.
    mutating func fp8WideningCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        for (tokens, inDim) in [(1, 16), (4, 16), (5, 16), (1, 19)] {
            let rows = 256
            let storage = OwnedBytes(count: rows * inDim + rows * 4)
            let codes = storage.pointer.assumingMemoryBound(to: UInt8.self)
            for r in 0..<rows { (codes + r * inDim).update(repeating: UInt8(r), count: inDim) }
            let scales = (storage.pointer + rows * inDim).assumingMemoryBound(to: Float.self)
            for r in 0..<rows { scales[r] = r % 3 == 0 ? 1 : Float(r) / 64 }
            let host = HostTensor(dtype: .e4m3, shape: [rows, inDim],
                                  data: UnsafeRawBufferPointer(start: storage.pointer, count: rows * inDim),
                                  rowScales: UnsafeBufferPointer(start: scales, count: rows), owner: storage)
            let w = Pair(t: try test.upload(host), r: try reference.upload(host))
            var xValues = [Float](repeating: 0, count: tokens * inDim)
            for t in 0..<tokens { xValues[t * inDim + (t * 7) % inDim] = 1 }
            // Rounded activations: the one-hot 1 becomes code 448 × scale 1/448, and the scales
            // multiply in another order than the reference's: equal within 2 ulps, not exactly.
            let rounds = fp8Rounding?.product(tokens, inDim, rows, nil) ?? false
            let x = try activation(xValues, [tokens, inDim])
            let out = try activation([Float](repeating: 0, count: tokens * rows), [tokens, rows])
            try test.matmulAdd(x.t, weight: w.t, into: out.t, rows: tokens, inDim: inDim, outDim: rows)
            try reference.matmulAdd(x.r, weight: w.r, into: out.r, rows: tokens, inDim: inDim, outDim: rows)
            let (a, b) = try read(out, tokens * rows)
            let first = a.indices.first {
                !(a[$0] == b[$0] || (a[$0].isNaN && b[$0].isNaN) || (rounds && abs(a[$0] - b[$0]) <= 2.5e-7 * abs(b[$0])))
            }
            let table = (0..<rows).allSatisfy { r in
                let e = FP8E4M3.table[r] * scales[r]
                return e.isNaN ? b[r].isNaN : b[r] == e
            }
            results.append(ConformanceResult(
                name: "fp8 e4m3 widening, all 256 codes (T \(tokens), K \(inDim))\(rounds ? ", e4m3 x" : "")", error: 0, tolerance: 0,
                mismatch: first.map { "code \($0 % rows), token \($0 / rows): \(a[$0]) vs \(b[$0])" }
                    ?? (table ? nil : "the reference differs from FP8E4M3.table")))
        }
        return results
    }

    /// x for the reference of an e4m3 matmulAdd: as given, or rounded as the backend under test
    /// rounds it (per row: scale absmax / 448, e4m3 codes, back to f32), so the two compute the
    /// same product and the bf16 tolerance applies.
    func fp8ReferenceInput(_ x: [Float], rows: Int, inDim: Int, outDim: Int) throws -> (Pair, rounded: Bool) {
        guard fp8Rounding?.product(rows, inDim, outDim, nil) ?? false else { return (try activation(x, [rows, inDim]), false) }
        var rounded = x
        for r in 0..<rows {
            let row = r * inDim..<(r + 1) * inDim
            let m = x[row].reduce(Float(0)) { max($0, abs($1)) }
            let s = m > 0 ? m / FP8E4M3.maxFinite : 1
            for i in row { rounded[i] = FP8E4M3.toFloat(FP8E4M3.fromFloat(x[i] / s)) * s }
        }
        let p = Pair(t: try test.makeActivation([rows, inDim]), r: try reference.makeActivation([rows, inDim]))
        try test.write(x, to: p.t)
        try reference.write(rounded, to: p.r)
        return (p, true)
    }

    /// The tolerance of an e4m3 product the rounding can't be given to the reference for.
    func fp8Tolerance(_ rounds: Bool) -> Double { rounds ? ConformanceTolerance.fp8Activations : ConformanceTolerance.bf16Operands }

    /// normedMatmul (plain, gated) and matmulAdd with e4m3 weights.
    mutating func fp8ProductCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        let tol = ConformanceTolerance.bf16Operands
        for rows in [1, 3, 4, 9, 70] {
            let (k, parts, f) = (512, [256, 64, 64], 200)
            let n = parts.reduce(0, +)
            let (x, roundedX) = try fp8ReferenceInput(rng.floats(rows * k), rows: rows, inDim: k, outDim: n)
            let w = try fp8Joined(parts.map { rng.floats($0 * k, scale: 0.05) }, rows: parts, k: k)
            let residual = try activation(rng.floats(rows * n, scale: 2), [rows, n])
            try test.matmulAdd(x.t, weight: w.t, into: residual.t, rows: rows, inDim: k, outDim: n)
            try reference.matmulAdd(x.r, weight: w.r, into: residual.r, rows: rows, inDim: k, outDim: n)
            results.append(try compare("fp8 matmulAdd e4m3 joined (T \(rows), K \(k), N 256+64+64)\(roundedX ? ", e4m3 x" : "")",
                                       residual, count: rows * n, tolerance: tol))
            let stream = try activation(rng.floats(rows * k, scale: 5), [rows, k])
            for normType in [DType.bf16, .f32] {
                let norm = try weight(rng.floats(k, scale: 2), [k], normType)
                let out = try output([rows, n])
                try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w.t, out: out.t, rows: rows, inDim: k, outDim: n, gated: false)
                try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w.r, out: out.r, rows: rows, inDim: k, outDim: n, gated: false)
                let rounds = fp8Rounding?.product(rows, k, n, normType) ?? false
                results.append(try compare("fp8 normedMatmul e4m3, norm \(normType.rawValue) (T \(rows), K \(k), N \(n))\(rounds ? ", e4m3 x" : "")",
                                           out, count: rows * n, tolerance: fp8Tolerance(rounds)))
                let w13 = try fp8Joined([rng.floats(f * k, scale: 0.08), rng.floats(f * k, scale: 0.08)], rows: [f, f], k: k)
                let gated = try output([rows, f])
                try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w13.t, out: gated.t, rows: rows, inDim: k, outDim: f, gated: true)
                try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w13.r, out: gated.r, rows: rows, inDim: k, outDim: f, gated: true)
                let roundsGated = fp8Rounding?.product(rows, k, 2 * f, normType) ?? false
                results.append(try compare("fp8 normedMatmul gated e4m3, norm \(normType.rawValue) (T \(rows), K \(k), F \(f))\(roundsGated ? ", e4m3 x" : "")",
                                           gated, count: rows * f, tolerance: fp8Tolerance(roundsGated)))
            }
        }
        // Model widths: the normed GEMV's staging is exactly the 48 KiB default at 3 rows of 4096
        // and 2 of 6144, more at 4 of 4096; a prefill chunk at 4096 takes the general product.
        for (rows, k) in [(1, 4096), (3, 4096), (4, 4096), (2, 6144), (20, 4096)] {
            let (n, f) = (96, 48)
            let stream = try activation(rng.floats(rows * k, scale: 5), [rows, k])
            let norm = try weight(rng.floats(k, scale: 2), [k], .bf16)
            let w = try fp8Joined([rng.floats(n * k, scale: 0.05)], rows: [n], k: k)
            let out = try output([rows, n])
            try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w.t, out: out.t, rows: rows, inDim: k, outDim: n, gated: false)
            try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w.r, out: out.r, rows: rows, inDim: k, outDim: n, gated: false)
            let rounds = fp8Rounding?.product(rows, k, n, .bf16) ?? false
            results.append(try compare("fp8 normedMatmul e4m3, norm bf16 (T \(rows), K \(k), N \(n))\(rounds ? ", e4m3 x" : "")", out,
                                       count: rows * n, tolerance: fp8Tolerance(rounds)))
            let w13 = try fp8Joined([rng.floats(f * k, scale: 0.08), rng.floats(f * k, scale: 0.08)], rows: [f, f], k: k)
            let gated = try output([rows, f])
            try test.normedMatmul(stream.t, norm: norm.t, eps: 1e-5, weight: w13.t, out: gated.t, rows: rows, inDim: k, outDim: f, gated: true)
            try reference.normedMatmul(stream.r, norm: norm.r, eps: 1e-5, weight: w13.r, out: gated.r, rows: rows, inDim: k, outDim: f, gated: true)
            let roundsGated = fp8Rounding?.product(rows, k, 2 * f, .bf16) ?? false
            results.append(try compare("fp8 normedMatmul gated e4m3, norm bf16 (T \(rows), K \(k), F \(f))\(roundsGated ? ", e4m3 x" : "")",
                                       gated, count: rows * f, tolerance: fp8Tolerance(roundsGated)))
            let (x, roundedX) = try fp8ReferenceInput(rng.floats(rows * k), rows: rows, inDim: k, outDim: n)
            let residual = try activation(rng.floats(rows * n, scale: 2), [rows, n])
            try test.matmulAdd(x.t, weight: w.t, into: residual.t, rows: rows, inDim: k, outDim: n)
            try reference.matmulAdd(x.r, weight: w.r, into: residual.r, rows: rows, inDim: k, outDim: n)
            results.append(try compare("fp8 matmulAdd e4m3 (T \(rows), K \(k), N \(n))\(roundedX ? ", e4m3 x" : "")", residual,
                                       count: rows * n, tolerance: tol))
        }
        return results
    }

    /// normedMoE with e4m3 experts (router and norm bf16), compared as the bf16 cases are: the
    /// mixture out − out₀. On CUDA, P ≤ 16 takes the GEMV experts (decode), larger P the FP8
    /// tensor-core experts where D and F are 16-aligned (dense up to 128 tokens, then grouped),
    /// else the SIMT tile experts; D 136 / F 200 leave partial tiles; D 4096 is a model width.
    mutating func fp8NormedMoECases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        // (T, D, F, E, K)
        let cases: [(Int, Int, Int, Int, Int)] = [
            (1, 256, 512, 8, 2), (2, 256, 512, 8, 2), (3, 136, 200, 8, 2), (4, 256, 512, 8, 2), (8, 256, 512, 8, 2),
            (16, 256, 256, 8, 1), (9, 256, 512, 8, 2), (40, 256, 512, 8, 2), (24, 136, 200, 8, 2),
            (1, 4096, 128, 8, 2), (4, 4096, 128, 8, 2), (20, 4096, 128, 8, 2),
            // Past the dense/grouped switch of the cuBLASLt experts (128 tokens).
            (200, 256, 512, 8, 2),
        ]
        for (t, d, f, e, k) in cases {
            let router = try weight(rng.floats(e * d, scale: 0.3), [e, d])
            let x = try activation(rng.floats(t * d, scale: 2), [t, d])
            let before = try read(x, t * d)
            let norm = try weight((0..<d).map { _ in Float.random(in: 0.5..<1.5, using: &rng) }, [d])
            let w1 = try fp8Stacked((0..<e).map { _ in rng.floats(f * d, scale: 0.08) }, [f, d])
            let w3 = try fp8Stacked((0..<e).map { _ in rng.floats(f * d, scale: 0.08) }, [f, d])
            let w2 = try fp8Stacked((0..<e).map { _ in rng.floats(d * f, scale: 0.08) }, [d, f])
            try test.normedMoE(x.t, norm: norm.t, eps: 1e-5, router: router.t, w1: w1.t, w2: w2.t, w3: w3.t,
                               into: x.t, rows: t, dim: d, hidden: f, experts: e, topK: k)
            try reference.normedMoE(x.r, norm: norm.r, eps: 1e-5, router: router.r, w1: w1.r, w2: w2.r, w3: w3.r,
                                    into: x.r, rows: t, dim: d, hidden: f, experts: e, topK: k)
            let after = try read(x, t * d)
            let mixture = zip(after.test, before.test).map { $0 - $1 }
            let expected = zip(after.reference, before.reference).map { $0 - $1 }
            let rounds = fp8Rounding?.experts(t, d, f, e, k) ?? false
            results.append(ConformanceResult(
                name: "fp8 normedMoE e4m3 experts (T \(t), D \(d), F \(f), E \(e), K \(k))\(rounds ? ", e4m3 x, h" : "")",
                error: normalisedError(mixture, expected), tolerance: fp8Tolerance(rounds)))
        }
        return results
    }
}
