import CPUBackend
import Foundation
import Tensors
import Testing

/// The fused ops of the forward pass (row-joined weights, products added into the residual,
/// normed and gated products, rope + KV append) against the Double references.
@Suite struct FusedOpsTests {
    static let tolerance = 1e-5

    @Test(arguments: [DType.bf16, .f32, .e4m3])
    func joinedMatmulAndMatmulAddMatchReference(dtype: DType) throws {
        let cpu = CPUBackend(threads: 2)
        var random = SeededRandom(seed: 31)
        for (rows, inDim, parts) in [(1, 67, [40, 8, 8]), (5, 256, [64, 16, 16]), (70, 130, [33, 5, 7])] {
            let ws = parts.map { TestWeight(&random, shape: [$0, inDim], dtype: dtype) }
            let outDim = parts.reduce(0, +)
            // The joined matrix is the parts one after another, row by row.
            var joined: [Double] = []
            for w in ws { joined += w.values }
            let weight = try cpu.upload(concatenatingRows: ws.map(\.host))
            let xValues = random.floats(rows * inDim)
            let x = try cpu.makeActivation([rows, inDim])
            try cpu.write(xValues, to: x)
            let expected = Reference.matmul(xValues.map(Double.init), joined, rows: rows, inDim: inDim, outDim: outDim)

            let out = try cpu.makeActivation([rows, outDim])
            try cpu.matmul(x, weight: weight, out: out, rows: rows, inDim: inDim, outDim: outDim)
            let error = normalisedError(try cpu.readFloats(out, count: rows * outDim), expected)
            #expect(error <= Self.tolerance, "joined matmul \(dtype) T=\(rows): \(error)")

            let start = random.floats(rows * outDim, scale: 2)
            try cpu.write(start, to: out)
            try cpu.matmulAdd(x, weight: weight, into: out, rows: rows, inDim: inDim, outDim: outDim)
            let sum = zip(start, expected).map { Double($0) + $1 }
            let addError = normalisedError(try cpu.readFloats(out, count: rows * outDim), sum)
            #expect(addError <= Self.tolerance, "matmulAdd \(dtype) T=\(rows): \(addError)")
        }
    }

    /// The norm weight stays bf16 for every product dtype (the FP8 scheme keeps norms as stored).
    @Test(arguments: [false, true], [DType.bf16, .e4m3])
    func normedMatmulMatchesReference(gated: Bool, dtype: DType) throws {
        let cpu = CPUBackend(threads: 2)
        var random = SeededRandom(seed: 32)
        for (rows, inDim, outDim) in [(1, 64, 40), (6, 129, 17), (65, 32, 24)] {
            let norm = TestWeight(&random, shape: [inDim], dtype: .bf16)
            let w1 = TestWeight(&random, shape: [outDim, inDim], dtype: dtype)
            let w3 = TestWeight(&random, shape: [outDim, inDim], dtype: dtype)
            let xValues = random.floats(rows * inDim, scale: 4)
            let x = try cpu.makeActivation([rows, inDim])
            try cpu.write(xValues, to: x)
            let out = try cpu.makeActivation([rows, outDim])
            let weight = gated ? try cpu.upload(concatenatingRows: [w1.host, w3.host]) : try cpu.upload(w1.host)
            try cpu.normedMatmul(x, norm: try cpu.upload(norm.host), eps: 1e-5, weight: weight, out: out,
                                 rows: rows, inDim: inDim, outDim: outDim, gated: gated)
            let h = Reference.rmsNorm(xValues.map(Double.init), norm.values, eps: 1e-5, rows: rows, dim: inDim)
            let g = Reference.matmul(h, w1.values, rows: rows, inDim: inDim, outDim: outDim)
            let expected = gated
                ? zip(g, Reference.matmul(h, w3.values, rows: rows, inDim: inDim, outDim: outDim)).map { Reference.silu($0) * $1 }
                : g
            let error = normalisedError(try cpu.readFloats(out, count: rows * outDim), expected)
            #expect(error <= Self.tolerance, "normedMatmul gated=\(gated) T=\(rows) N=\(outDim): \(error)")
        }
    }

    @Test func ropeAppendKVMatchesReference() throws {
        let cpu = CPUBackend(threads: 2)
        var random = SeededRandom(seed: 33)
        let (rows, heads, kvHeads, headDim, blocks, blockSize) = (5, 4, 2, 16, 3, 4)
        let width = (heads + 2 * kvHeads) * headDim
        let values = random.floats(rows * width)
        let positions = [0, 7, 100, 4095, 31]
        let slots: [Int32] = [11, 0, 5, 6, 2]
        let qkv = try cpu.makeActivation([rows, heads + 2 * kvHeads, headDim])
        try cpu.write(values, to: qkv)
        let q = try cpu.makeActivation([rows, heads, headDim])
        let pos = try cpu.makeIndices(rows)
        try cpu.write(positions.map(Int32.init), to: pos)
        let sl = try cpu.makeIndices(rows)
        try cpu.write(slots, to: sl)
        let kPool = try cpu.makeKVPool(blocks: blocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim)
        let vPool = try cpu.makeKVPool(blocks: blocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim)
        try cpu.ropeAppendKV(qkv: qkv, q: q, kPool: kPool, vPool: vPool, positions: pos, slots: sl,
                             rows: rows, heads: heads, kvHeads: kvHeads, headDim: headDim, theta: 10_000)

        func part(_ offset: Int, _ count: Int) -> [Double] {
            var result: [Double] = []
            for t in 0..<rows {
                let start = t * width + offset
                result += values[start..<(start + count)].map { Double($0) }
            }
            return result
        }
        let kvWidth = kvHeads * headDim
        let expectedQ = Reference.rope(part(0, heads * headDim), positions: positions, heads: heads, headDim: headDim, theta: 10_000)
        let expectedK = Reference.rope(part(heads * headDim, kvWidth), positions: positions, heads: kvHeads, headDim: headDim, theta: 10_000)
        let expectedV = part(heads * headDim + kvWidth, kvWidth)
        #expect(normalisedError(try cpu.readFloats(q, count: rows * heads * headDim), expectedQ) <= Self.tolerance)
        let kValues = try cpu.readFloats(kPool, count: blocks * blockSize * kvWidth)
        let vValues = try cpu.readFloats(vPool, count: blocks * blockSize * kvWidth)
        for (t, slot) in slots.enumerated() {
            let s = Int(slot) * kvWidth
            #expect(normalisedError(Array(kValues[s..<(s + kvWidth)]), Array(expectedK[(t * kvWidth)..<((t + 1) * kvWidth)])) <= Self.tolerance)
            #expect(normalisedError(Array(vValues[s..<(s + kvWidth)]), Array(expectedV[(t * kvWidth)..<((t + 1) * kvWidth)])) <= Self.tolerance)
        }
        #expect(try cpu.readFloats(qkv, count: rows * width) == values, "qkv is left as it was")
    }
}
