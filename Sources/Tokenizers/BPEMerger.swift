/// The merge loop of sentencepiece's `bpe::Model::SampleEncode` (bpe_model.cc) with dropout 0,
/// reproduced step for step so the ids equal sentencepiece's on every input:
/// the text starts as one symbol per UTF-8 character (a user-defined piece is one frozen
/// symbol); every adjacent pair whose concatenation is a piece goes into a priority queue;
/// the highest-scoring pair is merged first and, on equal scores, the leftmost — then the
/// two pairs around the merged symbol are queued. Stale queue entries are recognised, as in
/// sentencepiece, by a symbol that became empty or whose length no longer matches.
/// Cost: O(n log n) in the text length, no rescans.
struct BPEMerger {
    /// A doubly linked list of symbols over the normalized bytes; a symbol is the byte range
    /// `start..<start+length`. Merged-away symbols have length 0.
    private var start: [Int32] = []
    private var length: [Int32] = []
    private var prev: [Int32] = []
    private var next: [Int32] = []
    private var frozen: [Bool] = []
    private var heap = PairHeap()
    /// For merges that produce an UNUSED piece: the two halves, so the result can be split
    /// back (sentencepiece's `rev_merge` / `resegment`). Keyed by content, last write wins.
    private var reverseMerges: [[UInt8]: (left: Range<Int>, right: Range<Int>)] = [:]

    /// Splits `text` into symbols, merges, and returns the final symbols as byte ranges.
    static func merge(
        _ text: UnsafeBufferPointer<UInt8>, vocabulary: Vocabulary
    ) -> [Range<Int>] {
        var m = BPEMerger()
        m.split(text, vocabulary: vocabulary)
        guard !m.start.isEmpty else { return [] }
        for i in 1..<m.start.count {
            m.addPair(left: i - 1, right: i, text: text, vocabulary: vocabulary)
        }
        while let top = m.heap.pop() {
            let l = Int(top.left), r = Int(top.right)
            // `top` is stale if either side was merged away or grew since it was queued.
            if m.length[l] == 0 || m.length[r] == 0 || m.length[l] + m.length[r] != top.size { continue }
            m.length[l] += m.length[r]
            m.next[l] = m.next[r]
            if m.next[r] >= 0 { m.prev[Int(m.next[r])] = Int32(l) }
            m.length[r] = 0
            m.addPair(left: Int(m.prev[l]), right: l, text: text, vocabulary: vocabulary)
            m.addPair(left: l, right: Int(m.next[l]), text: text, vocabulary: vocabulary)
        }
        var result: [Range<Int>] = []
        result.reserveCapacity(m.start.count)
        var index = 0
        while index >= 0 {
            let range = Int(m.start[index])..<Int(m.start[index] + m.length[index])
            m.resegment(range, text: text, vocabulary: vocabulary, into: &result)
            index = Int(m.next[index])
        }
        return result
    }

    /// Splits a symbol that is an UNUSED piece back into the halves it was merged from.
    private func resegment(
        _ range: Range<Int>, text: UnsafeBufferPointer<UInt8>, vocabulary: Vocabulary,
        into result: inout [Range<Int>]
    ) {
        let bytes = UnsafeBufferPointer(rebasing: text[range])
        guard !reverseMerges.isEmpty, let id = vocabulary.pieceToID(bytes), vocabulary.types[id] == .unused,
            let halves = reverseMerges[Array(bytes)]
        else {
            result.append(range)
            return
        }
        resegment(halves.left, text: text, vocabulary: vocabulary, into: &result)
        resegment(halves.right, text: text, vocabulary: vocabulary, into: &result)
    }

    private mutating func split(_ text: UnsafeBufferPointer<UInt8>, vocabulary: Vocabulary) {
        start.reserveCapacity(text.count)
        var offset = 0
        while offset < text.count {
            let (matched, isUserDefined) = vocabulary.prefixMatch(text, at: offset)
            let index = Int32(start.count)
            start.append(Int32(offset))
            length.append(Int32(matched))
            frozen.append(isUserDefined)
            prev.append(index - 1)
            offset += matched
            next.append(offset < text.count ? index + 1 : -1)
        }
    }

    /// `MaybeAddNewSymbolPair`: queue `left+right` if their concatenation is a piece.
    private mutating func addPair(
        left: Int, right: Int, text: UnsafeBufferPointer<UInt8>, vocabulary: Vocabulary
    ) {
        if left < 0 || right < 0 || frozen[left] || frozen[right] { return }
        let size = length[left] + length[right]
        let bytes = UnsafeBufferPointer(rebasing: text[Int(start[left])..<Int(start[left] + size)])
        guard let id = vocabulary.normalPieces.lookup(bytes) else { return }
        heap.push(SymbolPair(left: Int32(left), right: Int32(right), score: vocabulary.scores[id], size: size))
        if vocabulary.types[id] == .unused {
            let l = Int(start[left])
            let mid = l + Int(length[left])
            reverseMerges[Array(bytes)] = (l..<mid, mid..<(l + Int(size)))
        }
    }
}

struct SymbolPair {
    var left: Int32
    var right: Int32
    var score: Float
    var size: Int32

    /// sentencepiece's `SymbolPairComparator`, inverted: `a` comes out of the queue before
    /// `b` if it scores higher, or scores the same and starts further left.
    @inline(__always)
    func precedes(_ b: SymbolPair) -> Bool {
        score > b.score || (score == b.score && left < b.left)
    }
}

/// A binary max-heap ordered by `SymbolPair.precedes`.
struct PairHeap {
    private var items: [SymbolPair] = []

    mutating func push(_ item: SymbolPair) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> SymbolPair? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var parent = 0
        let count = items.count
        while true {
            let l = 2 * parent + 1
            if l >= count { break }
            let r = l + 1
            let best = (r < count && items[r].precedes(items[l])) ? r : l
            guard items[best].precedes(items[parent]) else { break }
            items.swapAt(best, parent)
            parent = best
        }
        return top
    }
}
