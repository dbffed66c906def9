import Foundation
import Testing
import Checkpoints
import Tensors

/// Fixture folders written by tools/fixtures/make_tiny_models.py and make_pth_edge_cases.py.
enum Fixtures {
    static let testsRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static func model(_ name: String) -> URL { testsRoot.appendingPathComponent("ModelTests/Fixtures/\(name)") }
    static func pth(_ name: String) -> URL { testsRoot.appendingPathComponent("CheckpointsTests/Fixtures/\(name)") }
}

/// A fresh directory under the system temp dir, removed when the value is released.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    func copy(_ src: URL, as name: String? = nil) throws {
        try FileManager.default.copyItem(at: src, to: file(name ?? src.lastPathComponent))
    }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: file(name))
    }
}

/// One tensor to write into a crafted safetensors file.
struct RawEntry {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: [UInt8]

    init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }

    init(name: String, _ t: HostTensor) {
        let names: [DType: String] = [.bf16: "BF16", .f16: "F16", .f32: "F32", .i32: "I32"]
        self.init(name: name, dtype: names[t.dtype] ?? "?", shape: t.shape, bytes: Array(t.data))
    }
}

/// Writes a safetensors file (u64 header length, JSON header, data) — deliberately simple so tests
/// can break any part of it.
func writeSafetensors(_ entries: [RawEntry], to url: URL) throws {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for e in entries {
        header[e.name] = ["dtype": e.dtype, "shape": e.shape, "data_offsets": [data.count, data.count + e.bytes.count]]
        data += e.bytes
    }
    let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    try writeRawSafetensors(headerJSON: Array(json), data: data, to: url)
}

func writeRawSafetensors(headerJSON: [UInt8], data: [UInt8], to url: URL) throws {
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(headerJSON.count).littleEndian) { out += $0 }
    out += headerJSON
    out += data
    try Data(out).write(to: url)
}

/// Every tensor of a fixture model as raw entries, in name order.
func fixtureEntries(_ model: String) throws -> [RawEntry] {
    let a = try TensorArchive.safetensors(Fixtures.model(model).appendingPathComponent("consolidated.safetensors"))
    return try a.names.map { RawEntry(name: $0, try a.tensor(named: $0)) }
}

/// Runs `body`, expecting a `CheckpointError` of `kind`; returns it for further checks.
@discardableResult
func expectCheckpointError(_ kind: CheckpointError.Kind, sourceLocation: SourceLocation = #_sourceLocation,
                           _ body: () throws -> Void) -> CheckpointError? {
    do {
        try body()
        Issue.record("expected CheckpointError.\(kind), got success", sourceLocation: sourceLocation)
    } catch let e as CheckpointError {
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected CheckpointError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

func bytes(_ t: HostTensor) -> [UInt8] { Array(t.data) }
