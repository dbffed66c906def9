import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// What to download and where: the tarball at `url`, extracted into `destination` (a folder
/// `--ckpt-dir` then loads as it is), accepted if its md5 is one of `sums`.
public struct DownloadJob: Sendable {
    public var url: String
    public var destination: URL
    public var sums: [CatalogEntry.KnownSum]
    /// Bytes expected before the server says (the catalog's size): the free-space check uses it
    /// only until the server's Content-Length is known.
    public var approximateBytes: Int64?

    public init(url: String, destination: URL, sums: [CatalogEntry.KnownSum], approximateBytes: Int64? = nil) {
        self.url = url
        self.destination = destination
        self.sums = sums
        self.approximateBytes = approximateBytes
    }
}

public enum DownloadResult: Sendable, Equatable {
    case alreadyComplete(md5: String)
    /// `resumedFrom`: the stream offset this run started at; `rangeIgnored`: the server sent the
    /// whole file to a Range request, and the bytes already extracted were skipped.
    case completed(md5: String, bytes: Int64, resumedFrom: Int64, rangeIgnored: Bool)
}

/// `mixtral-chat download`: streams a tarball over HTTP into an extracted folder with md5 and
/// resume (see `StreamingExtractor` for how resuming works without a copy of the tar).
///
/// Every failure leaves either a resumable journal (HTTP errors, a dropped connection, a full
/// disk: run again) or a clear refusal (an unsafe or corrupt archive, a wrong md5), and a folder
/// is marked complete (`completionMarker`) only after its md5 matched.
public struct Downloader: Sendable {
    public static let completionMarker = ".mixtral-chat-download.json"

    /// Progress lines (with "\r"); nil: quiet.
    public var progress: (@Sendable (String) -> Void)?
    /// Notes worth a line of their own (resuming, a server ignoring Range, starting over).
    public var log: @Sendable (String) -> Void
    /// Free bytes where a path lives (injectable so tests can simulate a full disk).
    public var freeBytes: @Sendable (URL) -> Int64?
    /// Stream bytes between checkpoints of the journal.
    public var checkpointEvery: Int64
    /// Free space kept beyond the bytes still to come.
    public var freeSpaceMargin: Int64 = 64 << 20
    /// How long to keep trying to connect (the client retries a refused connection until then).
    public var connectTimeoutSeconds: Int64 = 30

    public init(progress: (@Sendable (String) -> Void)? = nil, log: @escaping @Sendable (String) -> Void = { _ in },
                freeBytes: (@Sendable (URL) -> Int64?)? = nil, checkpointEvery: Int64 = 256 << 20) {
        self.progress = progress
        self.log = log
        self.freeBytes = freeBytes ?? { FileSystem.freeBytes(at: $0) }
        self.checkpointEvery = checkpointEvery
    }

    struct Marker: Codable {
        var url: String
        var md5: String
        var bytes: Int64
        var completed: String
    }

    public func run(_ job: DownloadJob) async throws(DownloadError) -> DownloadResult {
        let dest = job.destination
        let markerURL = dest.appendingPathComponent(Self.completionMarker)
        if let data = FileManager.default.contents(atPath: markerURL.path),
           let marker = try? JSONDecoder().decode(Marker.self, from: data) {
            guard marker.url == job.url || job.sums.contains(where: { $0.md5 == marker.md5 }) else {
                throw DownloadError(.conflict, "\(dest.path) already holds a completed download of \(marker.url); use another --dir", resumable: false)
            }
            return .alreadyComplete(md5: marker.md5)
        }
        let journal = try ExtractionJournal(destination: dest, url: job.url)
        if !journal.exists {
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: dest.path)) ?? []
            guard contents.isEmpty else {
                throw DownloadError(.conflict, "\(dest.path) exists and is not a download in progress; use another --dir or remove it", resumable: false)
            }
            try journal.save(journal.state)
        } else {
            log("resuming: \(formatBytes(journal.state.streamBytes)) already extracted into \(dest.path)")
        }
        return try await download(job, journal: journal, allowRestart: true)
    }

    private func download(_ job: DownloadJob, journal: ExtractionJournal, allowRestart: Bool) async throws(DownloadError) -> DownloadResult {
        let dest = job.destination
        let extractor: StreamingExtractor
        do {
            extractor = try makeExtractor(dest, journal)
        } catch let e where e.kind == .conflict && e.message.hasPrefix("cannot resume") && allowRestart {
            log("\(e.message); starting over")
            try startOver(dest, journal)
            extractor = try makeExtractor(dest, journal)
        }
        let offset = extractor.streamOffset
        var rangeIgnored = false
        if !(extractor.isFinished && journal.state.totalBytes == offset) {
            let outcome = try await fetch(job, journal: journal, extractor: extractor)
            switch outcome {
            case .done(let ignored): rangeIgnored = ignored
            case .fileChanged(let why):
                guard allowRestart else {
                    throw DownloadError(.http, "the file on the server changed again during the download (\(why))", resumable: true)
                }
                log("the file on the server changed since the download started (\(why)); starting over")
                try startOver(dest, journal)
                return try await download(job, journal: journal, allowRestart: false)
            }
        }
        guard extractor.isFinished else {
            throw DownloadError(.corruptArchive, "the tarball ended after \(extractor.streamOffset) bytes without tar's end-of-archive marker (a truncated or corrupt file on the server)", resumable: false)
        }
        let md5 = extractor.finalizeMD5()
        guard job.sums.isEmpty || job.sums.contains(where: { $0.md5 == md5 }) else {
            let known = job.sums.map { "\($0.md5) (\($0.note))" }.joined(separator: ", ")
            throw DownloadError(
                .checksumMismatch,
                "md5 mismatch: the tarball's md5 is \(md5), but the known sums for \(job.url) are \(known). \(dest.path) is NOT marked complete. If Mistral re-published the file, confirm the new sum and pass --md5 \(md5); otherwise delete \(dest.path) and \(journal.folder.path) and download again",
                resumable: false)
        }
        try flattenSingleTopFolder(dest)
        let marker = Marker(url: job.url, md5: md5, bytes: extractor.streamOffset, completed: ISO8601DateFormatter().string(from: Date()))
        do { try FileSystem.writeAtomically(try JSONEncoder().encode(marker), to: dest.appendingPathComponent(Self.completionMarker)) } catch let e as DownloadError {
            throw e
        } catch {
            throw DownloadError(.io, "cannot write the completion marker: \(error)", resumable: true)
        }
        journal.remove()
        return .completed(md5: md5, bytes: extractor.streamOffset, resumedFrom: offset, rangeIgnored: rangeIgnored)
    }

    private func makeExtractor(_ dest: URL, _ journal: ExtractionJournal) throws(DownloadError) -> StreamingExtractor {
        try StreamingExtractor(destination: dest, journal: journal, checkpointEvery: checkpointEvery, freeBytes: freeBytes)
    }

    /// Forgets all progress: the folder holds only what this download extracted (it had to be
    /// empty when the journal was created), so it is emptied.
    private func startOver(_ dest: URL, _ journal: ExtractionJournal) throws(DownloadError) {
        try? FileManager.default.removeItem(at: dest)
        try journal.reset()
    }

    private enum FetchOutcome { case done(rangeIgnored: Bool), fileChanged(String) }

    /// One HTTP request from the extractor's offset to the end of the stream, on a client of its
    /// own (redirects followed; a read that stalls for two minutes is a dropped connection).
    private func fetch(_ job: DownloadJob, journal: ExtractionJournal, extractor: StreamingExtractor) async throws(DownloadError) -> FetchOutcome {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(connectTimeoutSeconds), read: .seconds(120))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let result: Result<FetchOutcome, DownloadError>
        do { result = .success(try await fetch(job, client: client, journal: journal, extractor: extractor)) } catch {
            result = .failure(error)
        }
        try? await client.shutdown()
        return try result.get()
    }

    private func fetch(_ job: DownloadJob, client: HTTPClient, journal: ExtractionJournal,
                       extractor: StreamingExtractor) async throws(DownloadError) -> FetchOutcome {
        let offset = extractor.streamOffset
        var request = HTTPClientRequest(url: job.url)
        if offset > 0 { request.headers.add(name: "Range", value: "bytes=\(offset)-") }
        let response: HTTPClientResponse
        do { response = try await client.execute(request, deadline: .distantFuture) } catch {
            throw DownloadError(.network, "cannot reach \(job.url): \(error)", resumable: true)
        }

        var total: Int64?
        var skip: Int64 = 0
        switch response.status.code {
        case 206:
            guard let range = response.headers.first(name: "content-range"), let parsed = Self.parseContentRange(range) else {
                throw DownloadError(.http, "HTTP 206 without a valid Content-Range from \(job.url)", resumable: true)
            }
            guard parsed.start == offset else {
                throw DownloadError(.http, "asked for bytes from \(offset), the server sent them from \(parsed.start) (Content-Range: \(range))", resumable: true)
            }
            total = parsed.total
        case 200:
            total = response.headers.first(name: "content-length").flatMap { Int64($0) }
            if offset > 0 {
                skip = offset
                log("the server ignored the Range request and sends the whole file: reading past the \(formatBytes(offset)) already extracted")
            }
        case 416:
            if let known = journal.state.totalBytes, offset >= known { return .done(rangeIgnored: false) }
            throw DownloadError(.http, "HTTP 416 (range not satisfiable) for bytes from \(offset) of \(job.url)", resumable: true)
        default:
            throw DownloadError(.http, "HTTP \(response.status.code) \(response.status.reasonPhrase) from \(job.url)", resumable: true)
        }

        // A different size or ETag than when the download started: a different file.
        var state = journal.state
        let etag = response.headers.first(name: "etag")
        let lastModified = response.headers.first(name: "last-modified")
        if offset > 0 {
            if let old = state.totalBytes, let total, old != total {
                return .fileChanged("size \(old) → \(total) bytes")
            }
            if let old = state.etag, let etag, old != etag { return .fileChanged("ETag \(old) → \(etag)") }
        }
        state.totalBytes = total ?? state.totalBytes
        state.etag = etag ?? state.etag
        state.lastModified = lastModified ?? state.lastModified
        try journal.save(state)

        if let remaining = (total ?? job.approximateBytes).map({ $0 - offset }), let free = freeBytes(job.destination),
           free < remaining + freeSpaceMargin {
            throw DownloadError(.diskFull, "not enough free space under \(job.destination.path): \(formatBytes(remaining)) still to extract, \(formatBytes(free)) free", resumable: true)
        }

        let meter = progress.map { sink in DownloadProgress(startBytes: offset, sink: sink) }
        var consumeError: DownloadError?
        var networkError: (any Error)?
        do {
            for try await chunk in response.body {
                var buffer = chunk
                if skip > 0 {
                    let drop = Int(min(skip, Int64(buffer.readableBytes)))
                    buffer.moveReaderIndex(forwardBy: drop)
                    skip -= Int64(drop)
                    if buffer.readableBytes == 0 { continue }
                }
                do {
                    try buffer.withUnsafeReadableBytes { raw in try extractor.consume(raw) }
                } catch let e as DownloadError {
                    consumeError = e
                    break
                } catch {
                    consumeError = DownloadError(.io, "\(error)", resumable: true)
                    break
                }
                meter?.update(bytes: extractor.streamOffset, total: total)
                if extractor.isFinished, let total, extractor.streamOffset >= total { break }
            }
        } catch {
            networkError = error
        }
        meter?.update(bytes: extractor.streamOffset, total: total, force: true)
        meter?.finish()
        // A failed write or a bad archive: the journal keeps its last checkpoint (the bytes after
        // it may be half-applied). Between chunks, everything consumed is whole: checkpoint it.
        if let consumeError { throw consumeError }
        try extractor.checkpoint()
        let received = extractor.streamOffset
        if let networkError {
            let of = total.map { " of \(formatBytes($0))" } ?? ""
            throw DownloadError(.truncated, "the connection broke after \(formatBytes(received))\(of) (\(networkError))", resumable: true)
        }
        if skip > 0 {
            throw DownloadError(.truncated, "the server sent \(formatBytes(offset - skip)) before closing, less than the \(formatBytes(offset)) already extracted", resumable: true)
        }
        if let total, received < total, !extractor.isFinished {
            throw DownloadError(.truncated, "the server closed the connection after \(formatBytes(received)) of \(formatBytes(total))", resumable: true)
        }
        return .done(rangeIgnored: offset > 0 && response.status.code == 200)
    }

    /// "bytes START-END/TOTAL" (TOTAL may be "*").
    public static func parseContentRange(_ value: String) -> (start: Int64, total: Int64?)? {
        let v = value.trimmingCharacters(in: .whitespaces)
        guard v.lowercased().hasPrefix("bytes ") else { return nil }
        let rest = v.dropFirst(6)
        let parts = rest.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let dash = parts[0].firstIndex(of: "-"), let start = Int64(parts[0][..<dash]) else { return nil }
        return (start, parts[1] == "*" ? nil : Int64(parts[1]))
    }

    /// A tarball that wraps everything in one folder (`Mixtral-8x7B-v0.1-Instruct/params.json`)
    /// is unwrapped, so the destination itself is the checkpoint folder.
    func flattenSingleTopFolder(_ dest: URL) throws(DownloadError) {
        let fm = FileManager.default
        let looksLikeCheckpoint = ["params.json", "config.json"].contains { fm.fileExists(atPath: dest.appendingPathComponent($0).path) }
        guard !looksLikeCheckpoint, let items = try? fm.contentsOfDirectory(atPath: dest.path), items.count == 1 else { return }
        let inner = dest.appendingPathComponent(items[0])
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: inner.path, isDirectory: &isDir), isDir.boolValue else { return }
        do {
            let staging = dest.appendingPathComponent(".unwrap-\(UUID().uuidString)")
            try fm.moveItem(at: inner, to: staging)
            for item in try fm.contentsOfDirectory(atPath: staging.path) {
                try fm.moveItem(at: staging.appendingPathComponent(item), to: dest.appendingPathComponent(item))
            }
            try fm.removeItem(at: staging)
        } catch {
            throw DownloadError(.io, "cannot move the contents of \(inner.path) up into \(dest.path): \(error.localizedDescription)", resumable: false)
        }
    }
}
