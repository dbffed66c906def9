import Foundation
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
    /// bf16 (or, given true, FP8 e4m3) matrix-product rate in FLOP/s (nil where there is no
    /// tensor-core GEMM of that kind to measure).
    public let measureGEMMRate: @Sendable (_ fp8: Bool) throws -> Double?
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
            let ranks = max(1, options.tensorParallel)
            let group = ranks > 1 ? CPUParallelGroup(size: ranks) : nil
            // The ranks share the cores: each gets its part of `threads` (at least one).
            let threads = options.threads.map { max(1, $0 / ranks) }
                ?? (ranks > 1 ? max(1, ProcessInfo.processInfo.activeProcessorCount / ranks) : nil)
            let backends = (0..<ranks).map { r in CPUBackend(threads: threads, parallel: group.map { ($0, r) }) }
            let backend = backends[0]
            return RuntimeDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backends: backends, group: group, options: opts, quiet: quiet) { _, bytes in
                        max(1, (4 << 30) / bytes)   // KV: at most 4 GiB of host memory per rank
                    }
                },
                measureBandwidth: { try CPUMemoryBandwidth.measure(backend: backend) },
                measureGEMMRate: { _ in nil },
                kvBytesPerElement: backend.kvElementBytes,
                memoryInfo: { nil },
                timeSampling: { try SamplerBenchmark.secondsPerCall(backend, rows: $0, vocabularySize: $1, row: $2, logprobs: $3, repeats: 21) })
        case .cuda(let ordinal):
            let ordinals = options.gpus ?? Array(ordinal..<(ordinal + max(1, options.tensorParallel)))
            if ordinals.count > 1 || options.gpus != nil {
                guard options.gpus == nil || options.tensorParallel <= 1 || options.tensorParallel == ordinals.count else {
                    throw BackendError.unsupported("--tensor-parallel \(options.tensorParallel) with \(ordinals.count) GPUs in --gpus \(ordinals)")
                }
                return try parallelCUDA(ordinals: ordinals, quiet: quiet)
            }
            let backend = try CUDABackend(ordinal: ordinal)
            return RuntimeDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet) {
                        try backend.kvPoolBlocks(bytesPerBlock: $0, memoryFraction: opts.gpuMemoryFraction)
                    }
                },
                measureBandwidth: { try backend.measureCopyBandwidth() / 1e9 },
                measureGEMMRate: { try backend.measureGEMMRate(fp8: $0) },
                kvBytesPerElement: backend.kvElementBytes,
                memoryInfo: { try backend.memoryInfo() },
                timeSampling: { try SamplerBenchmark.secondsPerCall(backend, rows: $0, vocabularySize: $1, row: $2, logprobs: $3, repeats: 21) })
        }
    }

    /// One backend per GPU of `ordinals`, joined by NCCL: the model split over them.
    private static func parallelCUDA(ordinals: [Int], quiet: Bool) throws -> RuntimeDevice {
        let group = try NCCLGroup(ordinals: ordinals)
        let backends = try ordinals.enumerated().map { r, ordinal in try CUDABackend(ordinal: ordinal, parallel: (group, r)) }
        let backend = backends[0]
        return RuntimeDevice(
            build: { source, opts in
                try ModelRuntime.build(source, backends: backends, group: group, options: opts, quiet: quiet) { rank, bytes in
                    try backends[rank].kvPoolBlocks(bytesPerBlock: bytes, memoryFraction: opts.gpuMemoryFraction)
                }
            },
            measureBandwidth: { try backend.measureCopyBandwidth() / 1e9 },
            measureGEMMRate: { try backend.measureGEMMRate(fp8: $0) },
            kvBytesPerElement: backend.kvElementBytes,
            memoryInfo: { try backend.memoryInfo() },   // rank 0's GPU
            timeSampling: { try SamplerBenchmark.secondsPerCall(backend, rows: $0, vocabularySize: $1, row: $2, logprobs: $3, repeats: 21) })
    }
}
