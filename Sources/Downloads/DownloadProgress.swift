import Foundation

/// One status line, redrawn in place at most twice a second:
/// `  3.2 GB / 14.5 GB (22.1%)  112.4 MB/s  ETA 1m41s`.
/// The rate is over this run's bytes only (a resumed download does not count what it had).
public final class DownloadProgress {
    private let sink: (String) -> Void
    private let start = Date()
    private var last = Date.distantPast
    private let startBytes: Int64
    private var printed = false

    init(startBytes: Int64, sink: @escaping (String) -> Void) {
        self.startBytes = startBytes
        self.sink = sink
    }

    func update(bytes: Int64, total: Int64?, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(last) >= 0.5 else { return }
        last = now
        printed = true
        sink("\r" + Self.line(bytes: bytes, total: total, newBytes: bytes - startBytes, seconds: now.timeIntervalSince(start)))
    }

    func finish() {
        if printed { sink("\n") }
    }

    public static func line(bytes: Int64, total: Int64?, newBytes: Int64, seconds: Double) -> String {
        let rate = seconds > 0 ? Double(newBytes) / seconds : 0
        var s = "  " + formatBytes(bytes)
        if let total, total > 0 {
            s += " / \(formatBytes(total)) (\(String(format: "%.1f", 100 * Double(bytes) / Double(total)))%)"
        }
        s += "  \(formatBytes(Int64(rate)))/s"
        if let total, rate > 0, total > bytes {
            s += "  ETA \(duration(Double(total - bytes) / rate))"
        }
        return s + "   "
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }
}
