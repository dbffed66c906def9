/// The uplink loop: progress lists and results, one POST at a time.
///
/// Ordering rules it enforces (aime-protocol.md §2.4, §2.5, §10):
/// - at most one progress POST per `progressInterval` (5/s), each a list covering every job that
///   has news, plus a heartbeat for any job silent for `progressHeartbeat` (also during prefill);
/// - a result is posted only after the progress POST before it was answered (the loop is
///   sequential), and exactly once: after `{"cmd": "ok"}`, a `warning`, an HTTP 500 or the drain
///   deadline the job is forgotten; only "unreachable" and "not authorized" lead to a retry.

extension AIMEWorkerService {
    func uplinkLoop() async {
        var backoff = configuration.backoffInitial
        while true {
            if jobs.isEmpty {
                if pollingFinished { return }
                await waitForUplinkWork()
                continue
            }
            if let lastFlush {
                let next = lastFlush + configuration.progressInterval
                if clock.now < next { try? await Task.sleep(until: next, clock: clock) }
            }
            do {
                let sentProgress = try await flushProgress()
                let sentResults = try await deliverResults()
                backoff = configuration.backoffInitial
                if !sentProgress && !sentResults {
                    try? await Task.sleep(for: .milliseconds(40))
                }
            } catch let error as Unreachable {
                if shouldAbandonDelivery {
                    abandonUndeliveredResults()
                } else {
                    try? await waitOffline(after: error, backoff: &backoff, during: "progress/result")
                }
            } catch let error as WorkerError {
                logger.error("\(error.description); stopping")
                fatalError = error
                drain(cancelRunningJobs: true)
                abandonUndeliveredResults()
            } catch {
                try? await Task.sleep(for: .milliseconds(40))
            }
        }
    }

    /// Gives up on every job after the drain deadline (or a refused re-login): nothing more can
    /// reach the server.
    func abandonUndeliveredResults() {
        for id in jobOrder {
            guard let job = jobs[id] else { continue }
            if !job.finished { job.stream?.cancel() }
            logger.error("result of job \(id) could not be delivered: the API server is unreachable")
            statistics.resultsAbandoned += 1
            forget(id)
        }
    }

    // MARK: Progress

    /// Sends one progress list if any running job has news or is due a heartbeat.
    /// Returns whether a POST was made.
    private func flushProgress() async throws -> Bool {
        let now = clock.now
        let due = jobOrder.filter { id in
            guard let job = jobs[id], !job.finished else { return false }
            return job.version != job.sentVersion || now - job.lastProgressSent >= configuration.progressHeartbeat
        }
        guard !due.isEmpty else { return false }
        lastFlush = now
        try await postProgress(due, allowRelogin: true)
        return true
    }

    private func progressItem(_ job: ActiveJob) -> AIMEJSON {
        [
            "job_id": .string(job.jobID), "auth": .string(configuration.workerName),
            "auth_key": .string(configuration.authKey), "job_type": .string(configuration.jobType),
            "progress": .int(job.generatedTokens),
            "progress_data": [
                "text": .string(job.text), "num_generated_tokens": .int(job.generatedTokens),
                "current_context_length": .int(job.contextLength),
            ],
        ]
    }

    /// POSTs progress for `ids` and applies the reply. The server stops at the first item it
    /// rejects and answers with that item's object alone (`{}` = not your job, an error object =
    /// not authorized) or with HTTP 500 (unknown job id), so for a list the culprit is unknown:
    /// each item is then re-sent alone to find it.
    private func postProgress(_ ids: [String], allowRelogin: Bool) async throws {
        guard let connection else { throw CancellationError() }
        let snapshot = ids.compactMap { jobs[$0] }
        guard !snapshot.isEmpty else { return }
        let reply = try await connection.post("/worker_job_progress", .array(snapshot.map(progressItem)),
                                              timeout: configuration.requestTimeout)
        markOnline()
        switch reply {
        case .json(.array(let items)):
            for (index, job) in snapshot.enumerated() {
                let item = itemReply(items, for: job.jobID, at: index)
                if item?["canceled"]?.boolValue == true {
                    drop(job.jobID, reason: "the server canceled it")
                } else {
                    markProgressSent(job)
                }
            }
        case .json(.object(let object)) where object.isEmpty:
            try await isolateRejectedItem(snapshot, reason: "the server no longer runs it on this worker (progress reply {})")
        case .json(let json) where json["success"]?.boolValue == false:
            let message = json["error_msg"]?.stringValue ?? ""
            guard allowRelogin, message.contains("authorized") else {
                logger.warning("progress refused: \(message.prefix(200))")
                snapshot.forEach(markProgressSent)
                return
            }
            logger.notice("server no longer knows this worker (\(message.prefix(120))): logging in again")
            try await login()
            try await postProgress(snapshot.map(\.jobID), allowRelogin: false)
        case .json(let json):
            if case .object = json, snapshot.count == 1, json["success"]?.boolValue == true {
                markProgressSent(snapshot[0])  // a single-object reply from an old server
            } else {
                logger.warning("unexpected progress reply: \(json.description.prefix(120))")
                snapshot.forEach(markProgressSent)
            }
        case .status(500, _):
            try await isolateRejectedItem(snapshot, reason: "the server does not know it any more (HTTP 500 on progress)")
        case .status(let code, _):
            logger.warning("HTTP \(code) on /worker_job_progress")
            snapshot.forEach(markProgressSent)
        }
    }

    private func isolateRejectedItem(_ snapshot: [ActiveJob], reason: String) async throws {
        if snapshot.count == 1 {
            drop(snapshot[0].jobID, reason: reason)
            return
        }
        for job in snapshot where jobs[job.jobID] != nil {
            try await postProgress([job.jobID], allowRelogin: true)
        }
    }

    /// The reply item for a job: matched by `job_id` when the server names it (older servers
    /// that report `canceled`), else by position.
    private func itemReply(_ items: [AIMEJSON], for jobID: String, at index: Int) -> AIMEJSON? {
        if let named = items.first(where: { $0["job_id"]?.stringValue == jobID }) { return named }
        return index < items.count ? items[index] : nil
    }

    private func markProgressSent(_ sent: ActiveJob) {
        guard var job = jobs[sent.jobID] else { return }
        job.sentVersion = sent.version
        job.lastProgressSent = clock.now
        jobs[sent.jobID] = job
    }

    // MARK: Results

    /// Posts the result of every finished job, in admission order. Returns whether any was sent.
    private func deliverResults() async throws -> Bool {
        var sent = false
        for id in jobOrder {
            guard let job = jobs[id], job.finished else { continue }
            try await postResult(job, allowRelogin: true)
            sent = true
        }
        return sent
    }

    private func resultBody(_ job: ActiveJob) -> AIMEJSON {
        var fields: [String: AIMEJSON] = [
            "job_id": .string(job.jobID), "auth": .string(configuration.workerName),
            "auth_key": .string(configuration.authKey), "job_type": .string(configuration.jobType),
            "text": .string(job.text), "num_generated_tokens": .int(job.generatedTokens),
            "model_name": .string(configuration.model.label), "max_seq_len": .int(configuration.maxSeqLen),
            "current_context_length": .int(job.contextLength), "prompt_length": .int(job.promptTokens),
        ]
        if let error = job.error { fields["error"] = .string(error) }
        return .object(fields)
    }

    private func postResult(_ job: ActiveJob, allowRelogin: Bool) async throws {
        guard let connection else { throw CancellationError() }
        let reply = try await connection.post("/worker_job_result", resultBody(job), timeout: configuration.requestTimeout)
        markOnline()
        switch reply {
        case .json(let json) where json["cmd"]?.stringValue == "ok":
            statistics.resultsDelivered += 1
            if job.error != nil { statistics.jobsFailed += 1 }
            forget(job.jobID)
        case .json(let json) where json["success"]?.boolValue == false
            && (json["error_msg"]?.stringValue ?? "").contains("authorized") && allowRelogin:
            logger.notice("server no longer knows this worker: logging in again before sending the result of \(job.jobID)")
            try await login()
            try await postResult(job, allowRelogin: false)
        case .json(let json):
            let message = json["msg"]?.stringValue ?? json["error_msg"]?.stringValue ?? json.description
            logger.warning("result of job \(job.jobID) not accepted (\(message.prefix(160))); the job is gone, not retrying")
            statistics.jobsDropped += 1
            forget(job.jobID)
        case .status(let code, _):
            logger.warning("HTTP \(code) on the result of job \(job.jobID); the job is gone on the server, not retrying")
            statistics.jobsDropped += 1
            forget(job.jobID)
        }
    }
}
