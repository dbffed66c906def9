import Tensors

/// Loading weights of one stored dtype as f32 SIMD vectors.
///
/// The kernels are generic over this protocol so that each dtype gets its own specialised inner
/// loop (the dtype switch happens once per op, never per element). Widening happens in
/// registers: bf16 is the top half of an f32 (`UInt32(bits) << 16`, one vpmovzxwd + vpslld),
/// f16 uses the F16C conversion (vcvtph2ps), so weights are streamed at their stored size.
protocol WeightElement {
    /// Bytes per stored element.
    static var stride: Int { get }
    /// Elements i..<i+8 of the row at `p`, widened to f32.
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float>
    /// Element i of the row at `p`, widened to f32.
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float
}

enum BF16Element: WeightElement {
    static var stride: Int { 2 }
    @inline(__always)
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        let raw = p.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: raw) &<< 16, to: SIMD8<Float>.self)
    }
    @inline(__always)
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)) << 16)
    }
}

enum F16Element: WeightElement {
    static var stride: Int { 2 }
    @inline(__always)
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        SIMD8<Float>(p.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<Float16>.self))
    }
    @inline(__always)
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(p.loadUnaligned(fromByteOffset: i &* 2, as: Float16.self))
    }
}

/// FP8 e4m3 codes, widened without the row scale (the product applies it per row). The SIMD
/// path places the code's bits in f32's fields and rescales by a power of two (exact, subnormal
/// codes included; only those 14 codes make a subnormal intermediate, which x86 handles slowly,
/// and quantized weights rarely hold them). NaN codes (0x7F/0xFF) become NaN. `load1` is the table
/// itself; tests check both agree on all 256 codes.
enum E4M3Element: WeightElement {
    static var stride: Int { 1 }
    @inline(__always)
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        // As the GPU's e4m3_to_f32: the 7 magnitude bits at f32 bits 20…26 and the sign at 31 are
        // the code's value × 2⁻¹²⁰ (subnormal codes as f32 subnormals), and × 2¹²⁰ is exact. All
        // 32-bit lanes, so it vectorises (AVX2); the former route through Float16 converted lane
        // by lane in software and made e4m3 products ≈ 27× slower than bf16.
        // NaN codes by bit arithmetic, not a lane mask (`.==` / `replacing` compiled to a loop
        // over the lanes): magnitude + 1 has bit 7 set only for 0x7F, which then sets a quiet
        // NaN's exponent and mantissa bits over the value.
        let codes = SIMD8<UInt32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt8>.self))
        let magnitude = codes & 0x7F
        let bits = ((codes & 0x80) &<< 24) | (magnitude &<< 20)
        let value = unsafeBitCast(unsafeBitCast(bits, to: SIMD8<Float>.self) * 0x1p120, to: SIMD8<UInt32>.self)
        let nan = (0 &- ((magnitude &+ 1) &>> 7)) & 0x7FC0_0000
        return unsafeBitCast(value | nan, to: SIMD8<Float>.self)
    }
    @inline(__always)
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        FP8E4M3.toFloat(p.load(fromByteOffset: i, as: UInt8.self))
    }
}

enum F32Element: WeightElement {
    static var stride: Int { 4 }
    @inline(__always)
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        p.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
    }
    @inline(__always)
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        p.loadUnaligned(fromByteOffset: i &* 4, as: Float.self)
    }
}

@inline(__always)
func loadF32x8(_ x: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
    UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
}

/// The one summation order every dot product in this backend uses, so that a result does not
/// depend on which kernel computed it (one token or four, any thread split, any batch
/// composition): two SIMD8 accumulators taking alternate 8-element slices (i / 8 even → a,
/// odd → b), then `hsum(a + b)`, then the < 8 leftover elements one by one with FMA.
/// Two independent FMA chains also keep a core ahead of its share of memory bandwidth.
@inline(__always)
func hsum(_ v: SIMD8<Float>) -> Float {
    let h = v.lowHalf + v.highHalf
    let q = h.lowHalf + h.highHalf
    return q[0] + q[1]
}

/// Σ w[i]·x[i] for one weight row against one activation row, in the canonical order (`hsum`).
@inline(__always)
func dotRow<W: WeightElement>(_: W.Type, _ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var a = SIMD8<Float>(), b = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        a = a.addingProduct(W.load8(w, i), loadF32x8(x, i))
        b = b.addingProduct(W.load8(w, i &+ 8), loadF32x8(x, i &+ 8))
        i &+= 16
    }
    if i &+ 8 <= n {
        a = a.addingProduct(W.load8(w, i), loadF32x8(x, i))
        i &+= 8
    }
    var sum = hsum(a + b)
    while i < n {
        sum = sum.addingProduct(W.load1(w, i), x[i])
        i &+= 1
    }
    return sum
}

/// Two weight rows against one activation row, each in the canonical order: the activation
/// slice is loaded once for both rows (decode matvec; halves the cache traffic for x).
@inline(__always)
func dotRow2<W: WeightElement>(_: W.Type, _ w0: UnsafeRawPointer, _ w1: UnsafeRawPointer,
                               _ x: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
    var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        let xa = loadF32x8(x, i), xb = loadF32x8(x, i &+ 8)
        a0 = a0.addingProduct(W.load8(w0, i), xa)
        a1 = a1.addingProduct(W.load8(w1, i), xa)
        b0 = b0.addingProduct(W.load8(w0, i &+ 8), xb)
        b1 = b1.addingProduct(W.load8(w1, i &+ 8), xb)
        i &+= 16
    }
    if i &+ 8 <= n {
        let xa = loadF32x8(x, i)
        a0 = a0.addingProduct(W.load8(w0, i), xa)
        a1 = a1.addingProduct(W.load8(w1, i), xa)
        i &+= 8
    }
    var s0 = hsum(a0 + b0), s1 = hsum(a1 + b1)
    while i < n {
        s0 = s0.addingProduct(W.load1(w0, i), x[i])
        s1 = s1.addingProduct(W.load1(w1, i), x[i])
        i &+= 1
    }
    return (s0, s1)
}

/// Four weight rows against one activation row, each in the canonical order: four concurrent
/// weight streams per core (the memory system here delivers noticeably more with several
/// sequential streams in flight per core than with one or two), x loaded once for all four.
@inline(__always)
func dotRows4<W: WeightElement>(_: W.Type, _ w0: UnsafeRawPointer, _ w1: UnsafeRawPointer,
                                _ w2: UnsafeRawPointer, _ w3: UnsafeRawPointer,
                                _ x: UnsafePointer<Float>, _ n: Int) -> SIMD4<Float> {
    var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
    var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        let xa = loadF32x8(x, i), xb = loadF32x8(x, i &+ 8)
        a0 = a0.addingProduct(W.load8(w0, i), xa)
        a1 = a1.addingProduct(W.load8(w1, i), xa)
        a2 = a2.addingProduct(W.load8(w2, i), xa)
        a3 = a3.addingProduct(W.load8(w3, i), xa)
        b0 = b0.addingProduct(W.load8(w0, i &+ 8), xb)
        b1 = b1.addingProduct(W.load8(w1, i &+ 8), xb)
        b2 = b2.addingProduct(W.load8(w2, i &+ 8), xb)
        b3 = b3.addingProduct(W.load8(w3, i &+ 8), xb)
        i &+= 16
    }
    if i &+ 8 <= n {
        let xa = loadF32x8(x, i)
        a0 = a0.addingProduct(W.load8(w0, i), xa)
        a1 = a1.addingProduct(W.load8(w1, i), xa)
        a2 = a2.addingProduct(W.load8(w2, i), xa)
        a3 = a3.addingProduct(W.load8(w3, i), xa)
        i &+= 8
    }
    var s = SIMD4<Float>(hsum(a0 + b0), hsum(a1 + b1), hsum(a2 + b2), hsum(a3 + b3))
    while i < n {
        let w = SIMD4<Float>(W.load1(w0, i), W.load1(w1, i), W.load1(w2, i), W.load1(w3, i))
        s = s.addingProduct(w, SIMD4(repeating: x[i]))
        i &+= 1
    }
    return s
}

/// One weight row against four activation rows at once, each in the canonical order: the row is
/// widened once and used four times, so prefill reads each weight once per four tokens (and the
/// tile loop around it keeps the row in cache for the rest of the token block).
@inline(__always)
func dotRow4<W: WeightElement>(_: W.Type, _ w: UnsafeRawPointer, _ x0: UnsafePointer<Float>,
                               _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
                               _ x3: UnsafePointer<Float>, _ n: Int) -> SIMD4<Float> {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>(), b3 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        let wa = W.load8(w, i)
        let wb = W.load8(w, i &+ 8)
        a0 = a0.addingProduct(wa, loadF32x8(x0, i))
        a1 = a1.addingProduct(wa, loadF32x8(x1, i))
        a2 = a2.addingProduct(wa, loadF32x8(x2, i))
        a3 = a3.addingProduct(wa, loadF32x8(x3, i))
        b0 = b0.addingProduct(wb, loadF32x8(x0, i &+ 8))
        b1 = b1.addingProduct(wb, loadF32x8(x1, i &+ 8))
        b2 = b2.addingProduct(wb, loadF32x8(x2, i &+ 8))
        b3 = b3.addingProduct(wb, loadF32x8(x3, i &+ 8))
        i &+= 16
    }
    if i &+ 8 <= n {
        let wa = W.load8(w, i)
        a0 = a0.addingProduct(wa, loadF32x8(x0, i))
        a1 = a1.addingProduct(wa, loadF32x8(x1, i))
        a2 = a2.addingProduct(wa, loadF32x8(x2, i))
        a3 = a3.addingProduct(wa, loadF32x8(x3, i))
        i &+= 8
    }
    var s = SIMD4<Float>(hsum(a0 + b0), hsum(a1 + b1), hsum(a2 + b2), hsum(a3 + b3))
    while i < n {
        let wi = W.load1(w, i)
        s = s.addingProduct(SIMD4(repeating: wi), SIMD4(x0[i], x1[i], x2[i], x3[i]))
        i &+= 1
    }
    return s
}

/// Dot product of two f32 vectors (attention scores).
@inline(__always)
func dotF32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    dotRow(F32Element.self, UnsafeRawPointer(a), b, n)
}

/// y[i] += s · x[i] over n floats (attention value accumulation, expert combination).
@inline(__always)
func axpy(_ s: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let sv = SIMD8<Float>(repeating: s)
    var i = 0
    while i &+ 8 <= n {
        let r = UnsafeMutableRawPointer(y + i)
        r.storeBytes(of: r.loadUnaligned(as: SIMD8<Float>.self).addingProduct(sv, loadF32x8(x, i)), as: SIMD8<Float>.self)
        i &+= 8
    }
    while i < n {
        y[i] += s * x[i]
        i &+= 1
    }
}

/// y[i] *= s over n floats.
@inline(__always)
func scale(_ y: UnsafeMutablePointer<Float>, _ s: Float, _ n: Int) {
    let sv = SIMD8<Float>(repeating: s)
    var i = 0
    while i &+ 8 <= n {
        let r = UnsafeMutableRawPointer(y + i)
        r.storeBytes(of: r.loadUnaligned(as: SIMD8<Float>.self) * sv, as: SIMD8<Float>.self)
        i &+= 8
    }
    while i < n {
        y[i] *= s
        i &+= 1
    }
}
