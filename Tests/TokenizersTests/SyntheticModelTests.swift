import Foundation
import Testing
import Tokenizers

/// Tiny models trained by the fixture script with the options Mistral's files do not use
/// (remove_extra_whitespaces, no byte fallback, user-defined pieces, whitespace as suffix, no
/// dummy prefix, UNUSED pieces, escape_whitespaces off, precompiled normalisation rules),
/// checked against sentencepiece.
@Suite struct SyntheticModelTests {
    struct Case: Decodable {
        let model: String
        let text: String?
        let ids: [Int]
        let decode: String
    }

    static let names = ["extra_ws_unk", "suffix_bytes", "nodummy_unused", "noescape", "rules"]
    static let cases: [Case] = (try? Fixtures.lines("synthetic.jsonl", as: Case.self)) ?? []

    @Test(arguments: names)
    func matchesSentencepiece(_ name: String) throws {
        let tokenizer = try SentencePieceTokenizer(contentsOf: Fixtures.url("synthetic/\(name).model"))
        let cases = Self.cases.filter { $0.model == name }
        #expect(cases.count >= 100)
        for c in cases {
            if let text = c.text {
                let ids = tokenizer.encode(text)
                #expect(ids == c.ids, "\(name) encode(\(text.debugDescription))")
            }
            let decoded = tokenizer.decode(c.ids)
            #expect(sameBytes(decoded, c.decode), "\(name) decode(\(c.ids)): \(decoded.debugDescription) vs \(c.decode.debugDescription)")
            if let problem = StreamingDetokenizerTests.check(tokenizer, c.ids) { Issue.record("\(name) \(problem)") }
        }
    }
}
