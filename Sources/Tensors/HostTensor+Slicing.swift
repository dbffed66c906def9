/// Slices of 2-D weights, for tensor-parallel sharding (each rank uploads its share).
extension HostTensor {
    /// Rows `range` of a 2-D tensor (N, K) → (range.count, K): a view of the same bytes (no copy);
    /// e4m3 row scales are sliced with their rows.
    public func rows(_ range: Range<Int>) throws -> HostTensor {
        guard shape.count == 2, range.lowerBound >= 0, range.upperBound <= shape[0] else {
            throw BackendError.shapeMismatch("rows \(range) of a tensor of shape \(shape)")
        }
        let rowBytes = shape[1] * dtype.byteSize
        let bytes = UnsafeRawBufferPointer(rebasing: data[(range.lowerBound * rowBytes)..<(range.upperBound * rowBytes)])
        let scales = rowScales.map { UnsafeBufferPointer(rebasing: $0[range]) }
        return HostTensor(dtype: dtype, shape: [range.count, shape[1]], data: bytes, rowScales: scales, owner: owner)
    }

    /// Columns `range` of a 2-D tensor (N, K) → (N, range.count), copied into owned memory (a
    /// column slice is not contiguous). e4m3 keeps each row's scale: the effective weights are the
    /// same numbers as in the whole tensor.
    public func columns(_ range: Range<Int>) throws -> HostTensor {
        guard shape.count == 2, range.lowerBound >= 0, range.upperBound <= shape[1] else {
            throw BackendError.shapeMismatch("columns \(range) of a tensor of shape \(shape)")
        }
        let n = shape[0], e = dtype.byteSize
        let rowBytes = shape[1] * e, sliceBytes = range.count * e
        let storage = OwnedBytes(count: n * sliceBytes)
        if let source = data.baseAddress, sliceBytes > 0 {
            for r in 0..<n {
                (storage.pointer + r * sliceBytes).copyMemory(from: source + r * rowBytes + range.lowerBound * e, byteCount: sliceBytes)
            }
        }
        let bytes = UnsafeRawBufferPointer(start: storage.pointer, count: storage.count)
        // The scales stay in the source's storage: keep it alive beside the copy.
        let keep: AnyObject = rowScales == nil ? storage : KeepAlive([storage] + (owner.map { [$0] } ?? []))
        return HostTensor(dtype: dtype, shape: [n, range.count], data: bytes, rowScales: rowScales, owner: keep)
    }
}
