#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The system calls under names the methods below do not shadow.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { open(path, flags, mode) }
private func systemClose(_ fd: Int32) { _ = close(fd) }

/// A file opened with POSIX calls, so a failed write reports its errno (ENOSPC becomes
/// `.diskFull`, which Foundation's FileHandle does not tell apart).
final class PosixFile {
    let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { if fd >= 0 { systemClose(fd) } }

    /// Opens for writing, creating it if needed; `truncateTo` cuts it to that length (a resumed
    /// file loses whatever was written past the last checkpoint). Never follows a symlink.
    static func openForWriting(_ path: String, truncateTo length: Int64? = nil) throws(DownloadError) -> PosixFile {
        let fd = systemOpen(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("cannot create", path) }
        let file = PosixFile(path: path, fd: fd)
        if let length {
            guard ftruncate(fd, off_t(length)) == 0 else { throw ioError("cannot truncate", path) }
            guard lseek(fd, off_t(length), SEEK_SET) >= 0 else { throw ioError("cannot seek in", path) }
        }
        return file
    }

    static func openForReading(_ path: String) throws(DownloadError) -> PosixFile {
        let fd = systemOpen(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open", path) }
        return PosixFile(path: path, fd: fd)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(DownloadError) {
        var done = 0
        while done < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.ioError("cannot write", path)
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8]) throws(DownloadError) {
        // withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        try bytes.withUnsafeBytes { raw in Result { () throws(DownloadError) in try write(raw) } }.get()
    }

    /// Reads exactly `count` bytes, or fewer at the end of the file.
    func read(_ count: Int) throws(DownloadError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + done, count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.ioError("cannot read", path)
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(count - done)
        return out
    }

    /// Data and size on disk, so a checkpoint survives a crash or power loss.
    func sync() throws(DownloadError) {
        guard fsync(fd) == 0 else { throw Self.ioError("cannot sync", path) }
    }

    func size() -> Int64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
    }

    static func ioError(_ what: String, _ path: String) -> DownloadError {
        let code = errno
        let reason = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT {
            return DownloadError(.diskFull, "the disk is full: \(what) \(path) (\(reason)); free some space", resumable: true)
        }
        return DownloadError(.io, "\(what) \(path): \(reason)", resumable: true)
    }
}

enum FileSystem {
    /// Free bytes on the file system holding `url` (the nearest existing folder above it).
    static func freeBytes(at url: URL) -> Int64? {
        var probe = url
        while !FileManager.default.fileExists(atPath: probe.path), probe.path != "/" { probe.deleteLastPathComponent() }
        var st = statvfs()
        guard statvfs(probe.path, &st) == 0 else { return nil }
        return Int64(st.f_bavail) * Int64(st.f_frsize)
    }

    static func makeDirectory(_ url: URL) throws(DownloadError) {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw DownloadError(.io, "cannot create the folder \(url.path): \(error.localizedDescription)", resumable: true)
        }
    }

    /// Writes `data` to `url` through a temporary file and a rename, so a crash leaves the old or
    /// the new version, never half of one.
    static func writeAtomically(_ data: Data, to url: URL) throws(DownloadError) {
        let temp = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".tmp")
        do {
            let file = try PosixFile.openForWriting(temp.path, truncateTo: 0)
            try file.write([UInt8](data))
            try file.sync()
        }
        guard rename(temp.path, url.path) == 0 else { throw PosixFile.ioError("cannot rename into", url.path) }
    }
}
