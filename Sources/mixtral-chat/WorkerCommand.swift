import AIMEWorker
import ArgumentParser
import Chat
import Foundation
import Generation
import Logging

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve chat jobs for an AIME API Server (endpoint mixtral_chat, job type mixtral).",
        discussion: """
            Drop-in for the PyTorch worker: same flags (snake_case spellings accepted), batched with \
            continuous admission, progress streamed back, retries while the server is offline. \
            Ctrl-C / SIGTERM finish the running jobs and deliver their results; a second signal \
            stops them with an error result.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: [.customLong("api-server"), .customLong("api_server")], help: "AIME API Server URL, e.g. http://127.0.0.1:7777.")
    var apiServer: String
    @Option(name: [.customLong("api-auth-key"), .customLong("api_auth_key")], help: "The job type's worker key.")
    var apiAuthKey: String = WorkerConfiguration.defaultAuthKey
    @Option(name: [.customLong("job-type"), .customLong("job_type")]) var jobType: String = "mixtral"
    @Option(name: [.customLong("log-level"), .customLong("log_level")], help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
    @Flag(help: "No one-line status on stderr.") var quiet = false

    func run() async throws {
        var options = model
        options.maxBatchSize = model.maxBatchSizeOption ?? 1
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown --log-level \(logLevel)") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let runtime: ModelRuntime
        do { runtime = try ModelRuntime.load(options) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var configuration = WorkerConfiguration(
            apiServer: apiServer, authKey: apiAuthKey, jobType: jobType, maxBatchSize: options.maxBatchSize,
            maxSeqLen: runtime.model.maxSequenceLength,
            model: ModelDescription.fromCheckpoint(directory: runtime.directory.path),
            gpuName: runtime.model.deviceName, numGPUs: runtime.model.deviceName.hasPrefix("cpu") ? 0 : 1)
        configuration.framework = "MixtralChat"
        let runner = EngineJobRunner(engine: runtime.engine, encoder: InstructJobEncoder(encoder: runtime.encoder))
        let worker = AIMEWorkerService(configuration: configuration, runner: runner)
        let signals = WorkerSignalHandler(worker: worker) { message in
            FileHandle.standardError.write(Data("\n\(message)\n".utf8))
        }
        defer { signals.cancel() }
        let statusTask = Task {
            guard !quiet else { return }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let line = await worker.status().line
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            }
        }
        defer { statusTask.cancel() }
        do { try await worker.run() } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// AIME job dialogs in the model's instruct format: each `{role, content}` becomes a chat
/// message and `InstructEncoder` emits control tokens by id (user text can never forge them);
/// a trailing assistant message means "continue this answer".
struct InstructJobEncoder: JobPromptEncoder {
    let encoder: InstructEncoder

    func encode(_ messages: [JobMessage]) throws -> [Int] {
        let chat: [ChatMessage] = messages.map { m in
            switch m.role {
            case .system: return .system(m.content)
            case .user: return .user(m.content)
            case .assistant: return .assistant(m.content)
            case .tool: return .tool(m.content, toolCallID: nil)
            }
        }
        let continuing = messages.last?.role == .assistant
        return try encoder.encode(ChatRequest(messages: chat, continueFinalMessage: continuing))
    }
}
