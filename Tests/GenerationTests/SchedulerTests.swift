import Generation
import Model
import Testing

/// Scheduling policy without a model: which sequences run with how many tokens, when blocks are
/// taken, who is preempted, and that every sequence finishes.
@Suite struct SchedulerTests {
    static func scheduler(blocks: Int, blockSize: Int = 4, tokens: Int = 64, sequences: Int = 8, chunk: Int = 64,
                          maxSequenceLength: Int = 128, watermark: Int = 0, caching: Bool = false) -> Scheduler {
        Scheduler(configuration: SchedulerConfiguration(maxBatchTokens: tokens, maxBatchSequences: sequences, prefillChunk: chunk,
                                                        maxSequenceLength: maxSequenceLength, watermarkBlocks: watermark,
                                                        prefixCaching: caching),
                  blocks: KVBlockAllocator(blockCount: blocks, blockSize: blockSize))
    }

    /// Runs `step` as the engine would: commit, then append `token(id, length)` to every sequence
    /// that sampled. Returns the step.
    @discardableResult
    static func run(_ s: inout Scheduler, token: (Int, Int) -> Int = { id, n in 100 * id + n }) -> SchedulerStep {
        let step = s.schedule()
        s.commit(step)
        for e in step.entries where e.samples { s.append(token(e.id, s.tokenCount(of: e.id)!), to: e.id) }
        return step
    }

    @Test func blocksAreTakenAsSequencesGrowNotReservedUpFront() {
        var s = Self.scheduler(blocks: 16)
        s.add(id: 1, prompt: [1, 2, 3, 4, 5])
        let first = Self.run(&s)
        #expect(first.entries == [.init(id: 1, tokens: [1, 2, 3, 4, 5], startPosition: 0, blockTable: first.entries[0].blockTable, samples: true)])
        #expect(first.entries[0].blockTable.count == 2, "5 positions in blocks of 4")
        #expect(s.blocks.freeBlocks == 14)
        // Decoding at positions 5, 6, 7 stays in block 2; position 8 takes a third block.
        for position in 5...7 {
            let step = Self.run(&s)
            #expect(step.entries.map(\.startPosition) == [position])
            #expect(step.entries[0].tokens == [100 + position])
            #expect(step.entries[0].blockTable.count == 2)
        }
        #expect(Self.run(&s).entries[0].blockTable.count == 3)
        #expect(s.blocks.freeBlocks == 13)
        let removed = s.remove(1)
        #expect(removed)
        #expect(s.blocks.freeBlocks == 16)
    }

    @Test func decodingSequencesGoFirstThenPromptChunksWithTheRestOfTheBudget() {
        var s = Self.scheduler(blocks: 32, tokens: 8, chunk: 6)
        s.add(id: 1, prompt: [1, 2])
        Self.run(&s)                                     // 1 prefilled; decodes from now on
        s.add(id: 2, prompt: Array(10..<30))             // 20 tokens: chunks of ≤ 6 within the budget
        s.add(id: 3, prompt: [7])
        let step = Self.run(&s)
        #expect(step.entries.map(\.id) == [1, 2, 3])
        #expect(step.entries.map(\.tokens.count) == [1, 6, 1])
        #expect(step.entries.map(\.samples) == [true, false, true])
        let next = Self.run(&s)
        #expect(next.entries.map(\.id) == [1, 2, 3], "admission order: 2 keeps its place before 3")
        #expect(next.entries.map(\.tokens.count) == [1, 6, 1])
        #expect(next.entries[1].startPosition == 6)
    }

    @Test func sequenceSlotsLimitAdmission() {
        var s = Self.scheduler(blocks: 32, sequences: 2)
        for id in 1...3 { s.add(id: id, prompt: [id]) }
        #expect(Self.run(&s).entries.map(\.id) == [1, 2])
        #expect(s.waitingCount == 1)
        s.remove(1)
        #expect(Self.run(&s).entries.map(\.id) == [2, 3])
    }

    @Test func theMostRecentlyAdmittedIsPreemptedAndRecomputesEverything() {
        // 4 blocks of 4 tokens. A and B take one block each for their prompts and grow together;
        // at 9 positions A needs a third block while none is free.
        var s = Self.scheduler(blocks: 4)
        s.add(id: 1, prompt: [1, 2, 3, 4])
        s.add(id: 2, prompt: [5, 6, 7, 8])
        for _ in 0..<5 { #expect(Self.run(&s).preempted.isEmpty) }   // 4 + 4 → 9 + 9 tokens, 8 + 8 computed
        #expect(s.blocks.freeBlocks == 0)
        let step = Self.run(&s)
        #expect(step.preempted == [2])
        #expect(step.entries.map(\.id) == [1])
        #expect(step.entries[0].blockTable.count == 3, "A took one of B's freed blocks")
        #expect(s.waitingCount == 1 && s.runningCount == 1 && s.preemptions == 1)
        // B needs 3 blocks to recompute its 9 tokens; 1 is free: it waits until A is done.
        #expect(Self.run(&s).entries.map(\.id) == [1])
        s.remove(1)
        let back = Self.run(&s)
        #expect(back.entries.count == 1)
        let b = back.entries[0]
        #expect(b.id == 2 && b.startPosition == 0 && b.samples)
        #expect(b.tokens == [5, 6, 7, 8, 204, 205, 206, 207, 208], "prompt + every generated token, none lost or repeated")
    }

    @Test func admissionKeepsTheWatermarkFreeWhileOthersRun() {
        var s = Self.scheduler(blocks: 10, watermark: 3)
        s.add(id: 1, prompt: [1, 2, 3])
        Self.run(&s)                                      // 1 block
        s.add(id: 2, prompt: Array(0..<20))               // 5 blocks: 9 − 5 = 4 ≥ 3
        s.add(id: 3, prompt: Array(0..<8))                // 2 blocks: 4 − 2 = 2 < 3
        #expect(Self.run(&s).entries.map(\.id) == [1, 2])
        #expect(Self.run(&s).entries.map(\.id) == [1, 2], "3 still waits")
        s.remove(1)
        s.remove(2)
        #expect(Self.run(&s).entries.map(\.id) == [3])
    }

    @Test func aPromptAsLargeAsThePoolStartsWhenNothingElseRuns() {
        var s = Self.scheduler(blocks: 4, watermark: 2)
        #expect(s.contextLimit == 16)
        s.add(id: 1, prompt: Array(0..<15))
        let step = Self.run(&s)
        #expect(step.entries.map(\.tokens.count) == [15])
        #expect(s.blocks.freeBlocks == 0)
    }

    @Test func noDeadlockWhenEverySequenceWantsToGrow() {
        // 6 blocks of 4 = 24 positions; five sequences each want 20. Only one fits at full length,
        // so the scheduler must keep preempting and still finish every one of them, each with
        // exactly the tokens it would have had alone.
        var s = Self.scheduler(blocks: 6, tokens: 16, chunk: 8)
        let target = 20
        for id in 1...5 { s.add(id: id, prompt: [id, id, id]) }
        var finished: [Int: [Int]] = [:]
        var generated: [Int: [Int]] = [:]
        var steps = 0
        while !s.isIdle {
            steps += 1
            #expect(steps < 2_000, "the schedule made no progress")
            if steps >= 2_000 { return }
            let step = s.schedule()
            #expect(!step.entries.isEmpty, "an empty step with work waiting is a deadlock")
            #expect(step.tokenCount <= 16)
            var held = 0
            for e in step.entries {
                #expect(e.blockTable.count * 4 >= e.startPosition + e.tokens.count)
                held += e.blockTable.count
            }
            #expect(held <= 6)
            s.commit(step)
            for e in step.entries where e.samples {
                let n = s.tokenCount(of: e.id)!
                let token = 100 * e.id + n
                generated[e.id, default: []].append(token)
                if n + 1 >= target {
                    finished[e.id] = generated[e.id]
                    s.remove(e.id)
                } else {
                    s.append(token, to: e.id)
                }
            }
        }
        #expect(s.preemptions > 0)
        #expect(finished.count == 5)
        for id in 1...5 { #expect(finished[id] == (3..<target).map { 100 * id + $0 }) }
        #expect(s.blocks.freeBlocks == 6)
    }
}
