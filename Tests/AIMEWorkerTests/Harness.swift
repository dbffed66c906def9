import AIMEWorker
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// Collects every log line (message and metadata) of a worker, to check what it logs.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])
    var all: [String] { lines.withLockedValue { $0 } }
    func append(_ line: String) { lines.withLockedValue { $0.append(line) } }

    func logger() -> Logger {
        Logger(label: "test.aime-worker") { _ in CapturingHandler(capture: self) }
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append("\(event.level) \(event.message) \(merged)")
        }
    }
}

/// A test server, an `EchoRunner` and a worker running against them.
struct Harness {
    let server: AIMETestServer
    let runner: EchoRunner
    let worker: AIMEWorkerService
    let logs: LogCapture
    let runTask: Task<Void, any Error>
    var state: AIMEProtocolState { server.state }

    /// Settings that keep tests short: fast backoff and heartbeat; the 5/s progress limit as in production.
    static func configuration(url: String, maxBatch: Int) -> WorkerConfiguration {
        var configuration = WorkerConfiguration(
            apiServer: url, maxBatchSize: maxBatch, maxSeqLen: 4096,
            model: ModelDescription.fromCheckpoint(directory: "/models/Mixtral-8x7B-Instruct-v0.1", quantization: "bf16"),
            workerName: "test-worker")
        configuration.backoffInitial = .milliseconds(50)
        configuration.backoffMax = .milliseconds(400)
        configuration.progressHeartbeat = .milliseconds(500)
        configuration.requestTimeout = .seconds(5)
        configuration.pollTimeoutMargin = .seconds(2)
        configuration.drainDeadline = .seconds(2)
        return configuration
    }

    /// `prepare` runs after the server started and before the worker does (e.g. to queue jobs
    /// that must arrive in the worker's first job reply).
    static func start(maxBatch: Int = 1, runner: EchoRunner = EchoRunner(), startServer: Bool = true,
                      configure: (inout WorkerConfiguration) -> Void = { _ in },
                      prepare: (AIMEProtocolState) async -> Void = { _ in }) async throws -> Harness {
        let server = AIMETestServer(pollSeconds: 1)
        try await server.start()
        await prepare(server.state)
        if !startServer { await server.stop() }
        var configuration = Self.configuration(url: await server.url, maxBatch: maxBatch)
        configure(&configuration)
        let logs = LogCapture()
        let worker = AIMEWorkerService(configuration: configuration, runner: runner, logger: logs.logger())
        let runTask = Task { try await worker.run() }
        return Harness(server: server, runner: runner, worker: worker, logs: logs, runTask: runTask)
    }

    /// Drains the worker, waits for `run()` and stops the server.
    func shutdown() async throws {
        await worker.drain()
        try await runTask.value
        await server.stop()
    }

    /// Waits until the server has a result for the job and returns the first one.
    func result(_ id: String, timeout: Duration = .seconds(60)) async throws -> AIMEJSON {
        let found = await eventually(timeout: timeout) { await state.job(id)?.results.isEmpty == false }
        try #require(found, "no result for job \(id) within \(timeout)")
        return try #require(await state.job(id)?.results.first)
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes. The default is long because
/// CI runs every suite at once on two cores: a worker's first login and poll have been seen to
/// take over 10 s there. A condition that holds returns at once, so a long limit costs nothing.
func eventually(timeout: Duration = .seconds(60), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}

/// A chat as a client sends it (decoded by the server, so a JSON list in `job_data`).
func chat(_ prompt: String, context: AIMEJSON = .null, extra: [String: AIMEJSON] = [:]) -> [String: AIMEJSON] {
    var input: [String: AIMEJSON] = ["prompt_input": .string(prompt), "chat_context": context, "max_gen_tokens": 64]
    for (key, value) in extra { input[key] = value }
    return input
}

let chloe: AIMEJSON = [
    ["role": "system", "content": "You are a helpful, respectful and honest assistant named Chloe."],
    ["role": "user", "content": "Hello, Chloe."],
    ["role": "assistant", "content": "How can I assist you today?"],
]

/// The answer EchoRunner gives for a prompt after `context` (`messages` turns in total).
func echoAnswer(_ prompt: String, messages: Int) -> String {
    "You said: \(prompt) . Dialog had \(messages) messages ."
}
