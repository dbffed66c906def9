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
                kvBytesPerElement: 4)
        case .cuda(let ordinal):
            let backend = try CUDABackend(ordinal: ordinal)
            return BenchDevice(
                build: { source, opts in
                    try ModelRuntime.build(source, backend: backend, options: opts, quiet: quiet, kvElementBytes: 2) {
                        try backend.kvPoolBlocks(bytesPerBlock: $0, memoryFraction: opts.gpuMemoryFraction)
                    }
                },
                measureBandwidth: { try copyBandwidth(backend) },
                kvBytesPerElement: 2)
        }
    }

    /// Bytes read + written per second by a 1 GiB device-to-device copy (median of 10, after 2
    /// warm-up copies), in GB/s: the roofline's denominator, measured in the same run.
    static func copyBandwidth(_ backend: CUDABackend) throws -> Double {
        let bytes = 1 << 30
        let a = try backend.makeActivation([bytes / 4]), b = try backend.makeActivation([bytes / 4])
        let api = backend.device.api
        let start = try backend.device.createEvent(timing: true), stop = try backend.device.createEvent(timing: true)
        var times: [Double] = []
        for _ in 0..<12 {
            try api.check(api.cuEventRecord(start, nil), "cuEventRecord")
            try api.check(api.cuMemcpyDtoDAsync(b.pointer, a.pointer, bytes, nil), "cuMemcpyDtoDAsync_v2")
            try api.check(api.cuEventRecord(stop, nil), "cuEventRecord")
            try api.check(api.cuEventSynchronize(stop), "cuEventSynchronize")
            var ms: Float = 0
            try api.check(api.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime")
            times.append(Double(ms) / 1e3)
        }
        let median = times.dropFirst(2).sorted()[5]
        return 2 * Double(bytes) / median / 1e9
    }
}
