import Dispatch
import Foundation
import Tensors

/// Seeded random weights of any `ModelConfig`, for benchmarks of real model shapes (e.g. Mistral
/// 7B layers) without a download, and for tests.
///
/// Matrices are N(0, 1/√fan_in) (fan_in = the last dimension, the one a matmul reduces over) so
/// activations keep their scale through the layers; norm weights are ≈ 1 (1 + 0.02·N). No value is
/// ever exactly zero: a zero matrix would let a kernel that skips work look correct (and fast).
/// Values depend only on (seed, key, element index) — not on thread count — so two runs agree.
/// Each `tensor(_:)` call generates a fresh owned copy; callers keep what they get.
public struct RandomWeights: WeightSource {
    public let config: ModelConfig
    public let seed: UInt64
    public let dtype: DType

    /// `dtype` is the stored dtype: bf16 (Mistral's releases), f16 or f32. (FP8 weights are
    /// these quantized: wrap the source in `FP8QuantizingSource`.)
    public init(config: ModelConfig, seed: UInt64 = 0, dtype: DType = .bf16) throws {
        try config.validate(file: "RandomWeights config")
        guard dtype != .i32, dtype != .e4m3 else {
            throw CheckpointError(.unsupportedDType, file: "RandomWeights",
                                  "weights cannot be \(dtype.rawValue) (for fp8, quantize bf16 weights)")
        }
        self.config = config
        self.seed = seed
        self.dtype = dtype
    }

    public func tensor(_ key: WeightKey) throws -> HostTensor {
        if case .moeGate = key, config.moe == nil {
            throw CheckpointError(.missingTensor, file: "RandomWeights", tensor: key.nativeName, "dense model has no MoE gate")
        }
        let shape = key.shape(config)
        let count = shape.reduce(1, *)
        let isNorm = shape.count == 1
        let std: Float = isNorm ? 0.02 : 1 / Float(shape.last ?? 1).squareRoot()
        let mean: Float = isNorm ? 1 : 0
        let storage = OwnedBytes(count: count * dtype.byteSize)
        let out = WritablePointer(raw: storage.pointer)
        switch dtype {   // bind once so the typed stores below are well-defined
        case .bf16, .f16: storage.pointer.bindMemory(to: UInt16.self, capacity: count)
        case .f32, .i32: storage.pointer.bindMemory(to: Float.self, capacity: count)
        case .e4m3: preconditionFailure("refused by init")
        }
        let keySeed = seed ^ fnv1a(key.nativeName)
        let chunk = 1 << 18
        let chunks = (count + chunk - 1) / chunk
        let dtype = self.dtype
        // Values that would round to zero in the stored dtype are replaced by this tiny one.
        let tiny = std * 1e-3
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            var rng = SplitMix64(state: keySeed &+ UInt64(c) &* 0x9E37_79B9_7F4A_7C15)
            let begin = c * chunk
            let end = min(count, begin + chunk)
            normalQuantiles.withUnsafeBufferPointer { table in
                guard let q = table.baseAddress else { return }
                // One 64-bit draw gives four 16-bit indices into the 65536-entry quantile table.
                @inline(__always) func fill(_ store: (Int, Float) -> Void) {
                    var i = begin
                    while i < end {
                        var r = rng.next()
                        for j in i..<min(i + 4, end) {
                            store(j, mean + std * q[Int(truncatingIfNeeded: r & 0xFFFF)])
                            r >>= 16
                        }
                        i += 4
                    }
                }
                switch dtype {
                case .bf16:
                    let p = out.raw.assumingMemoryBound(to: UInt16.self)
                    let fallback = BFloat16.fromFloat(tiny)
                    fill { i, x in
                        let b = BFloat16.fromFloat(x)
                        p[i] = b & 0x7FFF == 0 ? fallback : b
                    }
                case .f16:
                    let p = out.raw.assumingMemoryBound(to: UInt16.self)
                    let fallback = Float16(tiny).bitPattern
                    fill { i, x in
                        let h = Float16(x).bitPattern
                        p[i] = h & 0x7FFF == 0 ? fallback : h
                    }
                case .f32, .i32:
                    let p = out.raw.assumingMemoryBound(to: Float.self)
                    fill { i, x in p[i] = x == 0 ? tiny : x }
                case .e4m3:
                    break   // refused by init
                }
            }
        }
        return HostTensor(dtype: dtype, shape: shape,
                          data: UnsafeRawBufferPointer(start: storage.pointer, count: storage.count), owner: storage)
    }
}

/// A pointer the parallel fill writes through.
private struct WritablePointer: @unchecked Sendable {
    // @unchecked: each concurrentPerform iteration writes a disjoint element range, and the
    // buffer is not read until concurrentPerform has returned.
    let raw: UnsafeMutableRawPointer
}

/// Stable across processes (unlike `Hasher`), so seeds mean the same thing in every run.
private func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// SplitMix64: tiny, fast, good enough for weights nobody will train.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

}

/// The 65536 quantiles Φ⁻¹((k + ½) / 65536) of the standard normal: a 16-bit uniform index into
/// this table is an (exactly distributed, finely discretised) N(0, 1) sample, four per 64-bit
/// random draw — fast enough to fill billions of benchmark weights in seconds.
private let normalQuantiles: [Float] = (0..<65536).map { k in
    let p = (Double(k) + 0.5) / 65536
    // Φ(x) = (1 + erf(x/√2)) / 2 is monotone: bisect on [-6, 6] to double precision.
    var lo = -6.0, hi = 6.0
    for _ in 0..<60 {
        let mid = (lo + hi) / 2
        if 0.5 * (1 + erf(mid / 2.0.squareRoot())) < p { lo = mid } else { hi = mid }
    }
    return Float((lo + hi) / 2)
}
