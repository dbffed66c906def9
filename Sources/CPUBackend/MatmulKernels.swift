import Tensors

/// Where a tile of dot products goes. Generic (not a closure) so each use is specialised and
/// inlined into the tile loop.
protocol TileSink {
    /// Receives dot(weight row `row`, activation row `token`).
    func emit(token: Int, row: Int, value: Float)
}

/// out[token · stride + row] = value.
struct StoreSink: TileSink {
    let out: UnsafeMutablePointer<Float>
    let stride: Int
    @inline(__always) func emit(token: Int, row: Int, value: Float) {
        out[token &* stride &+ row] = value
    }
}

/// out[token · stride + row] += value (a product added into the residual stream).
struct AddSink: TileSink {
    let out: UnsafeMutablePointer<Float>
    let stride: Int
    @inline(__always) func emit(token: Int, row: Int, value: Float) {
        out[token &* stride &+ row] += value
    }
}

/// out[targets[token] · stride + row] += scales[token] · value: combines one expert's output
/// into the rows of the tokens routed to it, weighted by their routing weights.
struct ScatterAddSink: TileSink {
    let out: UnsafeMutablePointer<Float>
    let stride: Int
    let targets: UnsafePointer<Int32>
    let scales: UnsafePointer<Float>
    @inline(__always) func emit(token: Int, row: Int, value: Float) {
        out[Int(targets[token]) &* stride &+ row] += scales[token] * value
    }
}

/// value × scales[row] into `inner`: the row scale of an e4m3 weight, applied to the finished dot
/// product (Σ q·x·s = s·Σ q·x, so each row costs one multiply instead of one per element).
struct RowScaledSink<Inner: TileSink>: TileSink {
    let inner: Inner
    let scales: UnsafePointer<Float>
    @inline(__always) func emit(token: Int, row: Int, value: Float) {
        inner.emit(token: token, row: row, value: value * scales[row])
    }
}

/// One weight matrix as the product kernels read it: stored dtype, base address, and for e4m3
/// its row scales (rows counted from `base`).
struct WeightPart {
    let dtype: DType
    let base: UnsafeRawPointer
    let scales: UnsafePointer<Float>?
}

/// Rows of weight kept hot in L2 while all tokens of the tile pass over them: about 128 KiB.
@inline(__always)
func rowsPerCacheBlock(inDim: Int, elementBytes: Int) -> Int {
    max(1, (128 * 1024) / max(1, inDim * elementBytes))
}

/// Dot products of weight rows `rows` (weight row-major (outDim, inDim)) with activation rows
/// 0..<tokens (x row-major with `xStride`), handed to `sink`.
///
/// Loop order: for each L2-sized block of weight rows, every group of four tokens runs over it
/// (`dotBlock4`), so each weight byte comes from DRAM once per call however many tokens there are.
/// With one token this is a plain streaming matvec.
@inline(__always)
func gemmTile<W: WeightElement, S: TileSink>(_ type: W.Type, weight: UnsafeRawPointer, inDim: Int,
                                              rows: Range<Int>, x: UnsafePointer<Float>, xStride: Int,
                                              tokens: Int, sink: S) {
    let rowBytes = inDim &* W.stride
    if tokens == 1 {
        // The rows are read as four long sequential streams — the four quarters of the range
        // in lockstep — rather than four adjacent rows at a time: a stream that runs on across
        // row ends keeps the hardware prefetcher trained, where restarting four streams every
        // few KiB cost up to a third of the bandwidth for 8 KiB rows.
        let quarter = rows.count / 4
        let first = rows.lowerBound
        for i in 0..<quarter {
            let r0 = first &+ i, r1 = r0 &+ quarter, r2 = r1 &+ quarter, r3 = r2 &+ quarter
            let v = dotRows4(W.self, weight + r0 &* rowBytes, weight + r1 &* rowBytes,
                             weight + r2 &* rowBytes, weight + r3 &* rowBytes, x, inDim)
            sink.emit(token: 0, row: r0, value: v[0])
            sink.emit(token: 0, row: r1, value: v[1])
            sink.emit(token: 0, row: r2, value: v[2])
            sink.emit(token: 0, row: r3, value: v[3])
        }
        var r = first &+ 4 &* quarter
        while r &+ 2 <= rows.upperBound {
            let (v0, v1) = dotRow2(W.self, weight + r &* rowBytes, weight + (r &+ 1) &* rowBytes, x, inDim)
            sink.emit(token: 0, row: r, value: v0)
            sink.emit(token: 0, row: r &+ 1, value: v1)
            r &+= 2
        }
        if r < rows.upperBound {
            sink.emit(token: 0, row: r, value: dotRow(W.self, weight + r &* rowBytes, x, inDim))
        }
        return
    }
    // At most 32 rows per block so the accumulators (8 SIMD8 per row) fit a small stack buffer.
    let block = min(32, rowsPerCacheBlock(inDim: inDim, elementBytes: W.stride))
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: block &* 8) { accumulators in
        guard let acc = accumulators.baseAddress else { return }
        var blockStart = rows.lowerBound
        while blockStart < rows.upperBound {
            let blockEnd = min(blockStart &+ block, rows.upperBound)
            var t = 0
            while t &+ 4 <= tokens {
                if tokens >= 16 {
                    // Compute-bound: keep the activations in L1 (reduction-blocked).
                    dotBlock4(W.self, weight: weight, rowBytes: rowBytes, rows: blockStart..<blockEnd,
                              x: x + t &* xStride, xStride: xStride, n: inDim, token: t, sink: sink, acc: acc)
                } else {
                    // Few tokens, still bandwidth-bound: stream each weight row straight through.
                    let x0 = x + t &* xStride
                    let x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride
                    for r in blockStart..<blockEnd {
                        let v = dotRow4(W.self, weight + r &* rowBytes, x0, x1, x2, x3, inDim)
                        for j in 0..<4 { sink.emit(token: t &+ j, row: r, value: v[j]) }
                    }
                }
                t &+= 4
            }
            while t < tokens {
                let xt = x + t &* xStride
                for r in blockStart..<blockEnd {
                    sink.emit(token: t, row: r, value: dotRow(W.self, weight + r &* rowBytes, xt, inDim))
                }
                t &+= 1
            }
            blockStart = blockEnd
        }
    }
}

/// Elements of the reduction dimension per pass in `dotBlock4` (a multiple of 16): four tokens ×
/// 512 floats = 8 KiB of activations, which stay in L1 while every row of the block uses them.
let reductionChunk = 512

/// `dotRow4` for every row of `rows` against tokens token…token+3, blocked over the reduction
/// dimension: the accumulators of each row are kept in `acc` between chunks, so the activations
/// are read from L1 instead of L2 and each row still sums in exactly `dotRow4`'s (the canonical)
/// order — same FMAs into the same accumulators, same tails, same `hsum`.
@inline(__always)
func dotBlock4<W: WeightElement, S: TileSink>(_: W.Type, weight: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>,
                                              x: UnsafePointer<Float>, xStride: Int, n: Int, token: Int,
                                              sink: S, acc: UnsafeMutablePointer<SIMD8<Float>>) {
    let x0 = x, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride
    acc.update(repeating: SIMD8<Float>(), count: rows.count &* 8)
    let n16 = n & ~15
    var k = 0
    while k < n16 {
        let kEnd = min(k &+ reductionChunk, n16)
        var p = acc
        for r in rows {
            let w = weight + r &* rowBytes
            var a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3]
            var b0 = p[4], b1 = p[5], b2 = p[6], b3 = p[7]
            var i = k
            while i < kEnd {
                let wa = W.load8(w, i)
                let wb = W.load8(w, i &+ 8)
                a0 = a0.addingProduct(wa, loadF32x8(x0, i))
                a1 = a1.addingProduct(wa, loadF32x8(x1, i))
                a2 = a2.addingProduct(wa, loadF32x8(x2, i))
                a3 = a3.addingProduct(wa, loadF32x8(x3, i))
                b0 = b0.addingProduct(wb, loadF32x8(x0, i &+ 8))
                b1 = b1.addingProduct(wb, loadF32x8(x1, i &+ 8))
                b2 = b2.addingProduct(wb, loadF32x8(x2, i &+ 8))
                b3 = b3.addingProduct(wb, loadF32x8(x3, i &+ 8))
                i &+= 16
            }
            p[0] = a0; p[1] = a1; p[2] = a2; p[3] = a3
            p[4] = b0; p[5] = b1; p[6] = b2; p[7] = b3
            p += 8
        }
        k = kEnd
    }
    var p = acc
    for r in rows {
        let w = weight + r &* rowBytes
        var a0 = p[0], a1 = p[1], a2 = p[2], a3 = p[3]
        var i = n16
        if i &+ 8 <= n {
            let wa = W.load8(w, i)
            a0 = a0.addingProduct(wa, loadF32x8(x0, i))
            a1 = a1.addingProduct(wa, loadF32x8(x1, i))
            a2 = a2.addingProduct(wa, loadF32x8(x2, i))
            a3 = a3.addingProduct(wa, loadF32x8(x3, i))
            i &+= 8
        }
        var s = SIMD4<Float>(hsum(a0 + p[4]), hsum(a1 + p[5]), hsum(a2 + p[6]), hsum(a3 + p[7]))
        while i < n {
            s = s.addingProduct(SIMD4(repeating: W.load1(w, i)), SIMD4(x0[i], x1[i], x2[i], x3[i]))
            i &+= 1
        }
        for j in 0..<4 { sink.emit(token: token &+ j, row: r, value: s[j]) }
        p += 8
    }
}

/// The one place a product picks its inner loop by the weight's stored dtype (a new weight
/// dtype is a new row here). Rows are counted from `weight.base`.
@inline(__always)
func gemmTile<S: TileSink>(_ weight: WeightPart, inDim: Int, rows: Range<Int>,
                           x: UnsafePointer<Float>, xStride: Int, tokens: Int, sink: S) {
    let w = weight.base
    switch weight.dtype {
    case .bf16: gemmTile(BF16Element.self, weight: w, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
    case .f16: gemmTile(F16Element.self, weight: w, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
    case .f32, .i32: gemmTile(F32Element.self, weight: w, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
    case .e4m3:
        // Upload refuses e4m3 without scales, so `scales` is set here.
        gemmTile(E4M3Element.self, weight: w, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens,
                 sink: RowScaledSink(inner: sink, scales: weight.scales!))
    }
}

/// How a (rows × tokens) product is cut into pool tasks.
///
/// Output rows are split into contiguous chunks (each thread streams its own part of the weight
/// matrix); tokens into blocks of 64 so a block of activations stays in cache while the rows
/// pass. About four chunks per thread balance uneven progress without shrinking streams.
struct TilePlan {
    let rowChunk: Int
    let rowChunks: Int
    let tokenBlock: Int
    let tokenBlocks: Int
    var tasks: Int { rowChunks * tokenBlocks }

    init(outRows: Int, tokens: Int, threads: Int, tokenBlock: Int = 64) {
        let wanted = max(1, threads * 4)
        rowChunk = max(8, (outRows + wanted - 1) / wanted)
        rowChunks = max(1, (outRows + rowChunk - 1) / rowChunk)
        self.tokenBlock = tokenBlock
        tokenBlocks = max(1, (tokens + tokenBlock - 1) / tokenBlock)
    }

    /// (row range, token range) of task `task`; token blocks vary slowest so concurrent tasks
    /// share one activation block.
    @inline(__always)
    func ranges(task: Int, outRows: Int, tokens: Int) -> (Range<Int>, Range<Int>) {
        let rc = task % rowChunks
        let tb = task / rowChunks
        let r0 = rc * rowChunk
        let t0 = tb * tokenBlock
        return (r0..<min(r0 + rowChunk, outRows), t0..<min(t0 + tokenBlock, tokens))
    }
}
