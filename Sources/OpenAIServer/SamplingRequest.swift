import Generation

/// The sampling fields chat and text completions share, read into the engine's
/// `SamplingParameters`. Defaults are OpenAI's (temperature 1, top-p 1); `top_k`, `min_p`,
/// `repetition_penalty` and `ignore_eos` are vLLM's extensions with vLLM's meaning.
public struct SamplingRequest: Equatable, Sendable {
    public var parameters: SamplingParameters
    /// nil: as many as the context leaves after the prompt.
    public var maxTokens: Int?
    /// Choices to generate (`n`).
    public var n: Int

    static let maxChoices = 8

    /// `logprobs`: the number of top log-probabilities per token, or nil for none (the two
    /// endpoints spell it differently; each reads it and passes it here).
    init(_ fields: RequestFields, maxTokensKeys: [String], logprobs: Int?) throws(APIError) {
        var p = SamplingParameters(temperature: 1, topK: 0, topP: 1)
        if let t = try fields.float("temperature", in: 0...2) { p.temperature = t }
        if let v = try fields.float("top_p", in: 0...1) {
            guard v > 0 else { throw .badRequest("'top_p' must be in (0, 1] (got 0)", param: "top_p") }
            p.topP = v
        }
        if let k = try fields.int("top_k", in: -1...Int(Int32.max)) { p.topK = max(k, 0) }
        if let v = try fields.float("min_p", in: 0...1) { p.minP = v }
        if let v = try fields.float("presence_penalty", in: -2...2) { p.presencePenalty = v }
        if let v = try fields.float("frequency_penalty", in: -2...2) { p.frequencyPenalty = v }
        if let v = try fields.float("repetition_penalty") {
            guard v > 0 else { throw .badRequest("'repetition_penalty' must be > 0 (got \(v))", param: "repetition_penalty") }
            p.repetitionPenalty = v
        }
        if let seed = try fields.int("seed") { p.seed = UInt64(bitPattern: Int64(seed)) }
        if let stop = try fields.strings("stop") {
            guard stop.count <= 16 else { throw .badRequest("'stop' may hold at most 16 strings", param: "stop") }
            guard !stop.contains(where: \.isEmpty) else { throw .badRequest("'stop' strings must not be empty", param: "stop") }
            p.stop = stop
        }
        if let ignore = try fields.bool("ignore_eos") { p.ignoreEOS = ignore }
        p.logprobs = logprobs
        var maxTokens: Int?
        for key in maxTokensKeys {
            if let m = try fields.int(key) {
                guard m >= 1 else { throw .badRequest("'\(key)' must be at least 1 (got \(m))", param: key) }
                maxTokens = m
            }
        }
        if let bias = fields["logit_bias"], bias.objectValue?.isEmpty != true {
            throw .badRequest("'logit_bias' is not supported", param: "logit_bias")
        }
        self.parameters = p
        self.maxTokens = maxTokens
        self.n = try fields.int("n", in: 1...Self.maxChoices) ?? 1
    }

    /// The parameters of choice `index`: with a seed, choice i draws from seed + i, so the whole
    /// response is reproducible and the choices still differ.
    public func parameters(choice index: Int, maxTokens: Int) -> SamplingParameters {
        var p = parameters
        p.maxTokens = maxTokens
        if let seed = p.seed { p.seed = seed &+ UInt64(index) }
        return p
    }

    /// The generation budget for a prompt of `promptTokens` in a context of `context`: the
    /// request's `max_tokens`, which must fit (vLLM's rule), or all that is left.
    public func maxTokens(promptTokens: Int, context: Int, param: String) throws(APIError) -> Int {
        guard promptTokens < context else {
            throw .badRequest("this model's maximum context length is \(context) tokens, but the prompt has \(promptTokens)",
                              param: param, code: "context_length_exceeded")
        }
        let left = context - promptTokens
        guard let asked = maxTokens else { return left }
        guard asked <= left else {
            throw .badRequest("this model's maximum context length is \(context) tokens; the prompt has \(promptTokens) and \(asked) were asked for",
                              param: "max_tokens", code: "context_length_exceeded")
        }
        return asked
    }
}
