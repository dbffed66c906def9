import Dispatch
import Tensors

/// Seeded random weights of any `ModelConfig`, for benchmarks of real model shapes (e.g. Mistral
/// 7B layers) without a download, and for tests.
///
/// Matrices are ≈ N(0, 1/√fan_in) (fan_in = the last dimension, the one a matmul reduces over) so
/// activations keep their scale through the layers; norm weights are ≈ 1 (1 + 0.02·N). No value is
/// ever exactly zero: a zero matrix would let a kernel that skips work look correct (and fast).
/// Values depend only on (seed, key, element index) — not on thread count — so two runs agree.
/// Each `tensor(_:)` call generates a fresh owned copy; callers keep what they get.
public struct RandomWeights: WeightSource {
    public let config: ModelConfig
    public let seed: UInt64
    public let dtype: DType

    /// `dtype` is the stored dtype: bf16 (Mistral's releases), f16 or f32.
    public init(config: ModelConfig, seed: UInt64 = 0, dtype: DType = .bf16) throws {
        try config.validate(file: "RandomWeights config")
        guard dtype != .i32 else {
            throw CheckpointError(.unsupportedDType, file: "RandomWeights", "weights cannot be i32")
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
        let keySeed = seed ^ fnv1a(key.nativeName)
        let chunk = 1 << 18
        let chunks = (count + chunk - 1) / chunk
        let dtype = self.dtype
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            var rng = SplitMix64(state: keySeed &+ UInt64(c) &* 0x9E37_79B9_7F4A_7C15)
            let begin = c * chunk
            let end = min(count, begin + chunk)
            for i in begin..<end {
                var x = mean + std * rng.nextApproxNormal()
                if x == 0 { x = std * 1e-3 }
                switch dtype {
                case .bf16:
                    var b = BFloat16.fromFloat(x)
                    if b & 0x7FFF == 0 { b = BFloat16.fromFloat(std * 1e-3) }
                    out.raw.storeBytes(of: b, toByteOffset: 2 * i, as: UInt16.self)
                case .f16:
                    var h = Float16(x)
                    if h == 0 { h = Float16(std * 1e-3) }
                    out.raw.storeBytes(of: h.bitPattern, toByteOffset: 2 * i, as: UInt16.self)
                case .f32, .i32:
                    out.raw.storeBytes(of: x, toByteOffset: 4 * i, as: Float.self)
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

    /// Irwin–Hall: the sum of four 16-bit uniforms, centred and scaled to unit variance. One
    /// 64-bit draw per value keeps generating billions of weights fast; the tails are cut at
    /// ±2√3, which no benchmark cares about.
    mutating func nextApproxNormal() -> Float {
        let r = next()
        let s = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)
        let u = (Float(s) + 2) / 65536 - 2           // sum of four U(0,1) minus 2: mean 0, variance 1/3
        return u * 1.7320508                        // × √3 → variance 1
    }
}
