/// One request's output side inside the engine: its sampler, detokenizer, stop matcher and event
/// stream. Which tokens it has and where its KV lives is the scheduler's (`Scheduler.Request`).
/// Only the engine's step loop touches it (hence a class with unchecked sendability).
final class SequenceState: @unchecked Sendable {
    // @unchecked: created by `submit` and handed to the step queue through a mutex; from then
    // on only the single step loop reads or writes it.
    let id: Int
    let prompt: [Int]
    let sampling: SamplingParameters
    let continuation: AsyncStream<GenerationEvent>.Continuation
    var sampler: Sampler
    var decoder: any IncrementalDecoder
    var stopMatcher: StopMatcher
    var generated = 0
    /// The most prompt tokens reported in `.prefillProgress`: a sequence preempted during its
    /// prefill recomputes chunks it already reported, and progress never goes back.
    var reportedPrefill = 0
    /// When the request must have finished, and the timeout it came from (for the error).
    let deadline: (at: ContinuousClock.Instant, seconds: Double)?

    init(id: Int, prompt: [Int], sampling: SamplingParameters, decoder: any IncrementalDecoder,
         continuation: AsyncStream<GenerationEvent>.Continuation, timeout: Duration? = nil) {
        self.id = id
        self.deadline = timeout.map { t in
            (ContinuousClock.now.advanced(by: t), Double(t.components.seconds) + Double(t.components.attoseconds) * 1e-18)
        }
        self.prompt = prompt
        self.sampling = sampling
        self.continuation = continuation
        self.sampler = Sampler(parameters: sampling, prompt: prompt)
        self.decoder = decoder
        self.stopMatcher = StopMatcher(stops: sampling.stop)
    }

    /// Records a sampled token, emits its text, and says whether the sequence is finished.
    /// `contextFull`: the token fills the last position the sequence may have.
    func accept(_ token: Int, stopTokens: Set<Int>, contextFull: Bool) -> FinishReason? {
        generated += 1
        sampler.record(token)
        if stopTokens.contains(token) && !sampling.ignoreEOS {
            switch stopMatcher.append(decoder.finish()) {
            case .stopped(let text): continuation.yield(.token(id: token, text: text))
            case .text(let text): continuation.yield(.token(id: token, text: text + stopMatcher.flush()))
            }
            return .stop
        }
        switch stopMatcher.append(decoder.append(token)) {
        case .stopped(let text):
            continuation.yield(.token(id: token, text: text))
            return .stop
        case .text(var text):
            let full = generated >= sampling.maxTokens || contextFull
            if full {
                switch stopMatcher.append(decoder.finish()) {
                case .stopped(let rest):
                    continuation.yield(.token(id: token, text: text + rest))
                    return .stop
                case .text(let rest): text += rest + stopMatcher.flush()
                }
            }
            continuation.yield(.token(id: token, text: text))
            return full ? .length : nil
        }
    }
}
