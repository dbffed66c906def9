// Stand-alone CPU microbenchmark (memory bandwidth and matvec/matmul GB/s), built by
// tools/cpu-bench/build.sh from the Tensors and CPUBackend sources so it can run on any Linux
// x86-64 machine without a Swift toolchain. Usage: cpu-bench [rounds] [threads]
//
// The build machines are shared, so bandwidth and every matvec are measured in alternating
// short rounds and the best of each is kept: the ratio compares quiet moments with quiet moments.
import Foundation

let arguments = CommandLine.arguments
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
var bandwidth = 0.0
var best = [CPUMatmulBenchmark.Result?](repeating: nil, count: cases.count)
for _ in 0..<rounds {
    // 128 MiB: 4× the 32 MiB L3 and about the size of the largest weight.
    bandwidth = max(bandwidth, try CPUMemoryBandwidth.measure(bytes: 128 << 20, runs: 3, backend: cpu))
    for (index, prepared) in cases.enumerated() {
        let result = try prepared.measure(iterations: prepared.tokens == 1 ? 3 : 1)
        if best[index].map({ result.seconds < $0.seconds }) ?? true { best[index] = result }
    }
}
print("memory read bandwidth: \(String(format: "%.2f", bandwidth)) GB/s (\(cpu.name), best of \(rounds) rounds)")
for case let result? in best {
    let ratio = result.tokens == 1 ? String(format: "  ratio %.2f", result.weightGBps / bandwidth) : ""
    print("\(result)\(ratio)")
}
