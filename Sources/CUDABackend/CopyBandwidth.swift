import CUDADriver

extension CUDABackend {
    /// Device time of `body`'s work on `stream` by events around it: 12 runs, the median of the
    /// last 10 (the first two warm up).
    private func medianSeconds(stream: CUhandle?, _ body: () throws -> Void) throws -> Double {
        let api = device.api
        let start = try device.createEvent(timing: true), stop = try device.createEvent(timing: true)
        defer { _ = api.cuEventDestroy(start); _ = api.cuEventDestroy(stop) }
        var times: [Double] = []
        for _ in 0..<12 {
            try api.check(api.cuEventRecord(start, stream), "cuEventRecord")
            try body()
            try api.check(api.cuEventRecord(stop, stream), "cuEventRecord")
            try api.check(api.cuEventSynchronize(stop), "cuEventSynchronize")
            var ms: Float = 0
            try api.check(api.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime")
            times.append(Double(ms) / 1e3)
        }
        return times.dropFirst(2).sorted()[5]
    }

    /// Bytes read + written per second by a 1 GiB device-to-device copy (median of 10 after 2
    /// warm-up copies), in B/s: the denominator of every decode roofline ratio, measured in the
    /// same run as the thing it judges.
    public func measureCopyBandwidth() throws -> Double {
        let bytes = 1 << 30
        let a = try makeActivation([bytes / 4]), b = try makeActivation([bytes / 4])
        let median = try medianSeconds(stream: nil) {
            try device.api.check(device.api.cuMemcpyDtoDAsync(b.pointer, a.pointer, bytes, nil), "cuMemcpyDtoDAsync_v2")
        }
        return 2 * Double(bytes) / median
    }
}

extension CUDABackend {
    /// bf16 × bf16 → f32 matrix-product rate through cuBLASLt on an n×n×n product (median of 10
    /// after 2 warm-ups), in FLOP/s: the denominator of the prefill ratio, measured in the same
    /// run as the prefill it judges. Nil without cuBLASLt.
    public func measureGEMMRate(n: Int = 8192) throws -> Double? {
        guard let blas else { return nil }
        let a = try allocate(dtype: .bf16, shape: [n, n]), b = try allocate(dtype: .bf16, shape: [n, n])
        let c = try allocate(dtype: .f32, shape: [n, n])
        // Random-looking bf16 bits (power on zeros is lower, so never time zeros): fill a and b
        // from a f32 buffer of values in (-1, 1).
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let values = (0..<(n * n)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
        }
        try write(values, to: c)
        for t in [a, b] {
            try launch(.convertToBF16, grid: gridFor(n * n), [.pointer(c.pointer), .pointer(t.pointer), .int64(Int64(n * n))])
        }
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        let median = try medianSeconds(stream: stream) {
            try blas.multiply(x: a.pointer, weight: b.pointer, out: c.pointer, rows: n, inDim: n, outDim: n,
                              workspace: workspace, stream: stream)
        }
        return 2 * Double(n) * Double(n) * Double(n) / median
    }
}
