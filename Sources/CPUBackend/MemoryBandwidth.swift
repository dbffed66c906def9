#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Tensors

/// The machine's sustained memory read bandwidth, the yardstick for decode speed.
///
/// Decode at batch 1 reads every active weight once per token, so tokens/s can be at most
/// bandwidth ÷ bytes per token; benchmarks report their ratio to this number.
public enum CPUMemoryBandwidth {
    /// Streams a buffer much larger than the caches with all threads and returns the best of
    /// `runs` passes in GB/s (10⁹ B/s).
    /// - Parameters:
    ///   - bytes: buffer size; the default 512 MiB is far beyond any L3 here.
    ///   - runs: timed passes after one warm-up pass.
    ///   - backend: whose pool to use (defaults to a new backend over all cores).
    public static func measure(bytes: Int = 512 << 20, runs: Int = 5, backend: CPUBackend? = nil) throws -> Double {
        let stream = try Stream(bytes: bytes, backend: backend)
        stream.pass()
        var best = 0.0
        for _ in 0..<max(1, runs) { best = max(best, Double(stream.bytes) / stream.pass() / 1e9) }
        return best
    }

    /// A buffer to stream, allocated and touched once, read as often as wanted.
    public final class Stream {
        public let bytes: Int
        let cpu: CPUBackend
        let buffer: CPUTensor
        let partials: CPUTensor
        let floats: Int
        /// 4 MiB chunks handed out dynamically, like the matmul's row chunks (a thread descheduled
        /// for a moment does not hold up the others); each chunk is read as four concurrent
        /// sequential streams, as a two-row matvec reads two weight rows plus its activations —
        /// one stream per core leaves bandwidth unused on these machines.
        let chunk = 1 << 20

        public init(bytes: Int = 512 << 20, backend: CPUBackend? = nil) throws {
            cpu = backend ?? CPUBackend()
            floats = max(bytes / 4, 1 << 16)
            self.bytes = floats * 4
            buffer = try CPUTensor(owning: .f32, shape: [floats])
            // Touch every page (and give the values something to sum).
            for i in 0..<floats { buffer.floats[i] = Float(i & 1023) }
            partials = try CPUTensor(owning: .f32, shape: [(floats + chunk - 1) / chunk])
        }

        /// Reads the whole buffer once with every pool thread; returns the wall seconds taken.
        @discardableResult
        public func pass() -> Double {
            let (floats, chunk, buffer, partials) = (self.floats, self.chunk, self.buffer, self.partials)
            let start = DispatchTime.now().uptimeNanoseconds
            cpu.pool.run(tasks: partials.count) { task, _ in
                let begin = task * chunk
                partials.floats[task] = sumStreams(buffer.floats + begin, min(chunk, floats - begin))
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
    }
}

/// Σ x over n floats, read as four concurrent sequential streams (the four quarters of x) with
/// one SIMD accumulator each: a pure streaming read.
@inline(never)
func sumStreams(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    let quarter = (n / 4) & ~7
    let x1 = x + quarter, x2 = x1 + quarter, x3 = x2 + quarter
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var i = 0
    while i &+ 8 <= quarter {
        a0 += loadF32x8(x, i)
        a1 += loadF32x8(x1, i)
        a2 += loadF32x8(x2, i)
        a3 += loadF32x8(x3, i)
        i &+= 8
    }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    var j = 4 &* quarter
    while j < n { s += x[j]; j &+= 1 }
    return s
}
