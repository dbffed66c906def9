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

/// Rows of weight kept hot in L2 while all tokens of the tile pass over them: about 128 KiB.
@inline(__always)
func rowsPerCacheBlock(inDim: Int, elementBytes: Int) -> Int {
    max(1, (128 * 1024) / max(1, inDim * elementBytes))
}

/// Dot products of weight rows `rows` (weight row-major (outDim, inDim)) with activation rows
/// 0..<tokens (x row-major with `xStride`), handed to `sink`.
///
/// Loop order: for each L2-sized block of weight rows, every group of four tokens runs over it
/// (`dotRow4`), so each weight byte comes from DRAM once per call however many tokens there are.
/// With one token this is a plain streaming matvec.
@inline(__always)
func gemmTile<W: WeightElement, S: TileSink>(_ type: W.Type, weight: UnsafeRawPointer, inDim: Int,
                                              rows: Range<Int>, x: UnsafePointer<Float>, xStride: Int,
                                              tokens: Int, sink: S) {
    let rowBytes = inDim &* W.stride
    if tokens == 1 {
        var r = rows.lowerBound
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
    let block = rowsPerCacheBlock(inDim: inDim, elementBytes: W.stride)
    var blockStart = rows.lowerBound
    while blockStart < rows.upperBound {
        let blockEnd = min(blockStart &+ block, rows.upperBound)
        var t = 0
        while t &+ 4 <= tokens {
            let x0 = x + t &* xStride
            let x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride
            for r in blockStart..<blockEnd {
                let v = dotRow4(W.self, weight + r &* rowBytes, x0, x1, x2, x3, inDim)
                for j in 0..<4 { sink.emit(token: t &+ j, row: r, value: v[j]) }
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

/// Dispatches `gemmTile` on the weight's stored dtype.
@inline(__always)
func gemmTile<S: TileSink>(dtype: DType, weight: UnsafeRawPointer, inDim: Int, rows: Range<Int>,
                           x: UnsafePointer<Float>, xStride: Int, tokens: Int, sink: S) {
    switch dtype {
    case .bf16: gemmTile(BF16Element.self, weight: weight, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
    case .f16: gemmTile(F16Element.self, weight: weight, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
    case .f32, .i32: gemmTile(F32Element.self, weight: weight, inDim: inDim, rows: rows, x: x, xStride: xStride, tokens: tokens, sink: sink)
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
