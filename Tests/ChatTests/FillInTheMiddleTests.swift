import Chat
import Foundation
import Testing
import Tokenizers

/// `encodeFIM` against mistral-common's `encode_fim` (fixtures from tools/fixtures/make_fim_fixtures.py).
@Suite struct FillInTheMiddleTests {
    struct Case: Decodable {
        let name: String
        let prompt: String
        let suffix: String?
        let tokens: [Int]?
        let error: ChatFixtures.Failure?
    }

    func cases(_ version: String) throws -> [Case] {
        try ChatFixtures.lines("fim_\(version).jsonl", as: Case.self)
    }

    func encoder(_ version: String) throws -> InstructEncoder {
        try InstructEncoder(tokenizer: try #require(ChatFixtures.tokenizers[version], "tokenizer \(version) did not load"))
    }

    /// Codestral's format: token for token.
    @Test func v3MatchesMistralCommon() throws {
        let encoder = try encoder("v3")
        let cases = try cases("v3")
        #expect(cases.count >= 90)
        var matched = 0
        for c in cases {
            let expected = try #require(c.tokens, "'\(c.name)': mistral-common raised \(c.error?.message ?? "?")")
            let tokens = try encoder.encodeFIM(prefix: c.prompt, suffix: c.suffix)
            #expect(tokens == expected, "'\(c.name)': tokens differ")
            if tokens == expected { matched += 1 }
        }
        #expect(matched == cases.count)
    }

    @Test func v1FailsLikeMistralCommon() throws {
        let encoder = try encoder("v1")
        for c in try cases("v1") {
            let expected = try #require(c.error, "'\(c.name)': mistral-common encoded FIM with v1")
            do {
                _ = try encoder.encodeFIM(prefix: c.prompt, suffix: c.suffix)
                Issue.record("'\(c.name)': v1 encoded a FIM prompt")
            } catch {
                #expect(error.kind == .tokenizer)
                #expect(expected.type == "TokenizerException")
                #expect(error.message == expected.message)
            }
        }
    }

    /// The v2 vocabulary has no [PREFIX]/[SUFFIX]: mistral-common puts <unk> (0) in their place,
    /// which the fixture shows; Swift refuses instead.
    @Test func v2IsRefusedWhereMistralCommonEmitsUnknownIDs() throws {
        let encoder = try encoder("v2")
        for c in try cases("v2") {
            let tokens = try #require(c.tokens)
            #expect(tokens[1] == 0, "'\(c.name)': mistral-common's [SUFFIX] was not <unk>")
            #expect(tokens.contains(0))
        }
        do {
            _ = try encoder.encodeFIM(prefix: "def f(", suffix: ")")
            Issue.record("a v2 tokenizer encoded a FIM prompt")
        } catch {
            #expect(error.kind == .tokenizerVocabulary)
            #expect(error.message.contains("[PREFIX]"))
        }
    }

    /// The layout, spelled out: BOS, [SUFFIX], suffix, [PREFIX], prefix; markers by id only.
    @Test func layoutAndMarkersByID() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v3"])
        let encoder = try encoder("v3")
        let prefixID = try #require(tokenizer.id(forPiece: "[PREFIX]"))
        let suffixID = try #require(tokenizer.id(forPiece: "[SUFFIX]"))
        let tokens = try encoder.encodeFIM(prefix: "x = [PREFIX]", suffix: " [SUFFIX]")
        #expect(tokens.first == tokenizer.bosID)
        #expect(tokens[1] == suffixID)
        #expect(tokens.filter { $0 == prefixID }.count == 1)
        #expect(tokens.filter { $0 == suffixID }.count == 1)
        let split = try #require(tokens.firstIndex(of: prefixID))
        #expect(Array(tokens[(split + 1)...]) == tokenizer.encode("x = [PREFIX]"))
        // The suffix keeps its leading space (no dummy prefix added or lost): its pieces spell it.
        let pieces = tokens[2..<split].map { tokenizer.piece(forID: $0) }.joined()
        #expect(pieces.replacingOccurrences(of: "\u{2581}", with: " ") == " [SUFFIX]")
        #expect(try encoder.encodeFIM(prefix: "a", suffix: nil) == encoder.encodeFIM(prefix: "a", suffix: ""))
    }
}
