/// Turns generated ids into text one id at a time. Each `append` returns only complete
/// characters: byte-fallback pieces that together spell one multi-byte character (an emoji
/// is often four `<0xXX>` pieces) are held back until the character is complete. The leading
/// `▁` of the first piece is dropped exactly as `decode` drops it, so the concatenation of
/// everything `append` and `finish` return equals `tokenizer.decode(allIDs)`.
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: SentencePieceTokenizer
    private var state = DecodeState()

    public init(tokenizer: SentencePieceTokenizer) {
        self.tokenizer = tokenizer
    }

    /// Feeds one generated id; returns the newly completed text ("" for control pieces, or
    /// while a multi-byte character is still incomplete).
    public mutating func append(_ id: Int) -> String {
        var out: [UInt8] = []
        state.append(id, tokenizer: tokenizer, final: false, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Ends the sequence: returns what was held back (an incomplete character becomes U+FFFD
    /// per byte, as in `decode`). Start a new sequence with a new instance: the leading-space
    /// state belongs to the sequence that just ended.
    public mutating func finish() -> String {
        var out: [UInt8] = []
        state.finish(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
