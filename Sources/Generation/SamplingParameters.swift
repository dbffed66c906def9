/// How to pick each next token, per sequence (the knobs of vLLM's / llama.cpp's samplers).
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax; ties → lowest id).
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 or less disables.
    public var topK: Int
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 disables.
    public var topP: Float
    /// CTRL-style penalty on tokens already in the prompt or output (1 disables): positive logits
    /// are divided by it, negative ones multiplied, as Hugging Face and llama.cpp do.
    public var repetitionPenalty: Float
    /// Same seed, same prompt, same parameters → same output. nil draws a random seed.
    public var seed: UInt64?
    /// Upper bound on generated tokens (the context length may stop generation earlier).
    public var maxTokens: Int
    /// Generation stops before any of these strings; the string itself is not returned.
    public var stop: [String]

    public init(temperature: Float = 0.7, topK: Int = 0, topP: Float = 1, repetitionPenalty: Float = 1,
                seed: UInt64? = nil, maxTokens: Int = 256, stop: [String] = []) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
        self.maxTokens = maxTokens
        self.stop = stop
    }

    public static let greedy = SamplingParameters(temperature: 0)

    /// A description of the first invalid field, or nil.
    public func validationError() -> String? {
        if !temperature.isFinite || temperature < 0 { return "temperature must be ≥ 0 (got \(temperature))" }
        if !topP.isFinite || topP <= 0 || topP > 1 { return "top_p must be in (0, 1] (got \(topP))" }
        if !repetitionPenalty.isFinite || repetitionPenalty <= 0 { return "repetition_penalty must be > 0 (got \(repetitionPenalty))" }
        if maxTokens < 1 { return "max_tokens must be ≥ 1 (got \(maxTokens))" }
        if stop.contains(where: \.isEmpty) { return "stop strings must not be empty" }
        return nil
    }
}
