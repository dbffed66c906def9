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
    /// Streams a buffer much larger than the caches with all threads (each summing its own
    /// contiguous part with SIMD loads) and returns the best of `runs` passes in GB/s (10⁹ B/s).
    /// - Parameters:
    ///   - bytes: buffer size; the default 512 MiB is far beyond any L3 here.
    ///   - runs: timed passes after one warm-up pass.
    ///   - backend: whose pool to use (defaults to a new backend over all cores).
    public static func measure(bytes: Int = 512 << 20, runs: Int = 5, backend: CPUBackend? = nil) throws -> Double {
        let cpu = backend ?? CPUBackend()
        let floats = max(bytes / 4, 1 << 16)
        let buffer = try CPUTensor(owning: .f32, shape: [floats])
        // Touch every page (and give the values something to sum).
        for i in 0..<floats { buffer.floats[i] = Float(i & 1023) }
        let threads = cpu.threadCount
        let partials = try CPUTensor(owning: .f32, shape: [threads * 16])
        var best = 0.0
        for run in 0...max(1, runs) {
            let start = DispatchTime.now().uptimeNanoseconds
            cpu.pool.run(tasks: threads) { task, _ in
                let per = floats / threads
                let begin = task * per
                let end = task == threads - 1 ? floats : begin + per
                partials.floats[task * 16] = sumStream(buffer.floats + begin, end - begin)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if run > 0 { best = max(best, Double(floats * 4) / seconds / 1e9) }
        }
        return best
    }
}

/// Σ x over n floats with four independent SIMD accumulators (pure streaming read).
@inline(never)
func sumStream(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var i = 0
    while i &+ 32 <= n {
        a0 += loadF32x8(x, i)
        a1 += loadF32x8(x, i &+ 8)
        a2 += loadF32x8(x, i &+ 16)
        a3 += loadF32x8(x, i &+ 24)
        i &+= 32
    }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    while i < n { s += x[i]; i &+= 1 }
    return s
}
