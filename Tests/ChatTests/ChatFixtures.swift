import Chat
import Foundation
import Tokenizers

/// Golden files written by tools/fixtures/make_chat_fixtures.py (mistral-common 1.13.1), and the
/// tokenizer models mistral-common ships, which the Tokenizers tests keep beside theirs.
enum ChatFixtures {
    static let versions = ["v1", "v2", "v3"]
    static let tokenizerFiles: [String: String] = [
        "v1": "tokenizer.model.v1",
        "v2": "mistral_instruct_tokenizer_240216.model.v2",
        "v3": "mistral_instruct_tokenizer_240323.model.v3",
        "v7": "mistral_instruct_tokenizer_241114.model.v7",
    ]

    /// Found next to this source file, so the suite also runs from a release build.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let tokenizerDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("TokenizersTests/Fixtures")

    struct Failure: Decodable {
        let type: String
        let message: String
    }

    struct Case: Decodable {
        let name: String
        /// The request body exactly as the Swift side parses it.
        let request: String
        let tokens: [Int]?
        let error: Failure?
    }

    struct JSONRoundTrip: Decodable {
        let input: String
        let output: String?
        let error: Bool?
    }

    /// Loaded once; tokenizers are immutable and Sendable.
    static let tokenizers: [String: SentencePieceTokenizer] = {
        var result: [String: SentencePieceTokenizer] = [:]
        for (version, file) in tokenizerFiles {
            result[version] = try? SentencePieceTokenizer(contentsOf: tokenizerDirectory.appendingPathComponent(file))
        }
        return result
    }()

    /// Splits on "\n" bytes only (texts hold U+2028, which Swift also treats as a line break).
    static func lines<T: Decodable>(_ file: String, as: T.Type) throws -> [T] {
        let data = try Data(contentsOf: directory.appendingPathComponent(file))
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(T.self, from: Data($0)) }
    }

    static func cases(_ version: String) throws -> [Case] {
        try lines("chat_\(version).jsonl", as: Case.self)
    }

    /// Which Python exception types each `ChatError.Kind` stands for. A Swift error must be of a
    /// kind whose list holds mistral-common's exception for the same request.
    static let pythonTypes: [ChatError.Kind: Set<String>] = [
        .invalidJSON: ["JSONDecodeError"],
        .invalidShape: ["ValidationError", "KeyError", "ValueError", "TypeError", "AttributeError"],
        .messageStructure: ["InvalidMessageStructureException"],
        .userMessage: ["InvalidUserMessageException"],
        .assistantMessage: ["InvalidAssistantMessageException"],
        .toolMessage: ["InvalidToolMessageException"],
        .systemPrompt: ["InvalidSystemPromptException"],
        .functionCall: ["InvalidFunctionCallException"],
        .tool: ["InvalidToolException"],
        .toolSchema: ["InvalidToolSchemaException"],
        .request: ["InvalidRequestException"],
        .tokenizer: ["TokenizerException"],
        .unsupportedFeature: ["UnsupportedTokenizerFeatureException", "AssertionError"],
        .contentAndToolCalls: ["ValueError"],
    ]

    /// mistral-common's own exceptions carry stable messages, which Swift reproduces verbatim;
    /// pydantic/KeyError/JSON messages are Python-specific and only the kind is compared.
    static func messageMustMatch(_ pythonType: String) -> Bool {
        pythonType.hasPrefix("Invalid") || pythonType == "TokenizerException"
            || pythonType == "UnsupportedTokenizerFeatureException"
    }
}
