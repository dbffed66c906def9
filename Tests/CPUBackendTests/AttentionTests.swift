import CPUBackend
import Foundation
import Tensors
import Testing

/// Paged attention and KV appends against a Double reference that gathers keys through the
/// block tables itself.
@Suite struct AttentionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var heads: Int, kvHeads: Int, headDim: Int, blockSize: Int, poolBlocks: Int
        /// (new tokens this step, tokens already cached) per sequence.
        var sequences: [(new: Int, cached: Int)]
        var window: Int?
        /// Mark table entries for blocks wholly before every query's window as -1 (freed).
        var freeOutOfWindow = false
        var testDescription: String { "H\(heads) G\(kvHeads) Dh\(headDim) B\(blockSize) \(sequences) W\(window.map(String.init) ?? "-")" }
    }

    static let cases: [Case] = [
        // The AttentionBatch doc example (5, 7, 2 new tokens over 0, 3, 10 cached), GQA 4:1.
        Case(heads: 8, kvHeads: 2, headDim: 16, blockSize: 4, poolBlocks: 12, sequences: [(5, 0), (7, 3), (2, 10)]),
        // MQA, head dim not a multiple of 8, sliding window with freed blocks.
        Case(heads: 4, kvHeads: 1, headDim: 12, blockSize: 3, poolBlocks: 20, sequences: [(1, 20), (4, 0), (1, 1)],
             window: 5, freeOutOfWindow: true),
        // MHA, a prefill longer than the window.
        Case(heads: 3, kvHeads: 3, headDim: 10, blockSize: 16, poolBlocks: 8, sequences: [(33, 0), (1, 40)], window: 17),
        // Decode at Mistral-7B head shapes.
        Case(heads: 32, kvHeads: 8, headDim: 128, blockSize: 16, poolBlocks: 16, sequences: [(1, 100), (1, 37)]),
    ]

    @Test(arguments: cases)
    func attentionMatchesReference(_ c: Case) throws {
        let cpu = CPUBackend()
        var random = SeededRandom(seed: 101)
        let (h, g, dh, b) = (c.heads, c.kvHeads, c.headDim, c.blockSize)
        let rowWidth = g * dh
        let poolCount = c.poolBlocks * b * rowWidth

        // Scattered block tables: blocks drawn from a shuffled pool.
        var freeBlocks = Array(0..<c.poolBlocks)
        for i in stride(from: freeBlocks.count - 1, to: 0, by: -1) { freeBlocks.swapAt(i, random.int(below: i + 1)) }
        let contexts = c.sequences.map { $0.new + $0.cached }
        let maxBlocks = contexts.map { ($0 + b - 1) / b }.max()! + 1
        var tables = [Int32](repeating: -1, count: c.sequences.count * maxBlocks)
        var queryStart: [Int32] = [0], positions: [Int32] = []
        for (s, seq) in c.sequences.enumerated() {
            for block in 0..<((contexts[s] + b - 1) / b) { tables[s * maxBlocks + block] = Int32(freeBlocks.removeLast()) }
            positions += (seq.cached..<contexts[s]).map(Int32.init)
            queryStart.append(queryStart.last! + Int32(seq.new))
            if c.freeOutOfWindow, let w = c.window {
                let firstKey = max(0, seq.cached - w + 1)
                for block in 0..<(firstKey / b) { tables[s * maxBlocks + block] = -1 }
            }
        }
        let tokens = positions.count

        // Pools full of random values (so a wrong slot changes the answer); this step's K/V rows
        // are appended through appendKV at the slots the tables give.
        var kValues = random.floats(poolCount), vValues = random.floats(poolCount)
        let kPool = try cpu.makeKVPool(blocks: c.poolBlocks, blockSize: b, kvHeads: g, headDim: dh)
        let vPool = try cpu.makeKVPool(blocks: c.poolBlocks, blockSize: b, kvHeads: g, headDim: dh)
        try cpu.write(kValues, to: kPool)
        try cpu.write(vValues, to: vPool)
        let newK = random.floats(tokens * rowWidth), newV = random.floats(tokens * rowWidth)
        var slots: [Int32] = []
        for (s, seq) in c.sequences.enumerated() {
            for p in seq.cached..<contexts[s] { slots.append(tables[s * maxBlocks + p / b] * Int32(b) + Int32(p % b)) }
        }
        for (t, slot) in slots.enumerated() {
            for i in 0..<rowWidth {
                kValues[Int(slot) * rowWidth + i] = newK[t * rowWidth + i]
                vValues[Int(slot) * rowWidth + i] = newV[t * rowWidth + i]
            }
        }
        let k = try cpu.makeActivation([tokens, g, dh]), v = try cpu.makeActivation([tokens, g, dh])
        try cpu.write(newK, to: k)
        try cpu.write(newV, to: v)
        let slotTensor = try cpu.makeIndices(tokens)
        try cpu.write(slots, to: slotTensor)
        try cpu.appendKV(k: k, v: v, kPool: kPool, vPool: vPool, slots: slotTensor, rows: tokens, kvHeads: g, headDim: dh)
        #expect(try cpu.readFloats(kPool, count: poolCount) == kValues)
        #expect(try cpu.readFloats(vPool, count: poolCount) == vValues)

        let qValues = random.floats(tokens * h * dh)
        let q = try cpu.makeActivation([tokens, h, dh])
        try cpu.write(qValues, to: q)
        let out = try cpu.makeActivation([tokens, h, dh])
        func indexTensor(_ values: [Int32]) throws -> CPUTensor {
            let tensor = try cpu.makeIndices(values.count)
            try cpu.write(values, to: tensor)
            return tensor
        }
        let contextLens = contexts.map(Int32.init)
        let batch = AttentionBatch(
            sequences: c.sequences.count, tokens: tokens, blockSize: b, maxBlocksPerSequence: maxBlocks,
            queryStart: try indexTensor(queryStart), positions: try indexTensor(positions),
            contextLens: try indexTensor(contextLens), blockTables: try indexTensor(tables),
            hostQueryStart: queryStart, hostContextLens: contextLens, hostPositions: positions, hostBlockTables: tables)
        try cpu.attention(q: q, kPool: kPool, vPool: vPool, batch: batch, out: out,
                          heads: h, kvHeads: g, headDim: dh, slidingWindow: c.window)

        // Reference.
        var expected = [Double](repeating: 0, count: tokens * h * dh)
        for s in c.sequences.indices {
            for t in Int(queryStart[s])..<Int(queryStart[s + 1]) {
                let p = Int(positions[t])
                let first = c.window.map { max(0, p - $0 + 1) } ?? 0
                for head in 0..<h {
                    let kvHead = head / (h / g)
                    var scores: [Double] = []
                    var rows: [Int] = []
                    for j in first...p {
                        let slot = Int(tables[s * maxBlocks + j / b]) * b + j % b
                        let row = (slot * g + kvHead) * dh
                        var dot = 0.0
                        for i in 0..<dh { dot += Double(qValues[(t * h + head) * dh + i]) * Double(kValues[row + i]) }
                        scores.append(dot / Double(dh).squareRoot())
                        rows.append(row)
                    }
                    let top = scores.max()!
                    let weights = scores.map { exp($0 - top) }
                    let total = weights.reduce(0, +)
                    for (weight, row) in zip(weights, rows) {
                        for i in 0..<dh { expected[(t * h + head) * dh + i] += weight / total * Double(vValues[row + i]) }
                    }
                }
            }
        }
        let error = normalisedError(try cpu.readFloats(out, count: expected.count), expected)
        #expect(error <= 1e-5, "attention \(c.testDescription): \(error)")
    }

    @Test func badBlockTableThrows() throws {
        let cpu = CPUBackend()
        let pool = try cpu.makeKVPool(blocks: 2, blockSize: 4, kvHeads: 1, headDim: 8)
        let q = try cpu.makeActivation([1, 2, 8]), out = try cpu.makeActivation([1, 2, 8])
        let dummy = try cpu.makeIndices(4)
        func batch(position: Int32, context: Int32, table: [Int32]) -> AttentionBatch<CPUTensor> {
            AttentionBatch(sequences: 1, tokens: 1, blockSize: 4, maxBlocksPerSequence: 2,
                           queryStart: dummy, positions: dummy, contextLens: dummy, blockTables: dummy,
                           hostQueryStart: [0, 1], hostContextLens: [context], hostPositions: [position], hostBlockTables: table)
        }
        // Block id beyond the pool.
        #expect(throws: BackendError.self) {
            try cpu.attention(q: q, kPool: pool, vPool: pool, batch: batch(position: 5, context: 6, table: [0, 2]),
                              out: out, heads: 2, kvHeads: 1, headDim: 8, slidingWindow: nil)
        }
        // Query position at or past the context length.
        #expect(throws: BackendError.self) {
            try cpu.attention(q: q, kPool: pool, vPool: pool, batch: batch(position: 6, context: 6, table: [0, 1]),
                              out: out, heads: 2, kvHeads: 1, headDim: 8, slidingWindow: nil)
        }
        // Freed block inside the window.
        #expect(throws: BackendError.self) {
            try cpu.attention(q: q, kPool: pool, vPool: pool, batch: batch(position: 5, context: 6, table: [-1, 1]),
                              out: out, heads: 2, kvHeads: 1, headDim: 8, slidingWindow: 3)
        }
        // A freed block outside the window is fine.
        try cpu.attention(q: q, kPool: pool, vPool: pool, batch: batch(position: 5, context: 6, table: [-1, 1]),
                          out: out, heads: 2, kvHeads: 1, headDim: 8, slidingWindow: 2)
    }
}
