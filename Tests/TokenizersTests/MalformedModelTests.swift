import Testing
import Tokenizers

/// Hand-built ModelProtos that are well-formed protobuf but invalid (or unsupported) models:
/// each must give the same verdict sentencepiece gives, as a `TokenizerError`.
@Suite struct MalformedModelTests {
    /// Just enough of the protobuf wire format to write test models.
    struct Proto {
        var bytes: [UInt8] = []

        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                bytes.append(UInt8(v & 0x7F) | 0x80)
                v >>= 7
            }
            bytes.append(UInt8(v))
        }
        mutating func field(_ number: Int, varint value: Int) {
            varint(UInt64(number << 3))
            varint(UInt64(bitPattern: Int64(value)))
        }
        mutating func field(_ number: Int, bytes value: [UInt8]) {
            varint(UInt64(number << 3 | 2))
            varint(UInt64(value.count))
            bytes += value
        }
        mutating func field(_ number: Int, float value: Float) {
            varint(UInt64(number << 3 | 5))
            let bits = value.bitPattern
            bytes += [UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
        }
    }

    /// piece type numbers: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6.
    static func model(
        pieces: [(String, Float, Int)], modelType: Int = 2, byteFallback: Bool = false, charsmap: [UInt8]? = nil
    ) -> [UInt8] {
        var m = Proto()
        for (text, score, type) in pieces {
            var p = Proto()
            p.field(1, bytes: Array(text.utf8))
            p.field(2, float: score)
            p.field(3, varint: type)
            m.field(1, bytes: p.bytes)
        }
        var trainer = Proto()
        trainer.field(3, varint: modelType)
        trainer.field(35, varint: byteFallback ? 1 : 0)
        m.field(2, bytes: trainer.bytes)
        var normalizer = Proto()
        normalizer.field(1, bytes: Array("identity".utf8))
        if let charsmap { normalizer.field(2, bytes: charsmap) }
        m.field(3, bytes: normalizer.bytes)
        return m.bytes
    }

    static let basic: [(String, Float, Int)] = [
        ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("▁", -1, 1), ("a", -2, 1), ("b", -3, 1), ("ab", -4, 1),
        ("▁ab", -5, 1),
    ]

    static func verdict(_ bytes: [UInt8]) -> TokenizerError? {
        do {
            _ = try SentencePieceTokenizer(modelData: bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func minimalModelWorks() throws {
        let tokenizer = try SentencePieceTokenizer(modelData: Self.model(pieces: Self.basic))
        #expect(tokenizer.encode("ab ab") == [7, 7])
        // The spec leaves remove_extra_whitespaces unset, and its proto default is true.
        #expect(tokenizer.encode("ab  ba") == [7, 3, 5, 4])
        #expect(tokenizer.encode("abc") == [7, 0])
        #expect(tokenizer.encode("cd") == [3, 0])  // the run "cd" of unknown characters is one <unk>
        #expect(tokenizer.decode([1, 7, 7, 0, 2]) == "ab ab \u{2047} ")
        #expect(tokenizer.bosID == 1 && tokenizer.eosID == 2 && tokenizer.unkID == 0)
    }

    @Test func missingUnknown() {
        let e = Self.verdict(Self.model(pieces: Array(Self.basic.dropFirst())))
        #expect(e?.kind == .corrupt && e?.message.contains("UNKNOWN") == true, "\(String(describing: e))")
    }

    @Test func duplicatePiece() {
        let e = Self.verdict(Self.model(pieces: Self.basic + [("ab", -9, 1)]))
        #expect(e?.kind == .corrupt && e?.message.contains("already defined") == true, "\(String(describing: e))")
    }

    @Test func emptyPiece() {
        let e = Self.verdict(Self.model(pieces: Self.basic + [("", -9, 1)]))
        #expect(e?.kind == .corrupt, "\(String(describing: e))")
    }

    @Test func unknownPieceType() {
        let e = Self.verdict(Self.model(pieces: Self.basic + [("zz", -9, 9)]))
        #expect(e?.kind == .corrupt && e?.message.contains("type") == true, "\(String(describing: e))")
    }

    @Test func unigramIsUnsupported() {
        let e = Self.verdict(Self.model(pieces: Self.basic, modelType: 1))
        #expect(e?.kind == .unsupported && e?.message.contains("UNIGRAM") == true, "\(String(describing: e))")
    }

    @Test func byteFallbackNeedsAll256BytePieces() {
        let e = Self.verdict(Self.model(pieces: Self.basic + [("<0x00>", 0, 6)], byteFallback: true))
        #expect(e?.kind == .corrupt && e?.message.contains("byte") == true, "\(String(describing: e))")
        let off = Self.verdict(Self.model(pieces: Self.basic + [("<0x00>", 0, 6)], byteFallback: false))
        #expect(off?.kind == .corrupt && off?.message.contains("byte_fallback") == true, "\(String(describing: off))")
        let malformed = Self.verdict(Self.model(pieces: Self.basic + [("<0xZZ>", 0, 6)], byteFallback: true))
        #expect(malformed?.kind == .corrupt, "\(String(describing: malformed))")
    }

    @Test func charsmapTooShort() {
        let e = Self.verdict(Self.model(pieces: Self.basic, charsmap: [1, 0, 0]))
        #expect(e?.kind == .corrupt && e?.message.contains("precompiled_charsmap") == true, "\(String(describing: e))")
        let oversized = Self.verdict(Self.model(pieces: Self.basic, charsmap: [0xFF, 0xFF, 0, 0, 1, 2, 3, 4]))
        #expect(oversized?.kind == .corrupt, "\(String(describing: oversized))")
    }

    /// A charsmap whose trie points anywhere must not crash encoding (sentencepiece would read
    /// out of bounds); any result is acceptable, a crash is not.
    @Test(arguments: 0..<16)
    func garbageCharsmapDoesNotCrash(_ seed: Int) throws {
        var state = UInt64(seed + 1) &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt8 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        let units = 60
        let blob = [UInt8(units * 4), 0, 0, 0] + (0..<(units * 4 + 40)).map { _ in next() }
        let tokenizer = try SentencePieceTokenizer(modelData: Self.model(pieces: Self.basic, charsmap: blob))
        let text = String(decoding: (0..<200).map { _ in next() & 0x7F }, as: UTF8.self) + "ab 東京 😀"
        _ = tokenizer.encode(text)
    }
}
