import Tensors

/// The unfused steps of the fused model ops, as plain CPU functions: not `ComputeBackend` ops (the
/// forward pass never calls them, and no other backend has to implement them). They are what
/// CPUBackendTests check the fused ops against (normedMatmul = rmsNorm then matmul, ropeAppendKV =
/// rope then appendKV, normedMoE = rmsNorm, router matmul, moeRoute, moeExperts and add), each
/// itself checked against the Double references of the tests; kept beside the fused ops, as candle
/// keeps `rms_norm_slow` beside its fused RMSNorm.
extension CPUBackend {
    public func rmsNorm(_ x: CPUTensor, weight: CPUTensor, eps: Float, out: CPUTensor, rows: Int, dim: Int) throws {
        try check(x, .f32, atLeast: rows * dim, "rmsNorm x")
        try checkNormWeight(weight, elements: dim, "rmsNorm weight")
        try check(out, .f32, atLeast: rows * dim, "rmsNorm out")
        guard dim > 0 else { return }
        locked { normaliseRows(x.floats, weight: weight, eps: eps, out: out.floats, rows: rows, dim: dim) }
    }

    public func matmul(_ x: CPUTensor, weight: CPUTensor, out: CPUTensor, rows: Int, inDim: Int, outDim: Int) throws {
        try check(x, .f32, atLeast: rows * inDim, "matmul x")
        let blocks = try rowBlocks(weight, outDim: outDim, inDim: inDim, "matmul weight (\(outDim), \(inDim))")
        try check(out, .f32, atLeast: rows * outDim, "matmul out")
        guard rows > 0, outDim > 0 else { return }
        locked {
            product(x.floats, blocks: blocks, inDim: inDim, rows: rows, out: out.floats,
                    stride: outDim) { StoreSink(out: $0, stride: $1) }
        }
    }

    public func swiGLU(gate: CPUTensor, up: CPUTensor, out: CPUTensor, count: Int) throws {
        try check(gate, .f32, atLeast: count, "swiGLU gate")
        try check(up, .f32, atLeast: count, "swiGLU up")
        try check(out, .f32, atLeast: count, "swiGLU out")
        locked {
            parallelRanges(count) { range in
                swiGLURange(gate.floats, up.floats, out.floats, range)
            }
        }
    }

    public func add(_ x: CPUTensor, _ y: CPUTensor, count: Int) throws {
        try check(x, .f32, atLeast: count, "add x")
        try check(y, .f32, atLeast: count, "add y")
        locked {
            parallelRanges(count, minimum: 65_536) { range in
                axpy(1, y.floats + range.lowerBound, x.floats + range.lowerBound, range.count)
            }
        }
    }

    public func rope(_ x: CPUTensor, positions: CPUTensor, rows: Int, heads: Int, headDim: Int, theta: Float) throws {
        guard headDim % 2 == 0 else { throw BackendError.shapeMismatch("rope: head dim \(headDim) is odd") }
        try check(x, .f32, atLeast: rows * heads * headDim, "rope x")
        try check(positions, .i32, atLeast: rows, "rope positions")
        try locked {
            let table = try ropeTable(positions.ints, rows: rows, headDim: headDim, theta: theta)
            for t in 0..<rows {
                for h in 0..<heads {
                    let v = x.floats + (t * heads + h) * headDim
                    table.rotate(v, into: v, row: t)
                }
            }
        }
    }

    public func appendKV(k: CPUTensor, v: CPUTensor, kPool: CPUTensor, vPool: CPUTensor, slots: CPUTensor,
                         rows: Int, kvHeads: Int, headDim: Int) throws {
        let width = kvHeads * headDim
        try check(k, .f32, atLeast: rows * width, "appendKV k")
        try check(v, .f32, atLeast: rows * width, "appendKV v")
        try checkPool(kPool, vPool, width: width, "appendKV")
        try checkIndices(slots, count: rows, below: kPool.count / width, "appendKV slots")
        locked {
            for t in 0..<rows {
                let slot = Int(slots.ints[t]) * width
                (kPool.floats + slot).update(from: k.floats + t * width, count: width)
                (vPool.floats + slot).update(from: v.floats + t * width, count: width)
            }
        }
    }

    /// Mixtral routing: top-k over the raw gate logits, *then* softmax over the k chosen logits.
    /// (Softmax-then-top-k renormalised gives the same weights, but the order matters for ties
    /// and is the plausible bug, so this follows mistral-inference literally.) Ties pick the lower
    /// expert index; ids come out in descending logit order, as torch.topk returns them.
    public func moeRoute(logits: CPUTensor, ids: CPUTensor, weights: CPUTensor, rows: Int, experts: Int, topK: Int) throws {
        guard experts > 0, topK > 0, topK <= experts else {
            throw BackendError.shapeMismatch("moeRoute: top-\(topK) of \(experts) experts")
        }
        try check(logits, .f32, atLeast: rows * experts, "moeRoute logits")
        try check(ids, .i32, atLeast: rows * topK, "moeRoute ids")
        try check(weights, .f32, atLeast: rows * topK, "moeRoute weights")
        locked { route(logits.floats, ids: ids.ints, weights: weights.floats, rows: rows, experts: experts, topK: topK) }
    }

    /// Sparse MoE FFN with tokens grouped by expert.
    ///
    /// The routed (token, k) slots are sorted by expert, so each touched expert's w1/w3/w2 are
    /// streamed once per step however many tokens chose it. Two pool jobs:
    /// 1. tasks over (expert, chunk of F rows): h = silu(x·w1ᵀ) ⊙ (x·w3ᵀ) for that expert's slots;
    /// 2. tasks over chunks of D rows: out[t] += weight · (h·w2ᵀ), looping over experts inside the
    ///    task so no two tasks ever add into the same output element.
    public func moeExperts(_ x: CPUTensor, w1: CPUTensor, w2: CPUTensor, w3: CPUTensor, ids: CPUTensor, weights: CPUTensor,
                           out: CPUTensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        try check(x, .f32, atLeast: rows * dim, "moeExperts x")
        try check(out, .f32, atLeast: rows * dim, "moeExperts out")
        try checkWeight(w1, elements: hidden * dim, parts: experts, "moeExperts w1 (E, F, D)")
        try checkWeight(w3, elements: hidden * dim, parts: experts, "moeExperts w3 (E, F, D)")
        try checkWeight(w2, elements: dim * hidden, parts: experts, "moeExperts w2 (E, D, F)")
        try checkIndices(ids, count: rows * topK, below: experts, "moeExperts ids")
        try check(weights, .f32, atLeast: rows * topK, "moeExperts weights")
        guard rows > 0, dim > 0 else { return }
        try locked {
            try mixExperts(x.floats, w1: w1, w2: w2, w3: w3, ids: ids.ints, weights: weights.floats, out: out.floats,
                           rows: rows, dim: dim, hidden: hidden, experts: experts, topK: topK)
        }
    }
}
