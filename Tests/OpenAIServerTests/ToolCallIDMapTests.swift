import Chat
import Testing

import OpenAIServer

@Suite struct ToolCallIDMapTests {
    func conversation(_ id: String, second: String? = nil) -> ChatRequest {
        var messages: [ChatMessage] = [
            .user("Weather in Oslo?"), .assistant(toolCalls: [ToolCall(id: id, name: "get_weather", arguments: #"{"city": "Oslo"}"#)]),
            .tool(#"{"temperature": 3}"#, toolCallID: id),
        ]
        if let second {
            messages += [.user("And Rome?"), .assistant(toolCalls: [ToolCall(id: second, name: "get_weather", arguments: "{}")]),
                         .tool("{}", toolCallID: second)]
        }
        return ChatRequest(messages: messages)
    }

    @Test("OpenAI-style ids become 9 alphanumerics, the same in the call and its result")
    func mapsInvalidIDs() throws {
        var request = conversation("call_abc-123_XYZ")
        let map = ToolCallIDMap(rewriting: &request)
        let id = try #require(request.messages[1].toolCalls?.first?.id)
        #expect(ToolCallIDMap.isValid(id))
        #expect(request.messages[2].toolCallID == id)
        #expect(map.original(of: id) == "call_abc-123_XYZ")
    }

    @Test("the mapping is a function of the id: the same id gives the same prompt in every turn")
    func deterministic() {
        var a = conversation("call_1"), b = conversation("call_1", second: "call_2")
        _ = ToolCallIDMap(rewriting: &a)
        _ = ToolCallIDMap(rewriting: &b)
        #expect(a.messages[1].toolCalls?.first?.id == b.messages[1].toolCalls?.first?.id)
        #expect(b.messages[1].toolCalls?.first?.id != b.messages[4].toolCalls?.first?.id)
    }

    @Test("valid ids are kept, and a mapped id never collides with one")
    func keepsValidIDs() throws {
        let derived = ToolCallIDMap.derive("call_x", salt: 0)
        var request = conversation(derived, second: "call_x")
        let map = ToolCallIDMap(rewriting: &request)
        #expect(request.messages[1].toolCalls?.first?.id == derived)
        let other = try #require(request.messages[4].toolCalls?.first?.id)
        #expect(other != derived && ToolCallIDMap.isValid(other))
        #expect(map.original(of: derived) == derived)
        #expect(map.original(of: other) == "call_x")
    }

    @Test func validity() {
        #expect(ToolCallIDMap.isValid("abcDEF123"))
        #expect(!ToolCallIDMap.isValid("abcDEF12"))
        #expect(!ToolCallIDMap.isValid("abcDEF12_"))
        #expect(!ToolCallIDMap.isValid("abcdéf123"))
    }
}
