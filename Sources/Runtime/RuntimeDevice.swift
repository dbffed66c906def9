import CPUBackend
import CUDABackend
import Checkpoints
import Model
import Tensors

/// One opened device: how to build a model there, how fast its memory is, and its matrix-product
/// rate. `ModelRuntime` builds models through it; `bench` also measures with it.
public struct RuntimeDevice: Sendable {
    public let build: @Sendable (any WeightSource, RuntimeOptions) throws -> any LanguageModel
    /// Copy bandwidth in GB/s.
    public let measureBandwidth: @Sendable () throws -> Double
    /// bf16 matrix-product rate in FLOP/s (nil where there is no tensor-core GEMM to measure).
    public let measureGEMMRate: @Sendable () throws -> Double?
    /// Bytes of one cached K or V element (the backend's).
    public let kvBytesPerElement: Int
    /// Device memory (free, total) in bytes now; nil on the CPU (host memory is not the limit
    /// the KV pool is sized by there).
    public let memoryInfo: @Sendable () throws -> (free: Int, total: Int)?
    /// Seconds per call of the `sample` op alone (rows, vocabulary size, parameters, logprobs).
    public let timeSampling: @Sendable (_ rows: Int, _ vocabularySize: Int, _ row: RowSampling, _ logprobs: Int) throws -> Double

    public static func make(_ options: RuntimeOptions, quiet: Bool) throws -> RuntimeDevice {
        switch try DeviceChoice.parse(options.device) {
        case .cpu:
            let backend = CPUBackend(threads: options.threads)
            return RuntimeDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet) { max(1, (4 << 30) / $0) }   // KV: at most 4 GiB of host memory
                },
                measureBandwidth: { try CPUMemoryBandwidth.measure(backend: backend) },
                measureGEMMRate: { nil },
                kvBytesPerElement: backend.kvElementBytes,
                memoryInfo: { nil },
                timeSampling: { try SamplerBenchmark.secondsPerCall(backend, rows: $0, vocabularySize: $1, row: $2, logprobs: $3, repeats: 21) })
        case .cuda(let ordinal):
            let backend = try CUDABackend(ordinal: ordinal)
            return RuntimeDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet) {
                        try backend.kvPoolBlocks(bytesPerBlock: $0, memoryFraction: opts.gpuMemoryFraction)
                    }
                },
                measureBandwidth: { try backend.measureCopyBandwidth() / 1e9 },
                measureGEMMRate: { try backend.measureGEMMRate() },
                kvBytesPerElement: backend.kvElementBytes,
                memoryInfo: { try backend.memoryInfo() },
                timeSampling: { try SamplerBenchmark.secondsPerCall(backend, rows: $0, vocabularySize: $1, row: $2, logprobs: $3, repeats: 21) })
        }
    }
}
