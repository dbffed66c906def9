import CPUBackend
import Foundation
import Tensors
import Testing

/// Every dense op against the Double references, on odd sizes and all weight dtypes.
@Suite struct DenseOpsTests {
    static let tolerance = 1e-5

    /// (tokens, inDim, outDim): T = 1 (decode matvec) and T > 1 (4-token tiles plus remainders,
    /// more than one 64-token block), dims that are not multiples of 8/32, and a wide row that
    /// splits into several cache blocks.
    static let matmulShapes: [(Int, Int, Int)] = [
        (1, 7, 5), (1, 67, 33), (1, 4103, 19), (3, 129, 17), (5, 256, 40), (9, 1000, 13), (70, 64, 150), (6, 4103, 37), (20, 1037, 45),
    ]

    @Test(arguments: [DType.bf16, .f16, .f32, .e4m3])
    func matmulMatchesReference(dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 11)
        for (rows, inDim, outDim) in Self.matmulShapes {
            let w = TestWeight(&random, shape: [outDim, inDim], dtype: dtype)
            let xValues = random.floats(rows * inDim)
            let x = try cpu.makeActivation([rows, inDim])
            try cpu.write(xValues, to: x)
            let out = try cpu.makeActivation([rows, outDim])
            try cpu.matmul(x, weight: try cpu.upload(w.host), out: out, rows: rows, inDim: inDim, outDim: outDim)
            let expected = Reference.matmul(xValues.map(Double.init), w.values, rows: rows, inDim: inDim, outDim: outDim)
            let error = normalisedError(try cpu.readFloats(out, count: rows * outDim), expected)
            #expect(error <= Self.tolerance, "matmul \(dtype) T=\(rows) \(inDim)→\(outDim): error \(error)")
        }
    }

    @Test func matmulWithFewerRowsThanBufferLeavesTheRestAlone() throws {
        let cpu = CPUBackend(threads: 2)
        var random = SeededRandom(seed: 12)
        let w = TestWeight(&random, shape: [24, 40], dtype: .bf16)
        let x = try cpu.makeActivation([8, 40])
        let xValues = random.floats(8 * 40)
        try cpu.write(xValues, to: x)
        let out = try cpu.makeActivation([8, 24])
        let sentinel = [Float](repeating: 7, count: 8 * 24)
        try cpu.write(sentinel, to: out)
        try cpu.matmul(x, weight: try cpu.upload(w.host), out: out, rows: 3, inDim: 40, outDim: 24)
        let values = try cpu.readFloats(out, count: 8 * 24)
        let expected = Reference.matmul(xValues.map(Double.init), w.values, rows: 3, inDim: 40, outDim: 24)
        #expect(normalisedError(Array(values[0..<72]), expected) <= Self.tolerance)
        #expect(values[72...].allSatisfy { $0 == 7 })
    }

    @Test(arguments: [DType.bf16, .f16, .f32])
    func rmsNormMatchesReference(dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 21)
        for (rows, dim) in [(1, 5), (3, 67), (2, 4096), (40, 1000)] {
            let w = TestWeight(&random, shape: [dim], dtype: dtype)
            let xValues = random.floats(rows * dim, scale: 3)
            let x = try cpu.makeActivation([rows, dim])
            try cpu.write(xValues, to: x)
            let out = try cpu.makeActivation([rows, dim])
            try cpu.rmsNorm(x, weight: try cpu.upload(w.host), eps: 1e-5, out: out, rows: rows, dim: dim)
            let expected = Reference.rmsNorm(xValues.map(Double.init), w.values, eps: 1e-5, rows: rows, dim: dim)
            let error = normalisedError(try cpu.readFloats(out, count: rows * dim), expected)
            #expect(error <= Self.tolerance, "rmsNorm \(dtype) \(rows)×\(dim): \(error)")
            // In place (x == out) gives the same answer.
            try cpu.rmsNorm(x, weight: try cpu.upload(w.host), eps: 1e-5, out: x, rows: rows, dim: dim)
            #expect(normalisedError(try cpu.readFloats(x, count: rows * dim), expected) <= Self.tolerance)
        }
    }

    @Test(arguments: [DType.bf16, .f16, .f32, .e4m3])
    func embedLooksUpRows(dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 31)
        let vocab = 37, dim = 13
        let table = TestWeight(&random, shape: [vocab, dim], dtype: dtype)
        let idValues: [Int32] = [5, 0, 36, 5, 17]
        let ids = try cpu.makeIndices(idValues.count)
        try cpu.write(idValues, to: ids)
        let out = try cpu.makeActivation([idValues.count, dim])
        try cpu.embed(ids: ids, table: try cpu.upload(table.host), out: out, rows: idValues.count, dim: dim)
        let expected = idValues.flatMap { table.values[Int($0) * dim..<(Int($0) + 1) * dim] }
        #expect(normalisedError(try cpu.readFloats(out, count: idValues.count * dim), expected) == 0)
    }

    @Test func embedRejectsOutOfRangeIDs() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 32)
        let table = try cpu.upload(TestWeight(&random, shape: [10, 4], dtype: .bf16).host)
        let ids = try cpu.makeIndices(2)
        try cpu.write([3, 10] as [Int32], to: ids)
        let out = try cpu.makeActivation([2, 4])
        #expect(throws: BackendError.self) {
            try cpu.embed(ids: ids, table: table, out: out, rows: 2, dim: 4)
        }
    }

    @Test func ropeMatchesReference() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 41)
        for (rows, heads, headDim, theta) in [(1, 3, 8, 10_000.0), (5, 4, 128, 1_000_000.0), (3, 2, 6, 10_000.0)] {
            let positionValues = (0..<rows).map { _ in random.int(below: 5000) }
            let xValues = random.floats(rows * heads * headDim)
            let x = try cpu.makeActivation([rows, heads, headDim])
            try cpu.write(xValues, to: x)
            let positions = try cpu.makeIndices(rows)
            try cpu.write(positionValues.map(Int32.init), to: positions)
            try cpu.rope(x, positions: positions, rows: rows, heads: heads, headDim: headDim, theta: Float(theta))
            let expected = Reference.rope(xValues.map(Double.init), positions: positionValues, heads: heads,
                                          headDim: headDim, theta: theta)
            let error = normalisedError(try cpu.readFloats(x, count: xValues.count), expected)
            #expect(error <= Self.tolerance, "rope \(rows)×\(heads)×\(headDim): \(error)")
        }
    }

    @Test func swiGLUAndAddMatchReference() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 51)
        for count in [1, 13, 1000, 100_003] {
            let g = random.floats(count, scale: 6), u = random.floats(count), y = random.floats(count)
            let gate = try cpu.makeActivation([count]), up = try cpu.makeActivation([count])
            let out = try cpu.makeActivation([count]), other = try cpu.makeActivation([count])
            try cpu.write(g, to: gate)
            try cpu.write(u, to: up)
            try cpu.write(y, to: other)
            try cpu.swiGLU(gate: gate, up: up, out: out, count: count)
            let expectedGLU = zip(g, u).map { Reference.silu(Double($0)) * Double($1) }
            #expect(normalisedError(try cpu.readFloats(out, count: count), expectedGLU) <= Self.tolerance)
            try cpu.add(out, other, count: count)
            let expectedSum = zip(expectedGLU, y).map { $0 + Double($1) }
            #expect(normalisedError(try cpu.readFloats(out, count: count), expectedSum) <= Self.tolerance)
        }
    }

    @Test func gatherRowsCopiesSelectedRows() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 61)
        let dim = 11
        let xValues = random.floats(6 * dim)
        let x = try cpu.makeActivation([6, dim])
        try cpu.write(xValues, to: x)
        let rows = try cpu.makeIndices(3)
        try cpu.write([4, 0, 4] as [Int32], to: rows)
        let out = try cpu.makeActivation([3, dim])
        try cpu.gatherRows(x, rows: rows, out: out, count: 3, dim: dim)
        let expected = [4, 0, 4].flatMap { xValues[$0 * dim..<($0 + 1) * dim] }
        #expect(try cpu.readFloats(out, count: 3 * dim) == expected)
        try cpu.write([6] as [Int32], to: rows)
        #expect(throws: BackendError.self) { try cpu.gatherRows(x, rows: rows, out: out, count: 1, dim: dim) }
    }

    @Test func shapeErrorsThrowInsteadOfCrashing() throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 71)
        let w = try cpu.upload(TestWeight(&random, shape: [8, 16], dtype: .bf16).host)
        let x = try cpu.makeActivation([2, 16]), out = try cpu.makeActivation([2, 8])
        #expect(throws: BackendError.self) { try cpu.matmul(x, weight: w, out: out, rows: 2, inDim: 16, outDim: 9) }
        #expect(throws: BackendError.self) { try cpu.matmul(x, weight: w, out: out, rows: 3, inDim: 16, outDim: 8) }
        #expect(throws: BackendError.self) { try cpu.write([1, 2] as [Float], to: w) }
        #expect(throws: BackendError.self) { try cpu.readFloats(x, count: 33) }
        #expect(throws: BackendError.self) {
            try cpu.upload(stacking: [HostTensor.owning([1, 2], shape: [2], dtype: .bf16),
                                      HostTensor.owning([1, 2, 3], shape: [3], dtype: .bf16)])
        }
    }

    @Test func memoryBandwidthIsMeasured() throws {
        let gbps = try CPUMemoryBandwidth.measure(bytes: 16 << 20, runs: 2)
        #expect(gbps.isFinite && gbps > 0)
    }
}

/// The split of work over threads must not change any result bit (reproducible generation).
@Suite struct DeterminismTests {
    @Test func resultsAreIdenticalForAnyThreadCount() throws {
        var outputs: [[Float]] = []
        for threads in [1, 2, 3] {
            let cpu = CPUBackend(threads: threads)
            var random = SeededRandom(seed: 81)
            var collected: [Float] = []
            for rows in [1, 7] {
                let w = try cpu.upload(TestWeight(&random, shape: [301, 259], dtype: .bf16).host)
                let x = try cpu.makeActivation([rows, 259]), out = try cpu.makeActivation([rows, 301])
                try cpu.write(random.floats(rows * 259), to: x)
                try cpu.matmul(x, weight: w, out: out, rows: rows, inDim: 259, outDim: 301)
                collected += try cpu.readFloats(out, count: rows * 301)

                let (dim, hidden, experts) = (40, 72, 4)
                let stack = { (shape: [Int]) in
                    try cpu.upload(stacking: (0..<experts).map { _ in TestWeight(&random, shape: shape, dtype: .bf16).host })
                }
                let w1 = try stack([hidden, dim]), w2 = try stack([dim, hidden]), w3 = try stack([hidden, dim])
                let xe = try cpu.makeActivation([rows, dim]), oe = try cpu.makeActivation([rows, dim])
                try cpu.write(random.floats(rows * dim), to: xe)
                let ids = try cpu.makeIndices(rows * 2), weights = try cpu.makeActivation([rows, 2])
                try cpu.write((0..<(rows * 2)).map { Int32(($0 * 3 + $0 / 2) % experts) }, to: ids)
                try cpu.write(random.floats(rows * 2), to: weights)
                try cpu.moeExperts(xe, w1: w1, w2: w2, w3: w3, ids: ids, weights: weights, out: oe,
                                   rows: rows, dim: dim, hidden: hidden, experts: experts, topK: 2)
                collected += try cpu.readFloats(oe, count: rows * dim)
            }
            outputs.append(collected)
        }
        for other in outputs.dropFirst() {
            let differing = zip(outputs[0], other).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(differing) of \(other.count) results differ between thread counts")
        }
    }

    /// Every dot product uses one summation order whatever kernel computes it, so a token's
    /// result is bit-identical whether it runs alone or inside a batch (in a group of four or as
    /// a leftover): batched generation equals one-at-a-time generation exactly.
    @Test(arguments: [DType.bf16, .f16, .f32, .e4m3])
    func batchedEqualsOneAtATimeBitwise(dtype: DType) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 91)
        let (rows, inDim, outDim) = (18, 1037, 37)
        let w = try cpu.upload(TestWeight(&random, shape: [outDim, inDim], dtype: dtype).host)
        let xValues = random.floats(rows * inDim)
        let x = try cpu.makeActivation([rows, inDim]), out = try cpu.makeActivation([rows, outDim])
        try cpu.write(xValues, to: x)
        try cpu.matmul(x, weight: w, out: out, rows: rows, inDim: inDim, outDim: outDim)
        let batched = try cpu.readFloats(out, count: rows * outDim)
        let one = try cpu.makeActivation([1, inDim]), oneOut = try cpu.makeActivation([1, outDim])
        for t in 0..<rows {
            try cpu.write(Array(xValues[t * inDim..<(t + 1) * inDim]), to: one)
            try cpu.matmul(one, weight: w, out: oneOut, rows: 1, inDim: inDim, outDim: outDim)
            let alone = try cpu.readFloats(oneOut, count: outDim)
            let together: [UInt32] = batched[t * outDim..<(t + 1) * outDim].map(\.bitPattern)
            #expect(alone.map(\.bitPattern) == together, "token \(t)")
        }

        let (dim, hidden, experts, topK) = (24, 40, 4, 2)
        let stack = { (shape: [Int]) in
            try cpu.upload(stacking: (0..<experts).map { _ in TestWeight(&random, shape: shape, dtype: dtype).host })
        }
        let w1 = try stack([hidden, dim]), w2 = try stack([dim, hidden]), w3 = try stack([hidden, dim])
        let xe = random.floats(rows * dim)
        var idValues: [Int32] = []
        for t in 0..<rows {
            idValues.append(Int32(t % experts))
            idValues.append(Int32((t + 1 + t / 3) % experts))
        }
        let weightValues = random.floats(rows * topK)
        func runExperts(_ tokens: Range<Int>) throws -> [Float] {
            let n = tokens.count
            let x = try cpu.makeActivation([n, dim]), out = try cpu.makeActivation([n, dim])
            let ids = try cpu.makeIndices(n * topK), weights = try cpu.makeActivation([n, topK])
            try cpu.write(Array(xe[tokens.lowerBound * dim..<tokens.upperBound * dim]), to: x)
            try cpu.write(Array(idValues[tokens.lowerBound * topK..<tokens.upperBound * topK]), to: ids)
            try cpu.write(Array(weightValues[tokens.lowerBound * topK..<tokens.upperBound * topK]), to: weights)
            try cpu.moeExperts(x, w1: w1, w2: w2, w3: w3, ids: ids, weights: weights, out: out,
                               rows: n, dim: dim, hidden: hidden, experts: experts, topK: topK)
            return try cpu.readFloats(out, count: n * dim)
        }
        let all = try runExperts(0..<rows)
        for t in 0..<rows {
            let alone = try runExperts(t..<(t + 1))
            let together: [UInt32] = all[t * dim..<(t + 1) * dim].map(\.bitPattern)
            #expect(alone.map(\.bitPattern) == together, "moe token \(t)")
        }
    }
}
