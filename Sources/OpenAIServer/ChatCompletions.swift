import Chat
import Dispatch
import Foundation
import Generation

/// `POST /v1/chat/completions`: a request body in, a completion or a stream of chunks out.
/// Independent of the HTTP framework, so the whole path can be tested without a socket.
struct ChatCompletions {
    let model: ServedModel
    let metrics: ServerMetrics?
    /// Each choice's deadline in the engine (`ServerConfiguration.requestTimeout`).
    var timeout: Duration? = nil

    /// A request that passed validation and whose choices are queued in the engine.
    struct Accepted {
        let request: ChatCompletionRequest
        let run: ChoiceRun
        let id: String
        let created: Int
        let modelName: String
        let promptTokens: Int
        let toolCallsTokenID: Int?
        let logprobs: LogprobWriter
        let metrics: ServerMetrics?
    }

    /// Decodes, encodes the prompt and submits the choices; every refusal is an `APIError`.
    func accept(_ fields: RequestFields, startNanos: UInt64 = DispatchTime.now().uptimeNanoseconds) throws(APIError) -> Accepted {
        let request = try ChatCompletionRequest(fields)
        try checkModelName(request.model, served: model.name)
        var prompt: [Int]
        do { prompt = try model.encoder.encode(request.chat) } catch { throw APIError(error) }
        if request.forcesToolCall {
            guard let marker = model.toolCallsTokenID else {
                throw .badRequest("this model's tokenizer has no tool calls", param: "tool_choice")
            }
            prompt.append(marker)
        }
        let maxTokens = try request.sampling.maxTokens(promptTokens: prompt.count, context: model.contextLength, param: "messages")
        let choices = (0..<request.sampling.n).map { i in (prompt, request.sampling.parameters(choice: i, maxTokens: maxTokens)) }
        let run = try ChoiceRun(engine: model.engine, choices: choices, timeout: timeout, startNanos: startNanos)
        metrics?.accepted(promptTokens: prompt.count * choices.count)
        return Accepted(request: request, run: run, id: "chatcmpl-" + Self.randomSuffix(), created: Int(Date().timeIntervalSince1970),
                        modelName: model.name, promptTokens: prompt.count,
                        toolCallsTokenID: request.readsToolCalls ? model.toolCallsTokenID : nil,
                        logprobs: LogprobWriter(tokenizer: model.tokenizer), metrics: metrics)
    }

    static func randomSuffix() -> String {
        var g = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<24).map { _ in alphabet[Int(g.next(upperBound: UInt64(alphabet.count)))] })
    }
}

/// A request naming a model must name the served one (404 otherwise, as OpenAI answers).
func checkModelName(_ requested: String?, served: String) throws(APIError) {
    if let requested, requested != served {
        throw APIError(status: 404, type: .invalidRequest, param: "model", code: "model_not_found",
                       "the model '\(requested)' does not exist; this server serves '\(served)'")
    }
}

extension ChatCompletions.Accepted {
    private func streams() -> [AssistantStream] {
        (0..<run.handles.count).map { _ in
            AssistantStream(toolCallsTokenID: toolCallsTokenID, forcedToolCall: request.forcesToolCall, ids: request.ids)
        }
    }

    /// Waits for every choice and builds the `chat.completion` object, or the error of a choice
    /// the engine failed (500).
    func collect() async -> Result<JSONValue, APIError> {
        var parsers = streams()
        var content = [String](repeating: "", count: parsers.count)
        var calls = [[ToolCall]](repeating: [], count: parsers.count)
        var entries = [[TokenLogprobs]](repeating: [], count: parsers.count)
        var finish = [String](repeating: "stop", count: parsers.count)
        var generated = 0
        var failure: GenerationError?
        for await (choice, event) in run.events(metrics: metrics) {
            if case .finished(_, _, let count, _) = event { generated += count }
            for delta in parsers[choice].consume(event) {
                switch delta {
                case let .content(text, lp):
                    content[choice] += text
                    entries[choice] += lp
                case let .toolCall(_, call, lp):
                    calls[choice].append(call)
                    entries[choice] += lp
                case let .finished(reason, error, lp):
                    finish[choice] = reason
                    entries[choice] += lp
                    if let error { failure = error }
                }
            }
        }
        metrics?.generated(tokens: generated)
        if let failure { return .failure(APIError.generationFailed(failure)) }
        let choices: [JSONValue] = (0..<parsers.count).map { i in
            var message = JSONObject([("role", .string("assistant")),
                                      ("content", calls[i].isEmpty || !content[i].isEmpty ? .string(content[i]) : .null)])
            if !calls[i].isEmpty { message["tool_calls"] = .array(calls[i].map(Self.toolCallJSON)) }
            return .obj([("index", .int(i)), ("message", .object(message)),
                         ("logprobs", request.sampling.parameters.logprobs == nil ? .null : logprobs.chat(entries[i])),
                         ("finish_reason", .string(finish[i]))])
        }
        return .success(.obj([
            ("id", .string(id)), ("object", .string("chat.completion")), ("created", .int(created)), ("model", .string(modelName)),
            ("choices", .array(choices)),
            ("usage", Usage(promptTokens: promptTokens * parsers.count, completionTokens: generated).json),
        ]))
    }

    static func toolCallJSON(_ call: ToolCall) -> JSONValue {
        .obj([("id", .string(call.id)), ("type", .string("function")),
              ("function", .obj([("name", .string(call.name)), ("arguments", .string(call.arguments))]))])
    }

    /// Streams `chat.completion.chunk` events as OpenAI does: per choice a first chunk with the
    /// role, content deltas, each tool call as a header delta (index, id, type, name, empty
    /// arguments) followed by its arguments, a last chunk with `finish_reason`; then, with
    /// `include_usage`, a chunk with empty choices and the usage; then `[DONE]`. A choice the
    /// engine fails ends the stream with an error event. `write` throwing (the client went away)
    /// cancels every choice.
    func stream(_ write: (String) async throws -> Void) async throws {
        var parsers = streams()
        var started = [Bool](repeating: false, count: parsers.count)
        var generated = 0
        let usageNull: [(String, JSONValue)] = request.includeUsage ? [("usage", .null)] : []
        let wantsLogprobs = request.sampling.parameters.logprobs != nil
        func chunk(_ choice: Int, _ delta: JSONValue, logprobs lp: [TokenLogprobs] = [], finish: String? = nil) -> String {
            SSE.event(.obj([
                ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
                ("model", .string(modelName)),
                ("choices", .array([.obj([("index", .int(choice)), ("delta", delta),
                                          ("logprobs", wantsLogprobs && !lp.isEmpty ? logprobs.chat(lp) : .null),
                                          ("finish_reason", .optionalString(finish))])])),
            ] + usageNull))
        }
        do {
            for await (choice, event) in run.events(metrics: metrics) {
                if case .finished(_, _, let count, _) = event { generated += count }
                let deltas = parsers[choice].consume(event)
                if !started[choice], !deltas.isEmpty {
                    started[choice] = true
                    try await write(chunk(choice, .obj([("role", .string("assistant")), ("content", .string(""))])))
                }
                for delta in deltas {
                    switch delta {
                    case let .content(text, lp):
                        if text.isEmpty && lp.isEmpty { continue }
                        try await write(chunk(choice, .obj([("content", .string(text))]), logprobs: lp))
                    case let .toolCall(index, call, lp):
                        try await write(chunk(choice, .obj([("tool_calls", .array([.obj([
                            ("index", .int(index)), ("id", .string(call.id)), ("type", .string("function")),
                            ("function", .obj([("name", .string(call.name)), ("arguments", .string(""))])),
                        ])]))]), logprobs: lp))
                        try await write(chunk(choice, .obj([("tool_calls", .array([.obj([
                            ("index", .int(index)), ("function", .obj([("arguments", .string(call.arguments))])),
                        ])]))])))
                    case let .finished(reason, error, lp):
                        if let error {
                            run.cancel()
                            try await write(SSE.event(APIError.generationFailed(error).body))
                            try await write(SSE.done)
                            metrics?.generated(tokens: generated)
                            return
                        }
                        try await write(chunk(choice, .obj([]), logprobs: lp, finish: reason))
                    }
                }
            }
        } catch {
            run.cancel()
            metrics?.generated(tokens: generated)
            throw error
        }
        metrics?.generated(tokens: generated)
        if request.includeUsage {
            try await write(SSE.event(.obj([
                ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
                ("model", .string(modelName)), ("choices", .array([])),
                ("usage", Usage(promptTokens: promptTokens * parsers.count, completionTokens: generated).json),
            ])))
        }
        try await write(SSE.done)
    }
}
