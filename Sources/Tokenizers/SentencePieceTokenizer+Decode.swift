/// Ids → text, following `SentencePieceProcessor::Decode` (sentencepiece_processor.cc).
extension SentencePieceTokenizer {
    /// sentencepiece's `decode(ids)`. Control pieces decode to ""; `<unk>` to the model's
    /// unk surface (" ⁇ "); runs of byte pieces are joined into UTF-8, with one U+FFFD per
    /// byte that does not start a valid character; the first piece's leading `▁` (the dummy
    /// prefix) is dropped and every other `▁` becomes a space. Ids outside the vocabulary
    /// (which sentencepiece rejects with an error) are skipped.
    public func decode(_ ids: [Int]) -> String {
        var state = DecodeState()
        var out: [UInt8] = []
        for id in ids { state.append(id, tokenizer: self, final: true, to: &out) }
        state.finish(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The text of one non-byte piece (`DecodeSentencePiece`) and whether it consumed the
    /// leading-space marker of the whole output.
    func decodePiece(_ id: Int, isFirstWhitespaceCandidate: Bool) -> (text: [UInt8], consumedLeadingSpace: Bool) {
        switch vocabulary.types[id] {
        case .control:
            return ([], false)
        case .unknown:
            return (unkSurface, false)
        default:
            break
        }
        var piece = vocabulary.pieces[id][...]
        var consumed = false
        if isFirstWhitespaceCandidate && (normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces) {
            if piece.starts(with: Self.spaceSymbol) {
                piece = piece.dropFirst(Self.spaceSymbol.count)
                consumed = true
            }
            // With remove_extra_whitespaces every leading space is dropped, not just one.
            if normalizer.removeExtraWhitespaces { consumed = false }
        }
        var text: [UInt8] = []
        text.reserveCapacity(piece.count)
        var i = piece.startIndex
        while i < piece.endIndex {
            if piece[i] == 0xE2 && piece.endIndex - i >= 3 && piece[i + 1] == 0x96 && piece[i + 2] == 0x81 {
                text.append(UInt8(ascii: " "))
                i += 3
            } else {
                text.append(piece[i])
                i += 1
            }
        }
        return (text, consumed)
    }
}

/// The decoder's state between pieces, shared by `decode` and `StreamingDetokenizer` so that
/// streaming and whole-sequence decoding cannot drift apart.
struct DecodeState: Sendable {
    /// Bytes of a run of byte pieces not yet turned into text.
    var pendingBytes: [UInt8] = []
    /// Whether any text has been produced (sentencepiece's `!text->empty()`).
    var producedText = false
    /// Whether the previous non-byte piece consumed the leading `▁` (`bos_ws_seen`).
    var leadingSpaceSeen = false
    /// Whether the next non-byte piece may still drop its leading `▁` (`is_bos_ws`).
    var mayDropLeadingSpace = true

    /// Adds one id. With `final == false` (streaming) bytes that may still be the start of a
    /// character stay pending; otherwise they are resolved when the byte run ends.
    mutating func append(_ id: Int, tokenizer: SentencePieceTokenizer, final: Bool, to out: inout [UInt8]) {
        let vocabulary = tokenizer.vocabulary
        guard vocabulary.types.indices.contains(id) else { return }
        if vocabulary.types[id] == .byte {
            pendingBytes.append(UInt8(vocabulary.byteValues[id]))
            if !final { flushBytes(final: false, to: &out) }
            return
        }
        flushBytes(final: true, to: &out)
        if leadingSpaceSeen || producedText { mayDropLeadingSpace = false }
        let (text, consumed) = tokenizer.decodePiece(id, isFirstWhitespaceCandidate: mayDropLeadingSpace)
        leadingSpaceSeen = consumed
        if !text.isEmpty { producedText = true }
        out.append(contentsOf: text)
    }

    mutating func finish(to out: inout [UInt8]) {
        flushBytes(final: true, to: &out)
    }

    private mutating func flushBytes(final: Bool, to out: inout [UInt8]) {
        guard !pendingBytes.isEmpty else { return }
        let before = out.count
        let used = UTF8Rules.appendDecodedBytes(pendingBytes, final: final, to: &out)
        if out.count > before { producedText = true }
        pendingBytes.removeFirst(used)
    }
}
