import Synchronization

/// Hands out fixed-size blocks of the paged KV pool. Every sequence owns a block table (a list
/// of block indices); a token at position j lives in block `table[j / blockSize]`.
///
/// One pool for all sequences means memory follows the actual lengths instead of reserving
/// `maxSeqLen` per sequence, which is what lets many sequences run at once.
///
/// Prefix caching (vLLM's block hashing): a full block whose KV has been computed can be
/// registered under its `BlockHash` — its tokens chained with the hash of every block before
/// it, so equal hashes mean equal token prefixes and therefore equal KV. Blocks are reference
/// counted: a sequence that starts with cached blocks shares them (`takeCachedPrefix`) and
/// computes only the rest. A block no sequence holds any more keeps its content and its hash,
/// and is evicted, least recently released first, only when a block is needed and no block
/// without content is left. Allocation therefore never fails because of the cache: `freeBlocks`
/// counts both kinds.
public final class KVBlockAllocator: Sendable {
    public let blockCount: Int
    public let blockSize: Int
    private let state: Mutex<State>

    struct State: ~Copyable {
        /// Blocks without content worth keeping (a stack).
        var empty: [Int]
        /// Sequences holding each block.
        var references: [Int]
        /// The content key of each registered block.
        var key: [BlockHash?]
        var blockOfKey: [BlockHash: Int] = [:]
        /// Registered blocks no sequence holds, least recently released at the head.
        var evictable: LRUList

        init(blocks: Int) {
            empty = Array((0..<blocks).reversed())
            references = Array(repeating: 0, count: blocks)
            key = Array(repeating: nil, count: blocks)
            evictable = LRUList(capacity: blocks)
        }

        /// One block for a sequence: an empty one, else the least recently used cached one
        /// (which loses its hash).
        mutating func take() -> Int? {
            let block: Int
            if let b = empty.popLast() {
                block = b
            } else if let b = evictable.popFirst() {
                if let k = key[b] { blockOfKey[k] = nil }
                key[b] = nil
                block = b
            } else {
                return nil
            }
            references[block] = 1
            return block
        }

        mutating func release(_ block: Int) {
            references[block] -= 1
            precondition(references[block] >= 0, "KV block \(block) released more often than taken")
            guard references[block] == 0 else { return }
            if key[block] != nil { evictable.append(block) } else { empty.append(block) }
        }
    }

    public init(blockCount: Int, blockSize: Int) {
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.state = Mutex(State(blocks: blockCount))
    }

    /// Blocks a sequence can take now: empty ones plus cached ones no sequence holds.
    public var freeBlocks: Int { state.withLock { $0.empty.count + $0.evictable.count } }

    /// Registered blocks no sequence holds (kept for later prefix hits, evicted when needed).
    public var cachedFreeBlocks: Int { state.withLock { $0.evictable.count } }

    /// Blocks needed to hold `tokens` positions.
    public func blocksNeeded(forTokens tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Grows `table` so it covers `tokens` positions. Returns false (and changes nothing) when
    /// the pool has too few free blocks.
    public func ensureCapacity(_ table: inout [Int], tokens: Int) -> Bool {
        let missing = blocksNeeded(forTokens: tokens) - table.count
        if missing <= 0 { return true }
        let taken: [Int]? = state.withLock { s in
            guard s.empty.count + s.evictable.count >= missing else { return nil }
            return (0..<missing).map { _ in s.take()! }
        }
        guard let taken else { return false }
        table += taken
        return true
    }

    /// Returns a sequence's blocks to the pool. The table's last blocks are released first, so
    /// among equally old cached blocks the end of a sequence is evicted before its beginning
    /// (the beginning is what other prompts share).
    public func release(_ table: [Int]) {
        state.withLock { s in
            for block in table.reversed() { s.release(block) }
        }
    }

    /// The cached blocks holding the longest prefix of `hashes` (block 0 first), each now held
    /// by the caller (release them with the table as usual).
    public func takeCachedPrefix(_ hashes: some Sequence<BlockHash>) -> [Int] {
        state.withLock { s in
            var blocks: [Int] = []
            for hash in hashes {
                guard let b = s.blockOfKey[hash] else { break }
                if s.references[b] == 0 { s.evictable.remove(b) }
                s.references[b] += 1
                blocks.append(b)
            }
            return blocks
        }
    }

    /// Records that `block` (held by the caller, full, its KV computed) holds the content `hash`
    /// names. A no-op when another block already holds that content (two sequences computed the
    /// same prefix at once: the second copy is released as an ordinary block).
    public func register(_ block: Int, as hash: BlockHash) {
        state.withLock { s in
            guard s.blockOfKey[hash] == nil, s.key[block] == nil else { return }
            s.key[block] = hash
            s.blockOfKey[hash] = block
        }
    }
}

/// What a full KV block holds: its tokens and, through `parent`, every token before it.
///
/// `value` chains a 64-bit mix of the parent's value and the block's tokens (vLLM's
/// `hash_block_tokens`); equality also compares the tokens themselves, so two different prefixes
/// are confused only if their parents' 64-bit chain values collide *and* the blocks' tokens are
/// equal.
public struct BlockHash: Hashable, Sendable {
    public let value: UInt64
    public let parent: UInt64
    public let tokens: [Int32]

    /// The hash of the block `tokens` that follows `parent` (nil for a sequence's first block).
    public init(parent: BlockHash?, tokens: ArraySlice<Int>) {
        let p = parent?.value ?? 0x6A09_E667_F3BC_C908   // any fixed start value
        var h = p
        for t in tokens { h = Self.mix(h ^ UInt64(truncatingIfNeeded: t)) }
        self.value = h
        self.parent = p
        self.tokens = tokens.map { Int32(truncatingIfNeeded: $0) }
    }

    /// The chain hashes of every full block of `tokens` (block 0 first).
    public static func chain(_ tokens: [Int], blockSize: Int, from start: [BlockHash] = []) -> [BlockHash] {
        var out = start
        while (out.count + 1) * blockSize <= tokens.count {
            let i = out.count
            out.append(BlockHash(parent: out.last, tokens: tokens[(i * blockSize)..<((i + 1) * blockSize)]))
        }
        return out
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(value) }

    /// SplitMix64's finaliser: every input bit affects every output bit.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Blocks in least-recently-released order with O(1) append, pop and removal from the middle (a
/// doubly linked list threaded through two arrays indexed by block, like vLLM's free queue).
struct LRUList: ~Copyable {
    private var next: [Int]
    private var previous: [Int]
    private var head = -1
    private var tail = -1
    private(set) var count = 0

    init(capacity: Int) {
        next = Array(repeating: -1, count: capacity)
        previous = Array(repeating: -1, count: capacity)
    }

    mutating func append(_ b: Int) {
        previous[b] = tail
        next[b] = -1
        if tail >= 0 { next[tail] = b } else { head = b }
        tail = b
        count += 1
    }

    mutating func popFirst() -> Int? {
        guard head >= 0 else { return nil }
        let b = head
        remove(b)
        return b
    }

    /// `b` must be in the list.
    mutating func remove(_ b: Int) {
        let p = previous[b], n = next[b]
        if p >= 0 { next[p] = n } else { head = n }
        if n >= 0 { previous[n] = p } else { tail = p }
        next[b] = -1
        previous[b] = -1
        count -= 1
    }
}
