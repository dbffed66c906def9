import Foundation
import Testing
import Tokenizers

/// The streaming detokenizer must agree with `decode`: in total, and after every prefix.
@Suite struct StreamingDetokenizerTests {
    /// Streams `ids`; after every id checks that what was emitted so far plus what `finish`
    /// would flush equals `decode(prefix)` (checked for sequences up to `prefixLimit` ids).
    static func check(_ tokenizer: SentencePieceTokenizer, _ ids: [Int], prefixLimit: Int = 400) -> String? {
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        var emitted = ""
        for (k, id) in ids.enumerated() {
            emitted += stream.append(id)
            if ids.count <= prefixLimit {
                var copy = stream
                let flushed = emitted + copy.finish()
                let expected = tokenizer.decode(Array(ids[...k]))
                if !sameBytes(flushed, expected) {
                    return "prefix \(k + 1) of \(ids): streamed \(flushed.debugDescription), decode \(expected.debugDescription)"
                }
            }
        }
        emitted += stream.finish()
        let expected = tokenizer.decode(ids)
        return sameBytes(emitted, expected) ? nil : "\(ids.prefix(50)): streamed \(emitted.debugDescription.prefix(200)), decode \(expected.debugDescription.prefix(200))"
    }

    @Test func randomIDSequences() throws {
        for c in Fixtures.decodeCases {
            let tokenizer = try #require(Fixtures.tokenizers[c.tok])
            if let problem = Self.check(tokenizer, c.ids) { Issue.record("\(c.tok) \(problem)") }
        }
    }

    @Test(arguments: Fixtures.names)
    func encodedTexts(_ name: String) throws {
        let tokenizer = try #require(Fixtures.tokenizers[name])
        for c in Fixtures.encodeCases {
            let ids = try #require(c.ids[name])
            if let problem = Self.check(tokenizer, ids, prefixLimit: 200) { Issue.record("\(name) \(problem)") }
        }
    }

    /// "😀" is four byte pieces in v1: nothing may come out until the fourth.
    @Test func holdsBackIncompleteCharacters() throws {
        let tokenizer = try #require(Fixtures.tokenizers["v1"])
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        let bytes = Array("🤖".utf8).compactMap { tokenizer.id(forPiece: String(format: "<0x%02X>", $0)) }
        #expect(bytes.count == 4)
        let outputs = bytes.map { stream.append($0) }
        #expect(outputs == ["", "", "", "🤖"])
        #expect(stream.finish() == "")
    }

    /// The dummy-prefix space of the first piece is dropped, later ones are kept, and control
    /// tokens (BOS) neither print nor count as text.
    @Test func leadingSpace() throws {
        let tokenizer = try #require(Fixtures.tokenizers["v3"])
        let ids = [tokenizer.bosID] + tokenizer.encode("Hello world")
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        let outputs = ids.map { stream.append($0) }
        #expect(outputs.first == "")
        #expect(outputs.joined() == "Hello world")
        #expect(stream.append(tokenizer.eosID) == "")
    }
}
