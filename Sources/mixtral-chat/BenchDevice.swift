import CPUBackend
import CUDABackend
import Checkpoints
import Model
import Tensors

/// The device a benchmark runs on: how to build a model there, how fast its memory is, and how
/// many bytes one cached K or V element takes (f32 on the CPU, bf16 on the GPU).
struct BenchDevice {
    let build: (any WeightSource, ModelOptions) throws -> any LanguageModel
    let measureBandwidth: () throws -> Double
    /// bf16 matrix-product rate in FLOP/s (nil where there is no tensor-core GEMM to measure).
    let measureGEMMRate: () throws -> Double?
    let kvBytesPerElement: Int

    static func make(_ options: ModelOptions, quiet: Bool) throws -> BenchDevice {
        switch try DeviceChoice.parse(options.deviceName) {
        case .cpu:
            let backend = CPUBackend(threads: options.threads)
            return BenchDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet, kvElementBytes: 4) { max(1, (4 << 30) / $0) }
                },
                measureBandwidth: { try CPUMemoryBandwidth.measure(backend: backend) },
                measureGEMMRate: { nil },
                kvBytesPerElement: 4)
        case .cuda(let ordinal):
            let backend = try CUDABackend(ordinal: ordinal)
            return BenchDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet, kvElementBytes: 2) {
                        try backend.kvPoolBlocks(bytesPerBlock: $0, memoryFraction: opts.gpuMemoryFraction)
                    }
                },
                measureBandwidth: { try backend.measureCopyBandwidth() / 1e9 },
                measureGEMMRate: { try backend.measureGEMMRate() },
                kvBytesPerElement: 2)
        }
    }
}
