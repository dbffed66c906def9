import Foundation
import CUDADriver

/// out = x · Wᵀ through cuBLASLt, bf16 operands, f32 accumulation, f32 or bf16 output; optionally
/// a strided batch of such products (the MoE experts).
///
/// Row-major to cuBLAS's column-major: W (N, K) row-major is a K×N column-major matrix, used
/// transposed (op A = T); x (T, K) row-major (row stride `xRowStride`) is K×T column-major (op
/// B = N); the product is the N×T column-major matrix, which is out (T, N) row-major. One plan
/// (descriptors + heuristic algorithm) per `Problem`, made on first use and kept.
final class BLASLtMatmul: @unchecked Sendable {
    // @unchecked: `plans` is only touched under `lock`; the handle is used with one stream.
    static let workspaceBytes = 32 << 20

    let api: CuBLASLt
    let handle: CuBLASLt.Handle
    private let lock = NSLock()
    private var plans: [Problem: Plan] = [:]

    /// One product's shape and layout. Strides are in elements; the batch strides step from one
    /// product of the batch to the next (0 for an operand shared by all).
    struct Problem: Hashable {
        var rows: Int, inDim: Int, outDim: Int
        var bf16Output = false
        var batch = 1
        var xRowStride: Int? = nil
        var xBatchStride = 0, weightBatchStride = 0, outBatchStride = 0
    }

    final class Plan {
        let desc: CuBLASLt.Handle
        let a: CuBLASLt.Handle, b: CuBLASLt.Handle, c: CuBLASLt.Handle
        let algo: UnsafeMutableRawPointer   // cublasLtMatmulHeuristicResult_t (its algo is first)
        let workspaceNeeded: Int
        let api: CuBLASLt
        init(desc: CuBLASLt.Handle, a: CuBLASLt.Handle, b: CuBLASLt.Handle, c: CuBLASLt.Handle,
             algo: UnsafeMutableRawPointer, workspaceNeeded: Int, api: CuBLASLt) {
            self.desc = desc; self.a = a; self.b = b; self.c = c
            self.algo = algo; self.workspaceNeeded = workspaceNeeded; self.api = api
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

    private func plan(_ key: Problem) throws -> Plan {
        try lock.withLock {
            if let p = plans[key] { return p }
            var desc: CuBLASLt.Handle?
            try api.check(api.cublasLtMatmulDescCreate(&desc, CuBLASLt.computeF32, CuBLASLt.dataTypeF32), "cublasLtMatmulDescCreate")
            var transA = CuBLASLt.opT, transB = CuBLASLt.opN
            try api.check(api.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransA, &transA, 4), "cublasLtMatmulDescSetAttribute(TRANSA)")
            try api.check(api.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransB, &transB, 4), "cublasLtMatmulDescSetAttribute(TRANSB)")
            let a = try layout(CuBLASLt.dataTypeBF16, rows: key.inDim, cols: key.outDim, ld: key.inDim,
                               batch: key.batch, stride: key.weightBatchStride, "W")
            let b = try layout(CuBLASLt.dataTypeBF16, rows: key.inDim, cols: key.rows, ld: key.xRowStride ?? key.inDim,
                               batch: key.batch, stride: key.xBatchStride, "x")
            let c = try layout(key.bf16Output ? CuBLASLt.dataTypeBF16 : CuBLASLt.dataTypeF32, rows: key.outDim, cols: key.rows,
                               ld: key.outDim, batch: key.batch, stride: key.outBatchStride, "out")
            var pref: CuBLASLt.Handle?
            try api.check(api.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")
            defer { _ = api.cublasLtMatmulPreferenceDestroy(pref) }
            var ws = UInt64(Self.workspaceBytes)
            try api.check(api.cublasLtMatmulPreferenceSetAttribute(pref, CuBLASLt.prefMaxWorkspaceBytes, &ws, 8), "cublasLtMatmulPreferenceSetAttribute")
            let result = UnsafeMutableRawPointer.allocate(byteCount: CuBLASLt.heuristicResultSize, alignment: 16)
            result.initializeMemory(as: UInt8.self, repeating: 0, count: CuBLASLt.heuristicResultSize)
            var found: Int32 = 0
            let status = api.cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, c, pref, 1, result, &found)
            guard status == 0, found > 0, let desc, let a, let b, let c else {
                result.deallocate()
                throw CUDADriverError.cublas(function: "cublasLtMatmulAlgoGetHeuristic(\(key)) found \(found)",
                                             code: status, name: api.statusName(status))
            }
            let p = Plan(desc: desc, a: a, b: b, c: c, algo: result,
                         workspaceNeeded: result.load(fromByteOffset: 64, as: Int.self), api: api)
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
        let p = try plan(problem)
        var alpha: Float = 1, beta: Float = accumulate ? 1 : 0
        try api.check(api.cublasLtMatmul(handle, p.desc, &alpha, weight, p.a, x, p.b, &beta, out, p.c, out, p.c,
                                         p.algo, workspace, Self.workspaceBytes, stream),
                      "cublasLtMatmul(\(problem))")
    }
}
