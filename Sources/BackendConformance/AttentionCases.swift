import Tensors

extension BackendConformance {
    /// KV appends (`appendKV`, through ropeAppendKV) then attention on a packed batch with
    /// scattered block tables: the worked example of `AttentionBatch` (new tokens 5, 7, 2 over caches of 0, 3, 10), a decode-like
    /// batch (one new token per sequence, long caches), a sliding window, and head dims 64/128;
    /// then prefill-sized steps (≥ 64 tokens: long prompt, chunked prefill next to a second prompt,
    /// sliding window shorter than the chunk, MQA, a prompt packed with decodes).
    mutating func attentionCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        let cases: [(name: String, newTokens: [Int], cached: [Int], heads: Int, kvHeads: Int, headDim: Int, window: Int?, blockSize: Int)] = [
            ("prefill+cache (5,7,2 over 0,3,10)", [5, 7, 2], [0, 3, 10], 8, 2, 128, nil, 4),
            ("decode (4 seqs, ctx to 300)", [1, 1, 1, 1], [0, 37, 150, 299], 32, 8, 128, nil, 16),
            ("sliding window 6", [9, 3], [4, 20], 4, 4, 64, 6, 8),
            ("MQA chunked prefill", [40], [25], 6, 1, 64, nil, 16),
            // ≥ 64 query tokens with multi-token sequences: the CUDA backend's tensor-core prefill
            // kernel (decodeKernels on), q and p rounded to bf16, hence the bf16 tolerance below.
            // Lengths not multiples of 64 (partial query and key tiles), B = 16 or 8.
            ("long prompt 200 from 0", [200], [0], 8, 2, 128, nil, 16),
            ("chunked prefill + second prompt (96, 40 over 150, 0)", [96, 40], [150, 0], 8, 2, 128, nil, 16),
            ("prefill sliding window 48 (160 over 70)", [160], [70], 4, 2, 64, 48, 8),
            ("MQA prefill 130 over 20", [130], [20], 6, 1, 64, nil, 16),
            ("prefill + decodes (100, 1, 1 over 0, 60, 200)", [100, 1, 1], [0, 60, 200], 8, 8, 128, nil, 16),
            // One query token per sequence: the CUDA backend's flash-decoding kernel (decodeKernels
            // on; f32 math, bf16 K/V exact), contexts from 1 to > 1000, key splits and their merge.
            ("decode batch (ctx 1, 2, 17, 100, 540, 1001, 1500, 33)", [1, 1, 1, 1, 1, 1, 1, 1],
             [0, 1, 16, 99, 539, 1000, 1499, 32], 32, 8, 128, nil, 16),
            ("decode sliding window 64", [1, 1, 1, 1], [0, 63, 200, 1100], 16, 4, 128, 64, 8),
            ("decode MQA Dh 64 (6 heads on 1)", [1, 1, 1], [0, 300, 1200], 6, 1, 64, nil, 16),
            ("decode Dh 64 single long (ctx 2100)", [1], [2099], 8, 2, 64, nil, 16),
        ]
        for c in cases { results += try attentionCase(c.name, newTokens: c.newTokens, cached: c.cached, heads: c.heads,
                                                      kvHeads: c.kvHeads, headDim: c.headDim, window: c.window, blockSize: c.blockSize) }
        return results
    }

    mutating func attentionCase(_ name: String, newTokens: [Int], cached: [Int], heads: Int, kvHeads: Int, headDim: Int,
                                window: Int?, blockSize: Int) throws -> [ConformanceResult] {
        let s = newTokens.count
        let contextLens = zip(newTokens, cached).map { $0 + $1 }
        let maxBlocks = (contextLens.max()! + blockSize - 1) / blockSize
        let totalBlocks = contextLens.reduce(0) { $0 + ($1 + blockSize - 1) / blockSize } + 3
        // Scattered, disjoint block tables (shuffled pool), -1 where unused.
        var free = Array(0..<totalBlocks).shuffled(using: &rng)
        var tables = [Int32](repeating: -1, count: s * maxBlocks)
        for q in 0..<s {
            for b in 0..<((contextLens[q] + blockSize - 1) / blockSize) { tables[q * maxBlocks + b] = Int32(free.removeLast()) }
        }
        let rowWidth = kvHeads * headDim
        // Decode steps (one token per sequence) keep f32 math throughout (prefill rounds q, p to
        // bf16): with K/V values that bf16 holds exactly (the GPU's pool is bf16, the CPU's f32) the
        // comparison is at f32 tolerance.
        let decode = newTokens.allSatisfy { $0 == 1 }
        func kvValues(_ n: Int) -> [Float] {
            let x = rng.floats(n)
            return decode ? x.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) } : x
        }
        let kPool = Pair(t: try test.makeKVPool(blocks: totalBlocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim),
                         r: try reference.makeKVPool(blocks: totalBlocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim))
        let vPool = Pair(t: try test.makeKVPool(blocks: totalBlocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim),
                         r: try reference.makeKVPool(blocks: totalBlocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim))
        func slot(_ q: Int, _ j: Int) -> Int32 { tables[q * maxBlocks + j / blockSize] * Int32(blockSize) + Int32(j % blockSize) }

        // 1. The cached tokens, appended in one call (as an earlier step would have).
        let cachedSlots = (0..<s).flatMap { q in (0..<cached[q]).map { slot(q, $0) } }
        if !cachedSlots.isEmpty {
            let n = cachedSlots.count
            try appendKV(k: kvValues(n * rowWidth), v: kvValues(n * rowWidth), kPool: kPool, vPool: vPool,
                         slots: cachedSlots, kvHeads: kvHeads, headDim: headDim)
        }
        // 2. This step's tokens: append, then attend.
        let t = newTokens.reduce(0, +)
        var queryStart: [Int32] = [0]
        var positions: [Int32] = []
        var newSlots: [Int32] = []
        for q in 0..<s {
            queryStart.append(queryStart.last! + Int32(newTokens[q]))
            for j in cached[q]..<contextLens[q] { positions.append(Int32(j)); newSlots.append(slot(q, j)) }
        }
        try appendKV(k: kvValues(t * rowWidth), v: kvValues(t * rowWidth), kPool: kPool, vPool: vPool,
                     slots: newSlots, kvHeads: kvHeads, headDim: headDim)

        let qs = try indices(queryStart), pos = try indices(positions)
        let cl = try indices(contextLens.map(Int32.init)), bt = try indices(tables)
        func batch<T>(_ pick: (Pair) -> T) -> AttentionBatch<T> {
            AttentionBatch(sequences: s, tokens: t, blockSize: blockSize, maxBlocksPerSequence: maxBlocks,
                           queryStart: pick(qs), positions: pick(pos), contextLens: pick(cl), blockTables: pick(bt),
                           hostQueryStart: queryStart, hostContextLens: contextLens.map(Int32.init),
                           hostPositions: positions, hostBlockTables: tables)
        }
        let q = try activation(rng.floats(t * heads * headDim, scale: 2), [t, heads, headDim])
        let out = try output([t, heads, headDim])
        try test.attention(q: q.t, kPool: kPool.t, vPool: vPool.t, batch: batch { $0.t }, out: out.t,
                           heads: heads, kvHeads: kvHeads, headDim: headDim, slidingWindow: window)
        try reference.attention(q: q.r, kPool: kPool.r, vPool: vPool.r, batch: batch { $0.r }, out: out.r,
                                heads: heads, kvHeads: kvHeads, headDim: headDim, slidingWindow: window)
        let shape = "H \(heads), G \(kvHeads), Dh \(headDim), B \(blockSize)"
        var results = [try compare("attention \(name) (\(shape))", out, count: t * heads * headDim,
                                   tolerance: decode ? ConformanceTolerance.f32 : ConformanceTolerance.bf16Operands)]
        // The pools themselves, where both backends can read them back (bf16 vs f32 storage).
        let poolCount = totalBlocks * blockSize * rowWidth
        if let a = try? test.readFloats(kPool.t, count: poolCount), let b = try? reference.readFloats(kPool.r, count: poolCount) {
            let used = (0..<totalBlocks * blockSize).filter { slotIndex in
                tables.contains(Int32(slotIndex / blockSize)) && usedSlot(slotIndex, tables: tables, maxBlocks: maxBlocks,
                                                                          blockSize: blockSize, contextLens: contextLens)
            }
            let pick = { (x: [Float]) in used.flatMap { x[($0 * rowWidth)..<(($0 + 1) * rowWidth)] } }
            results.append(ConformanceResult(name: "appendKV k pool \(name)", error: normalisedError(pick(a), pick(b)),
                                             tolerance: ConformanceTolerance.bf16Operands))
        }
        return results
    }

    /// Whether pool slot `slotIndex` holds a token of some sequence (others are never written).
    func usedSlot(_ slotIndex: Int, tables: [Int32], maxBlocks: Int, blockSize: Int, contextLens: [Int]) -> Bool {
        let block = Int32(slotIndex / blockSize), offset = slotIndex % blockSize
        for q in contextLens.indices {
            for b in 0..<maxBlocks where tables[q * maxBlocks + b] == block {
                return b * blockSize + offset < contextLens[q]
            }
        }
        return false
    }
}
