import Chat
import Testing

@Suite struct PromptTruncationTests {
    /// system, then 6 turns of user/assistant, the third with a tool call and its result.
    func conversation() -> ChatRequest {
        var messages: [ChatMessage] = [.system("You are Chloe, a concise assistant.")]
        for i in 0..<6 {
            messages.append(.user("Question number \(i): please explain topic \(i) in detail."))
            if i == 2 {
                messages.append(.assistant(toolCalls: [ToolCall(id: "abcDEF123", name: "lookup", arguments: #"{"topic": 2}"#)]))
                messages.append(.tool(#"{"facts": ["a", "b"]}"#, toolCallID: "abcDEF123", name: "lookup"))
            }
            if i < 5 { messages.append(.assistant("Answer \(i): " + String(repeating: "words ", count: 20))) }
        }
        return ChatRequest(messages: messages, tools: [ChatTool(name: "lookup", description: "Look a topic up")])
    }

    @Test(arguments: ChatFixtures.versions.filter { $0 != "v1" })
    func dropsOldestTurnsKeepingTheSystemPrompt(version: String) throws {
        let tokenizer = try #require(ChatFixtures.tokenizers[version])
        let encoder = try InstructEncoder(tokenizer: tokenizer)
        let request = conversation()
        let full = try encoder.encode(request)
        #expect(try encoder.encode(request, maxTokens: full.count) == FittedPrompt(tokens: full, droppedMessages: 0))

        let budget = full.count * 2 / 3
        let fitted = try encoder.encode(request, maxTokens: budget)
        #expect(fitted.tokens.count <= budget)
        #expect(fitted.droppedMessages > 0)
        // Exactly the encoding of the request without the dropped messages (system kept).
        var shorter = request
        shorter.messages = [request.messages[0]] + request.messages[(1 + fitted.droppedMessages)...]
        #expect(shorter.messages[1].role == .user)
        #expect(try encoder.encode(shorter) == fitted.tokens)
        let system = tokenizer.encode("You are Chloe, a concise assistant.")
        #expect(fitted.tokens.indices.contains { Array(fitted.tokens[$0...].prefix(system.count)) == system })
        // Minimal: keeping one more turn would not fit.
        let userStarts = request.messages.indices.filter { request.messages[$0].role == .user }
        let cut = 1 + fitted.droppedMessages
        let previousCut = try #require(userStarts.last { $0 < cut })
        var longer = request
        longer.messages = [request.messages[0]] + request.messages[previousCut...]
        #expect(try encoder.encode(longer).count > budget)
    }

    @Test func tooLongEvenForTheLastTurn() throws {
        let encoder = try InstructEncoder(tokenizer: try #require(ChatFixtures.tokenizers["v1"]))
        do {
            _ = try encoder.encode(conversation().messagesOnlyText(), maxTokens: 5)
            Issue.record("a 5-token budget cannot hold the last turn")
        } catch {
            #expect(error.kind == .promptTooLong)
        }
    }
}

extension ChatRequest {
    /// v1 has no tools: keep only the text turns.
    func messagesOnlyText() -> ChatRequest {
        ChatRequest(messages: messages.filter { $0.role != .tool && $0.toolCalls == nil })
    }
}
