import CPUBackend
import Foundation
import Tensors
import Testing

/// The e4m3 weight path of the CPU reference: its SIMD widening against the scheme's table on
/// every code, and the row scale applied once per row.
@Suite struct FP8WeightTests {
    /// W (256, K) whose row r is code r throughout, times x = e₀ (one-hot): out[r] must be
    /// table[r] × scale[r] exactly (NaN for the NaN codes). K = 16 runs the 8-wide loads only,
    /// K = 19 adds the scalar tail; T = 1 and T = 5 take the decode and the tiled loops.
    @Test(arguments: [16, 19], [1, 5])
    func everyCodeWidensAsTheTableSays(inDim: Int, tokens: Int) throws {
        let cpu = CPUBackend(threads: 2)
        let rows = 256
        let storage = OwnedBytes(count: rows * inDim + rows * 4)
        let codes = storage.pointer.assumingMemoryBound(to: UInt8.self)
        for r in 0..<rows { (codes + r * inDim).update(repeating: UInt8(r), count: inDim) }
        let scales = (storage.pointer + rows * inDim).assumingMemoryBound(to: Float.self)
        for r in 0..<rows { scales[r] = r % 3 == 0 ? 1 : Float(r) / 64 }   // powers of two and not
        let weight = HostTensor(dtype: .e4m3, shape: [rows, inDim],
                                data: UnsafeRawBufferPointer(start: storage.pointer, count: rows * inDim),
                                rowScales: UnsafeBufferPointer(start: scales, count: rows), owner: storage)
        var xValues = [Float](repeating: 0, count: tokens * inDim)
        for t in 0..<tokens { xValues[t * inDim + (t * 7) % inDim] = 1 }  // one-hot, a different column per token
        let x = try cpu.makeActivation([tokens, inDim]), out = try cpu.makeActivation([tokens, rows])
        try cpu.write(xValues, to: x)
        try cpu.matmul(x, weight: try cpu.upload(weight), out: out, rows: tokens, inDim: inDim, outDim: rows)
        let got = try cpu.readFloats(out, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                let expected = FP8E4M3.table[r] * scales[r]
                let value = got[t * rows + r]
                if expected.isNaN {
                    #expect(value.isNaN, "code \(r): expected NaN, got \(value)")
                } else {
                    #expect(value == expected, "code \(r) T=\(t): \(value) ≠ \(expected)")
                }
            }
        }
    }

    /// A norm weight in e4m3 is a clear error, never a silent misread.
    @Test func normWeightsInE4M3AreRefused() throws {
        let cpu = CPUBackend(threads: 1)
        let w = try cpu.upload(try FP8Quantization.quantize(HostTensor.owning([1, 2, 3, 4], shape: [1, 4], dtype: .f32)))
        let x = try cpu.makeActivation([1, 4]), out = try cpu.makeActivation([1, 4])
        try cpu.write([Float](arrayLiteral: 1, 2, 3, 4), to: x)
        #expect(throws: BackendError.self) {
            try cpu.rmsNorm(x, weight: w, eps: 1e-5, out: out, rows: 1, dim: 4)
        }
    }
}
