import Synchronization

/// Hands out fixed-size blocks of the paged KV pool. Every sequence owns a block table (a list
/// of block indices); a token at position j lives in block `table[j / blockSize]`.
///
/// One pool for all sequences means memory follows the actual lengths instead of reserving
/// `maxSeqLen` per sequence, which is what lets many sequences run at once.
public final class KVBlockAllocator: Sendable {
    public let blockCount: Int
    public let blockSize: Int
    private let free: Mutex<[Int]>

    public init(blockCount: Int, blockSize: Int) {
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.free = Mutex(Array((0..<blockCount).reversed()))
    }

    public var freeBlocks: Int { free.withLock { $0.count } }

    /// Blocks needed to hold `tokens` positions.
    public func blocksNeeded(forTokens tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Grows `table` so it covers `tokens` positions. Returns false (and changes nothing) when
    /// the pool has too few free blocks.
    public func ensureCapacity(_ table: inout [Int], tokens: Int) -> Bool {
        let missing = blocksNeeded(forTokens: tokens) - table.count
        if missing <= 0 { return true }
        let taken: [Int]? = free.withLock { list in
            guard list.count >= missing else { return nil }
            let out = Array(list.suffix(missing))
            list.removeLast(missing)
            return out
        }
        guard let taken else { return false }
        table += taken
        return true
    }

    /// Returns a finished sequence's blocks to the pool.
    public func release(_ table: [Int]) {
        free.withLock { $0.append(contentsOf: table) }
    }
}
