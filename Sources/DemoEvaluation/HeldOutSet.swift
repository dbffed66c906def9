import Chat
import Foundation

/// One held-out prompt of the demo model (tools/demo-model/heldout.jsonl), generated with a
/// different seed than the training dialogues.
public struct HeldOutItem: Sendable {
    public enum Expected: Sendable, Equatable {
        case content(String)
        /// Function name and its arguments as a JSON object (compared structurally).
        case toolCall(name: String, argumentsJSON: String)
    }

    public var id: Int
    public var skill: String
    public var request: ChatRequest
    public var expected: Expected
    /// mistral-common's encoding of `request` (BOS included): a golden value for the encoder.
    public var promptTokens: [Int]

    public enum FormatError: Error, CustomStringConvertible {
        case badLine(Int, String)
        public var description: String {
            switch self { case let .badLine(n, why): return "held-out line \(n): \(why)" }
        }
    }

    /// Reads every line of a held-out JSONL file.
    public static func load(_ url: URL) throws -> [HeldOutItem] {
        let text = try String(contentsOf: url, encoding: .utf8)
        var items: [HeldOutItem] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let id = object["id"] as? Int, let skill = object["skill"] as? String,
                  let request = object["request"], let expected = object["expected"] as? [String: Any],
                  let prompt = object["prompt_tokens"] as? [Int] else {
                throw FormatError.badLine(n + 1, "expected id, skill, request, expected, prompt_tokens")
            }
            // The request must keep its key order and number spelling (mistral-common writes tool
            // schemas back into the prompt with json.dumps), so it is parsed by Chat's
            // order-preserving parser, not re-serialised through Foundation.
            _ = request
            guard case .object(let root)? = try? JSONParser.parse(String(line)), let raw = root["request"] else {
                throw FormatError.badLine(n + 1, "request is not a JSON object")
            }
            let chat = try ChatRequest(jsonValue: raw)
            let want: Expected
            if let content = expected["content"] as? String {
                want = .content(content)
            } else if let calls = expected["tool_calls"] as? [[String: Any]], let call = calls.first,
                      let name = call["name"] as? String, let args = call["arguments"] {
                let argsData = try JSONSerialization.data(withJSONObject: args, options: [.sortedKeys])
                want = .toolCall(name: name, argumentsJSON: String(decoding: argsData, as: UTF8.self))
            } else {
                throw FormatError.badLine(n + 1, "expected has neither content nor tool_calls")
            }
            items.append(HeldOutItem(id: id, skill: skill, request: chat, expected: want, promptTokens: prompt))
        }
        return items
    }
}
