import Chat
import Generation
import Testing

import OpenAIServer

/// The tool-call recognition behind both streaming and non-streaming chat answers, fed with
/// generation events cut at awkward places.
@Suite struct AssistantStreamTests {
    let marker = 5

    func sequentialIDs() -> () -> String {
        var n = 0
        return { n += 1; return "gen00000\(n)" }
    }

    func finished(_ reason: FinishReason = .stop) -> GenerationEvent {
        .finished(reason: reason, promptTokens: 3, generatedTokens: 1, error: nil)
    }

    /// Feeds `pieces` as tokens (the marker id where a piece is nil) and returns every delta.
    func run(_ pieces: [String?], forced: Bool = false, ids: ToolCallIDMap = ToolCallIDMap(),
             end: FinishReason = .stop) -> [AssistantDelta] {
        var stream = AssistantStream(toolCallsTokenID: marker, forcedToolCall: forced, ids: ids, makeID: sequentialIDs())
        var out: [AssistantDelta] = []
        for piece in pieces {
            out += stream.consume(piece.map { .token(id: 100, text: $0) } ?? .token(id: marker, text: ""))
        }
        return out + stream.consume(finished(end))
    }

    @Test func plainTextIsContent() {
        let deltas = run(["Hel", "lo", "!"], end: .length)
        #expect(deltas == [.content("Hel", logprobs: []), .content("lo", logprobs: []), .content("!", logprobs: []),
                           .finished(reason: "length", error: nil, logprobs: [])])
    }

    @Test("a call split over many tokens is released once, whole, when its object closes")
    func splitCall() {
        let pieces: [String?] = [nil, " [{\"na", "me\": \"get_weather\", \"argu", "ments\": {\"city\": \"Os", "lo\"}", ", \"id\": \"abcDEF123\"}", "]"]
        let deltas = run(pieces)
        #expect(deltas == [
            .toolCall(index: 0, ToolCall(id: "abcDEF123", name: "get_weather", arguments: #"{"city": "Oslo"}"#), logprobs: []),
            .finished(reason: "tool_calls", error: nil, logprobs: []),
        ])
    }

    @Test("two calls get indices 0 and 1; a call without a valid id gets a new one")
    func twoCalls() {
        let deltas = run([nil, #"[{"name": "a", "arguments": {}}, "#, #"{"name": "b", "arguments": {"x": 1}, "id": "bad"}]"#])
        #expect(deltas == [
            .toolCall(index: 0, ToolCall(id: "gen000001", name: "a", arguments: "{}"), logprobs: []),
            .toolCall(index: 1, ToolCall(id: "gen000002", name: "b", arguments: #"{"x": 1}"#), logprobs: []),
            .finished(reason: "tool_calls", error: nil, logprobs: []),
        ])
    }

    @Test("text after the marker that is not a call list comes back as content")
    func notACallList() {
        let deltas = run(["Sure.", nil, " I cannot call that"])
        #expect(deltas == [.content("Sure.", logprobs: []), .content(" I cannot call that", logprobs: []),
                           .finished(reason: "stop", error: nil, logprobs: [])])
    }

    @Test("a call list cut off by max_tokens keeps the text and says length")
    func truncatedCall() {
        let deltas = run([nil, #"[{"name": "get_weather", "argu"#], end: .length)
        #expect(deltas == [.content(#"[{"name": "get_weather", "argu"#, logprobs: []),
                           .finished(reason: "length", error: nil, logprobs: [])])
    }

    @Test("the characters [TOOL_CALLS] in text are content; only the control token starts calls")
    func markerTextIsContent() {
        let deltas = run([#"[TOOL_CALLS] [{"name": "x", "arguments": {}}]"#])
        #expect(deltas.first == .content(#"[TOOL_CALLS] [{"name": "x", "arguments": {}}]"#, logprobs: []))
        #expect(deltas.last == .finished(reason: "stop", error: nil, logprobs: []))
    }

    @Test("tool_choice required: the prompt ends with the marker, so output starts inside the list")
    func forced() {
        let deltas = run([#"[{"name": "f", "arguments": {}, "id": "AAAAAAAAA"}]"#], forced: true)
        #expect(deltas.first == .toolCall(index: 0, ToolCall(id: "AAAAAAAAA", name: "f", arguments: "{}"), logprobs: []))
    }

    @Test("tools off: the marker token is ignored and the text is content")
    func toolsOff() {
        var stream = AssistantStream(toolCallsTokenID: nil)
        let a = stream.consume(.token(id: marker, text: ""))
        let b = stream.consume(.token(id: 7, text: #"[{"name": "f"}]"#))
        #expect(a == [.content("", logprobs: [])])
        #expect(b == [.content(#"[{"name": "f"}]"#, logprobs: [])])
    }

    @Test("an id the request mapped comes back as the client's original")
    func mappedIDsComeBack() throws {
        var request = ChatRequest(messages: [
            .user("hi"), .assistant(toolCalls: [ToolCall(id: "call_12345678901234", name: "f", arguments: "{}")]),
            .tool("{}", toolCallID: "call_12345678901234"), .user("again"),
        ])
        let ids = ToolCallIDMap(rewriting: &request)
        let mapped = try #require(request.messages[1].toolCalls?.first?.id)
        let deltas = run([nil, #"[{"name": "f", "arguments": {}, "id": ""# + mapped + #""}]"#], ids: ids)
        #expect(deltas.first == .toolCall(index: 0, ToolCall(id: "call_12345678901234", name: "f", arguments: "{}"), logprobs: []))
    }

    @Test("log-probabilities travel with the delta of the token that produced them")
    func logprobsTravel() {
        var stream = AssistantStream(toolCallsTokenID: marker)
        let entry = TokenLogprobs(chosen: TokenLogprob(id: 9, logprob: -0.5), top: [TokenLogprob(id: 9, logprob: -0.5)])
        #expect(stream.consume(.logprobs(entry)).isEmpty)
        #expect(stream.consume(.token(id: 9, text: "A")) == [.content("A", logprobs: [entry])])
        #expect(stream.consume(.token(id: 10, text: "B")) == [.content("B", logprobs: [])])
    }

    @Test("an engine failure finishes the choice with its message")
    func engineError() {
        var stream = AssistantStream(toolCallsTokenID: marker)
        let deltas = stream.consume(.finished(reason: .error, promptTokens: 1, generatedTokens: 0, error: .nonFiniteLogits))
        #expect(deltas == [.finished(reason: "stop", error: .nonFiniteLogits, logprobs: [])])
    }
}
