#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A file mapped read-only into memory. Tensors are views into it; `HostTensor.owner` holds this
/// object so the mapping lives exactly as long as some tensor still points into it. The kernel
/// pages weights in on first touch, so a model's resident memory equals the bytes actually used.
public final class MappedFile: @unchecked Sendable {
    // @unchecked: the mapping is PROT_READ and never changes after init; `deinit` unmaps it only
    // when no tensor view (which retains this object) is left.
    public let url: URL
    public let count: Int
    private let base: UnsafeRawPointer?

    public init(url: URL) throws {
        self.url = url
        let name = url.lastPathComponent
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw CheckpointError(errno == ENOENT ? .fileNotFound : .io, file: name, "cannot open: \(reason)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CheckpointError(.io, file: name, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError(.io, file: name, "not a regular file")
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw CheckpointError(.io, file: name, "mmap of \(count) bytes failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The whole file.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Bytes `[offset, offset + length)`; the caller has checked the range lies inside the file.
    func slice(offset: Int, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { $0 + offset }, count: length)
    }

    var name: String { url.lastPathComponent }

    /// Little-endian integer at `offset`; the caller has bounds-checked.
    func load<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
