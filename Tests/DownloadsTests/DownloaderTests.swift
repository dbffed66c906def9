import Downloads
import Foundation
import Testing

/// `Downloader` against a local SwiftNIO server on 127.0.0.1 serving a synthetic tarball.
@Suite(.serialized) struct DownloaderTests {
    let model = TestTar.model()

    func job(_ server: TarballServer, _ scratch: Scratch, sums: [String]? = nil) async -> DownloadJob {
        DownloadJob(url: await server.url, destination: scratch.url.appendingPathComponent("model"),
                    sums: (sums ?? [md5Hex(model.tar)]).map { .init(md5: $0, note: "test") })
    }

    func expectExtracted(_ dest: URL, _ files: [String: [UInt8]], sourceLocation: SourceLocation = #_sourceLocation) {
        for (path, bytes) in files {
            let got = FileManager.default.contents(atPath: dest.appendingPathComponent(path).path).map { [UInt8]($0) }
            #expect(got == bytes, "\(path) differs", sourceLocation: sourceLocation)
        }
        #expect(FileManager.default.fileExists(atPath: dest.appendingPathComponent(Downloader.completionMarker).path),
                sourceLocation: sourceLocation)
    }

    func expectFailure(_ kind: DownloadError.Kind, resumable: Bool, sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () async throws(DownloadError) -> DownloadResult) async -> DownloadError? {
        do {
            let result = try await body()
            Issue.record("expected \(kind), got \(result)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
            #expect(error.resumable == resumable, "\(error)", sourceLocation: sourceLocation)
            return error
        }
        return nil
    }

    func withServer(_ body: [UInt8], _ behaviour: TarballServer.Behaviour = .init(),
                    _ test: (TarballServer) async throws -> Void) async throws {
        let server = TarballServer(body: body, behaviour: behaviour)
        try await server.start()
        do { try await test(server) } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test func downloadsExtractsVerifiesAndThenSaysComplete() async throws {
        try await withServer(model.tar) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let lines = LineLog()
            let downloader = Downloader(progress: { lines.append($0) })
            let result = try await downloader.run(job)
            #expect(result == .completed(md5: md5Hex(model.tar), bytes: Int64(model.tar.count), resumedFrom: 0, rangeIgnored: false))
            expectExtracted(job.destination, model.files)
            #expect(!FileManager.default.fileExists(atPath: scratch.url.appendingPathComponent(".model.download").path))
            #expect(lines.all.contains { $0.contains("100.0%") }, "\(lines.all)")
            #expect(try await downloader.run(job) == .alreadyComplete(md5: md5Hex(model.tar)))
            #expect(await server.requests.count == 1, "a complete folder must not be downloaded again")
        }
    }

    @Test(arguments: [700, 1300, 150_000, 309_000])   // in a header, in params.json's padding, in the weights, near the end
    func resumesAfterADroppedConnection(_ dropAt: Int) async throws {
        try await withServer(model.tar, .init(dropAfter: [dropAt])) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let downloader = Downloader()
            let error = await expectFailure(.truncated, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            #expect(error?.description.contains("run the same command again") == true)
            #expect(!FileManager.default.fileExists(atPath: job.destination.appendingPathComponent(Downloader.completionMarker).path))
            // Everything consumed before the drop is kept (the HTTP client drops what it had
            // buffered when the connection breaks, so the offset is at most the drop point).
            let result = try await downloader.run(job)
            guard case .completed(let md5, let bytes, let resumedFrom, let rangeIgnored) = result else {
                Issue.record("\(result)")
                return
            }
            #expect(md5 == md5Hex(model.tar) && bytes == Int64(model.tar.count) && !rangeIgnored)
            #expect(resumedFrom <= Int64(dropAt), "resumed from \(resumedFrom)")
            if dropAt >= 150_000 { #expect(resumedFrom > 0, "nothing kept of \(dropAt) bytes") }
            expectExtracted(job.destination, model.files)
            #expect(await server.requests.map(\.range) == [nil, resumedFrom > 0 ? "bytes=\(resumedFrom)-" : nil])
        }
    }

    @Test func resumesAcrossSeveralDropsWithPeriodicCheckpoints() async throws {
        try await withServer(model.tar, .init(dropAfter: [5_000, 100_000, 4_000])) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let downloader = Downloader(checkpointEvery: 3_000)
            for _ in 0..<3 {
                _ = await expectFailure(.truncated, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            }
            let result = try await downloader.run(job)
            guard case .completed(let md5, _, let resumedFrom, _) = result else {
                Issue.record("\(result)")
                return
            }
            #expect(md5 == md5Hex(model.tar))
            #expect(resumedFrom > 0 && resumedFrom <= 109_000)
            expectExtracted(job.destination, model.files)
            // The last resume asked for the bytes after what the previous runs had kept.
            let ranges = await server.requests.map(\.range)
            #expect(ranges.count == 4 && ranges.last == "bytes=\(resumedFrom)-")
        }
    }

    @Test func aServerThatIgnoresRangeStillGivesTheRightFolder() async throws {
        try await withServer(model.tar, .init(supportsRange: false, dropAfter: [150_000])) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let notes = LineLog()
            let downloader = Downloader(log: { notes.append($0) })
            _ = await expectFailure(.truncated, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            let result = try await downloader.run(job)
            guard case .completed(let md5, _, let resumedFrom, let rangeIgnored) = result else {
                Issue.record("\(result)")
                return
            }
            #expect(md5 == md5Hex(model.tar) && rangeIgnored && resumedFrom > 0 && resumedFrom <= 150_000)
            expectExtracted(job.destination, model.files)
            #expect(notes.all.contains { $0.contains("ignored the Range") })
            #expect(await server.requests.map(\.status) == [200, 200])
        }
    }

    @Test func anMD5MismatchIsNeverMarkedCompleteAndNamesTheKnownSums() async throws {
        try await withServer(model.tar) { server in
            let scratch = try Scratch()
            let wrong = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]
            let job = await job(server, scratch, sums: wrong)
            let downloader = Downloader()
            let error = await expectFailure(.checksumMismatch, resumable: false) { () async throws(DownloadError) in try await downloader.run(job) }
            for sum in wrong + [md5Hex(model.tar)] { #expect(error?.message.contains(sum) == true, "\(error?.message ?? "")") }
            #expect(!FileManager.default.fileExists(atPath: job.destination.appendingPathComponent(Downloader.completionMarker).path))
            // Again: still refused (the journal replays the extracted bytes, nothing is fetched).
            _ = await expectFailure(.checksumMismatch, resumable: false) { () async throws(DownloadError) in try await downloader.run(job) }
            // Accepting the real sum (--md5) completes it from what is on disk.
            var accepting = job
            accepting.sums.append(.init(md5: md5Hex(model.tar), note: "--md5"))
            #expect(try await downloader.run(accepting) == .completed(md5: md5Hex(model.tar), bytes: Int64(model.tar.count),
                                                                      resumedFrom: Int64(model.tar.count), rangeIgnored: false))
            expectExtracted(job.destination, model.files)
            #expect(await server.requests.count == 1)
        }
    }

    @Test(arguments: [("../escaped-\(UUID().uuidString)", UInt8(ascii: "0")), ("/tmp/escaped-\(UUID().uuidString)", UInt8(ascii: "0")),
                      ("link", UInt8(ascii: "2")), ("hard", UInt8(ascii: "1"))])
    func refusesEntriesThatEscapeTheFolder(_ name: String, _ type: UInt8) async throws {
        let tar = TestTar.archive([.init(name: "params.json", bytes: Array("{}".utf8)),
                                   .init(name: name, bytes: type == UInt8(ascii: "0") ? Array("escaped".utf8) : [], type: type,
                                         linkName: type == UInt8(ascii: "0") ? "" : "/etc/passwd")])
        try await withServer(tar) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch, sums: [md5Hex(tar)])
            let error = await expectFailure(.unsafeArchive, resumable: false) { () async throws(DownloadError) in try await Downloader().run(job) }
            #expect(error?.message.contains(name) == true)
            let outside = name.hasPrefix("/") ? URL(fileURLWithPath: name) : job.destination.appendingPathComponent(name).standardizedFileURL
            #expect(!FileManager.default.fileExists(atPath: outside.path))
            #expect(!FileManager.default.fileExists(atPath: job.destination.appendingPathComponent(Downloader.completionMarker).path))
        }
    }

    @Test func httpErrorsAreResumable() async throws {
        try await withServer(model.tar, .init(statuses: [503, 404])) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let downloader = Downloader()
            let first = await expectFailure(.http, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            #expect(first?.message.contains("503") == true)
            let second = await expectFailure(.http, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            #expect(second?.message.contains("404") == true)
            #expect(try await downloader.run(job) == .completed(md5: md5Hex(model.tar), bytes: Int64(model.tar.count), resumedFrom: 0, rangeIgnored: false))
        }
    }

    @Test func anUnreachableServerIsANetworkError() async throws {
        let scratch = try Scratch()
        let job = DownloadJob(url: "http://127.0.0.1:1/model.tar", destination: scratch.url.appendingPathComponent("m"), sums: [])
        var downloader = Downloader()
        downloader.connectTimeoutSeconds = 1
        _ = await expectFailure(.network, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
    }

    @Test func corruptAndUnterminatedArchivesAreRefused() async throws {
        let garbage = TestTar.bytes(20_000, seed: 5)
        try await withServer(garbage) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch, sums: [md5Hex(garbage)])
            _ = await expectFailure(.corruptArchive, resumable: false) { () async throws(DownloadError) in try await Downloader().run(job) }
        }
        let unterminated = TestTar.archive([.init(name: "params.json", bytes: Array("{}".utf8))], endMarker: false)
        try await withServer(unterminated) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch, sums: [md5Hex(unterminated)])
            let error = await expectFailure(.corruptArchive, resumable: false) { () async throws(DownloadError) in try await Downloader().run(job) }
            #expect(error?.message.contains("end-of-archive") == true)
        }
    }

    @Test func aFullDiskStopsBeforeWritingAndResumesLater() async throws {
        try await withServer(model.tar) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let error = await expectFailure(.diskFull, resumable: true) { () async throws(DownloadError) in
                try await Downloader(freeBytes: { _ in 100_000 }).run(job)
            }
            #expect(error?.message.contains("free") == true)
            // Space for the download but not the margin: refused as well.
            var tight = Downloader(freeBytes: { _ in 400_000 })
            tight.freeSpaceMargin = 1 << 20
            _ = await expectFailure(.diskFull, resumable: true) { () async throws(DownloadError) in try await tight.run(job) }
            var roomy = Downloader()
            roomy.freeSpaceMargin = 0
            #expect(try await roomy.run(job) == .completed(md5: md5Hex(model.tar), bytes: Int64(model.tar.count), resumedFrom: 0, rangeIgnored: false))
        }
    }

    @Test func aFileRepublishedBetweenRunsStartsOver() async throws {
        let second = TestTar.model(seed: 7)
        try await withServer(model.tar, .init(dropAfter: [150_000])) { server in
            let scratch = try Scratch()
            var job = await job(server, scratch, sums: [md5Hex(model.tar), md5Hex(second.tar)])
            let notes = LineLog()
            let downloader = Downloader(log: { notes.append($0) })
            _ = await expectFailure(.truncated, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            await server.set(body: second.tar, etag: "\"v2\"")
            job.sums = [.init(md5: md5Hex(second.tar), note: "new")]
            #expect(try await downloader.run(job) == .completed(md5: md5Hex(second.tar), bytes: Int64(second.tar.count), resumedFrom: 0, rangeIgnored: false))
            expectExtracted(job.destination, second.files)
            #expect(notes.all.contains { $0.contains("changed") })
        }
    }

    @Test func aDamagedPartialFolderStartsOver() async throws {
        try await withServer(model.tar, .init(dropAfter: [150_000])) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            let downloader = Downloader()
            _ = await expectFailure(.truncated, resumable: true) { () async throws(DownloadError) in try await downloader.run(job) }
            try FileManager.default.removeItem(at: job.destination.appendingPathComponent("consolidated.safetensors"))
            #expect(try await downloader.run(job) == .completed(md5: md5Hex(model.tar), bytes: Int64(model.tar.count), resumedFrom: 0, rangeIgnored: false))
            expectExtracted(job.destination, model.files)
        }
    }

    @Test func refusesAFolderItDidNotStart() async throws {
        try await withServer(model.tar) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch)
            try FileManager.default.createDirectory(at: job.destination, withIntermediateDirectories: true)
            try Data("mine".utf8).write(to: job.destination.appendingPathComponent("notes.txt"))
            _ = await expectFailure(.conflict, resumable: false) { () async throws(DownloadError) in try await Downloader().run(job) }
            #expect(FileManager.default.contents(atPath: job.destination.appendingPathComponent("notes.txt").path) == Data("mine".utf8))
        }
    }

    @Test func aSingleTopFolderIsUnwrapped() async throws {
        let tar = TestTar.archive([.init(name: "Wrapped/", type: UInt8(ascii: "5")),
                                   .init(name: "Wrapped/params.json", bytes: Array("{}".utf8)),
                                   .init(name: "Wrapped/tokenizer.model", bytes: [1, 2, 3])])
        try await withServer(tar) { server in
            let scratch = try Scratch()
            let job = await job(server, scratch, sums: [md5Hex(tar)])
            _ = try await Downloader().run(job)
            expectExtracted(job.destination, ["params.json": Array("{}".utf8), "tokenizer.model": [1, 2, 3]])
            #expect(!FileManager.default.fileExists(atPath: job.destination.appendingPathComponent("Wrapped").path))
        }
    }

    @Test func contentRangeParsing() {
        #expect(Downloader.parseContentRange("bytes 100-199/200")! == (100, 200))
        #expect(Downloader.parseContentRange("bytes 5-9/*")!.total == nil)
        #expect(Downloader.parseContentRange("items 1-2/3") == nil)
        #expect(Downloader.parseContentRange("bytes x-1/2") == nil)
    }

    @Test func progressLineShowsBytesRateAndETA() {
        let line = DownloadProgress.line(bytes: 3_200_000_000, total: 14_500_000_000, newBytes: 1_000_000_000, seconds: 10)
        #expect(line.contains("3.2 GB / 14.5 GB (22.1%)"))
        #expect(line.contains("100.0 MB/s"))
        #expect(line.contains("ETA 1m53s"))
    }
}

/// Lines collected from @Sendable callbacks.
final class LineLog: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
