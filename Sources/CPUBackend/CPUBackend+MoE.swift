#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

// Legend: T tokens, D model dim, F expert hidden dim, E experts, K experts per token,
// A experts touched this step, n = T·K routed (token, expert) slots.

extension CPUBackend {
    /// `moeRoute` on raw buffers (the caller holds the op lock and has checked the shapes).
    /// logits (T, E); ids (T, K); weights (T, K).
    func route(_ logits: UnsafePointer<Float>, ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>,
               rows: Int, experts: Int, topK: Int) {
        for t in 0..<rows {
            let row = logits + t * experts
            let chosenIDs = ids + t * topK
            let chosenWeights = weights + t * topK
            for k in 0..<topK {
                // Strictly greater wins, scanning upwards: the lowest index wins a tie.
                var best = -1
                var bestValue = -Float.infinity
                for e in 0..<experts {
                    var taken = false
                    for previous in 0..<k where Int(chosenIDs[previous]) == e { taken = true }
                    if taken { continue }
                    let value = row[e]
                    if best < 0 || value > bestValue {
                        best = e
                        bestValue = value
                    }
                }
                chosenIDs[k] = Int32(best)
                chosenWeights[k] = bestValue
            }
            // Softmax over the k chosen logits; the first is the largest.
            let top = chosenWeights[0]
            var sum: Float = 0
            for k in 0..<topK {
                chosenWeights[k] = expf(chosenWeights[k] - top)
                sum += chosenWeights[k]
            }
            for k in 0..<topK { chosenWeights[k] /= sum }
        }
    }

    /// `moeExperts` on raw buffers (the caller holds the op lock and has checked the shapes and
    /// that every id is in [0, E)). Uses shared scratch 1–3 and shared int scratch 0–2.
    /// x, out (T, D); ids, weights (T, K).
    func mixExperts(_ x: UnsafePointer<Float>, w1: CPUTensor, w2: CPUTensor, w3: CPUTensor, ids: UnsafePointer<Int32>,
                    weights: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                    rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        let slots = rows * topK
        // Group slots by expert (a counting sort, stable in token order).
        let counts = try scratch.sharedInts[0].reserve(2 * experts + 1)   // counts (E), offsets (E+1)
        let offsets = counts + experts
        let slotToken = try scratch.sharedInts[1].reserve(slots)         // (n) token of each slot
        let active = try scratch.sharedInts[2].reserve(experts)          // (A) touched experts
        let slotWeight = try scratch.shared[1].reserve(slots)            // (n) routing weight
        let gathered = try scratch.shared[2].reserve(slots * dim)        // (n, D) x rows per slot
        let hiddenBuffer = try scratch.shared[3].reserve(2 * slots * hidden) // (n, F) h, (n, F) up
        counts.update(repeating: 0, count: experts)
        for i in 0..<slots { counts[Int(ids[i])] += 1 }
        offsets[0] = 0
        var activeCount = 0
        for e in 0..<experts {
            offsets[e + 1] = offsets[e] + counts[e]
            if counts[e] > 0 { active[activeCount] = Int32(e); activeCount += 1 }
            counts[e] = offsets[e]   // reused as the fill cursor
        }
        for i in 0..<slots {
            let e = Int(ids[i])
            let slot = Int(counts[e])
            counts[e] += 1
            slotToken[slot] = Int32(i / topK)
            slotWeight[slot] = weights[i]
            (gathered + slot * dim).update(from: x + (i / topK) * dim, count: dim)
        }
        let up = hiddenBuffer + slots * hidden

        // Phase 1: h = silu(x·w1ᵀ) ⊙ (x·w3ᵀ), (n, F).
        let plan1 = TilePlan(outRows: hidden, tokens: 1, threads: threadCount)
        pool.run(tasks: activeCount * plan1.rowChunks) { task, _ in
            let e = Int(active[task / plan1.rowChunks])
            let (rowRange, _) = plan1.ranges(task: task % plan1.rowChunks, outRows: hidden, tokens: 1)
            let first = Int(offsets[e]), count = Int(offsets[e + 1]) - first
            let xs = UnsafePointer(gathered + first * dim)
            gemmTile(w1.weightPart(e), inDim: dim, rows: rowRange, x: xs, xStride: dim,
                     tokens: count, sink: StoreSink(out: hiddenBuffer + first * hidden, stride: hidden))
            gemmTile(w3.weightPart(e), inDim: dim, rows: rowRange, x: xs, xStride: dim,
                     tokens: count, sink: StoreSink(out: up + first * hidden, stride: hidden))
            for slot in first..<(first + count) {
                let h = hiddenBuffer + slot * hidden
                swiGLURange(h, up + slot * hidden, h, rowRange)
            }
        }

        // Phase 2: out[t] = Σ weight · h·w2ᵀ, (T, D).
        out.update(repeating: 0, count: rows * dim)
        let plan2 = TilePlan(outRows: dim, tokens: 1, threads: threadCount)
        pool.run(tasks: plan2.rowChunks) { task, _ in
            let (rowRange, _) = plan2.ranges(task: task, outRows: dim, tokens: 1)
            for a in 0..<activeCount {
                let e = Int(active[a])
                let first = Int(offsets[e]), count = Int(offsets[e + 1]) - first
                let sink = ScatterAddSink(out: out, stride: dim, targets: slotToken + first,
                                          scales: slotWeight + first)
                gemmTile(w2.weightPart(e), inDim: hidden, rows: rowRange,
                         x: hiddenBuffer + first * hidden, xStride: hidden, tokens: count, sink: sink)
            }
        }
    }

    /// The composed reference of the fused op: rmsNorm into scratch, the router product,
    /// `moeRoute`, `moeExperts` into scratch, then the residual add, all under one op lock. The
    /// normed input is a copy, so x and out may be the same buffer (as in the forward pass).
    public func normedMoE(_ x: CPUTensor, norm: CPUTensor, eps: Float, router: CPUTensor, w1: CPUTensor, w2: CPUTensor,
                          w3: CPUTensor, into out: CPUTensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        guard experts > 0, topK > 0, topK <= experts else {
            throw BackendError.shapeMismatch("normedMoE: top-\(topK) of \(experts) experts")
        }
        try check(x, .f32, atLeast: rows * dim, "normedMoE x")
        try check(out, .f32, atLeast: rows * dim, "normedMoE out")
        try checkNormWeight(norm, elements: dim, "normedMoE norm")
        let routerBlocks = try rowBlocks(router, outDim: experts, inDim: dim, "normedMoE router (\(experts), \(dim))")
        try checkWeight(w1, elements: hidden * dim, parts: experts, "normedMoE w1 (E, F, D)")
        try checkWeight(w3, elements: hidden * dim, parts: experts, "normedMoE w3 (E, F, D)")
        try checkWeight(w2, elements: dim * hidden, parts: experts, "normedMoE w2 (E, D, F)")
        guard rows > 0, dim > 0 else { return }
        try locked {
            let normed = try scratch.shared[5].reserve(rows * dim)     // (T, D) rmsNorm(x)
            let mixture = try scratch.shared[4].reserve(rows * dim)    // (T, D) the experts' weighted sum
            let logits = try scratch.shared[0].reserve(rows * experts + rows * topK)   // (T, E) logits, (T, K) weights
            let weights = logits + rows * experts
            let ids = try scratch.sharedInts[3].reserve(rows * topK)   // (T, K)
            normaliseRows(x.floats, weight: norm, eps: eps, out: normed, rows: rows, dim: dim)
            product(normed, blocks: routerBlocks, inDim: dim, rows: rows, out: logits,
                    stride: experts) { StoreSink(out: $0, stride: $1) }
            // Top-k on the gate logits, then softmax over the k chosen (Mixtral's order).
            route(logits, ids: ids, weights: weights, rows: rows, experts: experts, topK: topK)
            try mixExperts(normed, w1: w1, w2: w2, w3: w3, ids: ids, weights: weights, out: mixture,
                           rows: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)
            let o = out.floats
            parallelRanges(rows * dim, minimum: 65_536) { range in
                axpy(1, mixture + range.lowerBound, o + range.lowerBound, range.count)
            }
        }
    }
}
