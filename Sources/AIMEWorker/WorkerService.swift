import AsyncHTTPClient
import DequeModule
import Logging
import NIOCore

/// The AIME API Server compute worker: logs in, long-polls for jobs, runs them through a
/// `ChatJobRunner`, streams progress and delivers exactly one result per job.
///
/// Three loops share this actor's state:
/// - the **poll loop** (`pollLoop`) keeps one `/worker_job_request` open whenever a slot is free,
///   asking for `max_job_batch` = free slots, so a job that arrives mid-batch joins the running
///   batch at once (continuous admission);
/// - one **event task per job** feeds the runner's events into the job's record;
/// - the **uplink loop** (`uplinkLoop`, WorkerUplink.swift) sends progress as one list per flush
///   and, after that POST was answered, the results of finished jobs. Being one sequential loop is
///   what guarantees "result only after the last progress was answered".
///
/// `drain()` stops polling; `run()` returns once every admitted job has its result delivered
/// (or, with the server gone, once `drainDeadline` has passed).
public actor AIMEWorkerService {
    enum Phase: Equatable { case idle, loggingIn, active, draining, stopped }

    let configuration: WorkerConfiguration
    let runner: any ChatJobRunner
    let logger: Logger
    let clock = ContinuousClock()

    var phase: Phase = .idle
    var connection: APIConnection?
    /// The server's long-poll length, from the login reply.
    var serverPollSeconds = 60
    var offlineSince: ContinuousClock.Instant?
    var drainStarted: ContinuousClock.Instant?
    var fatalError: WorkerError?
    var loginTask: Task<Void, any Error>?
    var pollTask: Task<Void, Never>?
    var pollingFinished = false

    /// Admitted jobs that still need a result delivered, in admission order.
    var jobs: [String: ActiveJob] = [:]
    var jobOrder: [String] = []
    /// Recently finished job ids (the last `rememberedJobs`), so a job handed out twice is never
    /// run (or answered) twice; the order is a deque, so forgetting the oldest is O(1) (an
    /// array's removeFirst moved all 10,000 ids for every job).
    var recentJobIDs: Set<String> = []
    var recentJobOrder: Deque<String> = []
    static let rememberedJobs = 10_000

    var slotWaiter: CheckedContinuation<Void, Never>?
    var uplinkWaiter: CheckedContinuation<Void, Never>?
    var lastFlush: ContinuousClock.Instant?

    var statistics = WorkerStatistics()
    var meter = ThroughputMeter()

    public init(configuration: WorkerConfiguration, runner: any ChatJobRunner,
                logger: Logger = Logger(label: "mixtral-chat.aime-worker")) {
        self.configuration = configuration
        self.runner = runner
        self.logger = logger
    }

    // MARK: Public API

    public var state: WorkerState {
        switch phase {
        case .idle: return .idle
        case .stopped: return .stopped
        case .draining: return .draining(jobs: jobs.count)
        case .loggingIn, .active:
            if let since = offlineSince {
                return .serverOffline(seconds: Int((clock.now - since).seconds))
            }
            if phase == .loggingIn || loginTask != nil { return .loggingIn }
            let running = generatingCount
            return running > 0 ? .running(jobs: running) : .polling
        }
    }

    public func status() -> WorkerStatus {
        WorkerStatus(state: state, statistics: statistics, tokensPerSecond: meter.rate(now: clock.now))
    }

    /// Runs the worker until it is drained. Throws `WorkerError` for a bad configuration or a
    /// login the server refuses; everything else is retried or fails a single job.
    public func run() async throws {
        guard phase == .idle else {
            throw WorkerError.configuration("run() was called twice on the same worker")
        }
        try configuration.validate()
        // Idle connections close before Sanic's 10 s keep-alive does; a refused connection fails
        // the request at once (the pool's own retry would hold it until its deadline), so the
        // worker's backoff and offline status see every failure.
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool = .init(idleTimeout: .seconds(8))
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        httpConfiguration.timeout = .init(connect: .seconds(10))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration)
        connection = APIConnection(client: client, baseURL: configuration.baseURL)
        phase = .loggingIn
        logger.info("AIME worker \(configuration.workerName) starting: server \(configuration.baseURL), job type \(configuration.jobType), max batch \(configuration.maxBatchSize), model \(configuration.model.label)")
        let uplink = Task { await self.uplinkLoop() }
        do {
            try await login()
            if phase == .loggingIn { phase = .active }
            if phase == .active {
                let poll = Task { await self.pollLoop() }
                pollTask = poll
                await poll.value
            }
        } catch let error as WorkerError {
            fatalError = error
        } catch {
            // Cancelled login during drain: nothing was admitted, nothing to deliver.
        }
        if phase != .stopped { phase = .draining }
        if drainStarted == nil { drainStarted = clock.now }
        pollingFinished = true
        wakeUplink()
        await uplink.value
        phase = .stopped
        logger.info("AIME worker stopped: \(status().line)")
        try? await client.shutdown()
        connection = nil
        if let fatalError { throw fatalError }
    }

    /// Stops polling for new jobs; running jobs finish and their results are delivered, then
    /// `run()` returns. With `cancelRunningJobs`, running jobs are stopped now and answered with an
    /// error result instead (a second Ctrl-C). Safe to call any number of times.
    public func drain(cancelRunningJobs: Bool = false) {
        if phase != .stopped && phase != .draining {
            logger.info("draining: no new jobs; \(generatingCount) running job(s) will finish")
            phase = .draining
            drainStarted = clock.now
        }
        pollTask?.cancel()
        loginTaskCancelIfIdle()
        if cancelRunningJobs {
            for id in jobOrder where jobs[id]?.finished == false {
                finish(id, error: "the worker was shut down before the job finished", cancelStream: true)
            }
        }
        resumeSlotWaiter()
        wakeUplink()
    }

    // MARK: Login

    /// Logs in once; concurrent callers (poll loop and uplink) share one attempt. Retries while
    /// the server is unreachable; throws `WorkerError.loginRejected` when the server says no.
    func login() async throws {
        if let loginTask {
            try await loginTask.value
            return
        }
        let task = Task { try await self.loginAttempts() }
        loginTask = task
        defer { loginTask = nil }
        try await task.value
    }

    private func loginTaskCancelIfIdle() {
        if jobs.isEmpty { loginTask?.cancel() }
    }

    private func loginAttempts() async throws {
        var backoff = configuration.backoffInitial
        while true {
            try Task.checkCancellation()
            if shouldAbandonDelivery { throw Unreachable(description: "drain deadline passed") }
            do {
                try await loginOnce()
                return
            } catch let error as Unreachable {
                try await waitOffline(after: error, backoff: &backoff, during: "login")
            }
        }
    }

    private func loginOnce() async throws {
        guard let connection else { throw CancellationError() }
        let c = configuration
        let body: AIMEJSON = [
            "worker_parameters": [
                "auth": .string(c.workerName), "job_type": .string(c.jobType), "auth_key": .string(c.authKey),
                "interface_version": .string(WorkerConfiguration.interfaceVersion),
                "version": .string(c.frameworkVersion), "gpu_name": .string(c.gpuName),
                "num_gpus": .int(c.numGPUs), "max_batch_size": .int(c.maxBatchSize),
                "framework": .string(c.framework), "framework_version": .string(c.frameworkVersion),
                "pytorch_version": .null,
            ],
            "model_parameters": [
                "label": .string(c.model.label), "quantization": .string(c.model.quantization),
                "size": .string(c.model.size), "family": .string(c.model.family),
                "type": .string(c.model.type), "repo_name": .string(c.model.repoName),
            ],
        ]
        let reply = try await connection.post("/worker_login", body, timeout: c.requestTimeout)
        markOnline()
        switch reply {
        case .json(let json) where json["success"]?.boolValue == true:
            if let seconds = json["request_timeout"]?.intValue, seconds > 0 { serverPollSeconds = seconds }
            let version = json["api_server_version"]?.stringValue ?? "unknown"
            logger.info("logged in to AIME API server \(version) as \(c.workerName); long poll \(serverPollSeconds) s")
        case .json(let json) where json["success"]?.boolValue == false:
            throw WorkerError.loginRejected(json["error_msg"]?.stringValue ?? "no reason given")
        case .json(let json) where json["error"] != nil || json["msg"] != nil:
            // "API Server still initializing": try again shortly.
            throw Unreachable(description: json["error"]?.stringValue ?? json["msg"]?.stringValue ?? "not ready")
        case .status(500, _):
            throw WorkerError.loginRejected("HTTP 500 on /worker_login (the server answers so for an unknown job type; is '\(c.jobType)' configured?)")
        case .status(let code, _):
            throw WorkerError.loginRejected("HTTP \(code) on /worker_login")
        case .json(let json):
            throw WorkerError.loginRejected("unexpected reply \(json.description.prefix(120))")
        }
    }

    // MARK: Poll loop

    private func pollLoop() async {
        var backoff = configuration.backoffInitial
        while phase == .active && !Task.isCancelled {
            let free = configuration.maxBatchSize - generatingCount
            if free <= 0 {
                await waitForSlot()
                continue
            }
            guard let connection else { return }
            let body: AIMEJSON = [
                "auth": .string(configuration.workerName), "auth_key": .string(configuration.authKey),
                "job_type": .string(configuration.jobType), "max_job_batch": .int(free),
            ]
            do {
                let timeout = Duration.seconds(serverPollSeconds) + configuration.pollTimeoutMargin
                let reply = try await connection.post("/worker_job_request", body, timeout: timeout)
                markOnline()
                backoff = configuration.backoffInitial
                try await handlePollReply(reply, backoff: &backoff)
            } catch let error as Unreachable {
                do { try await waitOffline(after: error, backoff: &backoff, during: "job request") } catch { return }
            } catch let error as WorkerError {
                logger.error("\(error.description); stopping")
                fatalError = error
                drain()
                return
            } catch {
                return  // cancelled by drain()
            }
        }
    }

    private func handlePollReply(_ reply: APIReply, backoff: inout Duration) async throws {
        switch reply {
        case .json(let json) where json["cmd"]?.stringValue == "job":
            admit(json["job_data"]?.arrayValue ?? [])
        case .json(let json) where json["cmd"]?.stringValue == "no_job":
            break
        case .json(let json) where json["cmd"]?.stringValue == "error":
            let message = json["msg"]?.stringValue ?? json["error_msg"]?.stringValue ?? ""
            if message.contains("login") || message.contains("authorized") {
                logger.notice("server asks for a login (restarted?): logging in again")
                try await login()
            } else {
                logger.warning("job request refused: \(message.prefix(200))")
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.backoffMax)
            }
        case .json(.null):
            logger.warning("job request answered with null (server lost this worker's login): logging in again")
            try await login()
        case .json(let json):
            logger.warning("unexpected job request reply: \(String(describing: json["cmd"] ?? json).prefix(120))")
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, configuration.backoffMax)
        case .status(let code, let body):
            logger.warning("HTTP \(code) on /worker_job_request: \(String(describing: body?["message"] ?? body ?? .null).prefix(120))")
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, configuration.backoffMax)
        }
    }

    // MARK: Offline handling

    /// Records that the server did not answer, logs the one-line status and sleeps with capped
    /// exponential backoff. Rethrows cancellation. Only the loop that is polling (or, when none
    /// polls, any loop) logs at notice level, so an outage gives one line per retry, not two.
    func waitOffline(after error: Unreachable, backoff: inout Duration, during what: String) async throws {
        let now = clock.now
        if offlineSince == nil { offlineSince = now }
        let seconds = Int((now - (offlineSince ?? now)).seconds)
        let level: Logger.Level = (what == "progress/result" && phase == .active) ? .debug : .notice
        logger.log(level: level, "API server offline for \(seconds) s, retrying in \(backoff.seconds.formatted1) s (\(what): \(error.description))")
        try await Task.sleep(for: backoff)
        backoff = min(backoff * 2, configuration.backoffMax)
    }

    func markOnline() {
        if let since = offlineSince {
            logger.notice("API server back after \(Int((clock.now - since).seconds)) s")
            offlineSince = nil
        }
    }

    /// While draining with the server unreachable, results are given up after `drainDeadline`.
    var shouldAbandonDelivery: Bool {
        guard phase == .draining, let drainStarted, offlineSince != nil else { return false }
        return clock.now - drainStarted >= configuration.drainDeadline
    }

    // MARK: Signals between the loops

    var generatingCount: Int { jobs.values.reduce(0) { $0 + ($1.finished ? 0 : 1) } }

    func waitForSlot() async {
        if phase != .active || generatingCount < configuration.maxBatchSize { return }
        await withCheckedContinuation { slotWaiter = $0 }
    }

    func resumeSlotWaiter() {
        slotWaiter?.resume()
        slotWaiter = nil
    }

    func waitForUplinkWork() async {
        if !jobs.isEmpty || pollingFinished { return }
        await withCheckedContinuation { uplinkWaiter = $0 }
    }

    func wakeUplink() {
        uplinkWaiter?.resume()
        uplinkWaiter = nil
    }
}

extension Double {
    var formatted1: String { String((self * 10).rounded() / 10) }
}
