/// bf16 ⇄ f32 conversion.
///
/// bf16 is the top half of an IEEE f32, so widening is a shift; narrowing rounds to nearest-even
/// like PyTorch's `.to(torch.bfloat16)` (NaN stays NaN), which the fixtures rely on.
public enum BFloat16 {
    @inlinable @inline(__always)
    public static func toFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inlinable @inline(__always)
    public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
        let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }
}
