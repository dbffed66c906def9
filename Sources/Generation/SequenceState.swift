/// One request inside the engine: its tokens, sampler, detokenizer and KV blocks.
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
    var tokens: [Int]              // prompt + generated
    var prefilled = 0              // prompt tokens already in the KV cache
    var generated = 0
    var blockTable: [Int] = []
    var reservedTokens = 0

    init(id: Int, prompt: [Int], sampling: SamplingParameters, decoder: any IncrementalDecoder,
         continuation: AsyncStream<GenerationEvent>.Continuation) {
        self.id = id
        self.prompt = prompt
        self.sampling = sampling
        self.continuation = continuation
        self.sampler = Sampler(parameters: sampling, prompt: prompt)
        self.decoder = decoder
        self.stopMatcher = StopMatcher(stops: sampling.stop)
        self.tokens = prompt
    }

    /// The whole prompt is cached; each step now feeds the last sampled token.
    var isDecoding: Bool { prefilled >= prompt.count }

    /// Records a sampled token, emits its text, and says whether the sequence is finished.
    func accept(_ token: Int, stopTokens: Set<Int>) -> FinishReason? {
        tokens.append(token)
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
            let full = generated >= sampling.maxTokens || tokens.count >= reservedTokens
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

