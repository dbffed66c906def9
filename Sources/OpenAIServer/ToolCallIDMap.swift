import Chat

/// Tool-call ids between OpenAI clients and Mistral's format.
///
/// Mistral's v3 format accepts only ids of exactly 9 ASCII letters and digits (mistral-common
/// rejects anything else), while OpenAI clients and other servers send ids such as
/// "call_8f2a…" (vLLM #9019). Each id in a request that is not valid is replaced, in the prompt,
/// by a 9-character id derived from it by a hash, so the same client id maps to the same prompt
/// tokens in every turn of a conversation; when the model's answer echoes a mapped id, the
/// response carries the client's original again.
public struct ToolCallIDMap: Sendable, Equatable {
    private(set) var toMistral: [String: String] = [:]
    private(set) var toClient: [String: String] = [:]

    public init() {}

    /// Rewrites the ids of assistant tool calls and tool results in `request`.
    public init(rewriting request: inout ChatRequest) {
        var taken = Set<String>()
        for message in request.messages {
            for call in message.toolCalls ?? [] where Self.isValid(call.id) { taken.insert(call.id) }
            if let id = message.toolCallID, Self.isValid(id) { taken.insert(id) }
        }
        for m in request.messages.indices {
            if var calls = request.messages[m].toolCalls {
                for c in calls.indices { calls[c].id = map(calls[c].id, taken: &taken) }
                request.messages[m].toolCalls = calls
            }
            if let id = request.messages[m].toolCallID { request.messages[m].toolCallID = map(id, taken: &taken) }
        }
    }

    /// The client's id for an id the model generated (itself when it was not a mapped one).
    public func original(of id: String) -> String { toClient[id] ?? id }

    private mutating func map(_ id: String, taken: inout Set<String>) -> String {
        // "null" is mistral-common's "no id" (a call without one); leave it to the validator.
        if Self.isValid(id) || id == "null" { return id }
        if let known = toMistral[id] { return known }
        var salt: UInt64 = 0
        var candidate = Self.derive(id, salt: salt)
        while taken.contains(candidate) {
            salt += 1
            candidate = Self.derive(id, salt: salt)
        }
        taken.insert(candidate)
        toMistral[id] = candidate
        toClient[candidate] = id
        return candidate
    }

    /// `^[a-zA-Z0-9]{9}$`, as mistral-common's v3 validator checks (without its trailing-newline
    /// leniency: an id the server makes is always clean).
    public static func isValid(_ id: String) -> Bool {
        id.utf8.count == 9 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) }
    }

    /// 9 base-62 digits of the 64-bit FNV-1a hash of the id's UTF-8 bytes (62^9 ≈ 1.4e16 < 2^64).
    public static func derive(_ id: String, salt: UInt64) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ salt
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        var digits: [UInt8] = []
        for _ in 0..<9 {
            digits.append(alphabet[Int(hash % 62)])
            hash /= 62
        }
        return String(decoding: digits, as: UTF8.self)
    }
}
