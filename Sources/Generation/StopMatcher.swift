/// Finds stop strings in streamed output and holds back text that might be the start of one,
/// so a stop string is never shown to the client, even when it spans several tokens.
struct StopMatcher: Sendable {
    private let stops: [[UInt8]]
    private var text: [UInt8] = []      // all generated text so far (UTF-8)
    private var emitted = 0             // bytes of `text` already released

    init(stops: [String]) { self.stops = stops.map { Array($0.utf8) } }

    enum Result { case text(String), stopped(String) }

    /// Adds newly decoded text; returns what may be shown now, or the final piece before a stop.
    mutating func append(_ piece: String) -> Result {
        text += Array(piece.utf8)
        guard !stops.isEmpty else { return .text(release(upTo: text.count)) }
        let longest = stops.map(\.count).max() ?? 0
        let searchFrom = max(0, emitted - longest)
        var earliest: Int?
        for stop in stops {
            if let at = find(stop, from: searchFrom), at < (earliest ?? .max) { earliest = at }
        }
        if let at = earliest { return .stopped(release(upTo: max(at, emitted))) }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        var hold = 0
        for stop in stops {
            for n in stride(from: min(stop.count - 1, text.count - emitted), to: 0, by: -1) where n > hold {
                if text[(text.count - n)...].elementsEqual(stop[..<n]) { hold = n; break }
            }
        }
        return .text(release(upTo: text.count - hold))
    }

    /// Whatever is still held back (called when generation ends for another reason).
    mutating func flush() -> String { release(upTo: text.count) }

    private mutating func release(upTo end: Int) -> String {
        guard end > emitted else { return "" }
        let out = String(decoding: text[emitted..<end], as: UTF8.self)
        emitted = end
        return out
    }

    private func find(_ needle: [UInt8], from start: Int) -> Int? {
        guard needle.count <= text.count else { return nil }
        var i = start
        while i + needle.count <= text.count {
            if text[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
