#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

/// A tensor of the CPU backend: either a buffer it owns (activations f32, indices i32, KV pools
/// f32) or a borrowed view of host weights used in place in their stored dtype.
///
/// A stacked upload (E experts of shape (F, D)) keeps one pointer per part instead of copying
/// them into one buffer, so a memory-mapped Mixtral costs no extra RAM; `part(e)` gives
/// expert `e`'s matrix.
public final class CPUTensor: @unchecked Sendable {
    // @unchecked: the pointers are fixed at creation. Weights are never written. Owned buffers
    // are written only by backend ops, which the backend runs one at a time (its pool serialises
    // jobs), so no two ops touch a buffer concurrently.

    public let dtype: DType
    /// Logical shape; a stacked upload is (parts, part shape...).
    public let shape: [Int]
    /// Total element count of the logical shape.
    public let count: Int
    /// Part base addresses: one entry for a plain tensor, E entries for a stack.
    let parts: [UnsafeMutableRawPointer]
    /// Elements per part (of the first part for a row-joined weight).
    let partCount: Int
    /// Row counts of the parts of a row-joined weight (`upload(concatenatingRows:)`), whose
    /// logical shape is (Σ rows, K); nil for every other tensor.
    let partRows: [Int]?
    /// e4m3 weights: each part's row scales (one f32 per output row of the part); nil otherwise.
    let partScales: [UnsafePointer<Float>]?
    /// Whether this tensor owns (and frees) its single buffer; weights are borrowed and read-only.
    let isOwned: Bool
    /// Keeps memory-mapped checkpoint storage alive for as long as the weight is in use.
    private let owners: [AnyObject]

    /// Base address of the first (for plain tensors: only) part.
    var base: UnsafeMutableRawPointer { parts[0] }

    /// An owned, 64-byte aligned buffer (uninitialised). Throws instead of trapping when the
    /// allocation fails, since pool sizes come from configuration.
    init(owning dtype: DType, shape: [Int]) throws {
        let count = shape.reduce(1, *)
        guard count >= 0, shape.allSatisfy({ $0 >= 0 }) else {
            throw BackendError.shapeMismatch("negative dimension in \(shape)")
        }
        let bytes = max(count * dtype.byteSize, 64)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw BackendError.outOfMemory(requestedBytes: bytes, detail: "cpu tensor \(shape) \(dtype)")
        }
        self.dtype = dtype
        self.shape = shape
        self.count = count
        self.parts = [raw]
        self.partCount = count
        self.partRows = nil
        self.partScales = nil
        self.isOwned = true
        self.owners = []
    }

    /// A borrowed view of host weights: no copy.
    init(borrowing parts: [HostTensor]) throws {
        guard let first = parts.first else {
            throw BackendError.shapeMismatch("upload(stacking:) needs at least one part")
        }
        for (index, part) in parts.enumerated() where part.shape != first.shape || part.dtype != first.dtype {
            throw BackendError.shapeMismatch(
                "stacked part \(index) is \(part.dtype) \(part.shape), part 0 is \(first.dtype) \(first.shape)")
        }
        guard first.dtype != .i32 else { throw BackendError.unsupported("i32 weights") }
        self.dtype = first.dtype
        self.partCount = first.elementCount
        self.partRows = nil
        self.parts = parts.map { part in
            // The mapped bytes are never written: `isOwned == false` makes every write path throw.
            // An empty part has no base address; it is never read, any valid pointer will do.
            UnsafeMutableRawPointer(mutating: part.data.baseAddress ?? CPUTensor.emptyPart)
        }
        self.partScales = CPUTensor.scales(of: parts)
        self.shape = parts.count == 1 ? first.shape : [parts.count] + first.shape
        self.count = first.elementCount * parts.count
        self.isOwned = false
        self.owners = parts.compactMap { $0.owner }
    }

    /// A borrowed view of 2-D weights joined by rows: parts (Nᵢ, K) act as one (ΣNᵢ, K) matrix
    /// without being copied.
    init(borrowingRows parts: [HostTensor]) throws {
        guard let first = parts.first, first.shape.count == 2 else {
            throw BackendError.shapeMismatch("upload(concatenatingRows:) needs 2-D parts, got \(parts.first?.shape ?? [])")
        }
        let k = first.shape[1]
        for (index, part) in parts.enumerated() where part.shape.count != 2 || part.shape[1] != k || part.dtype != first.dtype {
            throw BackendError.shapeMismatch(
                "joined part \(index) is \(part.dtype) \(part.shape), part 0 is \(first.dtype) (_, \(k))")
        }
        guard first.dtype != .i32 else { throw BackendError.unsupported("i32 weights") }
        let rows = parts.map { $0.shape[0] }
        self.dtype = first.dtype
        self.partCount = first.elementCount
        self.partRows = rows
        self.parts = parts.map { UnsafeMutableRawPointer(mutating: $0.data.baseAddress ?? CPUTensor.emptyPart) }
        self.partScales = CPUTensor.scales(of: parts)
        self.shape = [rows.reduce(0, +), k]
        self.count = rows.reduce(0, +) * k
        self.isOwned = false
        self.owners = parts.compactMap { $0.owner }
    }

    deinit {
        if isOwned { free(parts[0]) }
    }

    /// The row scales of e4m3 parts (all parts share one dtype, checked by the caller).
    private static func scales(of parts: [HostTensor]) -> [UnsafePointer<Float>]? {
        guard parts.first?.dtype.hasRowScales == true else { return nil }
        return parts.map { part in
            part.rowScales?.baseAddress ?? UnsafePointer(CPUTensor.emptyPart.assumingMemoryBound(to: Float.self))
        }
    }

    /// Part `i` as a weight the product kernels read: base address, stored dtype, row scales.
    func weightPart(_ i: Int) -> WeightPart {
        WeightPart(dtype: dtype, base: UnsafeRawPointer(parts[i]), scales: partScales?[i])
    }

    /// Stands in for the base address of zero-element weights. `nonisolated(unsafe)`: written once
    /// at initialisation, never read through.
    nonisolated(unsafe) private static let emptyPart = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64))

    var floats: UnsafeMutablePointer<Float> { base.assumingMemoryBound(to: Float.self) }
    var ints: UnsafeMutablePointer<Int32> { base.assumingMemoryBound(to: Int32.self) }
}
