import Foundation
import Tensors

/// Matmul microbenchmark on seeded random weights, for `docs/cpu-notes.md` and the CLI's bench.
///
/// At batch 1 a matvec must read the whole weight once, so its speed is reported as the weight
/// bytes streamed per second, comparable with `CPUMemoryBandwidth.measure()`.
public enum CPUMatmulBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public var outDim: Int, inDim: Int, tokens: Int
        public var dtype: DType
        /// Best seconds per call over the timed iterations.
        public var seconds: Double
        /// Weight bytes ÷ seconds, in GB/s (10⁹ B/s).
        public var weightGBps: Double
        /// 2·T·O·I ÷ seconds, in GFLOP/s.
        public var gflops: Double

        public var description: String {
            String(format: "%@ (%d×%d) T=%d: %.3f ms, %.2f GB/s of weights, %.1f GFLOP/s",
                   dtype.rawValue, outDim, inDim, tokens, seconds * 1e3, weightGBps, gflops)
        }
    }

    /// Times `x (T, I) · Wᵀ` with W (O, I) of `dtype`, seeded random values; best of `iterations`.
    public static func run(outDim: Int, inDim: Int, tokens: Int = 1, dtype: DType = .bf16,
                           iterations: Int = 10, backend: CPUBackend? = nil) throws -> Result {
        try Prepared(outDim: outDim, inDim: inDim, tokens: tokens, dtype: dtype, backend: backend)
            .measure(iterations: iterations)
    }

    /// A weight and buffers made once, timed as often as wanted (alternating measurements on a
    /// shared machine without regenerating 100 MB of weights each time).
    public final class Prepared {
        public let outDim: Int, inDim: Int, tokens: Int
        public let dtype: DType
        let cpu: CPUBackend
        let weight: CPUTensor, x: CPUTensor, out: CPUTensor

        public init(outDim: Int, inDim: Int, tokens: Int = 1, dtype: DType = .bf16, backend: CPUBackend? = nil) throws {
            self.outDim = outDim
            self.inDim = inDim
            self.tokens = tokens
            self.dtype = dtype
            cpu = backend ?? CPUBackend()
            var state: UInt64 = 0x1234_5678
            var values = [Float](repeating: 0, count: outDim * inDim)
            for i in values.indices {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                values[i] = Float(Int64(state >> 40) - (1 << 23)) / Float(1 << 23) * 0.05
            }
            let stored = dtype == .e4m3
                ? try FP8Quantization.quantize(HostTensor.owning(values, shape: [outDim, inDim], dtype: .f32))
                : HostTensor.owning(values, shape: [outDim, inDim], dtype: dtype)
            weight = try cpu.upload(stored)
            x = try cpu.makeActivation([tokens, inDim])
            try cpu.write((0..<(tokens * inDim)).map { Float($0 % 17) / 17 - 0.5 }, to: x)
            out = try cpu.makeActivation([tokens, outDim])
        }

        /// One untimed matmul call (for callers that time it their own way).
        public func callOnce() throws {
            try cpu.matmul(x, weight: weight, out: out, rows: tokens, inDim: inDim, outDim: outDim)
        }

        /// Weight bytes one call streams.
        public var weightBytes: Int { outDim * inDim * dtype.byteSize + (dtype.hasRowScales ? outDim * 4 : 0) }

        /// Best of `iterations` timed calls (after one untimed warm-up call).
        public func measure(iterations: Int = 10) throws -> Result {
            var best = Double.infinity
            for iteration in 0...max(1, iterations) {
                let start = DispatchTime.now().uptimeNanoseconds
                try cpu.matmul(x, weight: weight, out: out, rows: tokens, inDim: inDim, outDim: outDim)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if iteration > 0 { best = min(best, seconds) }
            }
            let bytes = Double(outDim * inDim * dtype.byteSize)
            return Result(outDim: outDim, inDim: inDim, tokens: tokens, dtype: dtype, seconds: best,
                          weightGBps: bytes / best / 1e9, gflops: 2 * Double(tokens * outDim * inDim) / best / 1e9)
        }
    }
}
