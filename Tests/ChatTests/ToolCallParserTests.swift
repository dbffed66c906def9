import Chat
import Testing
import Tokenizers

@Suite struct ToolCallParserTests {
    /// Deterministic ids for assertions.
    func counterIDs() -> () -> String {
        var n = 0
        return {
            n += 1
            return "id\(String(repeating: "0", count: 6))\(n)"
        }
    }

    @Test func parsesGeneratedCalls() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v3"])
        let parser = ToolCallParser(tokenizer: tokenizer)
        let marker = try #require(parser.toolCallsTokenID)
        #expect(marker == tokenizer.id(forPiece: "[TOOL_CALLS]"))
        let body = #"[{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}, {"name": "get_time", "arguments": {}, "id": "Ab3dE6gH9"}]"#
        let generated = [marker] + tokenizer.encode(body) + [tokenizer.eosID]
        let output = parser.parse(generated: generated, makeID: counterIDs())
        #expect(output.content == "")
        #expect(output.toolCallError == nil)
        #expect(
            output.toolCalls == [
                ToolCall(id: "id0000001", name: "get_weather", arguments: #"{"city": "Paris", "days": 2}"#),
                ToolCall(id: "Ab3dE6gH9", name: "get_time", arguments: "{}"),
            ])
    }

    @Test func plainAnswerHasNoCalls() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v3"])
        let parser = ToolCallParser(tokenizer: tokenizer)
        // The text "[TOOL_CALLS]" written by the model is not the control token.
        let text = #"Use [TOOL_CALLS] [{"name": "x"}] like this."#
        let output = parser.parse(generated: tokenizer.encode(text) + [tokenizer.eosID])
        #expect(output.toolCalls.isEmpty)
        #expect(output.content == text)
    }

    @Test func malformedCallsKeepTheText() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v2"])
        let parser = ToolCallParser(tokenizer: tokenizer)
        let marker = try #require(parser.toolCallsTokenID)
        let output = parser.parse(generated: tokenizer.encode("Let me check.") + [marker] + tokenizer.encode(#"[{"name": "f", "argu"#))
        #expect(output.toolCalls.isEmpty)
        #expect(output.toolCallError != nil)
        #expect(output.content.hasPrefix("Let me check."))
        #expect(output.content.hasSuffix(#"[{"name": "f", "argu"#))
    }

    @Test func v1HasNoToolCallToken() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v1"])
        #expect(ToolCallParser(tokenizer: tokenizer).toolCallsTokenID == nil)
    }

    @Test func randomIDsAreValidForV3() {
        var generator = SplitMix64(seed: 7)
        for _ in 0..<100 {
            let id = ToolCallParser.randomID(using: &generator)
            #expect(id.count == 9 && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        }
    }

    /// A parsed call sent back in the next request is encoded as the very tokens the model
    /// generated (v2 writes calls without ids), so the model sees its own turn unchanged.
    @Test func parsedCallsRoundTripThroughTheEncoder() throws {
        let tokenizer = try #require(ChatFixtures.tokenizers["v2"])
        let parser = ToolCallParser(tokenizer: tokenizer)
        let marker = try #require(parser.toolCallsTokenID)
        let generated = [marker] + tokenizer.encode(#"[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#)
        let calls = parser.parse(generated: generated + [tokenizer.eosID]).toolCalls
        #expect(calls.count == 1)
        let encoder = try InstructEncoder(tokenizer: tokenizer)
        let tokens = try encoder.encode(
            ChatRequest(messages: [.user("Weather?"), .assistant(toolCalls: calls), .tool("22", toolCallID: calls.first?.id)]))
        let turn = generated + [tokenizer.eosID]
        let found = tokens.indices.contains { i in i + turn.count <= tokens.count && Array(tokens[i..<i + turn.count]) == turn }
        #expect(found)
    }
}

/// A small seeded generator for reproducible ids.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
