import Foundation
import Testing
import Checkpoints
import Tensors

/// The .pth reader against files written by the real torch.save
/// (tools/fixtures/make_pth_edge_cases.py), with values checked against what torch reported.
@Suite struct PyTorchReaderTests {
    struct Expected: Decodable {
        var dtype: String
        var shape: [Int]
        var values: [Float]
    }

    func expected() throws -> [String: Expected] {
        try JSONDecoder().decode([String: Expected].self, from: Data(contentsOf: Fixtures.pth("views.json")))
    }

    @Test(arguments: ["views.pth", "proto4.pth", "zip64.pth"])
    func valuesMatchTorch(file: String) throws {
        let archive = try TensorArchive.pytorch(Fixtures.pth(file))
        let exp = try expected()
        #expect(archive.names == exp.keys.sorted())
        let dtypes: [String: DType] = ["bfloat16": .bf16, "float16": .f16, "float32": .f32]
        for (name, e) in exp {
            let t = try archive.tensor(named: name)
            #expect(t.dtype == dtypes[e.dtype], "\(name)")
            #expect(t.shape == e.shape, "\(name)")
            #expect(t.floats() == e.values, "\(name)")
        }
        // 'a' is whole[1]: a view 12 elements into the storage it shares with 'whole' (zip64.pth
        // leaves storages unaligned, so there the reader hands out aligned copies instead).
        let whole = try archive.tensor(named: "whole"), a = try archive.tensor(named: "a")
        if file != "zip64.pth" {
            #expect(a.data.baseAddress == whole.data.baseAddress.map { $0 + 24 })
            #expect(a.owner is MappedFile)
        }
    }

    @Test func deflatedEntriesAreRejected() throws {
        let e = expectCheckpointError(.compressed) { _ = try TensorArchive.pytorch(Fixtures.pth("deflated.pth")) }
        #expect(e?.file == "deflated.pth")
    }

    @Test func nonContiguousStridesAreRejected() throws {
        let e = expectCheckpointError(.nonContiguous) { _ = try TensorArchive.pytorch(Fixtures.pth("noncontiguous.pth")) }
        #expect(e?.tensor == "w")
        #expect(e?.file == "noncontiguous.pth")
    }

    @Test func unsupportedStorageType() throws {
        let archive = try TensorArchive.pytorch(Fixtures.pth("int64.pth"))
        let e = expectCheckpointError(.unsupportedDType) { _ = try archive.tensor(named: "w") }
        #expect(e?.tensor == "w")
        #expect(e?.message.contains("LongStorage") == true)
    }

    /// Copies `views.pth` into `dir` with `edit` applied to its bytes.
    func edited(_ dir: TempDir, _ edit: (inout [UInt8]) throws -> Void) throws -> URL {
        var data = [UInt8](try Data(contentsOf: Fixtures.pth("views.pth")))
        try edit(&data)
        let url = dir.file("consolidated.00.pth")
        try Data(data).write(to: url)
        return url
    }

    func range(of needle: String, in data: [UInt8]) throws -> Range<Int> {
        let n = Array(needle.utf8)
        let i = try #require((0...(data.count - n.count)).first { data[$0..<($0 + n.count)].elementsEqual(n) })
        return i..<(i + n.count)
    }

    @Test func garbagePickle() throws {
        // Overwrite the pickle (after PROTO 2) with bytes that are no valid opcode sequence.
        let dir = try TempDir()
        let url = try edited(dir) { data in
            let r = try range(of: "whole", in: data)
            for i in (r.lowerBound - 8)..<(r.lowerBound + 40) { data[i] = 0xFE }
        }
        let e = expectCheckpointError(.badPickle) { _ = try TensorArchive.pytorch(url) }
        #expect(e?.file == "consolidated.00.pth")
    }

    @Test func foreignCallableIsRefused() throws {
        let dir = try TempDir()
        let url = try edited(dir) { data in
            let r = try range(of: "_rebuild_tensor_v2", in: data)
            data[r.upperBound - 1] = UInt8(ascii: "9")
        }
        let e = expectCheckpointError(.badPickle) { _ = try TensorArchive.pytorch(url) }
        #expect(e?.message.contains("_rebuild_tensor_v9") == true)
    }

    @Test func truncatedZip() throws {
        let dir = try TempDir()
        let url = try edited(dir) { data in data.removeLast(data.count / 2) }
        expectCheckpointError(.truncated) { _ = try TensorArchive.pytorch(url) }
        let tiny = try edited(dir) { data in data = Array(data.prefix(10)) }
        expectCheckpointError(.truncated) { _ = try TensorArchive.pytorch(tiny) }
    }

    /// Found by tools/fuzz (target pth): a 54-byte zip whose EOCD says zip64 and whose locator
    /// points at a record that cannot fit in the file. It trapped before the fix.
    @Test func zip64RecordInATinyFile() throws {
        let dir = try TempDir()
        let crash: [UInt8] = [
            0x50, 0x4b, 0x03, 0x04, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x4b, 0x06, 0x07,
            0x00, 0x00, 0x00, 0x00, 0xbe, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
            0x50, 0x4b, 0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xf7, 0xff, 0xff, 0xff, 0x00, 0x00,
        ]
        let url = try edited(dir) { data in data = crash }
        expectCheckpointError(.badHeader) { _ = try TensorArchive.pytorch(url) }
    }

    @Test func notAZip() throws {
        let dir = try TempDir()
        let url = try edited(dir) { data in data = [0x80, 0x02] + [UInt8](repeating: 0x2E, count: 40) }
        let e = expectCheckpointError(.badHeader) { _ = try TensorArchive.pytorch(url) }
        #expect(e?.message.contains("legacy") == true)
    }

    @Test func truncatedConsolidatedCheckpoint() throws {
        let dir = try TempDir()
        try dir.copy(Fixtures.model("dense").appendingPathComponent("params.json"))
        let data = try Data(contentsOf: Fixtures.model("dense").appendingPathComponent("consolidated.00.pth"))
        try data.prefix(data.count * 3 / 4).write(to: dir.file("consolidated.00.pth"))
        let e = expectCheckpointError(.truncated) { _ = try MistralCheckpoint.load(directory: dir.url) }
        #expect(e?.file == "consolidated.00.pth")
    }

    @Test func storageMissingFromZip() throws {
        // Rename the storage entry 'data/0' (in both its local and central headers) so the pickle's
        // persistent id points at nothing.
        let dir = try TempDir()
        let url = try edited(dir) { data in
            var from = 0
            let n = Array("archive/data/0".utf8)
            while let i = (from...(data.count - n.count)).first(where: { data[$0..<($0 + n.count)].elementsEqual(n) }) {
                data[i + n.count - 1] = UInt8(ascii: "Z")
                from = i + n.count
                if from > data.count - n.count { break }
            }
        }
        let e = expectCheckpointError(.truncated) { _ = try TensorArchive.pytorch(url) }
        #expect(e?.message.contains("data/0") == true)
    }

    @Test func modelParallelShardsAreRefused() throws {
        let dir = try TempDir()
        try dir.copy(Fixtures.model("dense").appendingPathComponent("params.json"))
        try dir.copy(Fixtures.model("dense").appendingPathComponent("consolidated.00.pth"))
        try dir.copy(Fixtures.model("dense").appendingPathComponent("consolidated.00.pth"), as: "consolidated.01.pth")
        expectCheckpointError(.unsupported) { _ = try MistralCheckpoint.load(directory: dir.url) }
    }
}
