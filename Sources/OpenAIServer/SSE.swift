import Chat

/// Server-Sent Events as OpenAI streams them: every event is one `data: <json>` line followed by
/// a blank line, and the stream ends with `data: [DONE]`.
enum SSE {
    static func event(_ json: JSONValue) -> String { "data: " + json.pythonJSON + "\n\n" }
    static let done = "data: [DONE]\n\n"
}

/// JSON builders shared by the response types.
extension JSONValue {
    static func int(_ i: Int) -> JSONValue { .number(.integer(String(i))) }
    /// A float; non-finite values (a log-probability of −∞) are written as −9999 as vLLM does,
    /// since JSON has no infinity.
    static func float(_ f: Float) -> JSONValue { .number(.float(f.isFinite ? Double(f) : -9999)) }
    static func optionalString(_ s: String?) -> JSONValue { s.map(JSONValue.string) ?? .null }
    static func obj(_ pairs: [(String, JSONValue)]) -> JSONValue { .object(JSONObject(pairs)) }
}
