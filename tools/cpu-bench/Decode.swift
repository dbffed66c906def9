// `cpu-bench decode [layers] [steps]`: batch-1 decode through Mistral-7B-shaped layers (D 4096,
// H 32, G 8, Dh 128, F 14336, V 32768) on seeded random bf16 weights, calling the backend ops in
// the order Model's forward pass does. Reports tokens/s and weight bytes per token ÷ the
// streaming bandwidth measured right before and after each step (over the same byte count).
import Foundation

func randomBF16(_ shape: [Int], seed: UInt64) -> HostTensor {
    var state = seed
    let count = shape.reduce(1, *)
    let storage = OwnedBytes(count: count * 2)
    let p = storage.pointer.bindMemory(to: UInt16.self, capacity: count)
    for i in 0..<count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        // Uniform in about ±0.03, exponent bits kept sane.
        let value = Float(Int64(state >> 40) - (1 << 23)) / Float(1 << 23) * 0.03
        p[i] = BFloat16.fromFloat(value)
    }
    return HostTensor(dtype: .bf16, shape: shape, data: UnsafeRawBufferPointer(start: storage.pointer, count: count * 2),
                      owner: storage)
}

func runDecodeBench(layers: Int, steps: Int, cpu: CPUBackend) throws {
    let (D, H, G, Dh, F, V) = (4096, 32, 8, 128, 14336, 32768)
    let blockSize = 16, context = 256, blocks = (context + steps + blockSize) / blockSize + 1
    struct Layer { let norm1, wq, wk, wv, wo, norm2, w1, w2, w3: CPUTensor }
    var seed: UInt64 = 1
    func weight(_ shape: [Int]) throws -> CPUTensor { seed += 1; return try cpu.upload(randomBF16(shape, seed: seed)) }
    var stack: [Layer] = []
    for _ in 0..<layers {
        stack.append(Layer(norm1: try weight([D]), wq: try weight([H * Dh, D]), wk: try weight([G * Dh, D]),
                           wv: try weight([G * Dh, D]), wo: try weight([D, H * Dh]), norm2: try weight([D]),
                           w1: try weight([F, D]), w2: try weight([D, F]), w3: try weight([F, D])))
    }
    let embedding = try weight([V, D]), finalNorm = try weight([D]), output = try weight([V, D])
    var weightBytes = 2 * (V * D)  // output head (the embedding row read is negligible)
    weightBytes += layers * 2 * (2 * D + H * Dh * D + 2 * G * Dh * D + D * H * Dh + 3 * F * D)
    let kPools = try (0..<layers).map { _ in try cpu.makeKVPool(blocks: blocks, blockSize: blockSize, kvHeads: G, headDim: Dh) }
    let vPools = try (0..<layers).map { _ in try cpu.makeKVPool(blocks: blocks, blockSize: blockSize, kvHeads: G, headDim: Dh) }
    for pool in kPools + vPools { try cpu.write([Float](repeating: 0.01, count: blocks * blockSize * G * Dh), to: pool) }
    let x = try cpu.makeActivation([1, D]), h = try cpu.makeActivation([1, D]), q = try cpu.makeActivation([1, H * Dh])
    let k = try cpu.makeActivation([1, G * Dh]), v = try cpu.makeActivation([1, G * Dh]), attn = try cpu.makeActivation([1, H * Dh])
    let blockOut = try cpu.makeActivation([1, D]), gate = try cpu.makeActivation([1, F]), up = try cpu.makeActivation([1, F])
    let logits = try cpu.makeActivation([1, V])
    let ids = try cpu.makeIndices(1), positions = try cpu.makeIndices(1), slots = try cpu.makeIndices(1)
    let queryStart = try cpu.makeIndices(2), contextLens = try cpu.makeIndices(1)
    let maxBlocks = blocks
    let tables = (0..<maxBlocks).map(Int32.init)
    let tableTensor = try cpu.makeIndices(maxBlocks)
    try cpu.write(tables, to: tableTensor)
    try cpu.write([0, 1] as [Int32], to: queryStart)
    let stream = try CPUMemoryBandwidth.Stream(bytes: 128 << 20, backend: cpu)
    stream.pass()
    // Bandwidth is sampled over as many bytes as one step reads, so both see the same mix of
    // busy and quiet moments on a shared machine.
    let passes = max(1, weightBytes / stream.bytes)
    func bandwidth() -> Double {
        var seconds = 0.0
        for _ in 0..<passes { seconds += stream.pass() }
        return Double(passes * stream.bytes) / seconds / 1e9
    }

    var ratios: [Double] = [], times: [Double] = []
    for step in 0..<(steps + 1) {
        let p = Int32(context + step)
        try cpu.write([Int32(step % V)], to: ids)
        try cpu.write([p], to: positions)
        try cpu.write([p], to: slots)                  // block table is the identity: slot = position
        try cpu.write([p + 1], to: contextLens)
        let batch = AttentionBatch(sequences: 1, tokens: 1, blockSize: blockSize, maxBlocksPerSequence: maxBlocks,
                                   queryStart: queryStart, positions: positions, contextLens: contextLens,
                                   blockTables: tableTensor, hostQueryStart: [0, 1], hostContextLens: [p + 1],
                                   hostPositions: [p], hostBlockTables: tables)
        let before = bandwidth()
        let start = DispatchTime.now().uptimeNanoseconds
        try cpu.embed(ids: ids, table: embedding, out: x, rows: 1, dim: D)
        for (l, w) in stack.enumerated() {
            try cpu.rmsNorm(x, weight: w.norm1, eps: 1e-5, out: h, rows: 1, dim: D)
            try cpu.matmul(h, weight: w.wq, out: q, rows: 1, inDim: D, outDim: H * Dh)
            try cpu.matmul(h, weight: w.wk, out: k, rows: 1, inDim: D, outDim: G * Dh)
            try cpu.matmul(h, weight: w.wv, out: v, rows: 1, inDim: D, outDim: G * Dh)
            try cpu.rope(q, positions: positions, rows: 1, heads: H, headDim: Dh, theta: 1e6)
            try cpu.rope(k, positions: positions, rows: 1, heads: G, headDim: Dh, theta: 1e6)
            try cpu.appendKV(k: k, v: v, kPool: kPools[l], vPool: vPools[l], slots: slots, rows: 1, kvHeads: G, headDim: Dh)
            try cpu.attention(q: q, kPool: kPools[l], vPool: vPools[l], batch: batch, out: attn,
                              heads: H, kvHeads: G, headDim: Dh, slidingWindow: nil)
            try cpu.matmul(attn, weight: w.wo, out: blockOut, rows: 1, inDim: H * Dh, outDim: D)
            try cpu.add(x, blockOut, count: D)
            try cpu.rmsNorm(x, weight: w.norm2, eps: 1e-5, out: h, rows: 1, dim: D)
            try cpu.matmul(h, weight: w.w1, out: gate, rows: 1, inDim: D, outDim: F)
            try cpu.matmul(h, weight: w.w3, out: up, rows: 1, inDim: D, outDim: F)
            try cpu.swiGLU(gate: gate, up: up, out: gate, count: F)
            try cpu.matmul(gate, weight: w.w2, out: blockOut, rows: 1, inDim: F, outDim: D)
            try cpu.add(x, blockOut, count: D)
        }
        try cpu.rmsNorm(x, weight: finalNorm, eps: 1e-5, out: h, rows: 1, dim: D)
        try cpu.matmul(h, weight: output, out: logits, rows: 1, inDim: D, outDim: V)
        _ = try cpu.readFloats(logits, count: 1)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let after = bandwidth()
        if step > 0 {   // step 0 warms up
            times.append(seconds)
            ratios.append(Double(weightBytes) / seconds / 1e9 / ((before + after) / 2))
        }
    }
    times.sort()
    ratios.sort()
    print(String(format: "decode, %d Mistral-7B bf16 layers + output head (%.2f GB of weights per token), context %d, %@:",
                 layers, Double(weightBytes) / 1e9, context, cpu.name))
    print(String(format: "  median %.1f ms/token (%.2f tok/s), best %.1f ms; paired bandwidth ratio median %.2f over %d steps",
                 times[times.count / 2] * 1e3, 1 / times[times.count / 2], times[0] * 1e3, ratios[ratios.count / 2], steps))
}
