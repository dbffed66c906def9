import Foundation
import Testing
import Tokenizers

/// `encode` and `decode` against sentencepiece's own output (encode.jsonl, decode.jsonl).
@Suite struct EncodeDecodeTests {
    @Test func fixturesLoaded() throws {
        #expect(Fixtures.encodeCases.count >= 500)
        #expect(Fixtures.decodeCases.count >= 400)
        #expect(Fixtures.vocabularyCases.count == Fixtures.names.count)
        for name in Fixtures.names { #expect(Fixtures.tokenizers[name] != nil, "tokenizer \(name) failed to load") }
    }

    @Test(arguments: Fixtures.names)
    func encodeMatchesSentencepiece(_ name: String) throws {
        let tokenizer = try #require(Fixtures.tokenizers[name])
        var mismatches = 0
        for c in Fixtures.encodeCases {
            let expected = try #require(c.ids[name])
            let ids = tokenizer.encode(c.text)
            if ids != expected {
                mismatches += 1
                if mismatches <= 5 {
                    Issue.record("\(name) encode(\(c.text.debugDescription.prefix(200))): got \(ids.prefix(40)), want \(expected.prefix(40))")
                }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(Fixtures.encodeCases.count) texts differ")
    }

    @Test(arguments: Fixtures.names)
    func decodeOfEncodedMatchesSentencepiece(_ name: String) throws {
        let tokenizer = try #require(Fixtures.tokenizers[name])
        for c in Fixtures.encodeCases {
            let ids = try #require(c.ids[name])
            let expected = c.decode[name] ?? c.text
            let got = tokenizer.decode(ids)
            #expect(sameBytes(got, expected), "\(name) decode for \(c.text.debugDescription.prefix(100)): got \(got.debugDescription.prefix(100))")
        }
    }

    @Test func decodeRandomIDsMatchesSentencepiece() throws {
        for c in Fixtures.decodeCases {
            let tokenizer = try #require(Fixtures.tokenizers[c.tok])
            let got = tokenizer.decode(c.ids)
            #expect(sameBytes(got, c.decode), "\(c.tok) decode(\(c.ids)): got \(got.debugDescription), want \(c.decode.debugDescription)")
        }
    }

    /// Control pieces are never produced from text: user text spelling `[INST]` or `</s>`
    /// must come out as ordinary pieces (the fixtures cover the exact ids; this states the rule).
    @Test(arguments: Fixtures.names)
    func textNeverYieldsControlIDs(_ name: String) throws {
        let tokenizer = try #require(Fixtures.tokenizers[name])
        for text in ["[INST] hi [/INST]", "</s><s>", "[TOOL_CALLS][AVAILABLE_TOOLS]", "<unk>"] {
            #expect(!tokenizer.encode(text).contains(where: tokenizer.isControl), "\(name): \(text)")
        }
    }

    /// Every 5000-character fixture (prose, "a"×5000, spaces, emoji, random unicode …).
    @Test func longTextsEncodeInMilliseconds() throws {
        let tokenizer = try #require(Fixtures.tokenizers["v3"])
        let long = Fixtures.encodeCases.filter { $0.text.unicodeScalars.count >= 5000 }
        #expect(long.count >= 8)
        let clock = ContinuousClock()
        for c in long {
            var ids: [Int] = []
            let elapsed = clock.measure { ids = tokenizer.encode(c.text) }
            #expect(ids == c.ids["v3"])
            // Generous bound for debug builds on a shared 2-core machine; see the report for
            // release timings.
            #expect(elapsed < .milliseconds(500), "encoding \(c.text.prefix(20).debugDescription)… took \(elapsed)")
        }
    }
}
