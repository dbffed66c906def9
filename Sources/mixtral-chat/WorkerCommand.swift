import AIMEWorker
import ArgumentParser
import Foundation
import Logging

/// `mixtral-chat worker`: serve the model as a compute worker of an AIME API Server
/// (drop-in for the PyTorch `chat.py` worker: same flags, also in their snake_case spellings).
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve the model as a compute worker for the AIME API Server (endpoint mixtral_chat).",
        discussion: """
            Logs in to the API server, long-polls for chat jobs (up to --max-batch-size at once; a new \
            job joins the running batch), streams progress and sends one result per job. Ctrl-C or \
            SIGTERM stops taking jobs and finishes the running ones; a second signal stops them too.
            """)

    @Option(name: [.customLong("api-server"), .customLong("api_server")],
            help: "The AIME API Server's address, e.g. http://127.0.0.1:7777.")
    var apiServer: String

    @Option(name: [.customLong("api-auth-key"), .customLong("api_auth_key")],
            help: "The worker key of the job type (never logged).")
    var apiAuthKey = WorkerConfiguration.defaultAuthKey

    @Option(name: [.customLong("job-type"), .customLong("job_type")], help: "The job type to serve.")
    var jobType = "mixtral"

    @Option(name: [.customLong("max-batch-size"), .customLong("max_batch_size")],
            help: "Most jobs generated at once.")
    var maxBatchSize = 1

    @Option(name: [.customLong("ckpt-dir"), .customLong("ckpt_dir")],
            help: "Checkpoint folder (its name becomes the model label the server shows).")
    var ckptDir: String

    @Option(name: [.customLong("max-seq-len"), .customLong("max_seq_len")],
            help: "Context window per job (prompt + answer), at most the model's.")
    var maxSeqLen: Int?

    @Option(help: "auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N.")
    var device = "auto"

    @Option(name: [.customLong("gpu-id"), .customLong("gpu_id")], help: "GPU ordinal (same as --device cuda:N).")
    var gpuID: Int?

    @Option(name: [.customLong("worker-name")], help: "Name shown by the server (default: host#pid_NxGPU).")
    var workerName: String?

    @Option(name: [.customLong("log-level"), .customLong("log_level")],
            help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Flag(name: [.customLong("no-status")], help: "Do not print the one-line status.")
    var noStatus = false

    func validate() throws {
        guard maxBatchSize >= 1 else { throw ValidationError("--max-batch-size must be at least 1") }
        if let maxSeqLen, maxSeqLen < 2 { throw ValidationError("--max-seq-len must be at least 2") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        var logger = Logger(label: "mixtral-chat.worker")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let loaded = try WorkerModel.load(checkpointDirectory: ckptDir, device: device, gpuID: gpuID,
                                          maxSeqLen: maxSeqLen, maxBatchSize: maxBatchSize, logger: logger)
        var configuration = WorkerConfiguration(
            apiServer: apiServer, authKey: apiAuthKey, jobType: jobType, maxBatchSize: maxBatchSize,
            maxSeqLen: loaded.maxSeqLen, model: loaded.description, workerName: workerName,
            gpuName: loaded.gpuName, numGPUs: loaded.numGPUs)
        configuration.framework = "MixtralChat"
        try configuration.validate()

        let worker = AIMEWorkerService(configuration: configuration, runner: loaded.runner, logger: logger)
        let status = StatusLine(enabled: !noStatus)
        let signals = WorkerSignalHandler(worker: worker) { message in status.message(message) }
        defer { signals.cancel() }
        let printer = Task {
            while !Task.isCancelled {
                status.show(await worker.status().line)
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { printer.cancel() }
        do {
            try await worker.run()
        } catch {
            status.finish(await worker.status().line)
            throw error
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
