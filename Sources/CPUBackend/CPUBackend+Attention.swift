#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

// Legend: S sequences, T tokens, H query heads, G KV heads, Dh head dim, N blocks, B block size,
// M max blocks per sequence. Q = H/G query heads per KV head (GQA group; G = 1 is MQA).

extension CPUBackend {
    /// Paged causal attention, one pool task per (query token, KV head).
    ///
    /// Each task walks the keys its query may see (`max(0, p − W + 1) … p`) through the
    /// sequence's block table, once for the whole GQA group: every K/V row is loaded once and
    /// used by the Q query heads that share it. Softmax is online (running max `m`, running sum
    /// `l`, rescaled accumulator), so nothing of size context is materialised; the accumulators
    /// live in the thread's scratch.
    public func attention(q: CPUTensor, kPool: CPUTensor, vPool: CPUTensor, batch: AttentionBatch<CPUTensor>,
                          out: CPUTensor, heads: Int, kvHeads: Int, headDim: Int, slidingWindow: Int?) throws {
        let tokens = batch.tokens
        guard heads > 0, kvHeads > 0, headDim > 0, heads % kvHeads == 0 else {
            throw BackendError.shapeMismatch("attention: \(heads) query heads are not a multiple of \(kvHeads) KV heads")
        }
        try check(q, .f32, atLeast: tokens * heads * headDim, "attention q")
        try check(out, .f32, atLeast: tokens * heads * headDim, "attention out")
        try check(kPool, .f32, atLeast: 0, "attention kPool")
        try check(vPool, .f32, atLeast: kPool.count, "attention vPool")
        let blockSize = batch.blockSize
        guard kPool.shape.count == 4, kPool.shape[1] == blockSize, kPool.shape[2] == kvHeads, kPool.shape[3] == headDim else {
            throw BackendError.shapeMismatch("attention: pool \(kPool.shape) is not (N, \(blockSize), \(kvHeads), \(headDim))")
        }
        if let window = slidingWindow, window < 1 {
            throw BackendError.shapeMismatch("attention: sliding window \(window) must be ≥ 1")
        }
        try validate(batch, poolBlocks: kPool.shape[0], window: slidingWindow)

        let group = heads / kvHeads
        let scaleFactor = 1 / Float(headDim).squareRoot()
        try locked {
            // Per thread: acc (Q, Dh), m (Q), l (Q).
            try scratch.reservePerThread(group * headDim + 2 * group, into: &threadBases)
            let bases = threadBases
            batch.hostQueryStart.withUnsafeBufferPointer { queryStart in
            batch.hostPositions.withUnsafeBufferPointer { positions in
            batch.hostBlockTables.withUnsafeBufferPointer { blockTables in
                // Non-empty: validate() checked it holds S · M ≥ 1 entries.
                guard let tables = blockTables.baseAddress else { return }
                pool.run(tasks: tokens * kvHeads) { task, thread in
                    let t = task / kvHeads
                    let g = task % kvHeads
                    // The sequence owning token t: the last s with queryStart[s] ≤ t.
                    var lowS = 0, highS = batch.sequences - 1
                    while lowS < highS {
                        let mid = (lowS + highS + 1) / 2
                        if Int(queryStart[mid]) <= t { lowS = mid } else { highS = mid - 1 }
                    }
                    let s = lowS
                    let p = Int(positions[t])
                    let first = slidingWindow.map { max(0, p - $0 + 1) } ?? 0
                    let table = tables + s * batch.maxBlocksPerSequence
                    attendGroup(q: q.floats + (t * heads + g * group) * headDim,
                                out: out.floats + (t * heads + g * group) * headDim,
                                kPool: kPool.floats, vPool: vPool.floats, table: table,
                                blockSize: blockSize, kvHeads: kvHeads, kvHead: g, headDim: headDim,
                                group: group, keys: first...p, scoreScale: scaleFactor, scratch: bases[thread])
                }
            }}}
        }
    }

    /// Checks the host index arrays before any thread reads through them: a bad block table is a
    /// thrown error, never an out-of-bounds read.
    private func validate(_ batch: AttentionBatch<CPUTensor>, poolBlocks: Int, window: Int?) throws {
        let s = batch.sequences, t = batch.tokens, m = batch.maxBlocksPerSequence, b = batch.blockSize
        guard s > 0, t >= 0, b > 0, m > 0,
              batch.hostQueryStart.count >= s + 1, batch.hostContextLens.count >= s,
              batch.hostPositions.count >= t, batch.hostBlockTables.count >= s * m else {
            throw BackendError.shapeMismatch(
                "attention batch: \(s) sequences, \(t) tokens, \(m) blocks per sequence do not match its index arrays")
        }
        guard batch.hostQueryStart[0] == 0, Int(batch.hostQueryStart[s]) == t else {
            throw BackendError.shapeMismatch("attention batch: queryStart must run from 0 to \(t)")
        }
        for seq in 0..<s {
            let start = Int(batch.hostQueryStart[seq]), end = Int(batch.hostQueryStart[seq + 1])
            let context = Int(batch.hostContextLens[seq])
            guard start <= end else {
                throw BackendError.shapeMismatch("attention batch: queryStart decreases at sequence \(seq)")
            }
            guard context <= m * b else {
                throw BackendError.shapeMismatch("attention batch: sequence \(seq) holds \(context) tokens, its table \(m * b)")
            }
            guard start < end else { continue }
            var lowest = Int.max
            for token in start..<end {
                let p = Int(batch.hostPositions[token])
                guard p >= 0, p < context else {
                    throw BackendError.shapeMismatch(
                        "attention batch: token \(token) at position \(p) outside sequence \(seq)'s \(context) cached tokens")
                }
                lowest = min(lowest, p)
            }
            let firstKey = window.map { max(0, lowest - $0 + 1) } ?? 0
            for block in (firstKey / b)...((context - 1) / b) {
                let id = Int(batch.hostBlockTables[seq * m + block])
                guard id >= 0, id < poolBlocks else {
                    throw BackendError.shapeMismatch(
                        "attention batch: sequence \(seq) block \(block) is \(id), pool has \(poolBlocks) blocks")
                }
            }
        }
    }
}

/// Online-softmax attention of the Q query heads of one GQA group over `keys`.
///
/// q, out (Q, Dh) contiguous; the K/V row of key j is at pool slot table[j / B] · B + j % B.
@inline(__always)
func attendGroup(q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                 kPool: UnsafePointer<Float>, vPool: UnsafePointer<Float>, table: UnsafePointer<Int32>,
                 blockSize: Int, kvHeads: Int, kvHead: Int, headDim: Int, group: Int,
                 keys: ClosedRange<Int>, scoreScale: Float, scratch: UnsafeMutablePointer<Float>) {
    let acc = scratch
    let runningMax = scratch + group * headDim
    let runningSum = runningMax + group
    acc.update(repeating: 0, count: group * headDim)
    runningMax.update(repeating: -.infinity, count: group)
    runningSum.update(repeating: 0, count: group)
    let rowStride = kvHeads * headDim
    for j in keys {
        let slot = Int(table[j / blockSize]) * blockSize + j % blockSize
        let k = kPool + slot * rowStride + kvHead * headDim
        let v = vPool + slot * rowStride + kvHead * headDim
        for h in 0..<group {
            let score = dotF32(q + h * headDim, k, headDim) * scoreScale
            let accH = acc + h * headDim
            if score > runningMax[h] {
                let correction = expf(runningMax[h] - score)
                scale(accH, correction, headDim)
                runningSum[h] *= correction
                runningMax[h] = score
            }
            let weight = expf(score - runningMax[h])
            runningSum[h] += weight
            axpy(weight, v, accH, headDim)
        }
    }
    for h in 0..<group {
        let inv: Float = runningSum[h] > 0 ? 1 / runningSum[h] : 0
        let dst = out + h * headDim, src = acc + h * headDim
        for i in 0..<headDim { dst[i] = src[i] * inv }
    }
}
