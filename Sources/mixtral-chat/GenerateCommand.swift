import ArgumentParser
import Chat
import Foundation
import Generation
import Model
import Runtime

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate one completion and exit.",
        discussion: """
            --prompt is sent as one user message in the model's instruct format (add --raw to \
            continue the text as is, after BOS); --prompt-tokens are used exactly as given (no BOS \
            added); --chat reads an OpenAI chat-completions request (messages, tools);             --fim-prefix (with an optional --fim-suffix) asks a fill-in-the-middle model (Codestral)             for the code between the two, encoded as mistral-common's encode_fim.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(help: "Prompt text.") var prompt: String?
    @Option(name: [.customLong("prompt-tokens")], help: "Comma-separated token ids, used as given.") var promptTokens: String?
    @Option(help: "OpenAI chat-completions request JSON file.") var chat: String?
    @Flag(help: "With --prompt: plain completion instead of a user message.") var raw = false
    @Option(name: .customLong("fim-prefix"), help: "Fill-in-the-middle: the text before the gap (Codestral).")
    var fimPrefix: String?
    @Option(name: .customLong("fim-suffix"), help: "Fill-in-the-middle: the text after the gap (needs --fim-prefix).")
    var fimSuffix: String?
    @Flag(help: "Print one JSON object: tokens, text, finish_reason, prompt_tokens.") var json = false
    @Option(help: "With --json: each token's log-probability and the N most likely tokens' ([id, logprob] pairs), N ≤ 20.")
    var logprobs: Int?
    @Option(name: [.customLong("dump-logits")], help: "Write the float32 logits of every prompt position to this .npy file.")
    var dumpLogits: String?

    func validate() throws {
        let given = [prompt != nil, promptTokens != nil, chat != nil, fimPrefix != nil].filter { $0 }.count
        guard given == 1 else { throw ValidationError("give exactly one of --prompt, --prompt-tokens, --chat, --fim-prefix") }
        if fimSuffix != nil, fimPrefix == nil { throw ValidationError("--fim-suffix needs --fim-prefix") }
    }

    func run() async throws {
        do {
            let runtime = try ModelRuntime.load(model.runtime, quiet: json)
            let tokens = try promptIDs(runtime)
            if let path = dumpLogits { try dump(tokens, runtime: runtime, to: URL(fileURLWithPath: path)) }
            var parameters = sampling.parameters
            parameters.logprobs = logprobs
            let handle = try runtime.engine.submit(promptTokens: tokens, sampling: parameters)
            if json {
                let result = await handle.collect()
                printJSONLine(Output(tokens: result.tokens, text: result.text, finish_reason: result.finishReason.rawValue,
                                     prompt_tokens: result.promptTokens, error: result.error?.description,
                                     logprobs: logprobs == nil ? nil : result.logprobs.map(LogprobOutput.init)))
            } else {
                for await event in handle.events {
                    if case .token(_, let text) = event { FileHandle.standardOutput.write(Data(text.utf8)) }
                    if case .finished(_, _, _, let error?) = event { printError(error.description) }
                }
                print()
            }
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }

    struct Output: Encodable {
        var tokens: [Int]; var text: String; var finish_reason: String; var prompt_tokens: Int; var error: String?
        var logprobs: [LogprobOutput]?
    }

    struct LogprobOutput: Encodable {
        var token: Int; var logprob: Float; var top: [[Float]]
        init(_ entry: TokenLogprobs) {
            token = entry.chosen.id
            logprob = entry.chosen.logprob
            top = entry.top.map { [Float($0.id), $0.logprob] }
        }
    }

    struct BadTokens: Error, CustomStringConvertible {
        let text: String
        var description: String { "--prompt-tokens must be comma-separated integers, got '\(text)'" }
    }

    private func promptIDs(_ runtime: ModelRuntime) throws -> [Int] {
        if let list = promptTokens {
            let parts = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let ids = parts.compactMap { Int($0) }
            guard ids.count == parts.count, !ids.isEmpty else { throw BadTokens(text: list) }
            return ids
        }
        if let fimPrefix { return try runtime.encoder.encodeFIM(prefix: fimPrefix, suffix: fimSuffix) }
        if let prompt {
            if raw { return [runtime.tokenizer.bosID] + runtime.tokenizer.encode(prompt) }
            return try runtime.encoder.encode(ChatRequest(messages: [.user(prompt)]))
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: chat ?? ""))
        return try runtime.encoder.encode(ChatRequest(jsonUTF8: Array(data)))
    }

    /// The logits of every prompt position, computed before generation starts (the engine is
    /// idle, so calling the model directly is safe).
    private func dump(_ tokens: [Int], runtime: ModelRuntime, to url: URL) throws {
        let m = runtime.model
        var rows: [Float] = []
        var table: [Int] = []
        guard m.kvBlocks.ensureCapacity(&table, tokens: tokens.count) else {
            throw EngineError.promptTooLong(tokens: tokens.count, limit: m.kvBlocks.blockCount * m.kvBlocks.blockSize)
        }
        defer { m.kvBlocks.release(table) }
        for start in stride(from: 0, to: tokens.count, by: m.maxBatchTokens) {
            let chunk = Array(tokens[start..<min(start + m.maxBatchTokens, tokens.count)])
            rows += try m.forward(PackedBatch(sequences: [.init(tokens: chunk, startPosition: start, blockTable: table)], allLogits: true)).values
        }
        try writeNPY(rows, shape: [tokens.count, m.config.vocabSize], to: url)
    }
}
