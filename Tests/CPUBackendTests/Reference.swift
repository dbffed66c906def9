import CPUBackend
import Foundation
import Tensors

// Naive scalar references in Double, written independently of the backend's kernels, plus the
// seeded random inputs every test uses.

/// SplitMix64: a tiny seeded generator so every test input is reproducible.
struct SeededRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-scale, -scale/64] ∪ [scale/64, scale]: never zero, so a kernel that skips
    /// an element or reads the wrong one always changes the result.
    mutating func float(scale: Float = 1) -> Float {
        let u = Float(next() >> 40) / Float(1 << 24)           // [0, 1)
        let magnitude = (1.0 / 64 + u * (1 - 1.0 / 64)) * scale
        return next() & 1 == 0 ? magnitude : -magnitude
    }

    mutating func floats(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in float(scale: scale) }
    }

    mutating func int(below bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// sqrt(Σ(a−b)² / Σb²): the normalised error llama.cpp's backend tests use.
func normalisedError(_ actual: [Float], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count, "length mismatch \(actual.count) vs \(expected.count)")
    var num = 0.0, den = 0.0
    for (a, b) in zip(actual, expected) {
        num += (Double(a) - b) * (Double(a) - b)
        den += b * b
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}

/// A weight stored as `dtype` plus the exact values it holds (after rounding), for references.
struct TestWeight {
    let host: HostTensor
    let values: [Double]

    /// An e4m3 weight is the random values quantized by the FP8 scheme; `values` are then its
    /// effective weights (table value × row scale), which every op must compute with.
    init(_ random: inout SeededRandom, shape: [Int], dtype: DType, scale: Float = 1) {
        let raw = random.floats(shape.reduce(1, *), scale: scale)
        if dtype == .e4m3 {
            host = try! FP8Quantization.quantize(HostTensor.owning(raw, shape: shape, dtype: .bf16))
        } else {
            host = HostTensor.owning(raw, shape: shape, dtype: dtype)
        }
        values = host.floats().map(Double.init)
    }
}

enum Reference {
    /// out = x · Wᵀ; x (T, I), w (O, I).
    static func matmul(_ x: [Double], _ w: [Double], rows: Int, inDim: Int, outDim: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * outDim)
        for t in 0..<rows {
            for o in 0..<outDim {
                var sum = 0.0
                for i in 0..<inDim { sum += x[t * inDim + i] * w[o * inDim + i] }
                out[t * outDim + o] = sum
            }
        }
        return out
    }

    static func rmsNorm(_ x: [Double], _ w: [Double], eps: Double, rows: Int, dim: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * dim)
        for t in 0..<rows {
            var ms = 0.0
            for i in 0..<dim { ms += x[t * dim + i] * x[t * dim + i] }
            let inv = 1 / (ms / Double(dim) + eps).squareRoot()
            for i in 0..<dim { out[t * dim + i] = x[t * dim + i] * inv * w[i] }
        }
        return out
    }

    static func silu(_ g: Double) -> Double { g / (1 + exp(-g)) }

    /// Interleaved rotary embedding as mistral-inference's complex multiply.
    static func rope(_ x: [Double], positions: [Int], heads: Int, headDim: Int, theta: Double) -> [Double] {
        var out = x
        for (t, p) in positions.enumerated() {
            for h in 0..<heads {
                for i in 0..<(headDim / 2) {
                    let freq = 1 / pow(theta, Double(2 * i) / Double(headDim))
                    let angle = Double(p) * freq
                    let base = (t * heads + h) * headDim + 2 * i
                    let re = x[base], im = x[base + 1]
                    out[base] = re * cos(angle) - im * sin(angle)
                    out[base + 1] = re * sin(angle) + im * cos(angle)
                }
            }
        }
        return out
    }

    /// (expert ids, weights) per token: top-k by logit (ties → lower index), softmax over them.
    static func route(_ logits: [Double], experts: Int, topK: Int) -> [([Int], [Double])] {
        stride(from: 0, to: logits.count, by: experts).map { start in
            let row = Array(logits[start..<(start + experts)])
            let order = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
            let chosen = Array(order.prefix(topK))
            let top = row[chosen[0]]
            let exps = chosen.map { exp(row[$0] - top) }
            let sum = exps.reduce(0, +)
            return (chosen, exps.map { $0 / sum })
        }
    }

    /// One expert's FFN: w2 · (silu(w1 x) ⊙ w3 x); w1, w3 (F, D), w2 (D, F) as flat arrays.
    static func expert(_ x: [Double], w1: ArraySlice<Double>, w2: ArraySlice<Double>, w3: ArraySlice<Double>,
                       dim: Int, hidden: Int) -> [Double] {
        let a = Array(w1), b = Array(w2), c = Array(w3)
        let g = matmul(x, a, rows: 1, inDim: dim, outDim: hidden)
        let u = matmul(x, c, rows: 1, inDim: dim, outDim: hidden)
        let h = zip(g, u).map { silu($0) * $1 }
        return matmul(h, b, rows: 1, inDim: hidden, outDim: dim)
    }
}
