/// How to pick each next token, per sequence (the knobs of vLLM's / llama.cpp's samplers).
///
/// The order they apply in, as vLLM does: penalties on the raw logits, then temperature, then
/// top-k, then top-p, then min-p; the token is drawn from what is left, renormalised.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax; ties → lowest id).
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 or less disables.
    public var topK: Int
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 disables.
    public var topP: Float
    /// Drop tokens whose probability is below min-p × the most likely token's; 0 disables.
    public var minP: Float
    /// CTRL-style penalty on tokens already in the prompt or output (1 disables): positive logits
    /// are divided by it, negative ones multiplied, as Hugging Face and llama.cpp do.
    public var repetitionPenalty: Float
    /// OpenAI's presence penalty: subtracted once from the logit of every token that appears in the
    /// output so far (0 disables; −2…2).
    public var presencePenalty: Float
    /// OpenAI's frequency penalty: subtracted from a token's logit once per time it appears in the
    /// output so far (0 disables; −2…2).
    public var frequencyPenalty: Float
    /// Same seed, same prompt, same parameters → same output. nil draws a random seed.
    public var seed: UInt64?
    /// Upper bound on generated tokens (the context length may stop generation earlier).
    public var maxTokens: Int
    /// Generation stops before any of these strings; the string itself is not returned.
    public var stop: [String]
    /// nil: no log-probabilities. N ≥ 0: each token's event is preceded by a `.logprobs` event with
    /// the chosen token's log-probability and the N most likely tokens' (N ≤ `maxTopLogprobs`).
    /// Log-probabilities are of the model's distribution (log-softmax of the raw logits), as
    /// OpenAI and vLLM report them.
    public var logprobs: Int?
    /// Keep generating past the end-of-sequence token (benchmarks).
    public var ignoreEOS: Bool

    public static let maxTopLogprobs = 20

    public init(temperature: Float = 0.7, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, seed: UInt64? = nil, maxTokens: Int = 256,
                stop: [String] = [], logprobs: Int? = nil, ignoreEOS: Bool = false) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
        self.maxTokens = maxTokens
        self.stop = stop
        self.logprobs = logprobs
        self.ignoreEOS = ignoreEOS
    }

    public static let greedy = SamplingParameters(temperature: 0)

    /// Whether any penalty needs the sequence's token history.
    public var hasPenalties: Bool { repetitionPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0 }

    /// A description of the first invalid field, or nil.
    public func validationError() -> String? {
        if !temperature.isFinite || temperature < 0 { return "temperature must be ≥ 0 (got \(temperature))" }
        if !topP.isFinite || topP <= 0 || topP > 1 { return "top_p must be in (0, 1] (got \(topP))" }
        if !minP.isFinite || minP < 0 || minP > 1 { return "min_p must be in [0, 1] (got \(minP))" }
        if !repetitionPenalty.isFinite || repetitionPenalty <= 0 { return "repetition_penalty must be > 0 (got \(repetitionPenalty))" }
        if !presencePenalty.isFinite || abs(presencePenalty) > 2 { return "presence_penalty must be in [-2, 2] (got \(presencePenalty))" }
        if !frequencyPenalty.isFinite || abs(frequencyPenalty) > 2 { return "frequency_penalty must be in [-2, 2] (got \(frequencyPenalty))" }
        if maxTokens < 1 { return "max_tokens must be ≥ 1 (got \(maxTokens))" }
        if stop.contains(where: \.isEmpty) { return "stop strings must not be empty" }
        if let n = logprobs, n < 0 || n > Self.maxTopLogprobs { return "top_logprobs must be in 0...\(Self.maxTopLogprobs) (got \(n))" }
        return nil
    }
}
