import Crypto
import Foundation

/// A minimal ustar writer for synthetic tarballs (the reader itself is checked against Python's
/// tarfile in TarReaderTests; this only has to produce valid archives of any shape quickly).
enum TestTar {
    struct Entry {
        var name: String
        var bytes: [UInt8] = []
        var type: UInt8 = UInt8(ascii: "0")
        var linkName = ""
    }

    static func header(_ e: Entry) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int, _ len: Int) {
            for (i, b) in s.utf8.prefix(len).enumerated() { h[at + i] = b }
        }
        put(e.name, 0, 100)
        put("0000644", 100, 8)
        put("0000000", 108, 8)
        put("0000000", 116, 8)
        put(String(format: "%011o", e.bytes.count), 124, 12)
        put(String(format: "%011o", 1_700_000_000), 136, 12)
        put("        ", 148, 8)
        h[156] = e.type
        put(e.linkName, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", sum), 148, 6)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        return h
    }

    static func archive(_ entries: [Entry], endMarker: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        for e in entries {
            out += header(e)
            out += e.bytes
            out += [UInt8](repeating: 0, count: (512 - e.bytes.count % 512) % 512)
        }
        if endMarker { out += [UInt8](repeating: 0, count: 1024) }
        return out
    }

    /// Deterministic pseudo-random bytes.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// A checkpoint-shaped tarball: a folder, params.json, a 300 KB weights file, a tokenizer.
    static func model(seed: UInt64 = 1) -> (tar: [UInt8], files: [String: [UInt8]]) {
        let files: [String: [UInt8]] = [
            "params.json": Array("{\"dim\": 32}\n".utf8),
            "consolidated.safetensors": bytes(300_000, seed: seed),
            "sub/tokenizer.model.v3": bytes(9_000, seed: seed + 1),
        ]
        let tar = archive([Entry(name: "sub/", type: UInt8(ascii: "5"))]
            + ["params.json", "consolidated.safetensors", "sub/tokenizer.model.v3"].map { Entry(name: $0, bytes: files[$0]!) })
        return (tar, files)
    }
}

func md5Hex(_ bytes: [UInt8]) -> String {
    Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// A fresh folder under the temp dir, removed when released.
final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("downloads-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}
