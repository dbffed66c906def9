// Stand-alone CPU microbenchmark (memory bandwidth and matvec/matmul GB/s), built by
// tools/cpu-bench/build.sh from the Tensors and CPUBackend sources so it can run on any Linux
// x86-64 machine without a Swift toolchain. Usage: cpu-bench [rounds] [threads]
//
// The build machines are shared, so bandwidth and every matmul are measured in alternating
// short rounds and the best of each is kept: the ratio compares quiet moments with quiet
// moments. A second figure divides by CPU time instead of wall time (process CPU seconds ÷
// threads): what the kernels reach while they actually hold the cores, a proxy for a quiet
// machine when other processes take turns on the cores.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
func wallSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Best (wall, cpu-normalised) seconds of `body` over the calls made so far.
struct Best {
    var wall = Double.infinity, cpu = Double.infinity
    mutating func time(threads: Int, _ body: () throws -> Void) rethrows {
        let (w0, c0) = (wallSeconds(), cpuSeconds())
        try body()
        let (w1, c1) = (wallSeconds(), cpuSeconds())
        wall = min(wall, w1 - w0)
        cpu = min(cpu, (c1 - c0) / Double(threads))
    }
}

let arguments = CommandLine.arguments
let rounds = arguments.count > 1 ? Int(arguments[1]) ?? 20 : 20
let threads = arguments.count > 2 ? Int(arguments[2]) : nil
let cpu = CPUBackend(threads: threads)
let n = cpu.threadCount
var cases: [CPUMatmulBenchmark.Prepared] = []
for dtype in [DType.bf16, .f16, .f32] {
    for (outDim, inDim) in [(14336, 4096), (4096, 14336)] {
        cases.append(try CPUMatmulBenchmark.Prepared(outDim: outDim, inDim: inDim, dtype: dtype, backend: cpu))
    }
}
for tokens in [4, 16, 64] {
    cases.append(try CPUMatmulBenchmark.Prepared(outDim: 4096, inDim: 4096, tokens: tokens, dtype: .bf16, backend: cpu))
}
// 128 MiB: 4× the 32 MiB L3 and about the size of the largest weight.
let stream = try CPUMemoryBandwidth.Stream(bytes: 128 << 20, backend: cpu)
stream.pass()
for prepared in cases { try prepared.callOnce() }
var bandwidth = Best()
var best = [Best](repeating: Best(), count: cases.count)
for _ in 0..<rounds {
    for _ in 0..<3 { bandwidth.time(threads: n) { stream.pass() } }
    for (index, prepared) in cases.enumerated() {
        for _ in 0..<(prepared.tokens == 1 ? 3 : 2) { try best[index].time(threads: n) { try prepared.callOnce() } }
    }
}
let gb = { (bytes: Int, seconds: Double) in Double(bytes) / seconds / 1e9 }
let bwWall = gb(stream.bytes, bandwidth.wall), bwCPU = gb(stream.bytes, bandwidth.cpu)
print(String(format: "memory read bandwidth: %.2f GB/s wall, %.2f GB/s per CPU time (%@, best of %d rounds)",
             bwWall, bwCPU, cpu.name, rounds))
for (prepared, b) in zip(cases, best) {
    let flops = 2 * Double(prepared.tokens * prepared.outDim * prepared.inDim)
    var line = String(format: "%@ (%d×%d) T=%d: %.3f ms, %.2f GB/s weights (%.1f GFLOP/s)",
                      prepared.dtype.rawValue, prepared.outDim, prepared.inDim, prepared.tokens, b.wall * 1e3,
                      gb(prepared.weightBytes, b.wall), flops / b.wall / 1e9)
    if prepared.tokens > 1 {
        line += String(format: "  | per CPU time %.1f GFLOP/s", flops / b.cpu / 1e9)
    } else {
        line += String(format: "  ratio %.2f | per CPU time %.2f GB/s, ratio %.2f",
                       gb(prepared.weightBytes, b.wall) / bwWall, gb(prepared.weightBytes, b.cpu),
                       gb(prepared.weightBytes, b.cpu) / bwCPU)
    }
    print(line)
}
