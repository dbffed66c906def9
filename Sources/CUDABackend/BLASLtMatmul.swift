import Foundation
import CUDADriver

/// out = x · Wᵀ through cuBLASLt, bf16 operands (or e4m3 ones, `Problem.fp8`: Hopper's FP8 tensor
/// cores, with unit scales; the caller applies the row scales), f32 accumulation, f32 or bf16
/// output; optionally a strided batch of such products (the MoE experts).
///
/// Row-major to cuBLAS's column-major: W (N, K) row-major is a K×N column-major matrix, used
/// transposed (op A = T); x (T, K) row-major (row stride `xRowStride`) is K×T column-major (op
/// B = N); the product is the N×T column-major matrix, which is out (T, N) row-major. One plan
/// (descriptors + algorithm) per `Problem`, made on first use and kept. The algorithm comes from
/// cuBLASLt's heuristic once per row bucket (the next power of two of T, with the rest of the
/// problem equal) and is reused for the bucket's other row counts: the MoE grouped path meets a
/// new per-expert row count almost every call, and a heuristic query per new count cost more
/// than the products (H200: a 2048-token Mixtral prefill at 8% of the GEMM rate, gpu-notes). If
/// a borrowed algorithm is refused for a problem, that problem gets its own heuristic.
final class BLASLtMatmul: @unchecked Sendable {
    // @unchecked: `plans` is only touched under `lock`; the handle is used with one stream.
    static let workspaceBytes = 32 << 20

    let api: CuBLASLt
    let handle: CuBLASLt.Handle
    private let lock = NSLock()
    private var plans: [Problem: Plan] = [:]
    /// Heuristic results (cublasLtMatmulHeuristicResult_t bytes) by row bucket.
    private var bucketAlgos: [Problem: [UInt8]] = [:]

    /// One product's shape and layout. Strides are in elements; the batch strides step from one
    /// product of the batch to the next (0 for an operand shared by all).
    struct Problem: Hashable {
        var rows: Int, inDim: Int, outDim: Int
        var bf16Output = false
        /// Both operands e4m3 (FP8 requires the TN layout used here, 16-byte aligned rows).
        var fp8 = false
        var batch = 1
        var xRowStride: Int? = nil
        var xBatchStride = 0, weightBatchStride = 0, outBatchStride = 0

        /// The problem whose heuristic algorithm this one borrows: rows rounded up to a power of two.
        var bucket: Problem {
            var b = self
            b.rows = max(16, 1 << (Int.bitWidth - (max(rows, 1) - 1).leadingZeroBitCount))
            return b
        }
    }

    final class Plan {
        let desc: CuBLASLt.Handle
        let a: CuBLASLt.Handle, b: CuBLASLt.Handle, c: CuBLASLt.Handle
        let algo: UnsafeMutableRawPointer   // cublasLtMatmulHeuristicResult_t (its algo is first)
        let borrowed: Bool
        let api: CuBLASLt
        init(desc: CuBLASLt.Handle, a: CuBLASLt.Handle, b: CuBLASLt.Handle, c: CuBLASLt.Handle,
             algo: UnsafeMutableRawPointer, borrowed: Bool, api: CuBLASLt) {
            self.desc = desc; self.a = a; self.b = b; self.c = c
            self.algo = algo; self.borrowed = borrowed; self.api = api
        }
        deinit {
            _ = api.cublasLtMatmulDescDestroy(desc)
            _ = api.cublasLtMatrixLayoutDestroy(a); _ = api.cublasLtMatrixLayoutDestroy(b); _ = api.cublasLtMatrixLayoutDestroy(c)
            algo.deallocate()
        }
    }

    init(api: CuBLASLt, device: CUDADevice) throws {
        self.api = api
        try device.makeCurrent()
        var h: CuBLASLt.Handle?
        try api.check(api.cublasLtCreate(&h), "cublasLtCreate")
        guard let h else { throw CUDADriverError.cublas(function: "cublasLtCreate", code: -1, name: "null handle") }
        handle = h
    }

    deinit {
        plans.removeAll()
        _ = api.cublasLtDestroy(handle)
    }

    private func layout(_ type: Int32, rows: Int, cols: Int, ld: Int, batch: Int, stride: Int, _ name: String) throws -> CuBLASLt.Handle? {
        var l: CuBLASLt.Handle?
        try api.check(api.cublasLtMatrixLayoutCreate(&l, type, UInt64(rows), UInt64(cols), Int64(ld)), "cublasLtMatrixLayoutCreate(\(name))")
        if batch > 1 {
            var count = Int32(batch), offset = Int64(stride)
            try api.check(api.cublasLtMatrixLayoutSetAttribute(l, CuBLASLt.layoutBatchCount, &count, 4), "cublasLtMatrixLayoutSetAttribute(\(name) batch)")
            try api.check(api.cublasLtMatrixLayoutSetAttribute(l, CuBLASLt.layoutStridedBatchOffset, &offset, 8), "cublasLtMatrixLayoutSetAttribute(\(name) stride)")
        }
        return l
    }

    private func plan(_ key: Problem, ownHeuristic: Bool = false) throws -> Plan {
        try lock.withLock {
            if !ownHeuristic, let p = plans[key] { return p }
            var desc: CuBLASLt.Handle?
            try api.check(api.cublasLtMatmulDescCreate(&desc, CuBLASLt.computeF32, CuBLASLt.dataTypeF32), "cublasLtMatmulDescCreate")
            var transA = CuBLASLt.opT, transB = CuBLASLt.opN
            try api.check(api.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransA, &transA, 4), "cublasLtMatmulDescSetAttribute(TRANSA)")
            try api.check(api.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransB, &transB, 4), "cublasLtMatmulDescSetAttribute(TRANSB)")
            let operand = key.fp8 ? CuBLASLt.dataTypeE4M3 : CuBLASLt.dataTypeBF16
            let a = try layout(operand, rows: key.inDim, cols: key.outDim, ld: key.inDim,
                               batch: key.batch, stride: key.weightBatchStride, "W")
            let b = try layout(operand, rows: key.inDim, cols: key.rows, ld: key.xRowStride ?? key.inDim,
                               batch: key.batch, stride: key.xBatchStride, "x")
            let c = try layout(key.bf16Output ? CuBLASLt.dataTypeBF16 : CuBLASLt.dataTypeF32, rows: key.outDim, cols: key.rows,
                               ld: key.outDim, batch: key.batch, stride: key.outBatchStride, "out")
            guard let desc, let a, let b, let c else {
                throw CUDADriverError.cublas(function: "cuBLASLt descriptors for \(key)", code: -1, name: "null handle")
            }
            let result = UnsafeMutableRawPointer.allocate(byteCount: CuBLASLt.heuristicResultSize, alignment: 16)
            let borrowed: Bool
            if !ownHeuristic, let known = bucketAlgos[key.bucket] {
                known.withUnsafeBytes { result.copyMemory(from: $0.baseAddress!, byteCount: CuBLASLt.heuristicResultSize) }
                borrowed = true
            } else {
                result.initializeMemory(as: UInt8.self, repeating: 0, count: CuBLASLt.heuristicResultSize)
                var pref: CuBLASLt.Handle?
                try api.check(api.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")
                defer { _ = api.cublasLtMatmulPreferenceDestroy(pref) }
                var ws = UInt64(Self.workspaceBytes)
                try api.check(api.cublasLtMatmulPreferenceSetAttribute(pref, CuBLASLt.prefMaxWorkspaceBytes, &ws, 8), "cublasLtMatmulPreferenceSetAttribute")
                var found: Int32 = 0
                let status = api.cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 1, result, &found)
                guard status == 0, found > 0 else {
                    result.deallocate()
                    _ = api.cublasLtMatmulDescDestroy(desc)
                    _ = api.cublasLtMatrixLayoutDestroy(a); _ = api.cublasLtMatrixLayoutDestroy(b); _ = api.cublasLtMatrixLayoutDestroy(c)
                    throw CUDADriverError.cublas(function: "cublasLtMatmulAlgoGetHeuristic(\(key)) found \(found)",
                                                 code: status, name: api.statusName(status))
                }
                if bucketAlgos[key.bucket] == nil {
                    bucketAlgos[key.bucket] = Array(UnsafeRawBufferPointer(start: result, count: CuBLASLt.heuristicResultSize))
                }
                borrowed = false
            }
            let p = Plan(desc: desc, a: a, b: b, c: c, algo: result, borrowed: borrowed, api: api)
            plans[key] = p
            return p
        }
    }

    /// Queues out (T, N) f32 = x (T, K) bf16 · W (N, K) bf16ᵀ on `stream` (`accumulate`: out +=).
    func multiply(x: CUdeviceptr, weight: CUdeviceptr, out: CUdeviceptr, rows: Int, inDim: Int, outDim: Int,
                  accumulate: Bool = false, workspace: CUdeviceptr, stream: CUhandle) throws {
        try multiply(Problem(rows: rows, inDim: inDim, outDim: outDim), x: x, weight: weight, out: out,
                     accumulate: accumulate, workspace: workspace, stream: stream)
    }

    /// Queues the product (or batch of products) `problem` describes on `stream`.
    func multiply(_ problem: Problem, x: CUdeviceptr, weight: CUdeviceptr, out: CUdeviceptr,
                  accumulate: Bool = false, workspace: CUdeviceptr, stream: CUhandle) throws {
        var p = try plan(problem)
        var alpha: Float = 1, beta: Float = accumulate ? 1 : 0
        var status = api.cublasLtMatmul(handle, p.desc, &alpha, weight, p.a, x, p.b, &beta, out, p.c, out, p.c,
                                        p.algo, workspace, Self.workspaceBytes, stream)
        if status != 0, p.borrowed {
            // The bucket's algorithm does not fit this row count: ask for one of its own.
            p = try plan(problem, ownHeuristic: true)
            status = api.cublasLtMatmul(handle, p.desc, &alpha, weight, p.a, x, p.b, &beta, out, p.c, out, p.c,
                                        p.algo, workspace, Self.workspaceBytes, stream)
        }
        try api.check(status, "cublasLtMatmul(\(problem))")
    }
}
