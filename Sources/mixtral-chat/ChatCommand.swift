import ArgumentParser
import Chat
import Foundation
import Generation
import Runtime

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat in the terminal: streams answers, keeps the conversation. Commands: /reset, /system TEXT, /exit.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "System prompt (default: Chloe's).") var system: String?

    static let defaultSystem = "You are a helpful, respectful and honest assistant named Chloe."

    func run() async throws {
        let runtime: ModelRuntime
        do { runtime = try ModelRuntime.load(model.runtime) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var systemPrompt: String? = system ?? Self.defaultSystem
        var history: [ChatMessage] = []
        let out = FileHandle.standardOutput
        say("Chloe is ready (\(runtime.label) on \(runtime.model.deviceName)). /reset clears the conversation, /system TEXT sets the system prompt, /exit quits.")
        while true {
            out.write(Data("\n> ".utf8))
            guard let line = readLine() else { break }
            let input = line.trimmingCharacters(in: .whitespaces)
            if input.isEmpty { continue }
            if input == "/exit" || input == "/quit" { break }
            if input == "/reset" { history.removeAll(); say("(conversation cleared)"); continue }
            if input.hasPrefix("/system") {
                let text = input.dropFirst("/system".count).trimmingCharacters(in: .whitespaces)
                systemPrompt = text.isEmpty ? nil : text
                history.removeAll()
                say(text.isEmpty ? "(system prompt removed; conversation cleared)" : "(system prompt set; conversation cleared)")
                continue
            }
            history.append(.user(input))
            var messages = history
            if let systemPrompt { messages.insert(.system(systemPrompt), at: 0) }
            let prompt: FittedPrompt
            do {
                // Oldest turns go first when the conversation outgrows max-seq-len − max-tokens.
                let context = runtime.model.maxSequenceLength
                let budget = context - sampling.maxTokens > 0 ? context - sampling.maxTokens : context - 1
                prompt = try runtime.encoder.encode(ChatRequest(messages: messages), maxTokens: budget)
            } catch {
                printError("\(error)")
                history.removeLast()
                continue
            }
            if prompt.droppedMessages > 0 {
                say("(the conversation is longer than the context: the oldest \(prompt.droppedMessages) message(s) were left out)")
            }
            var answer = ""
            do {
                let handle = try runtime.engine.submit(promptTokens: prompt.tokens, sampling: sampling.parameters)
                for await event in handle.events {
                    switch event {
                    case .token(_, let text):
                        answer += text
                        out.write(Data(text.utf8))
                    case .finished(let reason, _, _, let error):
                        if let error { printError(error.description) }
                        if reason == .length { out.write(Data(" […]".utf8)) }
                    case .prefillProgress, .logprobs: break
                    }
                }
                say()
            } catch {
                printError("\(error)")
            }
            history.append(.assistant(answer))
        }
    }
}

/// Console lines go through the same unbuffered handle as the streamed answer, so the order on a
/// pipe is the order on a terminal.
private func say(_ text: String = "") {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
