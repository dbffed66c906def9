import ArgumentParser
import Chat
import Foundation
import Runtime
import Tokenizers

struct EncodeChat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode-chat",
        abstract: "Encode OpenAI-shaped chat requests exactly as mistral-common does: prints {\"tokens\":[…]} or {\"error\":\"…\"} per request.")

    @Option(help: "tokenizer.model file (its vocabulary decides v1/v2/v3).") var tokenizer: String
    @Option(help: "One chat-completions request JSON file.") var request: String?
    @Option(help: "File with one request per line.") var jsonl: String?

    func validate() throws {
        guard (request == nil) != (jsonl == nil) else { throw ValidationError("give exactly one of --request, --jsonl") }
    }

    struct Tokens: Encodable { var tokens: [Int] }
    struct Failure: Encodable { var error: String }

    func run() throws {
        let encoder: InstructEncoder
        do {
            let url = URL(fileURLWithPath: tokenizer)
            // The file name's .vN suffix decides the format, as in mistral-common.
            encoder = try InstructEncoder(tokenizer: try SentencePieceTokenizer(contentsOf: url), version: InstructVersion.declared(byFile: url))
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        func emit(_ data: Data) {
            do { printJSONLine(Tokens(tokens: try encoder.encode(try ChatRequest(jsonUTF8: Array(data))))) } catch {
                printJSONLine(Failure(error: "\(error)"))
            }
        }
        if let request {
            do { emit(try Data(contentsOf: URL(fileURLWithPath: request))) } catch { printJSONLine(Failure(error: "\(error)")) }
            return
        }
        for line in try readLines(jsonl ?? "") where !line.isEmpty { emit(Data(line.utf8)) }
    }
}
