import Generation
import Model
import Testing

/// The prefix cache in the block allocator and the scheduler's use of it, without a model.
@Suite struct PrefixCacheTests {
    @Test func equalPrefixesHashEquallyAndADifferentEarlierBlockChangesEveryLaterHash() {
        let a = BlockHash.chain(Array(0..<12), blockSize: 4)
        let b = BlockHash.chain(Array(0..<12) + [99, 98], blockSize: 4)
        #expect(a.count == 3 && b.count == 3, "only full blocks are hashed")
        #expect(a == b)
        let c = BlockHash.chain([7] + Array(1..<12), blockSize: 4)
        #expect(c[0] != a[0] && c[1] != a[1] && c[2] != a[2], "blocks 1 and 2 hold the same tokens but follow another prefix")
        #expect(c[1].tokens == a[1].tokens)
        #expect(BlockHash.chain(Array(0..<12), blockSize: 4, from: Array(a.prefix(1))) == a, "chains extend incrementally")
    }

    @Test func cachedBlocksAreSharedCountedFreeAndEvictedLeastRecentlyUsedFirst() {
        let pool = KVBlockAllocator(blockCount: 4, blockSize: 4)
        let hashes = BlockHash.chain(Array(0..<8), blockSize: 4)
        var a: [Int] = []
        #expect(pool.ensureCapacity(&a, tokens: 8))
        pool.register(a[0], as: hashes[0])
        pool.register(a[1], as: hashes[1])
        // A second sequence with the same prefix shares both blocks while the first holds them.
        let shared = pool.takeCachedPrefix(hashes)
        #expect(shared == a)
        #expect(pool.freeBlocks == 2)
        pool.release(a)
        #expect(pool.freeBlocks == 2 && pool.cachedFreeBlocks == 0, "still held by the second sequence")
        pool.release(shared)
        #expect(pool.freeBlocks == 4 && pool.cachedFreeBlocks == 2, "unreferenced but kept")
        // Empty blocks go first; then the cached ones, the sequence's last block before its first.
        var b: [Int] = []
        #expect(pool.ensureCapacity(&b, tokens: 8))
        #expect(Set(b).isDisjoint(with: a) && pool.cachedFreeBlocks == 2)
        var c: [Int] = []
        #expect(pool.ensureCapacity(&c, tokens: 4))
        #expect(c == [a[1]], "block 1 of the prefix is evicted before block 0")
        #expect(pool.takeCachedPrefix(hashes) == [a[0]], "the hit stops where the evicted block was")
        #expect(!pool.ensureCapacity(&c, tokens: 8), "everything is held now")
    }

    @Test func aSecondRequestWithTheSamePrefixComputesOnlyTheRest() {
        var s = SchedulerTests.scheduler(blocks: 32, caching: true)
        let system = Array(1...10)
        s.add(id: 1, prompt: system + [20, 21])
        let first = SchedulerTests.run(&s)
        #expect(first.entries[0].startPosition == 0 && first.entries[0].tokens.count == 12)
        s.add(id: 2, prompt: system + [30, 31, 32])
        let second = SchedulerTests.run(&s)
        let entry = second.entries.first { $0.id == 2 }!
        #expect(entry.startPosition == 8, "two full blocks of the shared 10 tokens")
        #expect(entry.tokens == [9, 10, 30, 31, 32])
        #expect(Array(entry.blockTable.prefix(2)) == Array(first.entries[0].blockTable.prefix(2)))
        #expect(s.prefixCacheQueryTokens == 25 && s.prefixCacheHitTokens == 8)
    }

    @Test func aFullyCachedPromptStillComputesItsLastToken() {
        var s = SchedulerTests.scheduler(blocks: 32, caching: true)
        let prompt = Array(1...8)
        s.add(id: 1, prompt: prompt)
        SchedulerTests.run(&s)
        s.remove(1)
        s.add(id: 2, prompt: prompt)
        let step = SchedulerTests.run(&s)
        #expect(step.entries[0].startPosition == 4, "block 1 holds the last token, whose logits are needed")
        #expect(step.entries[0].tokens == [5, 6, 7, 8] && step.entries[0].samples)
    }

    @Test func aPreemptedSequenceFindsWhatIsLeftOfItsOwnBlocks() {
        var s = SchedulerTests.scheduler(blocks: 4, caching: true)
        s.add(id: 1, prompt: [1, 2, 3, 4])
        s.add(id: 2, prompt: [5, 6, 7, 8])
        for _ in 0..<5 { SchedulerTests.run(&s) }
        #expect(SchedulerTests.run(&s).preempted == [2])
        s.remove(1)
        // Preemption freed B's two blocks, last block first; A's growth evicted that one (its
        // generated tokens 204…207) and B's prompt block is still cached: the recompute starts
        // at position 4.
        let back = SchedulerTests.run(&s)
        #expect(back.entries[0].id == 2 && back.entries[0].startPosition == 4)
        #expect(back.entries[0].tokens == [204, 205, 206, 207, 208])
    }

    @Test func withoutPrefixCachingNothingIsShared() {
        var s = Scheduler(configuration: SchedulerConfiguration(maxBatchTokens: 64, maxBatchSequences: 8, prefillChunk: 64,
                                                                maxSequenceLength: 128, watermarkBlocks: 0, prefixCaching: false),
                          blocks: KVBlockAllocator(blockCount: 32, blockSize: 4))
        s.add(id: 1, prompt: Array(1...12))
        SchedulerTests.run(&s)
        s.add(id: 2, prompt: Array(1...12))
        #expect(SchedulerTests.run(&s).entries.first { $0.id == 2 }?.startPosition == 0)
        #expect(s.prefixCacheHitTokens == 0)
        #expect(s.blocks.cachedFreeBlocks == 0)
    }
}
