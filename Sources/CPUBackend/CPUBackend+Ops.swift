#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

// Legend: T tokens, D model dim, H query heads, G KV heads, Dh head dim, V vocabulary,
// N KV blocks, B tokens per block.

extension CPUBackend {
    /// Splits `count` elements into about four contiguous chunks per thread (at least `minimum`
    /// elements each) and runs `body(range)` on the pool; tiny inputs run inline.
    @inline(__always)
    func parallelRanges(_ count: Int, minimum: Int = 16_384, _ body: (Range<Int>) -> Void) {
        let chunks = min(max(1, count / minimum), threadCount * 4)
        if chunks <= 1 {
            body(0..<count)
            return
        }
        let chunk = (count + chunks - 1) / chunks
        pool.run(tasks: chunks) { task, _ in
            let start = task * chunk
            body(start..<min(start + chunk, count))
        }
    }

    // MARK: embed / gather

    public func embed(ids: CPUTensor, table: CPUTensor, out: CPUTensor, rows: Int, dim: Int) throws {
        guard let vocab = table.shape.first, table.partCount % max(dim, 1) == 0, vocab * dim == table.count else {
            throw BackendError.shapeMismatch("embed: table \(table.shape) is not (V, \(dim))")
        }
        try checkWeight(table, elements: vocab * dim, "embed table")
        try checkIndices(ids, count: rows, below: vocab, "embed ids")
        try check(out, .f32, atLeast: rows * dim, "embed out")
        locked {
            let base = UnsafeRawPointer(table.base)
            for t in 0..<rows {
                let row = Int(ids.ints[t]) * dim
                let dst = out.floats + t * dim
                switch table.dtype {
                case .bf16: for i in 0..<dim { dst[i] = BF16Element.load1(base, row + i) }
                case .f16: for i in 0..<dim { dst[i] = F16Element.load1(base, row + i) }
                case .f32, .i32: for i in 0..<dim { dst[i] = F32Element.load1(base, row + i) }
                case .e4m3:
                    // The scheme keeps embeddings as stored, but an e4m3 table still reads right.
                    let s = table.partScales![0][Int(ids.ints[t])]
                    for i in 0..<dim { dst[i] = E4M3Element.load1(base, row + i) * s }
                }
            }
        }
    }

    public func gatherRows(_ x: CPUTensor, rows: CPUTensor, out: CPUTensor, count: Int, dim: Int) throws {
        try check(x, .f32, atLeast: 0, "gatherRows x")
        try checkIndices(rows, count: count, below: x.count / max(dim, 1), "gatherRows rows")
        try check(out, .f32, atLeast: count * dim, "gatherRows out")
        locked {
            for s in 0..<count {
                (out.floats + s * dim).update(from: x.floats + Int(rows.ints[s]) * dim, count: dim)
            }
        }
    }

    // MARK: normalisation and elementwise

    /// rmsNorm of `rows` rows (the caller holds the op lock).
    func normaliseRows(_ x: UnsafeMutablePointer<Float>, weight: CPUTensor, eps: Float,
                       out: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
        func normalise(_ t: Int) {
            let src = x + t * dim, dst = out + t * dim
            switch weight.dtype {
            case .bf16: rmsNormRow(BF16Element.self, src, weight.base, eps, dst, dim)
            case .f16: rmsNormRow(F16Element.self, src, weight.base, eps, dst, dim)
            case .f32, .i32: rmsNormRow(F32Element.self, src, weight.base, eps, dst, dim)
            case .e4m3: preconditionFailure("checkNormWeight refuses e4m3 norm weights")
            }
        }
        if rows * dim < 65_536 {
            for t in 0..<rows { normalise(t) }
        } else {
            pool.run(tasks: rows) { t, _ in normalise(t) }
        }
    }

    public func normedMatmul(_ x: CPUTensor, norm: CPUTensor, eps: Float, weight: CPUTensor, out: CPUTensor,
                             rows: Int, inDim: Int, outDim: Int, gated: Bool) throws {
        try check(x, .f32, atLeast: rows * inDim, "normedMatmul x")
        try checkNormWeight(norm, elements: inDim, "normedMatmul norm")
        let weightRows = gated ? 2 * outDim : outDim
        let blocks = try rowBlocks(weight, outDim: weightRows, inDim: inDim, "normedMatmul weight (\(weightRows), \(inDim))")
        try check(out, .f32, atLeast: rows * outDim, "normedMatmul out")
        guard rows > 0, outDim > 0, inDim > 0 else { return }
        try locked {
            let h = try scratch.shared[5].reserve(rows * inDim)   // (T, inDim) normed x
            normaliseRows(x.floats, weight: norm, eps: eps, out: h, rows: rows, dim: inDim)
            guard gated else {
                product(h, blocks: blocks, inDim: inDim, rows: rows, out: out.floats,
                        stride: outDim) { StoreSink(out: $0, stride: $1) }
                return
            }
            let both = try scratch.shared[4].reserve(rows * 2 * outDim)   // (T, 2F): gate | up
            product(h, blocks: blocks, inDim: inDim, rows: rows, out: both,
                    stride: 2 * outDim) { StoreSink(out: $0, stride: $1) }
            let o = out.floats
            parallelRanges(rows) { range in
                for t in range {
                    swiGLURange(both + t * 2 * outDim, both + t * 2 * outDim + outDim, o + t * outDim, 0..<outDim)
                }
            }
        }
    }

    // MARK: rotary embedding and KV append

    public func ropeAppendKV(qkv: CPUTensor, q: CPUTensor, kPool: CPUTensor, vPool: CPUTensor, positions: CPUTensor,
                             slots: CPUTensor, rows: Int, heads: Int, kvHeads: Int, headDim: Int, theta: Float) throws {
        guard headDim % 2 == 0 else { throw BackendError.shapeMismatch("ropeAppendKV: head dim \(headDim) is odd") }
        let width = kvHeads * headDim, qWidth = heads * headDim, rowWidth = qWidth + 2 * width
        try check(qkv, .f32, atLeast: rows * rowWidth, "ropeAppendKV qkv")
        try check(q, .f32, atLeast: rows * qWidth, "ropeAppendKV q")
        try check(positions, .i32, atLeast: rows, "ropeAppendKV positions")
        try checkPool(kPool, vPool, width: width, "ropeAppendKV")
        try checkIndices(slots, count: rows, below: kPool.count / width, "ropeAppendKV slots")
        try locked {
            let table = try ropeTable(positions.ints, rows: rows, headDim: headDim, theta: theta)
            for t in 0..<rows {
                let row = qkv.floats + t * rowWidth
                for h in 0..<heads {
                    table.rotate(row + h * headDim, into: q.floats + t * qWidth + h * headDim, row: t)
                }
                let slot = Int(slots.ints[t]) * width
                for g in 0..<kvHeads {
                    table.rotate(row + qWidth + g * headDim, into: kPool.floats + slot + g * headDim, row: t)
                }
                (vPool.floats + slot).update(from: row + qWidth + width, count: width)
            }
        }
    }

    /// cos/sin of every (token, pair) angle, in the shared scratch. The angle is formed in
    /// Double so large positions keep full precision, then rounded once.
    func ropeTable(_ positions: UnsafePointer<Int32>, rows: Int, headDim: Int, theta: Float) throws -> RopeTable {
        let pairs = headDim / 2
        // (T, Dh/2) cos then (T, Dh/2) sin, then (Dh/2) inverse frequencies θ^(−2i/Dh).
        let table = try scratch.shared[0].reserve(2 * max(1, rows * pairs))
        let inverseFrequency = try scratch.sharedDoubles.reserve(pairs)
        for i in 0..<pairs { inverseFrequency[i] = pow(Double(theta), -Double(2 * i) / Double(headDim)) }
        for t in 0..<rows {
            let position = Double(positions[t])
            for i in 0..<pairs {
                let angle = position * inverseFrequency[i]
                table[t * pairs + i] = Float(cos(angle))
                table[rows * pairs + t * pairs + i] = Float(sin(angle))
            }
        }
        return RopeTable(cos: table, sin: table + rows * pairs, pairs: pairs)
    }

    func checkPool(_ kPool: CPUTensor, _ vPool: CPUTensor, width: Int, _ what: String) throws {
        try check(kPool, .f32, atLeast: width, "\(what) kPool")
        try check(vPool, .f32, atLeast: kPool.count, "\(what) vPool")
        guard kPool.shape.count == 4, kPool.shape[2] * kPool.shape[3] == width else {
            throw BackendError.shapeMismatch("\(what): pool \(kPool.shape) does not hold \(width) values per slot")
        }
    }

    // MARK: matmul

    public func matmulAdd(_ x: CPUTensor, weight: CPUTensor, into out: CPUTensor, rows: Int, inDim: Int, outDim: Int) throws {
        try check(x, .f32, atLeast: rows * inDim, "matmulAdd x")
        let blocks = try rowBlocks(weight, outDim: outDim, inDim: inDim, "matmulAdd weight (\(outDim), \(inDim))")
        try check(out, .f32, atLeast: rows * outDim, "matmulAdd out")
        guard rows > 0, outDim > 0 else { return }
        locked {
            product(x.floats, blocks: blocks, inDim: inDim, rows: rows, out: out.floats,
                    stride: outDim) { AddSink(out: $0, stride: $1) }
        }
    }

    /// The parts of a weight as (part, rows) blocks in output-row order: one block for a plain
    /// weight, several for a row-joined one.
    func rowBlocks(_ weight: CPUTensor, outDim: Int, inDim: Int,
                   _ what: @autoclosure () -> String) throws -> [(part: WeightPart, rows: Int)] {
        guard let partRows = weight.partRows else {
            try checkWeight(weight, elements: outDim * inDim, what())
            return [(weight.weightPart(0), outDim)]
        }
        guard weight.shape == [outDim, inDim] else {
            throw BackendError.shapeMismatch("\(what()): joined weight is \(weight.shape)")
        }
        return partRows.enumerated().map { (weight.weightPart($0.offset), $0.element) }
    }

    /// x (T, K) · Wᵀ for each row block of W, emitting block b's columns through a sink made
    /// for out + (its first column), with row stride `stride`.
    func product<S: TileSink>(_ x: UnsafeMutablePointer<Float>, blocks: [(part: WeightPart, rows: Int)],
                              inDim: Int, rows: Int, out: UnsafeMutablePointer<Float>, stride: Int,
                              sink makeSink: (UnsafeMutablePointer<Float>, Int) -> S) {
        var column = 0
        let xs = UnsafePointer(x)
        for block in blocks {
            let plan = TilePlan(outRows: block.rows, tokens: rows, threads: threadCount)
            let w = block.part, n = block.rows, base = out + column
            pool.run(tasks: plan.tasks) { task, _ in
                let (rowRange, tokenRange) = plan.ranges(task: task, outRows: n, tokens: rows)
                let shifted = makeSink(base + tokenRange.lowerBound * stride, stride)
                gemmTile(w, inDim: inDim, rows: rowRange,
                         x: xs + tokenRange.lowerBound * inDim, xStride: inDim,
                         tokens: tokenRange.count, sink: shifted)
            }
            column += block.rows
        }
    }
}

/// cos and sin of each (token, pair) rotary angle; rotates one head's interleaved pairs.
struct RopeTable {
    let cos: UnsafeMutablePointer<Float>
    let sin: UnsafeMutablePointer<Float>
    let pairs: Int

    /// out pairs = (re·c − im·s, re·s + im·c) of x's pairs at token `row` (x and out may alias).
    @inline(__always)
    func rotate(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, row: Int) {
        let c = cos + row * pairs, s = sin + row * pairs
        for i in 0..<pairs {
            let re = x[2 * i], im = x[2 * i + 1]
            out[2 * i] = re * c[i] - im * s[i]
            out[2 * i + 1] = re * s[i] + im * c[i]
        }
    }
}

/// out = x / sqrt(mean(x²) + eps) · w for one row, in f32 (x and out may alias).
@inline(__always)
func rmsNormRow<W: WeightElement>(_: W.Type, _ x: UnsafePointer<Float>, _ w: UnsafeRawPointer, _ eps: Float,
                                  _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    let meanSquare = dotF32(x, x, n) / Float(n)
    let inv = 1 / (meanSquare + eps).squareRoot()
    let invV = SIMD8<Float>(repeating: inv)
    var i = 0
    while i &+ 8 <= n {
        let y = loadF32x8(x, i) * invV * W.load8(w, i)
        UnsafeMutableRawPointer(out + i).storeBytes(of: y, as: SIMD8<Float>.self)
        i &+= 8
    }
    while i < n {
        out[i] = x[i] * inv * W.load1(w, i)
        i &+= 1
    }
}

/// out = silu(gate) · up = gate / (1 + e^−gate) · up over `range`.
@inline(__always)
func swiGLURange(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                 _ range: Range<Int>) {
    for i in range {
        let g = gate[i]
        out[i] = g / (1 + expf(-g)) * up[i]
    }
}
