import AIMEWorker
import Foundation
import NIOCore

/// The AIME API Server 0.9.6 worker protocol, reproduced for tests from
/// shared/aime-protocol.md (section numbers below refer to it). It is a test fixture, not a
/// server: one endpoint (`mixtral_chat`, job type `mixtral`), jobs in memory, plus knobs that
/// inject the failure modes the real server shows (503s, `{}` progress, `null` bodies, restarts).
actor AIMEProtocolState {
    struct Reply: Sendable {
        var status: Int
        var body: String

        static func json(_ value: AIMEJSON, status: Int = 200) -> Reply {
            let data = (try? JSONEncoder().encode(value)) ?? Data("null".utf8)
            return Reply(status: status, body: String(decoding: data, as: UTF8.self))
        }
        static let internalError = Reply.json(
            ["description": "Internal Server Error", "status": 500, "message": "Internal Server Error"], status: 500)
        static let serviceUnavailable = Reply.json(
            ["description": "Service Unavailable", "status": 503, "message": "Response Timeout"], status: 503)
    }

    enum JobState: Sendable, Equatable { case queued, processing, done }

    struct Job: Sendable {
        let id: String
        var data: [String: AIMEJSON]
        var state: JobState = .queued
        var worker: String?
        var progress: [AIMEJSON] = []
        var results: [AIMEJSON] = []
        /// Progress items that arrived after the job's result (must never happen).
        var lateProgress = 0
    }

    struct Request: Sendable {
        let path: String
        let body: AIMEJSON?
        let time: ContinuousClock.Instant
    }

    private struct Waiter {
        let auth: String
        let maxBatch: Int?
        let continuation: CheckedContinuation<Reply?, Never>
    }

    let authKey = WorkerConfiguration.defaultAuthKey
    let jobType = "mixtral"
    /// `request_timeout`: how long a job request waits before `no_job` (whole seconds, as the server).
    let pollSeconds: Int
    /// Sanic's `response_timeout`; a poll longer than this ends in 503 and marks the worker offline.
    var responseTimeout: Duration?

    private(set) var workers: [String: String] = [:]  // auth -> state ("waiting", "processing", "offline")
    private(set) var loginCount = 0
    private(set) var jobs: [String: Job] = [:]
    private var queue: [String] = []
    private var waiters: [UUID: Waiter] = [:]
    private var counter = 0
    private(set) var requests: [Request] = []
    /// Number of job ids handed out per job reply, in order.
    private(set) var handedOutBatches: [[String]] = []

    // Failure injection
    private var fail503Remaining = 0
    private var nullReplyToNextPoll = false
    private var cancelOnNextProgress: Set<String> = []

    init(pollSeconds: Int) {
        self.pollSeconds = pollSeconds
    }

    // MARK: Test controls

    /// Queues a job as a client's `POST /mixtral_chat` would; returns its id.
    func submit(_ input: [String: AIMEJSON]) -> String {
        counter += 1
        let id = UUID().uuidString.lowercased() + "#\(counter)"
        var data: [String: AIMEJSON] = [
            "prompt_input": "", "chat_context": .null, "top_k": 40, "top_p": 0.9, "temperature": 0.8,
            "max_gen_tokens": 2000,
        ]
        for (key, value) in input { data[key] = value }
        data["job_id"] = .string(id)
        data["start_time"] = .double(Date().timeIntervalSince1970)
        jobs[id] = Job(id: id, data: data)
        queue.append(id)
        serveWaiters()
        return id
    }

    func job(_ id: String) -> Job? { jobs[id] }
    func allJobs() -> [Job] { Array(jobs.values) }
    func requests(to path: String) -> [Request] { requests.filter { $0.path == path } }
    func workerState(_ auth: String) -> String? { workers[auth] }
    var openPolls: Int { waiters.count }

    func setResponseTimeout(_ timeout: Duration?) { responseTimeout = timeout }
    /// The next `count` requests (any route) are answered 503 as when Sanic's handler was cut.
    func failNext(_ count: Int) { fail503Remaining = count }
    /// The next job request is answered with the literal `null` (the legacy-path bug, §2.3).
    func replyNullToNextPoll() { nullReplyToNextPoll = true }
    /// The next progress item for this job is answered with `canceled: true` (older servers, §4).
    func cancelOnNextProgress(_ id: String) { cancelOnNextProgress.insert(id) }
    /// Takes the job away from its worker, as when it lapsed: its progress then gets `{}`.
    func lapse(_ id: String) {
        jobs[id]?.state = .done
        jobs[id]?.worker = nil
    }

    /// A server restart: every login is forgotten; with `keepJobs` false (what 0.9.6 does: all
    /// state is in memory) the jobs are forgotten too. Open long polls are dropped unanswered.
    func restart(keepJobs: Bool) {
        workers = [:]
        if !keepJobs {
            jobs = [:]
            queue = []
        }
        for waiter in waiters.values { waiter.continuation.resume(returning: nil) }
        waiters = [:]
    }

    /// The listener went away: open long polls end without an answer.
    func dropOpenPolls() {
        for waiter in waiters.values { waiter.continuation.resume(returning: nil) }
        waiters = [:]
    }

    // MARK: Routes

    /// Answers one request; `nil` means "close the connection without answering".
    /// `closed` completes when the client's connection closes; an open long poll then ends the
    /// way Sanic's cancelled handler does: no job is handed to it and the worker is set offline.
    func handle(path: String, body: Data, closed: EventLoopFuture<Void>) async -> Reply? {
        let json = try? JSONDecoder().decode(AIMEJSON.self, from: body)
        requests.append(Request(path: path, body: json, time: .now))
        if fail503Remaining > 0 {
            fail503Remaining -= 1
            return .serviceUnavailable
        }
        guard let json else {
            if body.isEmpty { return .json(["error": "API Server still initializing"]) }
            return .json(["description": "Bad Request", "status": 400, "message": "Failed when parsing body as json"],
                         status: 400)
        }
        switch path {
        case "/worker_login": return login(json)
        case "/worker_check_server_status":
            return .json(["logged_in": .bool(workers[json["auth"]?.stringValue ?? ""] != nil),
                          "job_type_present": .bool(json["job_type"]?.stringValue == jobType),
                          "key_valid": .bool(json["auth_key"]?.stringValue == authKey)])
        case "/worker_job_request": return await jobRequest(json, closed: closed)
        case "/worker_job_progress": return progress(json)
        case "/worker_job_result": return result(json)
        default: return .json(["description": "Not Found", "status": 404, "message": .string("Requested URL \(path) not found")], status: 404)
        }
    }

    /// §2.2
    private func login(_ json: AIMEJSON) -> Reply {
        guard let parameters = json["worker_parameters"], let auth = parameters["auth"]?.stringValue,
            parameters["job_type"]?.stringValue == jobType
        else { return .internalError }
        guard parameters["auth_key"]?.stringValue == authKey else {
            return .json(["success": false, "error_msg": .string("Worker not authorized on job type \(jobType)")])
        }
        workers[auth] = "waiting"
        loginCount += 1
        return .json(["success": true, "request_timeout": .int(pollSeconds), "api_server_version": "0.9.6"])
    }

    /// The shared auth check of progress and result (§8): unknown worker, then wrong key.
    private func authFailure(_ item: AIMEJSON) -> Reply? {
        let auth = item["auth"]?.stringValue ?? item["progress_data"]?["auth"]?.stringValue ?? ""
        guard workers[auth] != nil else {
            return .json(["success": false, "error_msg": .string("Worker \(auth) not authorized")])
        }
        guard item["auth_key"]?.stringValue == authKey else {
            return .json(["success": false, "error_msg": .string("Worker \(auth) not authorized on job type \(jobType)")])
        }
        return nil
    }

    /// §2.3 and §3
    private func jobRequest(_ json: AIMEJSON, closed: EventLoopFuture<Void>) async -> Reply? {
        let auth = json["auth"]?.stringValue ?? ""
        if nullReplyToNextPoll {
            nullReplyToNextPoll = false
            workers[auth] = nil
            return Reply(status: 200, body: "null")
        }
        guard workers[auth] != nil, json["auth_key"]?.stringValue == authKey else {
            return .json(["cmd": "error", "msg": .string("Worker \(auth) needs to login before being allowed to make job requests")])
        }
        workers[auth] = "waiting"
        let maxBatch = json["max_job_batch"]?.intValue
        if !queue.isEmpty { return handOut(to: auth, maxBatch: maxBatch) }
        let id = UUID()
        let wait = responseTimeout.map { min($0, .seconds(pollSeconds)) } ?? .seconds(pollSeconds)
        let cut = responseTimeout.map { $0 < .seconds(pollSeconds) } ?? false
        Task {
            try? await Task.sleep(for: wait)
            self.expire(id, cut: cut)
        }
        closed.whenComplete { _ in
            Task { await self.disconnected(id) }
        }
        return await withCheckedContinuation { continuation in
            waiters[id] = Waiter(auth: auth, maxBatch: maxBatch, continuation: continuation)
        }
    }

    private func disconnected(_ id: UUID) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        workers[waiter.auth] = "offline"
        waiter.continuation.resume(returning: nil)
    }

    private func expire(_ id: UUID, cut: Bool) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        if cut {
            workers[waiter.auth] = "offline"
            waiter.continuation.resume(returning: .json(["cmd": "error", "error_msg": "Worker - Server connection broke"], status: 503))
        } else {
            waiter.continuation.resume(returning: .json(["cmd": "no_job"]))
        }
    }

    private func serveWaiters() {
        while !queue.isEmpty, let first = waiters.first {
            waiters[first.key] = nil
            first.value.continuation.resume(returning: handOut(to: first.value.auth, maxBatch: first.value.maxBatch))
        }
    }

    /// Takes up to `max_job_batch` queued jobs (§4). Without `max_job_batch` the server hands
    /// one job out and then fails with 500, stranding it.
    private func handOut(to auth: String, maxBatch: Int?) -> Reply {
        let count = min(queue.count, max(1, maxBatch ?? 1))
        let ids = Array(queue.prefix(count))
        queue.removeFirst(count)
        let now = Date().timeIntervalSince1970
        var entries: [AIMEJSON] = []
        for (index, id) in ids.enumerated() {
            jobs[id]?.state = .processing
            jobs[id]?.worker = auth
            var data = jobs[id]?.data ?? [:]
            data["start_time_compute"] = index == 0 ? .double(now) : .null
            entries.append(.object(data))
        }
        workers[auth] = "processing"
        handedOutBatches.append(ids)
        guard maxBatch != nil else { return .internalError }
        return .json([
            "cmd": "job", "endpoint_name": "mixtral_chat",
            "progress_output_descriptions": ["text": ["type": "string"]],
            "job_data": .array(entries),
        ])
    }

    /// §2.4: a list (or one object); stops at the first rejected item.
    private func progress(_ json: AIMEJSON) -> Reply {
        let items: [AIMEJSON] = json.arrayValue ?? [json]
        var replies: [AIMEJSON] = []
        for item in items {
            if let failure = authFailure(item) { return failure }
            guard let id = item["job_id"]?.stringValue, var job = jobs[id] else { return .internalError }
            let auth = item["auth"]?.stringValue ?? ""
            if !job.results.isEmpty { job.lateProgress += 1 }
            guard job.state == .processing, job.worker == auth else {
                jobs[id] = job
                return .json([:])
            }
            job.progress.append(item)
            jobs[id] = job
            if cancelOnNextProgress.remove(id) != nil {
                replies.append(["job_id": .string(id), "canceled": true, "progress_input_params": []])
            } else {
                replies.append(["success": true])
            }
        }
        return .json(.array(replies))
    }

    /// §2.5
    private func result(_ json: AIMEJSON) -> Reply {
        if let failure = authFailure(json) { return failure }
        let auth = json["auth"]?.stringValue ?? ""
        guard let id = json["job_id"]?.stringValue, var job = jobs[id] else {
            let id = json["job_id"]?.stringValue ?? "None"
            return .json(["cmd": "warning", "msg": .string("Job with job id \(id) not found in worker \(auth)!")])
        }
        job.results.append(json)
        let second = job.results.count > 1
        job.state = .done
        jobs[id] = job
        if second { return .internalError }
        if workers[auth] != nil { workers[auth] = "waiting" }
        return .json(["cmd": "ok"])
    }
}
