import Foundation

/// The checkpoint readers take a file URL (they mmap it), so the targets that drive them write
/// each fuzz input to one scratch file per process and hand the reader that path. The file lives
/// under $TMPDIR (or /tmp) and is overwritten on every input.
enum FuzzScratch {
    static let url: URL = {
        let dir = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        return URL(fileURLWithPath: dir).appendingPathComponent("mixtral-fuzz-\(getpid())")
    }()

    /// Writes `size` bytes at `data` to the scratch file and returns its URL.
    static func write(_ data: UnsafePointer<UInt8>, _ size: Int) -> URL {
        let bytes = Data(bytes: data, count: size)
        // A failed write is the harness's problem, not the parser's: stop loudly.
        do { try bytes.write(to: url) } catch { fatalError("fuzz scratch write failed: \(error)") }
        return url
    }
}
