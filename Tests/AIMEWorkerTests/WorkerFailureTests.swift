import AIMEWorker
import Foundation
import Testing

/// Failure handling: server restarts and outages, server-side cancellation, context limits,
/// refused logins and shutdown.
@Suite("AIME worker failures")
struct WorkerFailureTests {
    @Test("server restart mid-job that keeps its jobs: the worker logs in again and delivers the result exactly once")
    func restartKeepingJobs() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(runner: runner)
        let id = await harness.state.submit(chat("SLOW survive a restart"))
        let progressed = await eventually { (await harness.state.job(id)?.progress.count ?? 0) >= 2 }
        try #require(progressed)
        try await harness.server.restart(keepJobs: true)
        let result = try await harness.result(id)
        #expect(result["text"]?.stringValue == echoAnswer("SLOW survive a restart", messages: 1))
        // A job submitted after the restart is served too.
        let after = await harness.state.submit(chat("after restart"))
        _ = try await harness.result(after)
        try await harness.shutdown()
        #expect(await harness.state.job(id)?.results.count == 1)
        #expect(await harness.state.loginCount >= 2)
        #expect(runner.record("SLOW survive a restart")?.cancelled == false)
    }

    @Test("server restart that loses its jobs (0.9.6): the lost job is stopped, nothing is sent twice, new jobs run")
    func restartLosingJobs() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(30))
        let harness = try await Harness.start(runner: runner)
        let lost = await harness.state.submit(chat("SLOW lost in a restart"))
        let progressed = await eventually { (await harness.state.job(lost)?.progress.count ?? 0) >= 1 }
        try #require(progressed)
        try await harness.server.restart(keepJobs: false)
        let after = await harness.state.submit(chat("after restart"))
        let result = try await harness.result(after)
        #expect(result["text"]?.stringValue == echoAnswer("after restart", messages: 1))
        let stopped = await eventually { runner.record("SLOW lost in a restart")?.cancelled == true }
        #expect(stopped, "the lost job should be cancelled once the server answers 500 for it")
        try await harness.shutdown()
        // The new server never got a result (or a warning-producing one) for the lost job.
        let results = await harness.state.requests(to: "/worker_job_result")
        #expect(results.count == 1)
        #expect(await harness.worker.status().statistics.jobsDropped == 1)
    }

    @Test("server offline at start, then back: the worker waits with backoff, shows it, then serves jobs")
    func offlineThenBack() async throws {
        let harness = try await Harness.start(startServer: false)
        let offline = await eventually(timeout: .seconds(30)) {
            if case .serverOffline = await harness.worker.state { return true }
            return false
        }
        #expect(offline)
        try await Task.sleep(for: .milliseconds(600))
        try await harness.server.start()
        let id = await harness.state.submit(chat("hello again"))
        let result = try await harness.result(id)
        #expect(result["text"]?.stringValue == echoAnswer("hello again", messages: 1))
        try await harness.shutdown()
        #expect(harness.logs.all.contains { $0.contains("API server offline for") && $0.contains("retrying") })
        #expect(harness.logs.all.contains { $0.contains("API server back after") })
    }

    @Test("503s, a `null` poll reply and a lost login are retried; the job still gets one result")
    func transientErrors() async throws {
        let harness = try await Harness.start()
        let first = await harness.state.submit(chat("first"))
        _ = try await harness.result(first)
        await harness.state.failNext(3)
        await harness.state.replyNullToNextPoll()
        // The open poll ends with no_job after 1 s; the next ones get 503, 503, 503, then null.
        let relogged = await eventually { await harness.state.loginCount >= 2 }
        #expect(relogged, "the null reply should lead to a new login")
        let second = await harness.state.submit(chat("second"))
        let result = try await harness.result(second)
        #expect(result["text"]?.stringValue == echoAnswer("second", messages: 1))
        try await harness.shutdown()
        #expect(await harness.state.job(second)?.results.count == 1)
    }

    @Test("a long poll cut by the server's response timeout (503) is simply repeated")
    func pollCutBy503() async throws {
        let harness = try await Harness.start()
        await harness.state.setResponseTimeout(.milliseconds(300))
        // Wait for the cuts themselves rather than a fixed time: under load the worker's
        // backoff spaces its polls further apart.
        let repeated = await eventually(timeout: .seconds(20)) { await harness.state.requests(to: "/worker_job_request").count >= 3 }
        #expect(repeated, "polls cut by 503 should be repeated")
        let id = await harness.state.submit(chat("after the cuts"))
        _ = try await harness.result(id)
        try await harness.shutdown()
        #expect(await harness.state.requests(to: "/worker_job_request").count >= 3)
    }

    @Test("a progress reply of {} (job lapsed) stops that job without a result; its batchmate is unaffected")
    func lapsedJobIsDropped() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(maxBatch: 2, runner: runner)
        let lapsing = await harness.state.submit(chat("SLOW lapsing job"))
        let healthy = await harness.state.submit(chat("SLOW healthy job"))
        let progressed = await eventually { (await harness.state.job(lapsing)?.progress.count ?? 0) >= 1 }
        try #require(progressed)
        await harness.state.lapse(lapsing)
        let stopped = await eventually { runner.record("SLOW lapsing job")?.cancelled == true }
        #expect(stopped)
        let result = try await harness.result(healthy)
        #expect(result["text"]?.stringValue == echoAnswer("SLOW healthy job", messages: 1))
        try await harness.shutdown()
        #expect(await harness.state.job(lapsing)?.results.isEmpty == true)
        #expect(await harness.worker.status().statistics.jobsDropped == 1)
    }

    @Test("`canceled: true` in a progress reply stops the job and frees its slot")
    func canceledJob() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(maxBatch: 1, runner: runner)
        let canceled = await harness.state.submit(chat("SLOW cancel me"))
        await harness.state.cancelOnNextProgress(canceled)
        let next = await harness.state.submit(chat("next in line"))
        _ = try await harness.result(next)
        try await harness.shutdown()
        #expect(runner.record("SLOW cancel me")?.cancelled == true)
        #expect(await harness.state.job(canceled)?.results.isEmpty == true)
    }

    @Test("a prompt longer than the context fails that job; generation stops when the context is full")
    func contextLimits() async throws {
        let harness = try await Harness.start(maxBatch: 2) { $0.maxSeqLen = 12 }
        let huge = await harness.state.submit(chat("HUGE prompt"))
        let long = await harness.state.submit(chat("fill the context please"))
        let hugeResult = try await harness.result(huge)
        #expect(hugeResult["error"]?.stringValue?.contains("does not fit the context window of 12 tokens") == true)
        let longResult = try await harness.result(long)
        #expect(longResult["error"] == nil)
        // 3 + 4 prompt tokens; 5 generated tokens fill the window of 12.
        #expect(longResult["current_context_length"]?.intValue == 12)
        #expect(longResult["num_generated_tokens"]?.intValue == 5)
        #expect(longResult["text"]?.stringValue == "You said: fill the context")
        try await harness.shutdown()
    }

    @Test("a refused login stops the worker with a clear error")
    func refusedLogin() async throws {
        let harness = try await Harness.start { $0.authKey = "wrong-key" }
        await #expect(throws: WorkerError.loginRejected("Worker not authorized on job type mixtral")) {
            try await harness.runTask.value
        }
        let unknownType = try await Harness.start { $0.jobType = "nonesuch" }
        do {
            try await unknownType.runTask.value
            Issue.record("an unknown job type should fail the login")
        } catch let error as WorkerError {
            #expect(error.description.contains("unknown job type"))
        }
        await harness.server.stop()
        await unknownType.server.stop()
    }

    @Test("clean shutdown: drain stops polling, the running job finishes and is delivered, run() returns")
    func cleanShutdown() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(maxBatch: 2, runner: runner)
        let running = await harness.state.submit(chat("SLOW finish me"))
        let started = await eventually { runner.record("SLOW finish me") != nil }
        try #require(started)
        // Wait until the poll for the second slot is open, then drain: it must be abandoned.
        let pollOpen = await eventually { await harness.state.requests(to: "/worker_job_request").count >= 2 }
        try #require(pollOpen)
        await harness.worker.drain()
        if case .draining = await harness.worker.state {} else {
            Issue.record("state should be draining, is \(await harness.worker.state)")
        }
        let pollsAtDrain = await harness.state.requests(to: "/worker_job_request").count
        // The worker closes its open poll, so the server hands it nothing more.
        let pollClosed = await eventually { await harness.state.openPolls == 0 }
        #expect(pollClosed)
        let late = await harness.state.submit(chat("too late"))
        try await harness.runTask.value
        #expect(await harness.worker.state == .stopped)
        let result = try #require(await harness.state.job(running)?.results.first)
        #expect(result["text"]?.stringValue == echoAnswer("SLOW finish me", messages: 1))
        #expect(await harness.state.job(late)?.state == .queued)
        #expect(await harness.state.requests(to: "/worker_job_request").count == pollsAtDrain)
        await harness.server.stop()
    }

    @Test("shutdown with cancellation answers running jobs with an error result")
    func forcedShutdown() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(runner: runner)
        let running = await harness.state.submit(chat("SLOW interrupted"))
        let started = await eventually { runner.record("SLOW interrupted") != nil }
        try #require(started)
        await harness.worker.drain(cancelRunningJobs: true)
        try await harness.runTask.value
        let result = try #require(await harness.state.job(running)?.results.first)
        #expect(result["error"]?.stringValue?.contains("shut down") == true)
        #expect(runner.record("SLOW interrupted")?.cancelled == true)
        await harness.server.stop()
    }
}

@Suite("AIME worker signals")
struct WorkerSignalTests {
    @Test("a signal drains the worker (running job delivered, run() returns); a second one cancels running jobs")
    func signalsDrainThenCancel() async throws {
        let runner = EchoRunner(tokenDelay: .milliseconds(20))
        let harness = try await Harness.start(maxBatch: 2, runner: runner)
        // SIGUSR1/SIGUSR2 stand in for SIGINT/SIGTERM, which would also reach the test runner.
        let messages = LogCapture()
        let handler = WorkerSignalHandler(worker: harness.worker, signals: [SIGUSR2]) { messages.append($0) }
        defer { handler.cancel() }
        let finishing = await harness.state.submit(chat("SLOW finish after the signal"))
        let started = await eventually { runner.record("SLOW finish after the signal") != nil }
        try #require(started)
        kill(getpid(), SIGUSR2)
        let draining = await eventually {
            if case .draining = await harness.worker.state { return true }
            return false
        }
        #expect(draining)
        try await Task.sleep(for: .milliseconds(300))
        kill(getpid(), SIGUSR2)
        try await harness.runTask.value
        await harness.server.stop()
        let result = try #require(await harness.state.job(finishing)?.results.first)
        #expect(result["error"]?.stringValue?.contains("shut down") == true)
        #expect(messages.all.count == 2)
        #expect(messages.all.last?.contains("second signal") == true)
    }
}
