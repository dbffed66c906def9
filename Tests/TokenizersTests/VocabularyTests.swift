import Testing
import Tokenizers

/// Piece lookups and special ids against sentencepiece (pieces.jsonl).
@Suite struct VocabularyTests {
    @Test func specialIDsAndPieces() throws {
        for c in Fixtures.vocabularyCases {
            let tokenizer = try #require(Fixtures.tokenizers[c.tok])
            #expect(tokenizer.vocabularySize == c.size)
            #expect(tokenizer.bosID == c.bos)
            #expect(tokenizer.eosID == c.eos)
            #expect(tokenizer.unkID == c.unk)
            for (piece, info) in c.pieces {
                guard let info else {
                    #expect(tokenizer.id(forPiece: piece) == nil, "\(c.tok) \(piece)")
                    continue
                }
                #expect(tokenizer.id(forPiece: piece) == info.id, "\(c.tok) \(piece)")
                #expect(tokenizer.piece(forID: info.id) == piece)
                #expect(tokenizer.isControl(info.id) == info.control, "\(c.tok) \(piece)")
                #expect(tokenizer.isByte(info.id) == info.byte, "\(c.tok) \(piece)")
                #expect(tokenizer.isUnknown(info.id) == info.unknown, "\(c.tok) \(piece)")
            }
        }
    }

    /// The instruct control tokens of v3 (issue 2, item 3) and the "v3 = v1 + 768" layout.
    @Test func v3ControlTokens() throws {
        let v1 = try #require(Fixtures.tokenizers["v1"])
        let v3 = try #require(Fixtures.tokenizers["v3"])
        let names = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                     "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
        for (offset, name) in names.enumerated() {
            let id = try #require(v3.id(forPiece: name), "\(name) missing in v3")
            #expect(id == 3 + offset)
            #expect(v3.isControl(id))
            #expect(v3.decode([id]) == "")
            #expect(v1.id(forPiece: name) == nil)
        }
        for id in stride(from: 3, to: v1.vocabularySize, by: 97) {
            #expect(v3.piece(forID: id + 768) == v1.piece(forID: id))
        }
    }

    @Test func outOfRangeIDsAreHarmless() throws {
        let tokenizer = try #require(Fixtures.tokenizers["v1"])
        #expect(tokenizer.piece(forID: -1) == "")
        #expect(tokenizer.piece(forID: tokenizer.vocabularySize) == "")
        #expect(!tokenizer.isControl(1 << 40))
        #expect(tokenizer.decode([-5, 1 << 40]) == "")
    }
}
