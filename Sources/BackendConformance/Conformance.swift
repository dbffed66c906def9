import Tensors

/// One op compared between a backend under test and the reference backend (the CPU).
public struct ConformanceResult: Sendable, CustomStringConvertible {
    public var name: String
    /// ‖test − reference‖ / ‖reference‖ over all outputs of the case (NaN if any output is NaN,
    /// e.g. an element the op never wrote: outputs are poisoned with NaN first).
    public var error: Double
    public var tolerance: Double
    /// Extra exact checks (e.g. routed expert ids); empty when they all hold.
    public var mismatch: String?
    public var passed: Bool { error.isFinite && error <= tolerance && mismatch == nil }

    public var description: String {
        let e = error.isFinite ? String(format6(error)) : "NaN"
        return "\(passed ? "ok  " : "FAIL") \((name.count < 60 ? name + String(repeating: " ", count: 60 - name.count) : name)) err \(e) (tol \(format6(tolerance)))"
            + (mismatch.map { " — \($0)" } ?? "")
    }
}

func format6(_ x: Double) -> String {
    if x == 0 { return "0" }
    var exponent = 0
    var m = abs(x)
    while m >= 10 { m /= 10; exponent += 1 }
    while m < 1 { m *= 10; exponent -= 1 }
    let scaled = (m * 100).rounded() / 100
    return "\(x < 0 ? "-" : "")\(scaled)e\(exponent)"
}

/// ‖a − b‖₂ / ‖b‖₂ in f64; NaN when lengths differ or anything is NaN.
public func normalisedError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .nan }
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        diff += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    if diff.isNaN || norm.isNaN { return .nan }
    return norm == 0 ? (diff == 0 ? 0 : .infinity) : (diff / norm).squareRoot()
}

/// SplitMix64: small, seedable, the same sequence everywhere (so a failing seed reproduces).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale), never exactly zero-filled data.
    public mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in Float.random(in: -scale..<scale, using: &self) }
    }
}

/// Tolerances (issue 5): paths with bf16 operands ≤ 1e-2; pure f32 paths ≤ 1e-4.
public enum ConformanceTolerance {
    public static let bf16Operands = 1e-2
    public static let f32 = 1e-4
    public static let exact = 1e-6
    /// Products whose activations the test backend rounds to e4m3 (FP8 tensor cores) against a
    /// reference that keeps them in f32: 3 mantissa bits give each element ≈ 2.5% rms relative
    /// error, a gated or MoE product two such roundings (x and h); wrong scales, rows or experts
    /// are errors of order 1.
    public static let fp8Activations = 8e-2
}

/// Which e4m3 products of the backend under test round their activations to e4m3 (dynamic
/// per-row scales) rather than keeping them in f32 as the reference does: the FP8 cases then
/// feed the reference the same rounded activations where the op allows it (matmulAdd), and
/// compare at `ConformanceTolerance.fp8Activations` where it doesn't (the norm or the SwiGLU
/// sits between the input and the rounding).
public struct FP8ActivationRounding: Sendable {
    /// (rows, inDim, outDim, norm dtype or nil for matmulAdd) → rounds.
    public var product: @Sendable (Int, Int, Int, DType?) -> Bool
    /// (tokens, dim, hidden, experts, topK) → rounds.
    public var experts: @Sendable (Int, Int, Int, Int, Int) -> Bool
    public init(product: @escaping @Sendable (Int, Int, Int, DType?) -> Bool,
                experts: @escaping @Sendable (Int, Int, Int, Int, Int) -> Bool) {
        self.product = product
        self.experts = experts
    }
}

/// Runs every `ComputeBackend` model op on `test` and on `reference` with the same fresh random inputs
/// (seeded; never zeros) and compares the outputs by normalised error.
///
/// Outputs of `test` are poisoned with NaN before each op, so an element the op fails to write
/// shows up as NaN and fails the case. Weights are bf16 unless a case says otherwise.
public struct BackendConformance<Test: ComputeBackend, Reference: ComputeBackend> {
    public let test: Test
    public let reference: Reference
    public let seed: UInt64
    var rng: SplitMix64
    /// Set when the backend under test quantizes some e4m3 products' activations (nil: none).
    public var fp8Rounding: FP8ActivationRounding?

    public init(test: Test, reference: Reference, seed: UInt64) {
        self.test = test
        self.reference = reference
        self.seed = seed
        rng = SplitMix64(seed: seed)
    }

    // MARK: paired buffers

    /// The same buffer on both backends.
    struct Pair {
        let t: Test.Tensor
        let r: Reference.Tensor
    }

    func weight(_ values: [Float], _ shape: [Int], _ dtype: DType = .bf16) throws -> Pair {
        let host = HostTensor.owning(values, shape: shape, dtype: dtype)
        return Pair(t: try test.upload(host), r: try reference.upload(host))
    }

    func stacked(_ parts: [[Float]], _ shape: [Int], _ dtype: DType = .bf16) throws -> Pair {
        let hosts = parts.map { HostTensor.owning($0, shape: shape, dtype: dtype) }
        return Pair(t: try test.upload(stacking: hosts), r: try reference.upload(stacking: hosts))
    }

    /// Weights (rows[i], k) joined by rows, as the model joins wq/wk/wv and w1/w3.
    func joined(_ parts: [[Float]], rows: [Int], k: Int, _ dtype: DType = .bf16) throws -> Pair {
        let hosts = zip(parts, rows).map { HostTensor.owning($0, shape: [$1, k], dtype: dtype) }
        return Pair(t: try test.upload(concatenatingRows: hosts), r: try reference.upload(concatenatingRows: hosts))
    }

    func activation(_ values: [Float], _ shape: [Int]) throws -> Pair {
        let p = Pair(t: try test.makeActivation(shape), r: try reference.makeActivation(shape))
        try test.write(values, to: p.t)
        try reference.write(values, to: p.r)
        return p
    }

    /// An output buffer; the test side is filled with NaN.
    func output(_ shape: [Int]) throws -> Pair {
        let n = shape.reduce(1, *)
        return try activation([Float](repeating: .nan, count: n), shape)
    }

    func indices(_ values: [Int32]) throws -> Pair {
        let p = Pair(t: try test.makeIndices(max(values.count, 1)), r: try reference.makeIndices(max(values.count, 1)))
        try test.write(values, to: p.t)
        try reference.write(values, to: p.r)
        return p
    }

    /// Writes k and v rows (n, G, Dh) into both backends' pools at `slots` through the model's
    /// own op (the pools have no other writer): `ropeAppendKV` at position 0 rotates by angle 0
    /// (cos 1, sin 0 exactly on both), so the pools get k and v as they are. The q part of the
    /// joined rows (G heads of zeros) goes to a throwaway output.
    func appendKV(k: [Float], v: [Float], kPool: Pair, vPool: Pair, slots: [Int32], kvHeads: Int, headDim: Int) throws {
        let n = slots.count, width = kvHeads * headDim
        guard n > 0 else { return }
        var qkv = [Float](repeating: 0, count: n * 3 * width)   // (n, G + 2G, Dh): q | k | v
        for t in 0..<n {
            qkv.replaceSubrange((t * 3 + 1) * width..<(t * 3 + 2) * width, with: k[t * width..<(t + 1) * width])
            qkv.replaceSubrange((t * 3 + 2) * width..<(t * 3 + 3) * width, with: v[t * width..<(t + 1) * width])
        }
        let rows = try activation(qkv, [n, 3 * kvHeads, headDim])
        let q = try activation([Float](repeating: 0, count: n * width), [n, kvHeads, headDim])
        let zero = try indices([Int32](repeating: 0, count: n)), sl = try indices(slots)
        try test.ropeAppendKV(qkv: rows.t, q: q.t, kPool: kPool.t, vPool: vPool.t, positions: zero.t, slots: sl.t,
                              rows: n, heads: kvHeads, kvHeads: kvHeads, headDim: headDim, theta: 1_000_000)
        try reference.ropeAppendKV(qkv: rows.r, q: q.r, kPool: kPool.r, vPool: vPool.r, positions: zero.r, slots: sl.r,
                                   rows: n, heads: kvHeads, kvHeads: kvHeads, headDim: headDim, theta: 1_000_000)
    }

    func read(_ p: Pair, _ count: Int) throws -> (test: [Float], reference: [Float]) {
        (try test.readFloats(p.t, count: count), try reference.readFloats(p.r, count: count))
    }

    func compare(_ name: String, _ p: Pair, count: Int, tolerance: Double) throws -> ConformanceResult {
        let (a, b) = try read(p, count)
        return ConformanceResult(name: name, error: normalisedError(a, b), tolerance: tolerance)
    }
}
