import Foundation
import CUDADriver
import Tensors

/// Device memory: allocation, weight upload, host ↔ device copies.
extension CUDABackend {
    /// A tensor of `dtype` and `shape`, with room for `scaleCount` f32 row scales beside it (e4m3
    /// weights; a second allocation, freed with the tensor).
    func allocate(dtype: DType, shape: [Int], scaleCount: Int = 0) throws -> CUDATensor {
        let count = shape.reduce(1, *)
        guard count >= 0, shape.allSatisfy({ $0 >= 0 }) else { throw BackendError.shapeMismatch("negative dimension in \(shape)") }
        let bytes = count * dtype.byteSize
        var p: CUdeviceptr = 0
        do {
            p = try device.allocate(bytes)
            let scales: CUdeviceptr = try scaleCount > 0 ? device.allocate(scaleCount * 4) : 0
            return CUDATensor(pointer: p, byteCount: bytes, dtype: dtype, shape: shape, device: device,
                              rowScales: scales, scaleCount: scaleCount)
        } catch {
            if p != 0 { device.free(p) }
            guard let e = error as? CUDADriverError, e.isOutOfMemory else { throw error }
            let info = (try? device.memoryInfo()).map { " (\($0.free >> 20) MiB free of \($0.total >> 20) MiB)" } ?? ""
            throw BackendError.outOfMemory(requestedBytes: bytes + scaleCount * 4, detail: "\(dtype.rawValue) \(shape) on \(device.name)\(info)")
        }
    }

    /// Weight dtypes this backend's kernels read; anything else fails at load with a clear error.
    /// e4m3 (the FP8 scheme) is read by the matrix ops only (`matrixDTypes`): an e4m3 norm,
    /// embedding or router weight is refused by the op that gets it.
    func requireUploadable(_ dtype: DType) throws {
        guard matrixDTypes.contains(dtype) else {
            throw BackendError.unsupported("\(dtype.rawValue) weights on CUDA")
        }
    }

    public func upload(_ weight: HostTensor) throws -> CUDATensor {
        try requireUploadable(weight.dtype)
        let t = try allocate(dtype: weight.dtype, shape: weight.shape, scaleCount: scaleRows([weight]))
        try uploader.copy(weight.data, to: t.pointer)
        try copyRowScales([weight], to: t)
        return t
    }

    public func upload(stacking parts: [HostTensor]) throws -> CUDATensor {
        guard let first = parts.first else { throw BackendError.shapeMismatch("upload(stacking:) of no parts") }
        try requireUploadable(first.dtype)
        for (i, p) in parts.enumerated() where p.shape != first.shape || p.dtype != first.dtype {
            throw BackendError.shapeMismatch("stacked part \(i) is \(p.dtype.rawValue) \(p.shape), part 0 is \(first.dtype.rawValue) \(first.shape)")
        }
        let t = try allocate(dtype: first.dtype, shape: [parts.count] + first.shape, scaleCount: scaleRows(parts))
        let partBytes = first.data.count
        for (i, p) in parts.enumerated() {
            try uploader.copy(p.data, to: t.pointer + CUdeviceptr(i * partBytes))
        }
        try copyRowScales(parts, to: t)   // (E, N): expert after expert
        return t
    }

    public func upload(concatenatingRows parts: [HostTensor]) throws -> CUDATensor {
        guard let first = parts.first, first.shape.count == 2 else {
            throw BackendError.shapeMismatch("upload(concatenatingRows:) needs 2-D parts, got \(parts.first?.shape ?? [])")
        }
        try requireUploadable(first.dtype)
        for (i, p) in parts.enumerated() where p.shape.count != 2 || p.shape[1] != first.shape[1] || p.dtype != first.dtype {
            throw BackendError.shapeMismatch("joined part \(i) is \(p.dtype.rawValue) \(p.shape), part 0 is \(first.dtype.rawValue) (_, \(first.shape[1]))")
        }
        let t = try allocate(dtype: first.dtype, shape: [parts.reduce(0) { $0 + $1.shape[0] }, first.shape[1]],
                             scaleCount: scaleRows(parts))
        var offset = 0
        for p in parts {
            try uploader.copy(p.data, to: t.pointer + CUdeviceptr(offset))
            offset += p.data.count
        }
        try copyRowScales(parts, to: t)   // ΣN: the joined rows' scales in the same order
        return t
    }

    public func makeActivation(_ shape: [Int]) throws -> CUDATensor { try allocate(dtype: .f32, shape: shape) }

    public func makeIndices(_ count: Int) throws -> CUDATensor { try allocate(dtype: .i32, shape: [count]) }

    public func makeKVPool(blocks: Int, blockSize: Int, kvHeads: Int, headDim: Int) throws -> CUDATensor {
        try allocate(dtype: .bf16, shape: [blocks, blockSize, kvHeads, headDim])
    }

    public func write(_ values: [Int32], to tensor: CUDATensor) throws {
        guard tensor.dtype == .i32 || tensor.dtype == .f32, values.count * 4 <= tensor.byteCount else {
            throw BackendError.shapeMismatch("writing \(values.count) i32 values into \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        try copyToDevice(values, tensor)
    }

    public func write(_ values: [Float], to tensor: CUDATensor) throws {
        guard tensor.dtype == .f32, values.count * 4 <= tensor.byteCount else {
            throw BackendError.shapeMismatch("writing \(values.count) f32 values into \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        try copyToDevice(values, tensor)
    }

    private func copyToDevice<T>(_ values: [T], _ tensor: CUDATensor) throws {
        guard !values.isEmpty else { return }
        try device.makeCurrent()
        // From pageable memory the driver stages the bytes before returning, so `values` may go.
        try values.withUnsafeBytes { raw in
            try device.api.check(device.api.cuMemcpyHtoDAsync(tensor.pointer, raw.baseAddress, raw.count, stream), "cuMemcpyHtoDAsync_v2")
        }
    }

    public func readFloats(_ tensor: CUDATensor, count: Int) throws -> [Float] {
        guard count >= 0, count <= tensor.elementCount else {
            throw BackendError.shapeMismatch("reading \(count) elements of \(tensor.dtype.rawValue) \(tensor.shape)")
        }
        if count == 0 { return [] }
        try device.makeCurrent()
        switch tensor.dtype {
        case .f32:
            var out = [Float](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out
        case .i32:
            var out = [Int32](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map(Float.init)
        case .bf16:
            var out = [UInt16](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map(BFloat16.toFloat)
        case .f16:
            var out = [UInt16](repeating: 0, count: count)
            try copyFromDevice(tensor, into: &out)
            return out.map { Float(Float16(bitPattern: $0)) }
        case .e4m3:
            throw BackendError.unsupported("readFloats of e4m3 weights")
        }
    }

    private func copyFromDevice<T>(_ tensor: CUDATensor, into out: inout [T]) throws {
        try out.withUnsafeMutableBytes { raw in
            try device.api.check(device.api.cuMemcpyDtoHAsync(raw.baseAddress, tensor.pointer, raw.count, stream), "cuMemcpyDtoHAsync_v2")
            try device.api.check(device.api.cuStreamSynchronize(stream), "cuStreamSynchronize (after a kernel or copy)")
        }
    }

    public func synchronize() throws {
        try device.makeCurrent()
        try device.api.check(device.api.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }
}
