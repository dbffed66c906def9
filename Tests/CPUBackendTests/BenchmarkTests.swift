import CPUBackend
import Foundation
import Tensors
import Testing

/// Microbenchmarks behind docs/cpu-notes.md; off by default (they take seconds and need a quiet
/// machine). Run: `MIXTRAL_CPU_BENCH=1 swift test -c release --filter CPUBackendTests.Benchmarks`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["MIXTRAL_CPU_BENCH"] != nil))
struct Benchmarks {
    @Test func matvecAgainstMemoryBandwidth() throws {
        let cpu = CPUBackend()
        let bandwidth = try CPUMemoryBandwidth.measure(backend: cpu)
        print("memory read bandwidth: \(String(format: "%.2f", bandwidth)) GB/s (\(cpu.name))")
        for dtype in [DType.bf16, .f16, .f32] {
            for (outDim, inDim) in [(14336, 4096), (4096, 14336), (4096, 4096), (1024, 4096)] {
                let result = try CPUMatmulBenchmark.run(outDim: outDim, inDim: inDim, dtype: dtype, backend: cpu)
                print("\(result)  ratio \(String(format: "%.2f", result.weightGBps / bandwidth))")
                #expect(result.weightGBps > 0)
            }
        }
        for tokens in [4, 16, 64] {
            let result = try CPUMatmulBenchmark.run(outDim: 4096, inDim: 4096, tokens: tokens, dtype: .bf16,
                                                    iterations: 3, backend: cpu)
            print("\(result)")
        }
    }
}
