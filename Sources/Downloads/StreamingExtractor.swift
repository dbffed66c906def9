import Crypto
import Foundation

/// Turns the tarball's bytes, as they arrive, into the extracted folder — no copy of the tar is
/// ever on disk, so peak use is the extracted size plus the journal (a few KB) — while hashing
/// them with md5.
///
/// How resume works without the tar: every byte of the stream is either file content, which is
/// on disk in the extracted file, or metadata (headers, long names, pax records, padding), which
/// is appended to `metadata.log` in the journal folder. A checkpoint (`ExtractionJournal.State`)
/// records how many stream bytes and how many metadata bytes are safely on disk (files synced
/// first). To resume at byte N, `replay` rebuilds bytes 0..<N from those two sources — reading
/// file content back from the extracted files and metadata from the log — and feeds them to a
/// fresh tar reader and md5, which leaves both exactly as they were at N; the download then
/// continues with an HTTP Range request from N. The cost is one local re-read of what was
/// already downloaded (disk and md5 speed, ~0.5–1 GB/s) instead of any download again, and the
/// final md5 still covers every byte, so an extracted file changed between runs fails the check.
final class StreamingExtractor {
    let destination: URL
    let journal: ExtractionJournal
    private(set) var reader = TarReader()
    private var md5 = Insecure.MD5()
    private var events: [TarReader.Event] = []
    private var current: (path: String, file: PosixFile, position: Int64, size: Int64)?
    private let metadataLog: PosixFile
    private(set) var metadataBytes: Int64
    /// Stream bytes since the last checkpoint.
    private var sinceCheckpoint: Int64 = 0
    private let checkpointEvery: Int64
    /// Free bytes left, checked before each file is created (nil: unknown).
    private let freeBytes: (URL) -> Int64?

    var streamOffset: Int64 { reader.offset }
    var isFinished: Bool { reader.isFinished }

    init(destination: URL, journal: ExtractionJournal, checkpointEvery: Int64 = 256 << 20,
         freeBytes: @escaping (URL) -> Int64? = FileSystem.freeBytes(at:)) throws(DownloadError) {
        self.destination = destination
        self.journal = journal
        self.checkpointEvery = checkpointEvery
        self.freeBytes = freeBytes
        try FileSystem.makeDirectory(destination)
        let state = journal.state
        metadataLog = try PosixFile.openForWriting(journal.metadataURL.path, truncateTo: state.metadataBytes)
        metadataBytes = state.metadataBytes
        if state.streamBytes > 0 { try replay(to: state.streamBytes) }
    }

    /// Feeds bytes received from the server.
    func consume(_ bytes: UnsafeRawBufferPointer) throws(DownloadError) {
        md5.update(bufferPointer: bytes)
        var i = 0
        while i < bytes.count {
            let take = Int(min(Int64(bytes.count - i), reader.bytesUntilSwitch))
            let part = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])
            let isData = reader.expectsFileData
            if !isData {
                try metadataLog.write(part)
                metadataBytes += Int64(take)
            }
            try pushToReader(part)
            try apply(writing: true)
            i += take
        }
        sinceCheckpoint += Int64(bytes.count)
        if sinceCheckpoint >= checkpointEvery { try checkpoint() }
    }

    /// Makes everything consumed so far durable and records it in the journal.
    func checkpoint() throws(DownloadError) {
        try current?.file.sync()
        try metadataLog.sync()
        var state = journal.state
        state.streamBytes = reader.offset
        state.metadataBytes = metadataBytes
        try journal.save(state)
        sinceCheckpoint = 0
    }

    /// The md5 of every byte consumed (call once, at the end).
    func finalizeMD5() -> String {
        md5.finalize().map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - Events

    private func pushToReader(_ part: UnsafeRawBufferPointer) throws(DownloadError) {
        do { try reader.push(part, into: &events) } catch {
            switch error.kind {
            case .unsafePath, .unsupportedEntry:
                throw DownloadError(.unsafeArchive, "refusing to extract: \(error.message)", resumable: false)
            case .corrupt, .trailingData:
                throw DownloadError(.corruptArchive, "the download is not a valid tar archive: \(error.message)", resumable: false)
            }
        }
    }

    /// Acts on the reader's events: creates folders and files and writes file content when
    /// `writing`, or (in replay) only tracks which file the stream is in.
    private func apply(writing: Bool) throws(DownloadError) {
        defer { events.removeAll(keepingCapacity: true) }
        for event in events {
            switch event {
            case .directory(let path):
                try makeFolder(path)
            case .fileStart(let path, let size):
                let url = destination.appendingPathComponent(path)
                try makeFolder((path as NSString).deletingLastPathComponent)
                if writing {
                    if let free = freeBytes(url), free < size {
                        throw DownloadError(.diskFull, "not enough free space for \(path): it needs \(formatBytes(size)), \(formatBytes(free)) are free under \(destination.path)", resumable: true)
                    }
                    try refuseExistingNonFile(url)
                    current = (path, try PosixFile.openForWriting(url.path, truncateTo: 0), 0, size)
                } else {
                    guard let file = try? PosixFile.openForReading(url.path) else { throw inconsistent("\(path) is missing") }
                    current = (path, file, 0, size)
                }
            case .data(let bytes):
                guard var c = current else { continue }
                if writing { try c.file.write(bytes) }
                c.position += Int64(bytes.count)
                current = c
            case .fileEnd:
                if writing { try current?.file.sync() }
                current = nil
            case .end:
                break
            }
        }
    }

    private func makeFolder(_ relative: String) throws(DownloadError) {
        guard !relative.isEmpty else { return }
        let url = destination.appendingPathComponent(relative)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue {
            throw DownloadError(.conflict, "the archive has a folder '\(relative)' where \(url.path) is a file", resumable: false)
        }
        try FileSystem.makeDirectory(url)
    }

    private func refuseExistingNonFile(_ url: URL) throws(DownloadError) {
        guard let type = try? FileManager.default.attributesOfItem(atPath: url.path)[.type] as? FileAttributeType else { return }
        if type != .typeRegular {
            throw DownloadError(.conflict, "\(url.path) exists and is not a regular file (\(type.rawValue)); it is not overwritten", resumable: false)
        }
    }

    // MARK: - Replay

    /// Rebuilds stream bytes 0..<`target` from the extracted files and the metadata log (see the
    /// type's comment), so the reader and md5 continue exactly where the checkpoint left off.
    private func replay(to target: Int64) throws(DownloadError) {
        let log = try PosixFile.openForReading(journal.metadataURL.path)
        var done: Int64 = 0
        var metadataUsed: Int64 = 0
        while done < target {
            let take = Int(min(target - done, reader.bytesUntilSwitch, 4 << 20))
            let bytes: [UInt8]
            if reader.expectsFileData {
                guard let c = current else { throw inconsistent("no file is open at stream byte \(done)") }
                bytes = try c.file.read(take)
                guard bytes.count == take else {
                    throw inconsistent("\(c.path) is shorter than the checkpoint says (\(c.position + Int64(bytes.count)) bytes)")
                }
            } else {
                bytes = try log.read(take)
                guard bytes.count == take else { throw inconsistent("the metadata log ends at \(metadataUsed + Int64(bytes.count)) bytes") }
                metadataUsed += Int64(take)
            }
            md5.update(data: bytes)
            try bytes.withUnsafeBytes { raw in Result { () throws(DownloadError) in try pushToReader(raw) } }.get()
            try apply(writing: false)
            done += Int64(take)
        }
        guard metadataUsed == metadataBytes else { throw inconsistent("the metadata log holds \(metadataBytes) bytes, the stream used \(metadataUsed)") }
        // Continue writing the file the checkpoint was inside, cut back to the checkpoint.
        if let c = current {
            let url = destination.appendingPathComponent(c.path)
            current = (c.path, try PosixFile.openForWriting(url.path, truncateTo: c.position), c.position, c.size)
        }
    }

    private func inconsistent(_ why: String) -> DownloadError {
        DownloadError(.conflict, "cannot resume: the extracted files do not match the journal (\(why))", resumable: false)
    }
}

func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(n)
    var unit = 0
    while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
}
