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
    /// bf16 × bf16 → f32 (or, `fp8`, e4m3 × e4m3 → f32 on FP8 tensor cores) matrix-product rate
    /// through cuBLASLt on an n×n×n product (median of 10 after 2 warm-ups), in FLOP/s: the
    /// denominator of the prefill ratio, measured in the same run as the prefill it judges. Nil
    /// without cuBLASLt (or without FP8 tensor cores).
    public func measureGEMMRate(n: Int = 8192, fp8: Bool = false) throws -> Double? {
        guard let blas, !fp8 || fp8TensorCores else { return nil }
        let a = try allocate(dtype: fp8 ? .e4m3 : .bf16, shape: [n, n]), b = try allocate(dtype: fp8 ? .e4m3 : .bf16, shape: [n, n])
        let c = try allocate(dtype: .f32, shape: [n, n])
        // Random-looking operand bits (power on zeros is lower, so never time zeros): fill a and b
        // from a f32 buffer of values in (-1, 1), narrowed to bf16 or quantized to e4m3 by rows.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let values = (0..<(n * n)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
        }
        try write(values, to: c)
        let scales = try scratch(.activationScales, bytes: n * 4)
        for t in [a, b] {
            if fp8 {
                try launch(.quantizeE4M3(.f32), grid: (n, 1, 1), [.pointer(c.pointer), .pointer(t.pointer), .pointer(scales), .int32(Int32(n))])
            } else {
                try launch(.convertToBF16, grid: gridFor(n * n), [.pointer(c.pointer), .pointer(t.pointer), .int64(Int64(n * n))])
            }
        }
        let workspace = try scratch(.blasWorkspace, bytes: BLASLtMatmul.workspaceBytes)
        let problem = BLASLtMatmul.Problem(rows: n, inDim: n, outDim: n, fp8: fp8)
        let median = try medianSeconds(stream: stream) {
            try blas.multiply(problem, x: a.pointer, weight: b.pointer, out: c.pointer, workspace: workspace, stream: stream)
        }
        return 2 * Double(n) * Double(n) * Double(n) / median
    }
}
