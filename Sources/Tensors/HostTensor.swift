/// A read-only tensor in host memory, usually a slice of a memory-mapped checkpoint file.
///
/// `owner` keeps the mapping (or an owned copy) alive for as long as any view of it exists, so a
/// backend may use `data` in place (the CPU backend does: no copy, no f32 widening).
public struct HostTensor: @unchecked Sendable {
    // @unchecked: `data` is immutable after construction and `owner` keeps it alive; nothing
    // writes through it.
    public let dtype: DType
    public let shape: [Int]
    public let data: UnsafeRawBufferPointer
    /// e4m3 only: one f32 scale per output row, (shape[0]); the effective weight is
    /// value × rowScales[row]. nil for every other dtype.
    public let rowScales: UnsafeBufferPointer<Float>?
    /// Keeps `data` and `rowScales` alive (a mapped file, owned bytes, or a `KeepAlive` of both).
    public let owner: AnyObject?

    public init(dtype: DType, shape: [Int], data: UnsafeRawBufferPointer, rowScales: UnsafeBufferPointer<Float>? = nil,
                owner: AnyObject?) {
        precondition(data.count == shape.reduce(1, *) * dtype.byteSize, "HostTensor byte count does not match shape")
        precondition(dtype.hasRowScales == (rowScales != nil), "HostTensor: row scales go with e4m3 and only with it")
        precondition(rowScales.map { shape.count == 2 && $0.count == shape[0] } ?? true,
                     "HostTensor: e4m3 needs a 2-D shape and one scale per row")
        self.dtype = dtype
        self.shape = shape
        self.data = data
        self.rowScales = rowScales
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes this tensor occupies as stored: its elements plus any row scales.
    public var storedBytes: Int { data.count + (rowScales?.count ?? 0) * 4 }

    /// Copies `values` into owned memory stored as `dtype` (f32 values rounded to bf16/f16 as needed).
    public static func owning(_ values: [Float], shape: [Int], dtype: DType) -> HostTensor {
        let storage = OwnedBytes(count: values.count * dtype.byteSize)
        switch dtype {
        case .f32:
            storage.pointer.withMemoryRebound(to: Float.self, capacity: values.count) { p in
                for i in values.indices { p[i] = values[i] }
            }
        case .bf16:
            storage.pointer.withMemoryRebound(to: UInt16.self, capacity: values.count) { p in
                for i in values.indices { p[i] = BFloat16.fromFloat(values[i]) }
            }
        case .f16:
            storage.pointer.withMemoryRebound(to: UInt16.self, capacity: values.count) { p in
                for i in values.indices { p[i] = Float16(values[i]).bitPattern }
            }
        case .i32:
            storage.pointer.withMemoryRebound(to: Int32.self, capacity: values.count) { p in
                for i in values.indices { p[i] = Int32(values[i]) }
            }
        case .e4m3:
            // Row scales come from quantizing: `owning(...).quantizedToE4M3()` or `FP8Rows`.
            preconditionFailure("HostTensor.owning cannot make e4m3 without row scales; quantize an f32/bf16 tensor instead")
        }
        return HostTensor(dtype: dtype, shape: shape,
                          data: UnsafeRawBufferPointer(start: storage.pointer, count: storage.count), owner: storage)
    }

    /// Element `i` widened to f32 (slow path: tests, conversions, small tensors).
    public func float(at i: Int) -> Float {
        switch dtype {
        case .f32: return data.load(fromByteOffset: i * 4, as: Float.self)
        case .bf16: return BFloat16.toFloat(data.load(fromByteOffset: i * 2, as: UInt16.self))
        case .f16: return Float(Float16(bitPattern: data.load(fromByteOffset: i * 2, as: UInt16.self)))
        case .i32: return Float(data.load(fromByteOffset: i * 4, as: Int32.self))
        case .e4m3:
            // Widened through the table, times the row's scale: the scheme's effective weight.
            let row = i / max(1, shape[1])
            return FP8E4M3.toFloat(data.load(fromByteOffset: i, as: UInt8.self)) * rowScales![row]
        }
    }

    /// All elements widened to f32 (tests and small tensors only: never for model weights).
    public func floats() -> [Float] { (0..<elementCount).map(float(at:)) }
}

/// Keeps several storages alive as one `HostTensor.owner` (e.g. a weight and its scales from
/// two files, or a copy of each).
public final class KeepAlive: @unchecked Sendable {
    // @unchecked: an immutable list of owners.
    public let owners: [AnyObject]
    public init(_ owners: [AnyObject]) { self.owners = owners }
}

/// Heap bytes owned by a class so `HostTensor.owner` can keep them alive.
public final class OwnedBytes: @unchecked Sendable {
    // @unchecked: written once by its creator before being shared, read-only afterwards.
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(count: Int) {
        self.count = count
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    deinit { pointer.deallocate() }
}
