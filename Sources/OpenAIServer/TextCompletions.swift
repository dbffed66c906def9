import Chat
import Dispatch
import Foundation
import Generation

/// `POST /v1/completions`: raw prompts (no chat template), as a string, a list of strings, a list
/// of token ids or a list of such lists. Choices are numbered prompt × n + sample, as OpenAI does.
struct TextCompletions {
    let model: ServedModel
    let metrics: ServerMetrics?
    /// Each choice's deadline in the engine (`ServerConfiguration.requestTimeout`).
    var timeout: Duration? = nil

    struct Accepted {
        let run: ChoiceRun
        let stream: Bool
        let includeUsage: Bool
        let wantsLogprobs: Bool
        let id: String
        let created: Int
        let modelName: String
        let logprobs: LogprobWriter
        let metrics: ServerMetrics?
    }

    func accept(_ fields: RequestFields, startNanos: UInt64 = DispatchTime.now().uptimeNanoseconds) throws(APIError) -> Accepted {
        try checkModelName(try fields.string("model"), served: model.name)
        if try fields.bool("echo") == true { throw .badRequest("'echo' is not supported", param: "echo") }
        let logprobs = try fields.int("logprobs", in: 0...SamplingParameters.maxTopLogprobs)
        let sampling = try SamplingRequest(fields, maxTokensKeys: ["max_tokens"], logprobs: logprobs)
        if let bestOf = try fields.int("best_of"), bestOf != sampling.n {
            throw .badRequest("'best_of' other than n is not supported", param: "best_of")
        }
        let prompts = try fields.string("suffix") != nil ? [try fillInTheMiddle(fields)] : try self.prompts(fields)
        var choices: [(prompt: [Int], sampling: SamplingParameters)] = []
        for prompt in prompts {
            let maxTokens = try sampling.maxTokens(promptTokens: prompt.count, context: model.contextLength, param: "prompt")
            for i in 0..<sampling.n { choices.append((prompt, sampling.parameters(choice: i, maxTokens: maxTokens))) }
        }
        guard choices.count <= SamplingRequest.maxChoices else {
            throw .badRequest("at most \(SamplingRequest.maxChoices) choices per request (prompts × n)", param: "n")
        }
        var includeUsage = false
        if let options = fields["stream_options"]?.objectValue {
            includeUsage = try RequestFields(object: options).bool("include_usage") ?? false
        }
        let run = try ChoiceRun(engine: model.engine, choices: choices, timeout: timeout, startNanos: startNanos)
        metrics?.accepted(promptTokens: choices.reduce(0) { $0 + $1.prompt.count })
        return Accepted(run: run, stream: try fields.bool("stream") ?? false, includeUsage: includeUsage,
                        wantsLogprobs: logprobs != nil, id: "cmpl-" + ChatCompletions.randomSuffix(),
                        created: Int(Date().timeIntervalSince1970), modelName: model.name,
                        logprobs: LogprobWriter(tokenizer: model.tokenizer), metrics: metrics)
    }

    /// `suffix`: Codestral's fill-in-the-middle prompt (`[BOS] [SUFFIX] suffix [PREFIX] prompt`,
    /// mistral-common's `encode_fim`), so the completion is the code between the two. The prompt
    /// must be one string; a tokenizer without the FIM control tokens (the demo model's) is a 400.
    private func fillInTheMiddle(_ fields: RequestFields) throws(APIError) -> [Int] {
        guard case .string(let prefix)? = fields["prompt"] else {
            throw .badRequest("with 'suffix', 'prompt' must be one string", param: "prompt")
        }
        let suffix = try fields.string("suffix")
        do { return try model.encoder.encodeFIM(prefix: prefix, suffix: suffix) } catch {
            throw .badRequest(error.message, param: "suffix")
        }
    }

    /// Text prompts are tokenized with BOS in front (as vLLM does for Mistral models); token-id
    /// prompts are used as given, each id checked against the vocabulary.
    private func prompts(_ fields: RequestFields) throws(APIError) -> [[Int]] {
        guard let value = fields["prompt"] else { throw .badRequest("'prompt' is required", param: "prompt") }
        let tokenizer = model.tokenizer
        func text(_ s: String) -> [Int] { [tokenizer.bosID] + tokenizer.encode(s) }
        func ids(_ items: [JSONValue]) throws(APIError) -> [Int] {
            var out: [Int] = []
            for item in items {
                guard case .number(let n) = item, let id = RequestFields.int(n) else {
                    throw .badRequest("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists", param: "prompt")
                }
                guard id >= 0, id < tokenizer.vocabularySize else {
                    throw .badRequest("token id \(id) is outside the vocabulary (0..<\(tokenizer.vocabularySize))", param: "prompt")
                }
                out.append(id)
            }
            guard !out.isEmpty else { throw .badRequest("'prompt' has no tokens", param: "prompt") }
            return out
        }
        switch value {
        case .string(let s): return [text(s)]
        case .array(let items) where items.isEmpty: throw .badRequest("'prompt' is empty", param: "prompt")
        case .array(let items):
            switch items[0] {
            case .number: return [try ids(items)]
            case .string:
                var out: [[Int]] = []
                for item in items {
                    guard case .string(let s) = item else { throw RequestFields.typeError("prompt", "a list of strings") }
                    out.append(text(s))
                }
                return out
            case .array:
                var out: [[Int]] = []
                for item in items {
                    guard case .array(let inner) = item else { throw RequestFields.typeError("prompt", "a list of token-id lists") }
                    out.append(try ids(inner))
                }
                return out
            default: throw RequestFields.typeError("prompt", "a string, a list of strings, a list of token ids or a list of such lists")
            }
        default: throw RequestFields.typeError("prompt", "a string, a list of strings, a list of token ids or a list of such lists")
        }
    }
}

extension TextCompletions.Accepted {
    private func finishReason(_ reason: FinishReason) -> String { reason == .length ? "length" : "stop" }

    func collect() async -> Result<JSONValue, APIError> {
        let count = run.handles.count
        var texts = [String](repeating: "", count: count)
        var entries = [[TokenLogprobs]](repeating: [], count: count)
        var offsets = [[Int]](repeating: [], count: count)
        var finish = [String](repeating: "stop", count: count)
        var generated = 0
        for await (choice, event) in run.events(metrics: metrics) {
            switch event {
            case .prefillProgress: break
            case .logprobs(let entry):
                entries[choice].append(entry)
                offsets[choice].append(texts[choice].count)
            case .token(_, let text): texts[choice] += text
            case let .finished(reason, _, tokens, error):
                generated += tokens
                if reason == .error {
                    metrics?.generated(tokens: generated)
                    run.cancel()
                    return .failure(APIError.generationFailed(error))
                }
                finish[choice] = finishReason(reason)
            }
        }
        metrics?.generated(tokens: generated)
        let choices: [JSONValue] = (0..<count).map { i in
            .obj([("index", .int(i)), ("text", .string(texts[i])),
                  ("logprobs", wantsLogprobs ? logprobs.completion(entries[i], offsets: offsets[i]) : .null),
                  ("finish_reason", .string(finish[i]))])
        }
        return .success(.obj([
            ("id", .string(id)), ("object", .string("text_completion")), ("created", .int(created)), ("model", .string(modelName)),
            ("choices", .array(choices)),
            ("usage", Usage(promptTokens: run.promptTokens.reduce(0, +), completionTokens: generated).json),
        ]))
    }

    /// One chunk per token (text delta, its log-probabilities), a last chunk per choice with
    /// `finish_reason`, the usage chunk when asked for, `[DONE]`.
    func streamChunks(_ write: (String) async throws -> Void) async throws {
        var pending = [[TokenLogprobs]](repeating: [], count: run.handles.count)
        var length = [Int](repeating: 0, count: run.handles.count)
        var offsets = [[Int]](repeating: [], count: run.handles.count)
        var generated = 0
        let usageNull: [(String, JSONValue)] = includeUsage ? [("usage", .null)] : []
        func chunk(_ choice: Int, text: String, finish: String?) -> String {
            let lp = pending[choice]
            defer { pending[choice] = []; offsets[choice] = [] }
            return SSE.event(.obj([
                ("id", .string(id)), ("object", .string("text_completion")), ("created", .int(created)), ("model", .string(modelName)),
                ("choices", .array([.obj([("index", .int(choice)), ("text", .string(text)),
                                          ("logprobs", wantsLogprobs && !lp.isEmpty ? logprobs.completion(lp, offsets: offsets[choice]) : .null),
                                          ("finish_reason", .optionalString(finish))])])),
            ] + usageNull))
        }
        do {
            for await (choice, event) in run.events(metrics: metrics) {
                switch event {
                case .prefillProgress: break
                case .logprobs(let entry):
                    pending[choice].append(entry)
                    offsets[choice].append(length[choice])
                case .token(_, let text):
                    length[choice] += text.count
                    if !text.isEmpty || !pending[choice].isEmpty { try await write(chunk(choice, text: text, finish: nil)) }
                case let .finished(reason, _, tokens, error):
                    generated += tokens
                    if reason == .error {
                        run.cancel()
                        try await write(SSE.event(APIError.generationFailed(error).body))
                        try await write(SSE.done)
                        metrics?.generated(tokens: generated)
                        return
                    }
                    try await write(chunk(choice, text: "", finish: finishReason(reason)))
                }
            }
        } catch {
            run.cancel()
            metrics?.generated(tokens: generated)
            throw error
        }
        metrics?.generated(tokens: generated)
        if includeUsage {
            try await write(SSE.event(.obj([
                ("id", .string(id)), ("object", .string("text_completion")), ("created", .int(created)), ("model", .string(modelName)),
                ("choices", .array([])),
                ("usage", Usage(promptTokens: run.promptTokens.reduce(0, +), completionTokens: generated).json),
            ])))
        }
        try await write(SSE.done)
    }
}
