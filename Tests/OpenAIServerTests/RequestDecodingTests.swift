import Chat
import Generation
import Testing

import OpenAIServer

@Suite struct RequestDecodingTests {
    func fields(_ json: String) throws -> RequestFields { try RequestFields(body: Array(json.utf8)) }

    func chat(_ extra: String) throws -> ChatCompletionRequest {
        try ChatCompletionRequest(fields(#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]"# + extra + "}"))
    }

    /// The error a body gives, or nil when it is accepted.
    func error(_ extra: String) -> APIError? {
        do { _ = try chat(extra); return nil } catch let e as APIError { return e } catch { return nil }
    }

    @Test("sampling fields map onto the engine's parameters")
    func samplingFields() throws {
        let r = try chat(#", "temperature": 0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 42, "stop": "END", "max_tokens": 9, "presence_penalty": 0.5, "frequency_penalty": -1, "repetition_penalty": 1.1, "n": 3, "logprobs": true, "top_logprobs": 4"#)
        let p = r.sampling.parameters
        #expect(p.temperature == 0 && p.topP == 0.5 && p.topK == 7 && p.minP == Float(0.1))
        #expect(p.seed == 42 && p.stop == ["END"] && p.presencePenalty == 0.5 && p.frequencyPenalty == -1)
        #expect(p.repetitionPenalty == Float(1.1) && p.logprobs == 4)
        #expect(r.sampling.maxTokens == 9 && r.sampling.n == 3)
        // Choices draw from seed + index: reproducible, and different from each other.
        #expect(r.sampling.parameters(choice: 2, maxTokens: 5).seed == 44)
        #expect(r.sampling.parameters(choice: 2, maxTokens: 5).maxTokens == 5)
    }

    @Test("OpenAI's defaults, null as unset, max_completion_tokens, stop lists")
    func defaults() throws {
        let r = try chat(#", "temperature": null, "max_completion_tokens": 12, "stop": ["a", "b"], "top_k": -1"#)
        #expect(r.sampling.parameters.temperature == 1 && r.sampling.parameters.topP == 1 && r.sampling.parameters.topK == 0)
        #expect(r.sampling.maxTokens == 12 && r.sampling.parameters.stop == ["a", "b"])
        #expect(r.sampling.parameters.logprobs == nil && r.sampling.n == 1 && !r.stream && r.toolChoice == .auto)
    }

    @Test("bad values are 400s that name the field")
    func badValues() {
        let cases: [(String, String)] = [
            (#", "temperature": 3"#, "temperature"), (#", "temperature": "hot""#, "temperature"),
            (#", "top_p": 0"#, "top_p"), (#", "n": 9"#, "n"), (#", "n": 0"#, "n"), (#", "max_tokens": 0"#, "max_tokens"),
            (#", "top_logprobs": 21, "logprobs": true"#, "top_logprobs"), (#", "top_logprobs": 2"#, "top_logprobs"),
            (#", "presence_penalty": 2.5"#, "presence_penalty"), (#", "stop": [1]"#, "stop"), (#", "stop": [""]"#, "stop"),
            (#", "stream": "yes""#, "stream"), (#", "logit_bias": {"5": 1}"#, "logit_bias"),
            (#", "tool_choice": "sometimes""#, "tool_choice"), (#", "tool_choice": "required""#, "tool_choice"),
            (#", "seed": 1.5"#, "seed"), (#", "response_format": {"type": "json_object"}"#, "response_format"),
        ]
        for (extra, param) in cases {
            let e = error(extra)
            #expect(e?.status == 400, "\(extra)")
            #expect(e?.param == param, "\(extra)")
        }
    }

    @Test("malformed bodies and messages mistral-common rejects are 400s")
    func malformed() throws {
        let notJSON = #expect(throws: APIError.self) { _ = try fields("nope") }
        #expect(notJSON?.status == 400 && notJSON?.code == "invalid_json")
        let notObject = #expect(throws: APIError.self) { _ = try fields("[1]") }
        #expect(notObject?.status == 400)
        let noMessages = #expect(throws: APIError.self) { _ = try ChatCompletionRequest(fields(#"{"model": "m"}"#)) }
        #expect(noMessages?.status == 400 && noMessages?.param == "messages")
        let badRole = #expect(throws: APIError.self) {
            _ = try ChatCompletionRequest(fields(#"{"messages": [{"role": "wizard", "content": "x"}]}"#))
        }
        #expect(badRole?.message == "Unknown message role: wizard (messages[0].role)")
    }

    @Test("tool_choice: a named function keeps only that tool; none drops the tools")
    func toolChoice() throws {
        let tools = #", "tools": [{"type": "function", "function": {"name": "a", "parameters": {}}}, {"type": "function", "function": {"name": "b"}}]"#
        let named = try chat(tools + #", "tool_choice": {"type": "function", "function": {"name": "b"}}"#)
        #expect(named.toolChoice == .function("b") && named.chat.tools?.map(\.name) == ["b"] && named.forcesToolCall)
        let none = try chat(tools + #", "tool_choice": "none""#)
        #expect(none.chat.tools == nil && !none.readsToolCalls && !none.forcesToolCall)
        let required = try chat(tools + #", "tool_choice": "required""#)
        #expect(required.forcesToolCall && required.chat.tools?.count == 2)
        #expect(error(tools + #", "tool_choice": {"type": "function", "function": {"name": "zzz"}}"#)?.param == "tool_choice")
    }

    @Test("stream_options.include_usage")
    func streamOptions() throws {
        let r = try chat(#", "stream": true, "stream_options": {"include_usage": true}"#)
        #expect(r.stream && r.includeUsage)
    }

    @Test("max_tokens must fit the context with the prompt (vLLM's rule); without it, all that is left")
    func contextBudget() throws {
        let r = try chat(#", "max_tokens": 10"#)
        #expect(try r.sampling.maxTokens(promptTokens: 90, context: 100, param: "messages") == 10)
        #expect(throws: APIError.self) { try r.sampling.maxTokens(promptTokens: 91, context: 100, param: "messages") }
        let open = try chat("")
        #expect(try open.sampling.maxTokens(promptTokens: 30, context: 100, param: "messages") == 70)
        let full = #expect(throws: APIError.self) { try open.sampling.maxTokens(promptTokens: 100, context: 100, param: "messages") }
        #expect(full?.code == "context_length_exceeded" && full?.status == 400)
    }

    @Test("engine refusals map to OpenAI statuses: queue full 429, shutdown 503, bad values 400")
    func engineErrors() {
        #expect(APIError(EngineError.queueFull(limit: 4)).status == 429)
        #expect(APIError(EngineError.queueFull(limit: 4)).type == .rateLimit)
        #expect(APIError(EngineError.shutDown).status == 503)
        #expect(APIError(EngineError.invalidParameters("x")).status == 400)
        #expect(APIError(EngineError.promptTooLong(tokens: 9, limit: 8)).code == "context_length_exceeded")
        #expect(APIError(GenerationError.nonFiniteLogits).status == 500)
        #expect(APIError(GenerationError.tokenOutOfRange(token: 9, vocabularySize: 4)).param == "prompt")
        #expect(APIError(ChatError(.tool, "bad name")).param == "tools")
    }

    @Test("the error body is OpenAI's shape with nulls for absent param and code")
    func errorBody() {
        let body = APIError(status: 404, type: .notFound, "nothing here").body.pythonJSON
        #expect(body == #"{"error": {"message": "nothing here", "type": "not_found_error", "param": null, "code": null}}"#)
    }
}
