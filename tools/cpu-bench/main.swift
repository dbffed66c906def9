// Stand-alone CPU microbenchmark (memory bandwidth and matvec/matmul GB/s), built by
// tools/cpu-bench/build.sh from the Tensors and CPUBackend sources so it can run on any Linux
// x86-64 machine without a Swift toolchain. Usage: cpu-bench [rounds] [threads]
//        or cpu-bench decode [layers] [steps] [threads]   (see Decode.swift)
//
// The build machines are shared with other sessions, and the bandwidth they leave varies by 2-3×
// from second to second. So every matvec is timed between two bandwidth passes of about the same
// duration, and its ratio is taken against their mean: the median of those paired ratios over
// all rounds is the figure to quote. Best-of-rounds rates are printed beside it.
import Foundation

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

let arguments = CommandLine.arguments
if arguments.count > 1, arguments[1] == "decode" {
    let layers = arguments.count > 2 ? Int(arguments[2]) ?? 4 : 4
    let steps = arguments.count > 3 ? Int(arguments[3]) ?? 20 : 20
    let threads = arguments.count > 4 ? Int(arguments[4]) : nil
    try runDecodeBench(layers: layers, steps: steps, cpu: CPUBackend(threads: threads))
    exit(0)
}
let rounds = arguments.count > 1 ? Int(arguments[1]) ?? 20 : 20
let threads = arguments.count > 2 ? Int(arguments[2]) : nil
let cpu = CPUBackend(threads: threads)
var cases: [CPUMatmulBenchmark.Prepared] = []
for dtype in [DType.bf16, .f16, .f32] {
    for (outDim, inDim) in [(14336, 4096), (4096, 14336)] {
        cases.append(try CPUMatmulBenchmark.Prepared(outDim: outDim, inDim: inDim, dtype: dtype, backend: cpu))
    }
}
for tokens in [4, 16, 64] {
    cases.append(try CPUMatmulBenchmark.Prepared(outDim: 4096, inDim: 4096, tokens: tokens, dtype: .bf16, backend: cpu))
}
// 128 MiB: 4× the 32 MiB L3 and about the size of the bf16 weights above.
let stream = try CPUMemoryBandwidth.Stream(bytes: 128 << 20, backend: cpu)
stream.pass()
for prepared in cases { try prepared.callOnce() }

var bestBandwidth = 0.0
var best = [Double](repeating: .infinity, count: cases.count)
var ratios = [[Double]](repeating: [], count: cases.count)
for _ in 0..<rounds {
    for (index, prepared) in cases.enumerated() {
        let before = Double(stream.bytes) / stream.pass() / 1e9
        let start = now()
        try prepared.callOnce()
        let seconds = now() - start
        let after = Double(stream.bytes) / stream.pass() / 1e9
        bestBandwidth = max(bestBandwidth, before, after)
        best[index] = min(best[index], seconds)
        ratios[index].append(Double(prepared.weightBytes) / seconds / 1e9 / ((before + after) / 2))
    }
}
print(String(format: "memory read bandwidth: best %.2f GB/s (%@, %d rounds)", bestBandwidth, cpu.name, rounds))
for (index, prepared) in cases.enumerated() {
    let flops = 2 * Double(prepared.tokens * prepared.outDim * prepared.inDim)
    var line = String(format: "%@ (%d×%d) T=%d: best %.3f ms, %.2f GB/s of weights, %.1f GFLOP/s",
                      prepared.dtype.rawValue, prepared.outDim, prepared.inDim, prepared.tokens, best[index] * 1e3,
                      Double(prepared.weightBytes) / best[index] / 1e9, flops / best[index] / 1e9)
    if prepared.tokens == 1 {
        line += String(format: "; paired ratio median %.2f (best-of ratio %.2f)", median(ratios[index]),
                       Double(prepared.weightBytes) / best[index] / 1e9 / bestBandwidth)
    }
    print(line)
}
