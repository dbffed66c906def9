import Foundation
import Tensors
import Testing

/// FP8 e4m3 conversion and the row quantization scheme, against the independent numpy
/// simulation in tools/fixtures/fp8_reference.py (Fixtures/e4m3_cases.json).
@Suite struct FP8Tests {
    struct Cases: Decodable {
        var inputs_f32_bits: [UInt32]
        var codes: [UInt8]
        var table: [Float?]
    }

    static func cases() throws -> Cases {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/e4m3_cases.json")
        return try JSONDecoder().decode(Cases.self, from: Data(contentsOf: url))
    }

    @Test func tableMatchesNumpy() throws {
        let c = try Self.cases()
        #expect(c.table.count == 256)
        for (code, expected) in c.table.enumerated() {
            if let expected { #expect(FP8E4M3.table[code] == expected, "code \(code)") } else { #expect(FP8E4M3.table[code].isNaN) }
        }
        #expect(FP8E4M3.table[0x7E] == 448 && FP8E4M3.table[0x01] == 0x1p-9)
    }

    /// Every code value, every tie between neighbours and its two neighbours in f32, the
    /// subnormal range, overflow (saturates to ±448), ±inf, NaN and random values.
    @Test func roundsToNearestEvenAndSaturatesAsNumpy() throws {
        let c = try Self.cases()
        #expect(c.inputs_f32_bits.count == c.codes.count && c.codes.count > 2000)
        var wrong: [String] = []
        for (bits, code) in zip(c.inputs_f32_bits, c.codes) {
            let value = Float(bitPattern: bits)
            let got = FP8E4M3.fromFloat(value)
            if got != code { wrong.append("\(value) → 0x\(String(got, radix: 16)), numpy 0x\(String(code, radix: 16))") }
        }
        #expect(wrong.isEmpty, "\(wrong.count) mismatches: \(wrong.prefix(10))")
    }

    /// Widening then narrowing gives every finite code back.
    @Test func everyFiniteCodeRoundTrips() {
        for code in 0..<256 where !FP8E4M3.table[code].isNaN {
            #expect(FP8E4M3.fromFloat(FP8E4M3.table[code]) == UInt8(code), "code \(code)")
        }
    }

    @Test func quantizesEachRowByItsAbsmax() throws {
        // Row 0: absmax 8 → scale 8/448; row 1: all zero → scale 0, codes 0; row 2: negative max.
        let values: [Float] = [8, -1, 0.5, 3, 0, 0, 0, 0, -0.25, 0.125, 0.001, 0.2]
        let q = try FP8Quantization.quantize(HostTensor.owning(values, shape: [3, 4], dtype: .f32))
        #expect(q.dtype == .e4m3 && q.shape == [3, 4] && q.data.count == 12)
        let scales = Array(q.rowScales!)
        let expectedScales: [Float] = [8 / 448, 0, 0.25 / 448]
        #expect(scales == expectedScales)
        let codes = Array(q.data)
        #expect(codes[0] == 0x7E && codes[3] == FP8E4M3.fromFloat(3 / (8 / Float(448))))
        #expect(codes[4..<8].allSatisfy { $0 == 0 })
        #expect(codes[8] == 0xFE)   // −absmax → −448
        #expect(q.float(at: 0) == 448 * (8 / Float(448)))
        #expect(q.storedBytes == 12 + 3 * 4)
        // The effective weight is within half an e4m3 step (2⁻⁴ relative) of the original.
        for i in 0..<12 where values[i] != 0 {
            #expect(abs(q.float(at: i) - values[i]) <= abs(values[i]) / 16 + scales[i / 4] * 0x1p-9, "element \(i)")
        }
    }

    @Test func refusesWhatItCannotQuantize() {
        #expect(throws: FP8Quantization.Failure.notTwoDimensional([4])) {
            try FP8Quantization.quantize(HostTensor.owning([1, 2, 3, 4], shape: [4], dtype: .f32))
        }
        #expect(throws: FP8Quantization.Failure.nonFinite(row: 1)) {
            try FP8Quantization.quantize(HostTensor.owning([1, 2, .nan, 4], shape: [2, 2], dtype: .f32))
        }
        #expect(throws: FP8Quantization.Failure.unsupportedDType(.i32)) {
            try FP8Quantization.quantize(HostTensor.owning([1, 2, 3, 4], shape: [2, 2], dtype: .i32))
        }
    }

    /// Many rows (several parallel tasks) give the same bytes as quantizing each row alone.
    @Test func parallelQuantizationEqualsRowByRow() throws {
        let rows = 300, cols = 4000
        var state: UInt64 = 7
        let values: [Float] = (0..<(rows * cols)).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(state >> 40) - (1 << 23)) / Float(1 << 23) * Float(1 + (state >> 60))
        }
        let whole = try FP8Quantization.quantize(HostTensor.owning(values, shape: [rows, cols], dtype: .bf16))
        for r in [0, 1, 261, 299] {
            let one = try FP8Quantization.quantize(
                HostTensor.owning(Array(values[r * cols..<(r + 1) * cols]), shape: [1, cols], dtype: .bf16))
            #expect(Array(one.data) == Array(whole.data[(r * cols)..<((r + 1) * cols)]), "row \(r)")
            #expect(one.rowScales![0] == whole.rowScales![r])
        }
    }
}
