import AIMEWorker
import ArgumentParser
import Chat
import Foundation
import Generation
import Logging
import Runtime

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
    @Option(name: .customLong("worker-name"), help: "Name shown by the server (default: host#pid_NxGPU).")
    var workerName: String?
    @Option(name: [.customLong("log-level"), .customLong("log_level")], help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
    @Flag(name: [.customLong("no-status"), .customLong("quiet")], help: "No one-line status on stderr.") var quiet = false

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
        do { runtime = try ModelRuntime.load(options.runtime) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var configuration = WorkerConfiguration(
            apiServer: apiServer, authKey: apiAuthKey, jobType: jobType, maxBatchSize: options.maxBatchSize,
            maxSeqLen: runtime.model.maxSequenceLength,
            model: ModelDescription.fromCheckpoint(directory: runtime.directory.path, quantization: runtime.weightDType),
            workerName: workerName,
            gpuName: runtime.model.deviceName, numGPUs: runtime.model.gpuCount)
        configuration.framework = "MixtralChat"
        let runner = EngineJobRunner(engine: runtime.engine, encoder: InstructJobEncoder(runtime.encoder))
        let worker = AIMEWorkerService(configuration: configuration, runner: runner)
        let status = StatusLine(enabled: !quiet)
        let signals = WorkerSignalHandler(worker: worker) { message in status.message(message) }
        defer { signals.cancel() }
        let printer = Task {
            while !Task.isCancelled {
                status.show(await worker.status().line)
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { printer.cancel() }
        do { try await worker.run() } catch {
            status.finish(await worker.status().line)
            printError("\(error)")
            throw ExitCode(1)
        }
        status.finish(await worker.status().line)
    }
}

/// The console status: rewritten in place on a terminal; in a log file, one line when the state
/// changes kind (polling, running, offline, …) and otherwise at most every 30 s.
final class StatusLine: @unchecked Sendable {
    // @unchecked: `last`, `lastKind` and `lastWrite` are only touched under `lock`.
    private let lock = NSLock()
    private var last = ""
    private var lastKind = ""
    private var lastWrite = ContinuousClock.now
    private let enabled: Bool
    private let terminal = isatty(STDERR_FILENO) != 0

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ line: String) {
        guard enabled else { return }
        lock.withLock {
            guard line != last else { return }
            if terminal {
                write("\r\u{1B}[2K" + line)
            } else {
                // The state is the text before the first "|", without its counters.
                let kind = String(line.prefix { $0 != "|" }.filter { !$0.isNumber })
                guard kind != lastKind || ContinuousClock.now - lastWrite >= .seconds(30) else { return }
                lastKind = kind
                write(line + "\n")
            }
            last = line
            lastWrite = .now
        }
    }

    func message(_ text: String) {
        lock.withLock { write((terminal && !last.isEmpty ? "\r\u{1B}[2K" : "") + text + "\n" + (terminal ? last : "")) }
    }

    func finish(_ line: String) {
        guard enabled else { return }
        lock.withLock { write((terminal ? "\r\u{1B}[2K" : "") + line + "\n") }
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

