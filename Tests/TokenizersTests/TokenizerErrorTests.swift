import Foundation
import Testing
import Tokenizers

/// Bad files give a `TokenizerError` naming the file, never a crash.
@Suite struct TokenizerErrorTests {
    static func temporaryFile(_ bytes: [UInt8], name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString)-\(name)")
        try Data(bytes).write(to: url)
        return url
    }

    static func error(_ body: () throws -> Void) -> TokenizerError? {
        do {
            try body()
            return nil
        } catch let error as TokenizerError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test func missingFile() {
        let url = URL(fileURLWithPath: "/nonexistent/dir/tokenizer.model.v3")
        let e = Self.error { _ = try SentencePieceTokenizer(contentsOf: url) }
        #expect(e?.kind == .unreadable)
        #expect(e?.file == url.path)
        #expect(e?.description.contains("tokenizer.model.v3") == true)
    }

    @Test func directoryInsteadOfFile() {
        let e = Self.error { _ = try SentencePieceTokenizer(contentsOf: FileManager.default.temporaryDirectory) }
        #expect(e != nil)
    }

    /// Cutting the real v1 model anywhere must be reported, not crash or yield a tokenizer.
    @Test(arguments: [0, 1, 7, 100, 4096, 250_000, 493_000])
    func truncatedFile(_ length: Int) throws {
        let full = [UInt8](try Data(contentsOf: Fixtures.url("tokenizer.model.v1")))
        let url = try Self.temporaryFile(Array(full.prefix(length)), name: "truncated.model")
        defer { try? FileManager.default.removeItem(at: url) }
        let e = Self.error { _ = try SentencePieceTokenizer(contentsOf: url) }
        #expect(e?.kind == .corrupt, "cut at \(length): \(String(describing: e))")
        #expect(e?.file == url.path)
    }

    @Test(arguments: 0..<20)
    func garbage(_ seed: Int) {
        var state = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        let bytes = (0..<(64 + seed * 97)).map { _ -> UInt8 in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        let e = Self.error { _ = try SentencePieceTokenizer(modelData: bytes) }
        #expect(e?.kind == .corrupt, "seed \(seed): \(String(describing: e))")
        #expect(e?.file == "<memory>")
    }

    @Test func textFileIsNotAModel() throws {
        let url = try Self.temporaryFile(Array("{\"vocab\": {\"a\": 1}}\n".utf8), name: "tokenizer.json")
        defer { try? FileManager.default.removeItem(at: url) }
        let e = Self.error { _ = try SentencePieceTokenizer(contentsOf: url) }
        #expect(e?.kind == .corrupt)
        #expect(e?.description.contains("tokenizer.json") == true)
    }
}
