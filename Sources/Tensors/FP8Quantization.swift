import Dispatch

/// The FP8 weight scheme, fixed so that every backend computes the same numbers:
/// for a 2-D weight W (N, K), per output row r
///     scale[r] = absmax(W[r, :]) / 448            (f32)
///     q[r, k]  = e4m3(W[r, k] / scale[r])          (round to nearest even, saturating at ±448)
/// and the effective weight is e4m3 → f32 (the table) × scale[r]. A row of zeros gets scale 0 and
/// codes 0 (effective weight 0, no division by zero). Which weights are quantized is the
/// checkpoint's business (`WeightKey.takesFP8`); this file only does the arithmetic.
/// `tools/fixtures/fp8_reference.py` is the independent numpy version the tests compare against.
public enum FP8Quantization {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case notTwoDimensional([Int])
        case unsupportedDType(DType)
        case nonFinite(row: Int)

        public var description: String {
            switch self {
            case .notTwoDimensional(let s): return "fp8 quantization needs a 2-D weight, got shape \(s)"
            case .unsupportedDType(let d): return "fp8 quantization reads bf16, f16 or f32 weights, got \(d.rawValue)"
            case .nonFinite(let r): return "fp8 quantization: row \(r) holds a NaN or infinity"
            }
        }
    }

    /// The e4m3 tensor with row scales for `weight` (bf16/f16/f32, 2-D), in owned memory: the
    /// one extra copy quantizing costs is this tensor's (half a bf16 weight plus 4 bytes a row).
    /// Rows are quantized in parallel.
    public static func quantize(_ weight: HostTensor) throws(Failure) -> HostTensor {
        guard weight.shape.count == 2 else { throw .notTwoDimensional(weight.shape) }
        guard weight.dtype == .bf16 || weight.dtype == .f16 || weight.dtype == .f32 else {
            throw .unsupportedDType(weight.dtype)
        }
        let rows = weight.shape[0], cols = weight.shape[1]
        let scaleOffset = (rows * cols + 63) & ~63            // scales 64-byte aligned after the codes
        let storage = OwnedBytes(count: scaleOffset + rows * 4)
        let codes = storage.pointer.assumingMemoryBound(to: UInt8.self)
        let scales = (storage.pointer + scaleOffset).assumingMemoryBound(to: Float.self)
        // About 1 MiB of codes per task; a failed row is reported, lowest first.
        let rowsPerTask = max(1, (1 << 20) / max(1, cols))
        let tasks = (rows + rowsPerTask - 1) / rowsPerTask
        let failedRows = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(1, tasks))
        defer { failedRows.deallocate() }
        failedRows.initialize(repeating: -1)
        let job = RowJob(source: weight.data.baseAddress, dtype: weight.dtype, rows: rows, cols: cols,
                         rowsPerTask: rowsPerTask, codes: codes, scales: scales, failedRows: failedRows)
        if tasks == 1 { job.run(0) } else { DispatchQueue.concurrentPerform(iterations: tasks, execute: job.run) }
        if let failed = failedRows.first(where: { $0 >= 0 }) { throw .nonFinite(row: failed) }
        return HostTensor(dtype: .e4m3, shape: weight.shape,
                          data: UnsafeRawBufferPointer(start: storage.pointer, count: rows * cols),
                          rowScales: UnsafeBufferPointer(start: scales, count: rows), owner: storage)
    }

    /// One task's rows of a quantization. @unchecked Sendable: tasks write disjoint rows of
    /// `codes`/`scales` and their own `failedRows` slot; `source` is only read.
    struct RowJob: @unchecked Sendable {
        let source: UnsafeRawPointer?
        let dtype: DType
        let rows: Int, cols: Int, rowsPerTask: Int
        let codes: UnsafeMutablePointer<UInt8>
        let scales: UnsafeMutablePointer<Float>
        let failedRows: UnsafeMutableBufferPointer<Int>

        @Sendable func run(_ task: Int) {
            let row = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, cols))
            defer { row.deallocate() }
            for r in (task * rowsPerTask)..<min(rows, (task + 1) * rowsPerTask) {
                FP8Quantization.widen(source, dtype, row: r, cols: cols, into: row)
                if !FP8Quantization.quantizeRow(row, codes: codes + r * cols, scale: scales + r) {
                    failedRows[task] = r
                    return
                }
            }
        }
    }

    /// Quantizes one row of f32 values; false if it holds a NaN or infinity.
    @inline(__always)
    static func quantizeRow(_ row: UnsafeMutableBufferPointer<Float>, codes: UnsafeMutablePointer<UInt8>,
                            scale: UnsafeMutablePointer<Float>) -> Bool {
        var absmax: Float = 0
        for v in row {
            guard v.isFinite else { return false }
            absmax = max(absmax, abs(v))
        }
        let s = absmax / FP8E4M3.maxFinite
        scale.pointee = s
        if s == 0 {
            codes.update(repeating: 0, count: row.count)
            return true
        }
        for (k, v) in row.enumerated() { codes[k] = FP8E4M3.fromFloat(v / s) }
        return true
    }

    /// Row `r` of a (_, cols) bf16/f16/f32 matrix as f32.
    @inline(__always)
    static func widen(_ base: UnsafeRawPointer?, _ dtype: DType, row r: Int, cols: Int,
                      into out: UnsafeMutableBufferPointer<Float>) {
        guard let base else { return }
        switch dtype {
        case .bf16:
            let p = (base + r * cols * 2).assumingMemoryBound(to: UInt16.self)
            for k in 0..<cols { out[k] = BFloat16.toFloat(p[k]) }
        case .f16:
            let p = (base + r * cols * 2).assumingMemoryBound(to: UInt16.self)
            for k in 0..<cols { out[k] = Float(Float16(bitPattern: p[k])) }
        case .f32:
            let p = (base + r * cols * 4).assumingMemoryBound(to: Float.self)
            for k in 0..<cols { out[k] = p[k] }
        case .i32, .e4m3:
            break   // refused by `quantize`
        }
    }
}
