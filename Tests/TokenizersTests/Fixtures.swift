import Foundation
import Tokenizers

/// Loads the golden files written by tools/fixtures/make_tokenizer_fixtures.py.
enum Fixtures {
    static let tokenizerFiles: [String: String] = [
        "v1": "tokenizer.model.v1",
        "v2": "mistral_instruct_tokenizer_240216.model.v2",
        "v3": "mistral_instruct_tokenizer_240323.model.v3",
        "v7": "mistral_instruct_tokenizer_241114.model.v7",
    ]
    static let names = ["v1", "v2", "v3", "v7"]

    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }

    static func url(_ file: String) -> URL { directory.appendingPathComponent(file) }

    /// Tokenizers are immutable and Sendable; load each once for the whole suite.
    static let tokenizers: [String: SentencePieceTokenizer] = {
        var result: [String: SentencePieceTokenizer] = [:]
        for (name, file) in tokenizerFiles {
            result[name] = try? SentencePieceTokenizer(contentsOf: url(file))
        }
        return result
    }()

    struct EncodeCase: Decodable {
        let text: String
        let ids: [String: [Int]]
        /// Only present where sentencepiece's decode(encode(text)) differs from text.
        let decode: [String: String]
    }

    struct DecodeCase: Decodable {
        let tok: String
        let ids: [Int]
        let decode: String
    }

    struct PieceInfo: Decodable {
        let id: Int
        let control: Bool
        let byte: Bool
        let unknown: Bool
    }

    struct VocabularyCase: Decodable {
        let tok: String
        let file: String
        let size: Int
        let bos: Int
        let eos: Int
        let unk: Int
        let pieces: [String: PieceInfo?]
    }

    /// Splits on "\n" bytes only: texts may hold U+2028 or U+0085, which Swift would also
    /// treat as line breaks.
    static func lines<T: Decodable>(_ file: String, as: T.Type) throws -> [T] {
        let data = try Data(contentsOf: url(file))
        let decoder = JSONDecoder()
        return try data.split(separator: UInt8(ascii: "\n")).map { try decoder.decode(T.self, from: Data($0)) }
    }

    static let encodeCases: [EncodeCase] = (try? lines("encode.jsonl", as: EncodeCase.self)) ?? []
    static let decodeCases: [DecodeCase] = (try? lines("decode.jsonl", as: DecodeCase.self)) ?? []
    static let vocabularyCases: [VocabularyCase] = (try? lines("pieces.jsonl", as: VocabularyCase.self)) ?? []
}

/// Swift's `==` on String compares canonical equivalence (e + U+0301 == é); tokenizers must
/// match byte for byte.
func sameBytes(_ a: String, _ b: String) -> Bool {
    Array(a.utf8) == Array(b.utf8)
}
