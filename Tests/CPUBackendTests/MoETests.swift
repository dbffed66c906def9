import CPUBackend
import Foundation
import Tensors
import Testing

/// Mixtral routing (top-k, then softmax over the chosen) and the grouped expert FFN.
@Suite struct MoETests {
    func route(_ cpu: CPUBackend, _ logits: [Float], experts: Int, topK: Int) throws -> (ids: [Int], weights: [Float]) {
        let rows = logits.count / experts
        let l = try cpu.makeActivation([rows, experts])
        try cpu.write(logits, to: l)
        let ids = try cpu.makeIndices(rows * topK), weights = try cpu.makeActivation([rows, topK])
        try cpu.moeRoute(logits: l, ids: ids, weights: weights, rows: rows, experts: experts, topK: topK)
        return (try cpu.readFloats(ids, count: rows * topK).map { Int($0) }, try cpu.readFloats(weights, count: rows * topK))
    }

    @Test func routeBreaksTiesTowardsLowerIndexAndSortsDescending() throws {
        let cpu = CPUBackend()
        let logits: [Float] = [
            1, 3, 3, 0.5,        // tie for first: 1 then 2
            2, 2, 2, 2,          // all equal: 0 then 1
            -1, 0.25, -3, 4,     // descending order: 3 then 1
            0, 5, -2, 5,         // tie between 1 and 3
        ]
        let (ids, weights) = try route(cpu, logits, experts: 4, topK: 2)
        #expect(ids == [1, 2, 0, 1, 3, 1, 1, 3])
        let expectedThird = 1 / (1 + exp(0.25 - 4.0))
        #expect(abs(Double(weights[4]) - expectedThird) < 1e-6)
        #expect(abs(Double(weights[5]) - (1 - expectedThird)) < 1e-6)
        for (i, w) in weights.enumerated() where [0, 1, 2, 3, 6, 7].contains(i) { #expect(w == 0.5) }
    }

    @Test func routeMatchesReferenceOnRandomLogits() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 201)
        for (experts, topK) in [(8, 2), (8, 1), (5, 3), (16, 4)] {
            let rows = 23
            let logits = random.floats(rows * experts, scale: 4)
            let (ids, weights) = try route(cpu, logits, experts: experts, topK: topK)
            let expected = Reference.route(logits.map(Double.init), experts: experts, topK: topK)
            #expect(ids == expected.flatMap { $0.0 })
            #expect(normalisedError(weights, expected.flatMap { $0.1 }) <= 1e-6)
        }
    }

    @Test func routeRejectsTopKAboveExpertCount() throws {
        let cpu = CPUBackend()
        #expect(throws: BackendError.self) { _ = try route(cpu, [1, 2], experts: 2, topK: 3) }
    }

    /// (tokens, dim, hidden, experts, topK, forced expert for every token or nil).
    static let expertShapes: [(Int, Int, Int, Int, Int, Int?)] = [
        (1, 27, 40, 4, 2, nil), (3, 64, 19, 4, 2, nil), (9, 33, 70, 8, 2, nil), (17, 40, 24, 3, 1, 2), (6, 40, 32, 5, 3, nil),
    ]

    @Test(arguments: [DType.bf16, .f16, .f32, .e4m3])
    func expertsMatchReference(dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 301)
        for (rows, dim, hidden, experts, topK, forced) in Self.expertShapes {
            let w1 = (0..<experts).map { _ in TestWeight(&random, shape: [hidden, dim], dtype: dtype, scale: 0.5) }
            let w2 = (0..<experts).map { _ in TestWeight(&random, shape: [dim, hidden], dtype: dtype, scale: 0.5) }
            let w3 = (0..<experts).map { _ in TestWeight(&random, shape: [hidden, dim], dtype: dtype, scale: 0.5) }
            let xValues = random.floats(rows * dim)
            var logits = random.floats(rows * experts, scale: 3)
            if let forced {
                for t in 0..<rows { logits[t * experts + forced] = 100 }
            }
            let routes = Reference.route(logits.map(Double.init), experts: experts, topK: topK)
            let idValues = routes.flatMap { $0.0.map(Int32.init) }
            let weightValues = routes.flatMap { $0.1.map(Float.init) }

            let x = try cpu.makeActivation([rows, dim]), out = try cpu.makeActivation([rows, dim])
            try cpu.write(xValues, to: x)
            let ids = try cpu.makeIndices(rows * topK), weights = try cpu.makeActivation([rows, topK])
            try cpu.write(idValues, to: ids)
            try cpu.write(weightValues, to: weights)
            try cpu.moeExperts(x, w1: try cpu.upload(stacking: w1.map(\.host)), w2: try cpu.upload(stacking: w2.map(\.host)),
                               w3: try cpu.upload(stacking: w3.map(\.host)), ids: ids, weights: weights, out: out,
                               rows: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)

            var expected = [Double](repeating: 0, count: rows * dim)
            for t in 0..<rows {
                let xt = xValues[t * dim..<(t + 1) * dim].map(Double.init)
                for k in 0..<topK {
                    let e = Int(idValues[t * topK + k])
                    let y = Reference.expert(xt, w1: w1[e].values[...], w2: w2[e].values[...], w3: w3[e].values[...],
                                             dim: dim, hidden: hidden)
                    for d in 0..<dim { expected[t * dim + d] += Double(weightValues[t * topK + k]) * y[d] }
                }
            }
            let error = normalisedError(try cpu.readFloats(out, count: rows * dim), expected)
            #expect(error <= 1e-5, "moeExperts \(dtype) T=\(rows) D=\(dim) F=\(hidden) E=\(experts) K=\(topK): \(error)")
        }
    }

    @Test func expertsRejectWrongStackAndIDs() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 302)
        let parts = (0..<2).map { _ in TestWeight(&random, shape: [4, 8], dtype: .bf16).host }
        let w = try cpu.upload(stacking: parts)
        let x = try cpu.makeActivation([1, 8]), out = try cpu.makeActivation([1, 8])
        let ids = try cpu.makeIndices(2), weights = try cpu.makeActivation([2])
        try cpu.write([0, 2] as [Int32], to: ids)
        try cpu.write([0.5, 0.5] as [Float], to: weights)
        // Three experts claimed, two stacked.
        #expect(throws: BackendError.self) {
            try cpu.moeExperts(x, w1: w, w2: w, w3: w, ids: ids, weights: weights, out: out,
                               rows: 1, dim: 8, hidden: 4, experts: 3, topK: 2)
        }
        // Expert id 2 of 2.
        let w2 = try cpu.upload(stacking: (0..<2).map { _ in TestWeight(&random, shape: [8, 4], dtype: .bf16).host })
        #expect(throws: BackendError.self) {
            try cpu.moeExperts(x, w1: w, w2: w2, w3: w, ids: ids, weights: weights, out: out,
                               rows: 1, dim: 8, hidden: 4, experts: 2, topK: 2)
        }
    }

    /// normedMoE = x + Σ_k w · expert(rmsNorm(x)) with the router's top-k-then-softmax, against
    /// the float64 reference; x and out the same buffer (as the forward pass calls it) or not.
    /// Expert weights in each product dtype; router and norm stay bf16 (the FP8 scheme's rule).
    @Test(arguments: [true, false], [DType.bf16, .e4m3])
    func normedMoEMatchesReference(aliased: Bool, dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: aliased ? 303 : 304)
        for (rows, dim, hidden, experts, topK) in [(1, 32, 24, 8, 2), (5, 40, 16, 4, 2), (12, 24, 20, 5, 3)] {
            let w1 = (0..<experts).map { _ in TestWeight(&random, shape: [hidden, dim], dtype: dtype, scale: 0.5) }
            let w2 = (0..<experts).map { _ in TestWeight(&random, shape: [dim, hidden], dtype: dtype, scale: 0.5) }
            let w3 = (0..<experts).map { _ in TestWeight(&random, shape: [hidden, dim], dtype: dtype, scale: 0.5) }
            let router = TestWeight(&random, shape: [experts, dim], dtype: .bf16, scale: 1)
            let norm = TestWeight(&random, shape: [dim], dtype: .bf16, scale: 1)
            let xValues = random.floats(rows * dim, scale: 2)
            let start = aliased ? xValues : random.floats(rows * dim)

            let x = try cpu.makeActivation([rows, dim])
            try cpu.write(xValues, to: x)
            let out = aliased ? x : try cpu.makeActivation([rows, dim])
            if !aliased { try cpu.write(start, to: out) }
            try cpu.normedMoE(x, norm: try cpu.upload(norm.host), eps: 1e-5, router: try cpu.upload(router.host),
                              w1: try cpu.upload(stacking: w1.map(\.host)), w2: try cpu.upload(stacking: w2.map(\.host)),
                              w3: try cpu.upload(stacking: w3.map(\.host)), into: out,
                              rows: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)

            let normed = Reference.rmsNorm(xValues.map(Double.init), norm.values, eps: 1e-5, rows: rows, dim: dim)
            let logits = Reference.matmul(normed, router.values, rows: rows, inDim: dim, outDim: experts)
            let routes = Reference.route(logits, experts: experts, topK: topK)
            var expected = start.map(Double.init)
            for t in 0..<rows {
                let xt = Array(normed[t * dim..<(t + 1) * dim])
                for (e, weight) in zip(routes[t].0, routes[t].1) {
                    let y = Reference.expert(xt, w1: w1[e].values[...], w2: w2[e].values[...], w3: w3[e].values[...],
                                             dim: dim, hidden: hidden)
                    for d in 0..<dim { expected[t * dim + d] += weight * y[d] }
                }
            }
            let got = try cpu.readFloats(out, count: rows * dim)
            // Compare the mixture alone (out − out₀), so the residual cannot hide an error in it.
            let error = normalisedError(zip(got, start).map { $0 - $1 }, zip(expected, start).map { $0 - Double($1) })
            #expect(error <= 1e-5, "normedMoE T=\(rows) D=\(dim) F=\(hidden) E=\(experts) K=\(topK) aliased=\(aliased) \(dtype): \(error)")
        }
    }

    @Test func normedMoERejectsBadShapes() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 305)
        let w = try cpu.upload(stacking: (0..<2).map { _ in TestWeight(&random, shape: [4, 8], dtype: .bf16).host })
        let w2 = try cpu.upload(stacking: (0..<2).map { _ in TestWeight(&random, shape: [8, 4], dtype: .bf16).host })
        let router = try cpu.upload(TestWeight(&random, shape: [2, 8], dtype: .bf16).host)
        let norm = try cpu.upload(TestWeight(&random, shape: [8], dtype: .bf16).host)
        let x = try cpu.makeActivation([1, 8])
        try cpu.write(random.floats(8), to: x)
        for (experts, topK) in [(2, 0), (2, 3), (3, 2)] {   // top-0, top-3 of 2, a router/stack of 2 for 3 experts
            #expect(throws: BackendError.self) {
                try cpu.normedMoE(x, norm: norm, eps: 1e-5, router: router, w1: w, w2: w2, w3: w, into: x,
                                  rows: 1, dim: 8, hidden: 4, experts: experts, topK: topK)
            }
        }
    }
}
