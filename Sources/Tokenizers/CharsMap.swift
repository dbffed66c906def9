/// A SentencePiece `precompiled_charsmap`: normalisation rules (e.g. NFKC) compiled into a
/// darts-clone double-array trie plus the replacement strings. Layout (normalizer.cc,
/// `DecodePrecompiledCharsMap`): `<trie size: UInt32 LE><trie units: UInt32 LE…><replacements,
/// each NUL-terminated>`. A trie leaf's value is the offset of its replacement.
/// Lookups are bounds-checked: a corrupt table yields "no rule", never a crash.
struct CharsMap: Sendable {
    private let units: [UInt32]
    private let replacements: [UInt8]

    /// `Normalizer::kMaxTrieResultsSize`: sentencepiece only looks at the first 32 matches.
    private static let maxResults = 32

    init(blob: [UInt8]) throws(InvalidModel) {
        guard blob.count > 4 else { throw InvalidModel("precompiled_charsmap is too short (\(blob.count) bytes)") }
        let trieSize = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
        guard trieSize <= blob.count - 4, trieSize % 4 == 0, trieSize > 0 else {
            throw InvalidModel("precompiled_charsmap: trie size \(trieSize) does not fit its \(blob.count)-byte blob")
        }
        var units = [UInt32](repeating: 0, count: trieSize / 4)
        for i in units.indices {
            let o = 4 + 4 * i
            units[i] = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
        }
        self.units = units
        self.replacements = Array(blob[(4 + trieSize)...])
    }

    // darts-clone `DoubleArrayUnit` accessors.
    @inline(__always) private static func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    @inline(__always) private static func value(_ u: UInt32) -> Int { Int(u & 0x7FFF_FFFF) }
    @inline(__always) private static func label(_ u: UInt32) -> UInt32 { u & (0x8000_0000 | 0xFF) }
    @inline(__always) private static func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }

    /// The longest rule whose source is a prefix of `text[offset...]` (darts-clone
    /// `commonPrefixSearch`, then the longest of the first 32 results, as `NormalizePrefix`
    /// does): how many input bytes it consumes and its replacement.
    func longestMatch(_ text: [UInt8], at offset: Int) -> (length: Int, replacement: ArraySlice<UInt8>)? {
        var nodePos = Self.offset(units[0])
        var results = 0
        var best: (length: Int, value: Int)?
        for i in 0..<(text.count - offset) {
            let c = text[offset + i]
            nodePos ^= Int(c)
            guard nodePos >= 0, nodePos < units.count else { break }
            let unit = units[nodePos]
            if Self.label(unit) != UInt32(c) { break }
            nodePos ^= Self.offset(unit)
            if Self.hasLeaf(unit) {
                if results < Self.maxResults, nodePos >= 0, nodePos < units.count {
                    best = (i + 1, Self.value(units[nodePos]))  // lengths only grow
                }
                results += 1
            }
        }
        guard let best, best.value < replacements.count else { return nil }
        var end = best.value
        while end < replacements.count && replacements[end] != 0 { end += 1 }
        return (best.length, replacements[best.value..<end])
    }
}
