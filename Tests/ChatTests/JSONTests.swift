import Chat
import Testing

/// The JSON layer against Python's `json.dumps(json.loads(text), ensure_ascii=False)`: the same
/// texts are accepted and rejected, and accepted ones print identically (key order, duplicate
/// keys, int vs float, float repr, escapes).
@Suite struct PythonJSONTests {
    @Test func roundTripsLikePython() throws {
        let cases = try ChatFixtures.lines("python_json.jsonl", as: ChatFixtures.JSONRoundTrip.self)
        #expect(cases.count >= 70)
        var accepted = 0
        for c in cases {
            let parsed = try? JSONParser.parse(c.input)
            if let expected = c.output {
                guard let parsed else {
                    Issue.record("Python accepts \(c.input.debugDescription), Swift rejects it")
                    continue
                }
                #expect(Array(parsed.pythonJSON.utf8) == Array(expected.utf8), "\(c.input.prefix(80).debugDescription)")
                accepted += 1
            } else {
                #expect(parsed == nil, "Python rejects \(c.input.debugDescription), Swift accepts it")
            }
        }
        #expect(accepted >= 40)
    }

    @Test func objectKeepsFirstPositionAndLastValue() throws {
        let value = try JSONParser.parse(#"{"b": 1, "a": 2, "b": 3}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a"])
        #expect(object["b"] == .number(.integer("3")))
    }

    @Test func parseErrorsCarryAnOffset() {
        do {
            _ = try JSONParser.parse("[1, 2,, 3]")
            Issue.record("accepted invalid JSON")
        } catch {
            #expect(error.offset == 6)
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }
}

@Suite struct ChatRequestDecodingTests {
    @Test func errorsNameTheField() {
        let cases: [(String, String)] = [
            (#"{"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}"#, "messages[1]"),
            (#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]}"#,
             "messages[0].tool_calls[0].function.name"),
            (#"{"messages": [], "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}"#,
             "tools[0].function.parameters"),
            (#"{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}"#, "messages[0].content[0].text"),
        ]
        for (json, field) in cases {
            do {
                _ = try ChatRequest(json: json)
                Issue.record("accepted \(json)")
            } catch {
                #expect(error.kind == .invalidShape)
                #expect(error.message.contains(field), "\(error.message) should name \(field)")
            }
        }
    }

    @Test func invalidUTF8IsAnError() {
        #expect(throws: ChatError.self) { try ChatRequest(jsonUTF8: [0x7B, 0xFF, 0x7D]) }
    }

    @Test func contentShapes() throws {
        let request = try ChatRequest(
            json: #"""
                {"messages": [
                  {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]},
                  {"role": "assistant", "content": null, "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": {"k": 1.0}}}]},
                  {"role": "tool", "tool_call_id": null, "content": "r", "name": "f"}
                ], "temperature": 0.3, "stream": true}
                """#)
        #expect(request.messages[0].content == .parts([.text("a"), .other(type: "image_url")]))
        #expect(request.messages[1].content == nil)
        #expect(request.messages[1].toolCalls == [ToolCall(id: "x", name: "f", arguments: #"{"k": 1.0}"#)])
        #expect(request.messages[2].toolCallID == nil)
        #expect(request.messages[2].name == "f")
        #expect(request.tools == nil)
    }
}
