/// Admission of jobs and the per-job record the runner's events update.

/// One admitted job, from admission until its result is delivered (or the server drops it).
struct ActiveJob: Sendable {
    let jobID: String
    let admittedAt: ContinuousClock.Instant
    var stream: JobStream?
    /// Cumulative generated text: only ever appended to, so every progress text is a prefix of
    /// the final text (the OpenAI streaming layer computes deltas from it).
    var text = ""
    var generatedTokens = 0
    var promptTokens = 0
    /// Generation is over (normally, with an error, or stopped); the result can be sent.
    var finished = false
    var error: String?
    /// Bumped on every visible change; progress is due when it differs from `sentVersion`.
    var version = 1
    var sentVersion = 0
    var lastProgressSent: ContinuousClock.Instant

    init(jobID: String, admittedAt: ContinuousClock.Instant) {
        self.jobID = jobID
        self.admittedAt = admittedAt
        self.lastProgressSent = admittedAt
    }

    var contextLength: Int { promptTokens + generatedTokens }
}

extension AIMEWorkerService {
    /// Starts every entry of a job reply. An entry that fails validation, or that the runner
    /// refuses, is admitted as an already finished job with an `error`, so it still gets its one
    /// result and its batchmates run normally.
    func admit(_ entries: [AIMEJSON]) {
        let now = clock.now
        for entry in entries {
            guard let fields = entry.objectValue, let jobID = fields["job_id"]?.stringValue, !jobID.isEmpty else {
                logger.error("job_data entry without a job_id (\(entry.typeName)); it cannot be answered")
                continue
            }
            if jobs[jobID] != nil || recentJobIDs.contains(jobID) {
                logger.warning("job \(jobID) was handed out again; it is answered only once")
                continue
            }
            var job = ActiveJob(jobID: jobID, admittedAt: now)
            do {
                let input = try JobInput.parse(fields)
                let stream = try runner.start(messages: input.messages, sampling: input.sampling)
                job.stream = stream
                let events = stream.events
                Task { [weak self] in
                    for await event in events {
                        guard let self else { return }
                        await self.handle(event, jobID: jobID)
                    }
                    await self?.streamEnded(jobID: jobID)
                }
                logger.info("job \(jobID) started: \(input.messages.count) message(s), max \(input.sampling.maxGenTokens) tokens")
            } catch {
                job.finished = true
                job.error = String(describing: error)
                logger.warning("job \(jobID) rejected: \(job.error ?? "")")
            }
            jobs[jobID] = job
            jobOrder.append(jobID)
        }
        wakeUplink()
    }

    func handle(_ event: JobEvent, jobID: String) {
        guard var job = jobs[jobID], !job.finished else { return }
        let limit = configuration.maxSeqLen
        switch event {
        case .prompt(let tokens):
            job.promptTokens = tokens
            job.version += 1
            jobs[jobID] = job
            if tokens >= limit {
                finish(jobID, error: "The prompt has \(tokens) tokens and does not fit the context window of \(limit) tokens",
                       cancelStream: true)
            }
        case .prefill:
            break  // the heartbeat keeps the server informed during a long prefill
        case .text(let delta, let generated):
            let added = max(0, generated - job.generatedTokens)
            job.text += delta
            job.generatedTokens = generated
            job.version += 1
            jobs[jobID] = job
            statistics.tokensGenerated += added
            meter.record(added, at: clock.now)
            if job.contextLength >= limit {
                logger.info("job \(jobID) reached the context window (\(limit) tokens)")
                finish(jobID, error: nil, cancelStream: true)
            }
        case .finished(let promptTokens, let generated, let error):
            if promptTokens > 0 { job.promptTokens = promptTokens }
            let added = max(0, generated - job.generatedTokens)
            statistics.tokensGenerated += added
            meter.record(added, at: clock.now)
            job.generatedTokens = max(job.generatedTokens, generated)
            jobs[jobID] = job
            finish(jobID, error: error, cancelStream: false)
        }
    }

    /// The runner's stream ended; without a `finished` event that is an engine failure.
    func streamEnded(jobID: String) {
        guard let job = jobs[jobID], !job.finished else { return }
        finish(jobID, error: "generation stopped without a result", cancelStream: false)
    }

    /// Marks a job's generation over, frees its slot and wakes the uplink to send its result.
    func finish(_ jobID: String, error: String?, cancelStream: Bool) {
        guard var job = jobs[jobID], !job.finished else { return }
        job.finished = true
        job.error = error
        jobs[jobID] = job
        if cancelStream { job.stream?.cancel() }
        let seconds = (clock.now - job.admittedAt).seconds
        if let error {
            logger.warning("job \(jobID) failed after \(seconds.formatted1) s: \(error)")
        } else {
            logger.info("job \(jobID) finished: \(job.generatedTokens) tokens in \(seconds.formatted1) s")
        }
        resumeSlotWaiter()
        wakeUplink()
    }

    /// The server no longer associates the job with this worker: stop it, send no result.
    func drop(_ jobID: String, reason: String) {
        guard let job = jobs[jobID] else { return }
        job.stream?.cancel()
        logger.warning("job \(jobID) dropped: \(reason)")
        statistics.jobsDropped += 1
        forget(jobID)
        resumeSlotWaiter()
    }

    /// Removes a job whose result is delivered (or given up), remembering its id.
    func forget(_ jobID: String) {
        jobs[jobID] = nil
        jobOrder.removeAll { $0 == jobID }
        recentJobIDs.insert(jobID)
        recentJobOrder.append(jobID)
        if recentJobOrder.count > Self.rememberedJobs {
            recentJobIDs.remove(recentJobOrder.removeFirst())
        }
    }
}
