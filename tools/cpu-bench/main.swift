// Stand-alone CPU microbenchmark (memory bandwidth and matvec/matmul GB/s), built by
// tools/cpu-bench/build.sh from the Tensors and CPUBackend sources so it can run on any Linux
// x86-64 machine without a Swift toolchain. Usage: cpu-bench [rounds] [threads]
//
// The build machines are shared, so bandwidth and every matvec are measured in alternating
// rounds and the best of each is kept: the ratio then compares quiet moments with quiet moments.
import Foundation

let arguments = CommandLine.arguments
let rounds = arguments.count > 1 ? Int(arguments[1]) ?? 5 : 5
let threads = arguments.count > 2 ? Int(arguments[2]) : nil
let cpu = CPUBackend(threads: threads)
let shapes = [(14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096)]
var bandwidth = 0.0
var best: [String: CPUMatmulBenchmark.Result] = [:]
var order: [String] = []
func keep(_ result: CPUMatmulBenchmark.Result) {
    let key = "\(result.dtype) \(result.outDim)x\(result.inDim) T\(result.tokens)"
    if best[key] == nil { order.append(key) }
    if best[key].map({ result.seconds < $0.seconds }) ?? true { best[key] = result }
}
for round in 0..<rounds {
    bandwidth = max(bandwidth, try CPUMemoryBandwidth.measure(bytes: 512 << 20, runs: 3, backend: cpu))
    for dtype in [DType.bf16, .f16, .f32] {
        for (outDim, inDim) in shapes where dtype != .f32 || round < 2 {
            keep(try CPUMatmulBenchmark.run(outDim: outDim, inDim: inDim, dtype: dtype, iterations: 3, backend: cpu))
        }
    }
    if round < 2 {
        for tokens in [4, 16, 64, 256] {
            keep(try CPUMatmulBenchmark.run(outDim: 4096, inDim: 4096, tokens: tokens, dtype: .bf16, iterations: 2, backend: cpu))
        }
    }
}
print("memory read bandwidth: \(String(format: "%.2f", bandwidth)) GB/s (\(cpu.name), best of \(rounds) rounds)")
for key in order {
    guard let result = best[key] else { continue }
    let ratio = result.tokens == 1 ? String(format: "  ratio %.2f", result.weightGBps / bandwidth) : ""
    print("\(result)\(ratio)")
}
