import ArgumentParser
import Foundation
import Runtime
import Tokenizers

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize text with a SentencePiece model: prints {\"ids\":[…],\"decode\":\"…\"} per input.")

    @Option(help: "tokenizer.model file.") var tokenizer: String
    @Option(help: "Text to tokenize.") var text: String?
    @Option(help: "File with one {\"text\": …} object per line; one output line each, in order.") var jsonl: String?

    func validate() throws {
        guard (text == nil) != (jsonl == nil) else { throw ValidationError("give exactly one of --text, --jsonl") }
    }

    struct Line: Decodable { var text: String }
    struct Output: Encodable { var ids: [Int]; var decode: String }
    struct Failure: Encodable { var error: String }

    func run() throws {
        let tok: SentencePieceTokenizer
        do { tok = try SentencePieceTokenizer(contentsOf: URL(fileURLWithPath: tokenizer)) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        func emit(_ s: String) {
            let ids = tok.encode(s)
            printJSONLine(Output(ids: ids, decode: tok.decode(ids)))
        }
        if let text { emit(text); return }
        for (n, line) in try readLines(jsonl ?? "").enumerated() where !line.isEmpty {
            do { emit(try JSONDecoder().decode(Line.self, from: Data(line.utf8)).text) } catch {
                printJSONLine(Failure(error: "line \(n + 1): expected {\"text\": string}: \(error)"))
            }
        }
    }
}

func readLines(_ path: String) throws -> [Substring] {
    let content = try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8)
    return content.split(separator: "\n", omittingEmptySubsequences: false)
}
