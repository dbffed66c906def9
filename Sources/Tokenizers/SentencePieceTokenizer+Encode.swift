/// Text → ids, following `SentencePieceProcessor::Encode`: normalize (normalizer.cc), run the
/// BPE merges (bpe_model.cc), then map pieces to ids the way `PopulateSentencePieceText` does
/// (unknown pieces become byte pieces with byte fallback, or one merged `<unk>` per run).
extension SentencePieceTokenizer {
    /// U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's visible stand-in for a space.
    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]

    /// sentencepiece's `encode(text)`: the pieces' ids, without BOS/EOS. User text that spells
    /// a control piece (`[INST]`, `</s>`) is ordinary text here and never yields its id.
    public func encode(_ text: String) -> [Int] {
        let normalized = normalize(text)
        if normalized.isEmpty { return [] }
        return normalized.withUnsafeBufferPointer { buffer in
            let symbols = BPEMerger.merge(buffer, vocabulary: vocabulary)
            var ids: [Int] = []
            ids.reserveCapacity(symbols.count)
            var previousWasUnknown = false
            for range in symbols {
                let bytes = UnsafeBufferPointer(rebasing: buffer[range])
                let id = vocabulary.pieceToID(bytes) ?? vocabulary.unkID
                let isUnknown = vocabulary.types[id] == .unknown
                if isUnknown && byteFallback {
                    for b in bytes { ids.append(vocabulary.byteIDs[Int(b)]) }
                } else if !(isUnknown && previousWasUnknown) {
                    // A run of unknown symbols is one `<unk>` (sentencepiece merges the run).
                    ids.append(id)
                }
                previousWasUnknown = isUnknown
            }
            return ids
        }
    }

    /// `Normalizer::Normalize` for a model without a precompiled character map: optional
    /// removal of leading/trailing/repeated spaces, the dummy `▁` prefix (or suffix), and
    /// every ASCII space replaced by `▁`. User-defined pieces are copied as units.
    func normalize(_ text: String) -> [UInt8] {
        var input = Array(text.utf8)
        if input.isEmpty { return [] }
        let removeExtra = normalizer.removeExtraWhitespaces
        let escape = normalizer.escapeWhitespaces
        let space = UInt8(ascii: " ")
        var offset = 0
        if removeExtra {
            while offset < input.count && input[offset] == space { offset += 1 }
            if offset == input.count { return [] }
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3 / 2 + 3)
        func appendSpace() {
            if escape { out.append(contentsOf: Self.spaceSymbol) } else { out.append(space) }
        }
        if !treatWhitespaceAsSuffix && normalizer.addDummyPrefix { appendSpace() }
        var isPreviousSpace = removeExtra
        input.withUnsafeMutableBufferPointer { mutableBuffer in
            let buffer = UnsafeBufferPointer(mutableBuffer)
            while offset < buffer.count {
                // One unit: a user-defined piece if one starts here, else one character.
                var length = 0
                for candidate in vocabulary.userDefinedLengths where candidate <= buffer.count - offset {
                    if vocabulary.userDefined.lookup(UnsafeBufferPointer(rebasing: buffer[offset..<offset + candidate])) != nil {
                        length = candidate
                        break
                    }
                }
                if length == 0 { length = min(buffer.count - offset, UTF8Rules.oneCharLength(buffer[offset])) }
                var unitStart = offset
                let unitEnd = offset + length
                // Drop a unit's leading spaces when the previous unit ended with one.
                while isPreviousSpace && unitStart < unitEnd && buffer[unitStart] == space { unitStart += 1 }
                if unitStart < unitEnd {
                    for i in unitStart..<unitEnd {
                        if escape && buffer[i] == space { out.append(contentsOf: Self.spaceSymbol) } else { out.append(buffer[i]) }
                    }
                    isPreviousSpace = buffer[unitEnd - 1] == space
                }
                offset = unitEnd
                if !removeExtra { isPreviousSpace = false }
            }
        }
        if removeExtra {
            let trailing: [UInt8] = escape ? Self.spaceSymbol : [space]
            while out.count >= trailing.count && Array(out.suffix(trailing.count)) == trailing {
                out.removeLast(trailing.count)
            }
        }
        if treatWhitespaceAsSuffix && normalizer.addDummyPrefix { appendSpace() }
        return out
    }
}
