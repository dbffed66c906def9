import Foundation

/// A one-line progress display on stderr.
public final class ProgressLine: @unchecked Sendable {
    // @unchecked: used from the loading thread only.
    let label: String
    let start = Date()
    var lastPrint = Date.distantPast

    public init(label: String) { self.label = label }

    public func update(done: Int, total: Int) {
        let now = Date()
        guard now.timeIntervalSince(lastPrint) > 0.1 || done == total else { return }
        lastPrint = now
        let pct = total > 0 ? 100 * done / total : 100
        FileHandle.standardError.write(Data("\r\(label): \(pct)% (\(done)/\(total))".utf8))
    }

    public func finish() {
        FileHandle.standardError.write(Data(String(format: "\r\(label): done in %.1f s\n", Date().timeIntervalSince(start)).utf8))
    }
}

/// Writes `error: message` to stderr.
public func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
}
