import AIMEWorker
import CPUBackend
import Foundation
import Generation
import Testing
import TestSupport

/// A manual run against a real AIME API Server (not part of CI: it needs the server running).
/// Enabled by `AIME_API_SERVER=http://127.0.0.1:7777`; the worker serves for
/// `AIME_WORKER_SECONDS` (default 60) with max batch 3, then drains. Jobs whose prompt is "0",
/// "1" or "2" run through the real Engine on the tiny dense CPU model (answer: the fixture's
/// greedy tokens as "<id>"); any other prompt runs through the EchoRunner double, so a client can
/// send ordinary chats (`SLOW` in the prompt makes it take ~20 s, for restart tests).
@Suite("AIME worker against a real server", .enabled(if: ProcessInfo.processInfo.environment["AIME_API_SERVER"] != nil))
struct RealServerTests {
    struct MixedRunner: ChatJobRunner {
        let engine: EngineJobRunner
        let echo: EchoRunner
        func start(messages: [JobMessage], sampling: JobSampling) throws -> JobStream {
            if let last = messages.last?.content, ["0", "1", "2"].contains(last) {
                return try engine.start(messages: messages, sampling: sampling)
            }
            return try echo.start(messages: messages, sampling: sampling)
        }
    }

    @Test("serve the real server for a while")
    func serve() async throws {
        let environment = ProcessInfo.processInfo.environment
        let url = try #require(environment["AIME_API_SERVER"])
        let seconds = Int(environment["AIME_WORKER_SECONDS"] ?? "") ?? 60
        let reference = try DenseFixture.reference()
        let model = try DenseFixture.model()
        let engine = Engine(model: model, stopTokens: [], makeDecoder: { AngleDecoder() })
        let runner = MixedRunner(
            engine: EngineJobRunner(engine: engine, encoder: ReferencePromptEncoder(prompts: reference.prompts)),
            echo: EchoRunner(tokenDelay: .milliseconds(200)))
        var configuration = WorkerConfiguration(
            apiServer: url, maxBatchSize: 3, maxSeqLen: model.maxSequenceLength,
            model: .fromCheckpoint(directory: "/fixtures/tiny-dense", quantization: "bf16"), workerName: "swift-worker-test")
        configuration.backoffMax = .seconds(2)
        let worker = AIMEWorkerService(configuration: configuration, runner: runner)
        let run = Task { try await worker.run() }
        let deadline = ContinuousClock.now + .seconds(seconds)
        var lastLine = ""
        while ContinuousClock.now < deadline {
            let line = await worker.status().line
            if line != lastLine {
                print("[status] \(line)")
                lastLine = line
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        await worker.drain()
        try await run.value
        print("[status] \(await worker.status().line)")
    }
}
