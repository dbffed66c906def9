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

    /// `Normalizer::Normalize`: optional removal of leading/trailing/repeated spaces, the
    /// dummy `▁` prefix (or suffix), the precompiled normalisation rules if any, and every
    /// ASCII space replaced by `▁`. User-defined pieces are copied as units.
    func normalize(_ text: String) -> [UInt8] {
        let input = Array(text.utf8)
        if input.isEmpty { return [] }
        let removeExtra = normalizer.removeExtraWhitespaces
        let escape = normalizer.escapeWhitespaces
        let space = UInt8(ascii: " ")
        var offset = 0
        if removeExtra {
            while offset < input.count {
                let (unit, consumed) = normalizePrefix(input, at: offset)
                guard unit.count == 1 && unit.first == space else { break }
                offset += consumed
            }
            if offset == input.count { return [] }
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3 / 2 + 3)
        func appendSpace() {
            if escape { out.append(contentsOf: Self.spaceSymbol) } else { out.append(space) }
        }
        if !treatWhitespaceAsSuffix && normalizer.addDummyPrefix { appendSpace() }
        var isPreviousSpace = removeExtra
        while offset < input.count {
            var (unit, consumed) = normalizePrefix(input, at: offset)
            // Drop a unit's leading spaces when the previous unit ended with one.
            while isPreviousSpace && unit.first == space { unit = unit.dropFirst() }
            if let last = unit.last {
                for b in unit {
                    if escape && b == space { out.append(contentsOf: Self.spaceSymbol) } else { out.append(b) }
                }
                isPreviousSpace = last == space
            }
            offset += consumed
            if !removeExtra { isPreviousSpace = false }
        }
        if removeExtra {
            let trailing: [UInt8] = escape ? Self.spaceSymbol : [space]
            while out.count >= trailing.count && out.suffix(trailing.count).elementsEqual(trailing) {
                out.removeLast(trailing.count)
            }
        }
        if treatWhitespaceAsSuffix && normalizer.addDummyPrefix { appendSpace() }
        return out
    }

    /// `Normalizer::NormalizePrefix`: the next unit of input and what it normalises to — a
    /// user-defined piece verbatim, else the longest precompiled rule, else one character
    /// (one U+FFFD for a byte that is not valid UTF-8).
    private func normalizePrefix(_ input: [UInt8], at offset: Int) -> (unit: ArraySlice<UInt8>, consumed: Int) {
        if !vocabulary.userDefinedLengths.isEmpty {
            let match = input.withUnsafeBufferPointer { vocabulary.prefixMatch($0, at: offset) }
            if match.isUserDefined { return (input[offset..<offset + match.length], match.length) }
        }
        if let charsMap, let rule = charsMap.longestMatch(input, at: offset) {
            return (rule.replacement, rule.length)
        }
        let (valid, length) = input.withUnsafeBufferPointer { UTF8Rules.decode($0, at: offset) }
        return valid ? (input[offset..<offset + length], length) : (UTF8Rules.replacementCharacter[...], 1)
    }
}
