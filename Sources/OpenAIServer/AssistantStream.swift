import Chat
import Generation

/// What one choice of a chat completion adds, in order: content text, complete tool calls, and
/// finally why it ended. Streaming turns each into chunks; the non-streaming path collects them,
/// so both answer exactly the same thing.
public enum AssistantDelta: Equatable, Sendable {
    /// Text (may be empty when only log-probabilities are new) and the log-probabilities of the
    /// tokens that produced it.
    case content(String, logprobs: [TokenLogprobs])
    /// A complete call, numbered from 0 within the choice.
    case toolCall(index: Int, ToolCall, logprobs: [TokenLogprobs])
    /// "stop", "length" or "tool_calls"; `error` when the engine failed the sequence.
    case finished(reason: String, error: GenerationError?, logprobs: [TokenLogprobs])
}

/// Splits one sequence's generation events into content and tool calls.
///
/// The model calls tools by generating the control token `[TOOL_CALLS]` and then a JSON list of
/// `{"name", "arguments", "id"}` objects (the shape the v3 encoder puts in the prompt). The marker
/// is recognised by token id, never by text, so a model that writes the characters
/// "[TOOL_CALLS]" produces content. After the marker, text is buffered and each list element is
/// released as a call as soon as it is a complete JSON value (`JSONParser.parsePrefix`), so a
/// streamed call's name and arguments arrive together once its object closes — never a partial,
/// unparseable fragment. If what follows the marker is not a list of calls, the raw text is
/// returned as content at the end, so nothing generated is lost.
public struct AssistantStream {
    /// nil: tools are off for this request (no tools, `tool_choice: none`, or a v1 tokenizer).
    let toolCallsTokenID: Int?
    /// Client tool-call ids the request used, to give the model's echo of one back as sent.
    let ids: ToolCallIDMap
    private var inToolCalls: Bool
    private var buffer: [UInt8] = []   // UTF-8 text after `[TOOL_CALLS]`
    private var scanned = 0            // bytes of `buffer` already released as calls
    private var listOpened = false
    private var listClosed = false
    private var callCount = 0
    private var pendingLogprobs: [TokenLogprobs] = []
    private let makeID: () -> String

    /// `forcedToolCall`: the prompt already ends with `[TOOL_CALLS]` (`tool_choice` required or
    /// a named function), so generation starts inside the call list.
    public init(toolCallsTokenID: Int?, forcedToolCall: Bool = false, ids: ToolCallIDMap = ToolCallIDMap(),
                makeID: @escaping () -> String = ToolCallParser.randomID) {
        self.toolCallsTokenID = toolCallsTokenID
        self.ids = ids
        self.inToolCalls = forcedToolCall && toolCallsTokenID != nil
        self.makeID = makeID
    }

    public mutating func consume(_ event: GenerationEvent) -> [AssistantDelta] {
        switch event {
        case .prefillProgress: return []
        case .logprobs(let entry):
            pendingLogprobs.append(entry)
            return []
        case let .token(id, text):
            if !inToolCalls, let marker = toolCallsTokenID, id == marker {
                inToolCalls = true
                return []
            }
            if !inToolCalls {
                return [.content(text, logprobs: takeLogprobs())]
            }
            buffer += Array(text.utf8)
            return releaseCalls()
        case let .finished(reason, _, _, error):
            var out: [AssistantDelta] = []
            if inToolCalls {
                out += releaseCalls()
                if callCount == 0 {
                    // Not a call list: the text after the marker is content.
                    let rest = String(decoding: buffer, as: UTF8.self)
                    if !rest.isEmpty { out.append(.content(rest, logprobs: takeLogprobs())) }
                }
            }
            let finish: String
            switch reason {
            case .length: finish = "length"
            case .stop, .cancelled, .error: finish = callCount > 0 ? "tool_calls" : "stop"
            }
            out.append(.finished(reason: finish, error: reason == .error ? (error ?? .deviceFailure("generation failed")) : nil,
                                 logprobs: takeLogprobs()))
            return out
        }
    }

    private mutating func takeLogprobs() -> [TokenLogprobs] {
        defer { pendingLogprobs.removeAll() }
        return pendingLogprobs
    }

    /// Releases every complete call object in the buffer.
    private mutating func releaseCalls() -> [AssistantDelta] {
        var out: [AssistantDelta] = []
        while !listClosed {
            skipSpace()
            guard scanned < buffer.count else { break }
            let byte = buffer[scanned]
            if !listOpened {
                // One bare object is accepted too, as ToolCallParser does.
                if byte == UInt8(ascii: "[") { listOpened = true; scanned += 1; continue }
                if byte != UInt8(ascii: "{") { listClosed = true; break }
                listOpened = true
            }
            if byte == UInt8(ascii: ",") { scanned += 1; continue }
            if byte == UInt8(ascii: "]") { listClosed = true; scanned += 1; break }
            let rest = Array(buffer[scanned...])
            guard let (value, end) = try? JSONParser.parsePrefix(utf8: rest) else { break }   // incomplete: wait
            guard case .object = value, let calls = try? ToolCallParser.parseCalls(String(decoding: rest[..<end], as: UTF8.self), makeID: makeID),
                  let call = calls.first else {
                listClosed = true
                break
            }
            scanned += end
            var mapped = call
            mapped.id = ids.original(of: call.id)
            out.append(.toolCall(index: callCount, mapped, logprobs: takeLogprobs()))
            callCount += 1
        }
        return out
    }

    private mutating func skipSpace() {
        while scanned < buffer.count, [0x20, 0x09, 0x0A, 0x0D].contains(buffer[scanned]) { scanned += 1 }
    }
}
