#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

/// A grow-only work buffer of `Element`s.
///
/// Ops need temporaries (gathered expert inputs, per-thread attention accumulators, rope
/// tables) whose size depends on the step's token count. They grow to the largest step seen and
/// are then reused, so a steady decode loop never allocates.
final class ScratchBuffer<Element> {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity: Int

    init() {
        capacity = 0
        pointer = .allocate(capacity: 16)
    }

    deinit { pointer.deallocate() }

    /// Makes room for at least `count` elements (contents are not preserved) and returns the base.
    func reserve(_ count: Int) throws -> UnsafeMutablePointer<Element> {
        if count > capacity {
            var raw: UnsafeMutableRawPointer?
            let bytes = count * MemoryLayout<Element>.stride
            guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
                throw BackendError.outOfMemory(requestedBytes: bytes, detail: "cpu scratch")
            }
            pointer.deallocate()
            pointer = raw.bindMemory(to: Element.self, capacity: count)
            capacity = count
        }
        return pointer
    }
}

/// Grow-only buffers, one set per pool thread plus shared ones, owned by one backend.
final class ScratchSpace {
    /// One per pool thread (index = the `thread` argument of a pool job).
    let perThread: [ScratchBuffer<Float>]
    let shared: [ScratchBuffer<Float>]
    let sharedInts: [ScratchBuffer<Int32>]
    let sharedDoubles = ScratchBuffer<Double>()

    init(threads: Int, sharedBuffers: Int) {
        perThread = (0..<threads).map { _ in ScratchBuffer() }
        shared = (0..<sharedBuffers).map { _ in ScratchBuffer() }
        sharedInts = (0..<sharedBuffers).map { _ in ScratchBuffer() }
    }

    /// Reserves `count` floats in every per-thread buffer; returns their bases, indexed by thread.
    func reservePerThread(_ count: Int, into bases: inout [UnsafeMutablePointer<Float>]) throws {
        for (index, buffer) in perThread.enumerated() {
            bases[index] = try buffer.reserve(count)
        }
    }
}
