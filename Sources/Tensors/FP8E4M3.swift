/// FP8 e4m3 (OCP "E4M3FN", torch.float8_e4m3fn): 1 sign, 4 exponent (bias 7), 3 mantissa bits.
///
/// No infinities; 0x7F and 0xFF are NaN; the largest finite value is ±448 (0x7E = 1.75·2⁸);
/// exponent field 0 holds subnormals m/8 · 2⁻⁶ (smallest 2⁻⁹).
///
/// Narrowing rounds to nearest, ties to even, and saturates: anything finite beyond ±448 becomes
/// ±448 (the quantization scheme divides by absmax/448, so only rounding can overshoot).
/// Widening is a 256-entry table: the CPU reference reads weights through it, and every other
/// path (the SIMD loads, the GPU kernels) is tested against it.
public enum FP8E4M3 {
    /// The largest finite magnitude.
    public static let maxFinite: Float = 448

    /// Code → value for all 256 codes (NaN for 0x7F and 0xFF).
    public static let table: [Float] = (0..<256).map { decode(UInt8($0)) }

    @inlinable @inline(__always)
    public static func toFloat(_ code: UInt8) -> Float {
        table.withUnsafeBufferPointer { $0[Int(code)] }
    }

    /// The value of `code`, from its fields (builds `table`).
    static func decode(_ code: UInt8) -> Float {
        let sign: Float = code & 0x80 != 0 ? -1 : 1
        let exponent = Int((code >> 3) & 0x0F)
        let mantissa = Float(code & 0x07)
        if exponent == 0x0F && code & 0x07 == 0x07 { return .nan }
        if exponent == 0 { return sign * mantissa / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    /// Nearest e4m3 code to `value` (ties to even mantissa), saturating to ±448; NaN → 0x7F.
    @inlinable @inline(__always)
    public static func fromFloat(_ value: Float) -> UInt8 {
        let bits = value.bitPattern
        let sign = UInt8(truncatingIfNeeded: bits >> 24) & 0x80
        let magnitude = bits & 0x7FFF_FFFF
        if magnitude > 0x7F80_0000 { return sign | 0x7F }               // NaN
        // 2⁻⁶ (the smallest normal e4m3) is f32 exponent 121.
        if magnitude < 0x3C80_0000 {
            // Subnormal range: a multiple of 2⁻⁹ (exact in f32), rounded ties-to-even; 8 is 2⁻⁶.
            let steps = (Float(bitPattern: magnitude) * 512).rounded(.toNearestOrEven)
            return sign | UInt8(steps)
        }
        // Normal: round the f32 mantissa to 3 bits (ties to even: add 0x7FFFF plus the kept lsb),
        // then rebias the exponent from 127 to 7 (subtract 120 << 3 from exponent|mantissa).
        let rounded = (magnitude &+ 0x7_FFFF &+ ((magnitude >> 20) & 1)) >> 20
        let code = rounded &- (120 << 3)
        return sign | UInt8(min(code, 0x7E))                            // saturate at 448
    }
}
