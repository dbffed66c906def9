import Tensors

extension BackendConformance {
    /// `normedMoE` (norm, routing, experts and residual add in one op) against the reference.
    ///
    /// The op adds into `out`, so NaN poisoning cannot show an unwritten element; instead `out`
    /// starts from random values and the cases compare out − out₀ (the mixture alone), where an
    /// element the op skipped shows up as a zero against the reference's non-zero. Both backends
    /// compute the logits in f32 from the same inputs; the `.ties` cases give two experts the same
    /// router row (equal logits), so the lower index must win on both.
    ///
    /// On the CUDA backend: P = T·K ≤ 16 with E ≤ 32 takes the decode path (router GEMV per 4
    /// tokens writing the normed x, moe_route_sort, GEMV experts: T 1–8 at K 2, up to T 16 at
    /// K 1); larger P with D % 128 = F % 64 = 0 the tensor-core path; F = 200 the SIMT kernels.
    mutating func normedMoECases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        // (T, D, F, E, K, routing, x aliases out)
        let cases: [(Int, Int, Int, Int, Int, NormedMoERouting, Bool)] = [
            (1, 256, 512, 8, 2, .random, true), (2, 256, 512, 8, 2, .random, true), (3, 136, 200, 8, 2, .random, false),
            (4, 256, 512, 8, 2, .ties, true), (5, 128, 256, 8, 2, .random, false), (6, 256, 512, 8, 2, .oneExpert, true),
            (7, 136, 200, 8, 2, .random, true), (8, 256, 512, 8, 2, .random, true),
            (16, 256, 256, 8, 1, .random, true), (11, 128, 128, 4, 1, .oneExpert, false),
            (3, 128, 128, 32, 4, .random, true), (2, 128, 128, 40, 2, .random, true),
            (9, 256, 512, 8, 2, .random, true), (16, 256, 512, 8, 2, .ties, true),
            (40, 256, 512, 8, 2, .random, true), (24, 136, 200, 8, 2, .random, false),
            // Past one pair tile of the tensor-core experts: P = 100 (~14 pairs per expert, tiles
            // of 32/64), P = 240 (counts past one 32-pair tile), P = 1000 (tiles of 128, the last
            // partial); F = 200 at E 4 takes the SIMT kernels with several passes per expert.
            (50, 256, 512, 8, 2, .random, true), (120, 256, 192, 8, 2, .random, false),
            (500, 128, 256, 8, 2, .random, true), (70, 128, 200, 4, 2, .random, true),
        ]
        for (t, d, f, e, k, kind, alias) in cases {
            // x (T, D) positive for `.oneExpert`, whose router row e/2 is a positive constant: that
            // expert's logit is then far above the others for every token (an expert with T pairs).
            var xValues = rng.floats(t * d, scale: 2)
            var routerValues = rng.floats(e * d, scale: 0.3)
            switch kind {
            case .random: break
            case .ties:
                for i in 0..<d { routerValues[(e - 1) * d + i] = routerValues[i]; routerValues[(e / 2) * d + i] = routerValues[d + i] }
            case .oneExpert:
                xValues = xValues.map { abs($0) + 0.25 }
                for i in 0..<d { routerValues[(e / 2) * d + i] = 0.3 }
            }
            let router = try weight(routerValues, [e, d])
            let x = try activation(xValues, [t, d])
            let out = alias ? x : try activation(rng.floats(t * d), [t, d])
            let before = try read(out, t * d)
            let norm = try weight((0..<d).map { _ in Float.random(in: 0.5..<1.5, using: &rng) }, [d])
            let w1 = try stacked((0..<e).map { _ in rng.floats(f * d, scale: 0.08) }, [f, d])
            let w3 = try stacked((0..<e).map { _ in rng.floats(f * d, scale: 0.08) }, [f, d])
            let w2 = try stacked((0..<e).map { _ in rng.floats(d * f, scale: 0.08) }, [d, f])
            try test.normedMoE(x.t, norm: norm.t, eps: 1e-5, router: router.t, w1: w1.t, w2: w2.t, w3: w3.t,
                               into: out.t, rows: t, dim: d, hidden: f, experts: e, topK: k)
            try reference.normedMoE(x.r, norm: norm.r, eps: 1e-5, router: router.r, w1: w1.r, w2: w2.r, w3: w3.r,
                                    into: out.r, rows: t, dim: d, hidden: f, experts: e, topK: k)
            let after = try read(out, t * d)
            let mixture = zip(after.test, before.test).map { $0 - $1 }
            let expected = zip(after.reference, before.reference).map { $0 - $1 }
            results.append(ConformanceResult(
                name: "normedMoE bf16 (T \(t), D \(d), F \(f), E \(e), K \(k), \(kind)\(alias ? ", x = out" : ""))",
                error: normalisedError(mixture, expected), tolerance: ConformanceTolerance.bf16Operands))
        }
        results += try normedMoEEdgeCases()
        return results
    }

    /// Shapes both backends must refuse (top-k outside 1…E, more experts than the weights hold)
    /// and an empty step, which must leave `out` untouched.
    mutating func normedMoEEdgeCases() throws -> [ConformanceResult] {
        let (t, d, f, e) = (2, 128, 128, 4)
        let x = try activation(rng.floats(t * d), [t, d])
        let router = try weight(rng.floats(e * d, scale: 0.3), [e, d])
        let norm = try weight([Float](repeating: 1, count: d), [d])
        let w1 = try stacked((0..<e).map { _ in rng.floats(f * d, scale: 0.08) }, [f, d])
        let w2 = try stacked((0..<e).map { _ in rng.floats(d * f, scale: 0.08) }, [d, f])
        var results: [ConformanceResult] = []
        for (k, rows, experts, what) in [(0, t, e, "top-0"), (e + 1, t, e, "top-(E+1)"), (2, t, 2 * e, "E beyond the router and experts")] {
            var refused: [String] = []
            do {
                try test.normedMoE(x.t, norm: norm.t, eps: 1e-5, router: router.t, w1: w1.t, w2: w2.t, w3: w1.t,
                                   into: x.t, rows: rows, dim: d, hidden: f, experts: experts, topK: k)
            } catch { refused.append("test") }
            do {
                try reference.normedMoE(x.r, norm: norm.r, eps: 1e-5, router: router.r, w1: w1.r, w2: w2.r, w3: w1.r,
                                        into: x.r, rows: rows, dim: d, hidden: f, experts: experts, topK: k)
            } catch { refused.append("reference") }
            results.append(ConformanceResult(name: "normedMoE refuses \(what)", error: 0, tolerance: 0,
                                             mismatch: refused.count == 2 ? nil : "only \(refused) threw"))
        }
        let before = try read(x, t * d)
        try test.normedMoE(x.t, norm: norm.t, eps: 1e-5, router: router.t, w1: w1.t, w2: w2.t, w3: w1.t,
                           into: x.t, rows: 0, dim: d, hidden: f, experts: e, topK: 2)
        try reference.normedMoE(x.r, norm: norm.r, eps: 1e-5, router: router.r, w1: w1.r, w2: w2.r, w3: w1.r,
                                into: x.r, rows: 0, dim: d, hidden: f, experts: e, topK: 2)
        let after = try read(x, t * d)
        results.append(ConformanceResult(name: "normedMoE T 0 leaves out untouched", error: 0, tolerance: 0,
                                         mismatch: after.test == before.test && after.reference == before.reference
                                             ? nil : "out changed"))
        return results
    }
}

/// How a `normedMoE` conformance case routes: random router rows, two pairs of equal rows (ties),
/// or one expert every token picks first.
enum NormedMoERouting { case random, ties, oneExpert }
