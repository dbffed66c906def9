import CUDADriver

extension CUDABackend {
    /// Bytes read + written per second by a 1 GiB device-to-device copy (median of 10 after 2
    /// warm-up copies), in B/s: the denominator of every decode roofline ratio, measured in the
    /// same run as the thing it judges.
    public func measureCopyBandwidth() throws -> Double {
        let bytes = 1 << 30
        let a = try makeActivation([bytes / 4]), b = try makeActivation([bytes / 4])
        let api = device.api
        let start = try device.createEvent(timing: true), stop = try device.createEvent(timing: true)
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
        return 2 * Double(bytes) / median
    }
}
