import Chat

/// Token counts of a response (`usage`).
struct Usage: Equatable {
    var promptTokens: Int
    var completionTokens: Int

    var json: JSONValue {
        .obj([("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)),
              ("total_tokens", .int(promptTokens + completionTokens))])
    }
}
