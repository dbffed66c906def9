import Downloads
import Foundation
import Testing

/// The streaming tar reader against archives written by Python's tarfile
/// (tools/fixtures/make_tar_fixtures.py), pushed in chunks of every awkward size.
@Suite struct TarReaderTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct Manifest: Decodable {
        struct File: Decodable { var size: Int; var md5: String }
        var md5: String
        var size: Int
        var files: [String: File]?
        var unsafe: Bool?
    }

    static let manifest: [String: Manifest] = {
        let data = (try? Data(contentsOf: fixtures.appendingPathComponent("manifest.json"))) ?? Data()
        return (try? JSONDecoder().decode([String: Manifest].self, from: data)) ?? [:]
    }()

    /// Reads `bytes` in chunks of `chunk`, collecting files and folders.
    static func read(_ bytes: [UInt8], chunk: Int) throws(TarReader.Failure) -> (files: [String: [UInt8]], dirs: [String], finished: Bool) {
        var reader = TarReader()
        var files: [String: [UInt8]] = [:]
        var dirs: [String] = []
        var current: String?
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + chunk)
            for event in try reader.push(Array(bytes[start..<end])) {
                switch event {
                case .directory(let p): dirs.append(p)
                case .fileStart(let p, _): current = p; files[p] = []
                case .data(let d): files[current!]! += d
                case .fileEnd: current = nil
                case .end: break
                }
            }
            start = end
        }
        return (files, dirs, reader.isFinished)
    }

    @Test(arguments: ["ustar.tar", "gnu.tar", "pax.tar", "wrapped.tar"])
    func extractsWhatTarfileWrote(_ name: String) throws {
        let expected = try #require(Self.manifest[name]?.files, "manifest.json has no \(name)")
        let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(name)))
        for chunk in [1, 7, 100, 511, 512, 513, 4096, bytes.count] {
            let result = try Self.read(bytes, chunk: chunk)
            #expect(result.finished, "\(name) chunk \(chunk): no end marker seen")
            #expect(Set(result.files.keys) == Set(expected.keys), "\(name) chunk \(chunk)")
            for (path, file) in expected {
                let got = result.files[path] ?? []
                #expect(got.count == file.size && md5Hex(got) == file.md5, "\(name) chunk \(chunk): \(path)")
            }
        }
    }

    @Test(arguments: ["traversal.tar", "absolute.tar", "symlink.tar", "hardlink.tar"])
    func refusesUnsafeEntries(_ name: String) throws {
        #expect(Self.manifest[name]?.unsafe == true)
        let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(name)))
        do {
            _ = try Self.read(bytes, chunk: 1000)
            Issue.record("\(name) was read")
        } catch {
            #expect(error.kind == .unsafePath || error.kind == .unsupportedEntry, "\(name): \(error)")
            #expect(name.contains("link") == (error.kind == .unsupportedEntry))
        }
    }

    @Test func rejectsACorruptHeader() throws {
        var bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("gnu.tar")))
        // Change one byte of the second entry's name: its checksum no longer matches.
        let second = 512
        bytes[second + 1] ^= 0x20
        do {
            _ = try Self.read(bytes, chunk: 4096)
            Issue.record("a corrupt header was accepted")
        } catch {
            #expect(error.kind == .corrupt)
            #expect(error.message.contains("checksum"))
        }
        do {
            _ = try Self.read(TestTar.bytes(5000, seed: 9), chunk: 700)
            Issue.record("random bytes were read as a tar")
        } catch {
            #expect(error.kind == .corrupt)
        }
    }

    @Test func aTruncatedArchiveIsNotFinished() throws {
        let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("ustar.tar")))
        let result = try Self.read(Array(bytes.prefix(3000)), chunk: 512)
        #expect(!result.finished)
    }

    @Test func rejectsDataAfterTheEndMarker() throws {
        let tar = TestTar.archive([.init(name: "a", bytes: [1, 2, 3])]) + [0, 0, 7]
        #expect(throws: TarReader.Failure.self) { _ = try Self.read(tar, chunk: 100) }
        // Zero padding to a record boundary is normal.
        let padded = TestTar.archive([.init(name: "a", bytes: [1, 2, 3])]) + [UInt8](repeating: 0, count: 8192)
        #expect(try Self.read(padded, chunk: 100).finished)
    }

    @Test func bytesUntilSwitchSeparatesMetadataFromFileData() throws {
        let tar = TestTar.archive([.init(name: "x.bin", bytes: TestTar.bytes(1000, seed: 3))])
        var reader = TarReader()
        var metadata = 0, data = 0, offset = 0
        while offset < tar.count {
            let take = Int(min(Int64(tar.count - offset), reader.bytesUntilSwitch))
            if reader.expectsFileData { data += take } else { metadata += take }
            _ = try reader.push(Array(tar[offset..<(offset + take)]))
            offset += take
        }
        #expect(data == 1000)
        #expect(metadata == tar.count - 1000)
        #expect(reader.isFinished)
    }

    @Test func pathsAreNormalisedOrRefused() throws {
        #expect(try SafePath.validate("./a//b/./c", at: 0).relative == "a/b/c")
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/.."] {
            #expect(throws: TarReader.Failure.self) { _ = try SafePath.validate(bad, at: 0) }
        }
    }
}
