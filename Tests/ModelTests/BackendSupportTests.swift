import Testing
import Checkpoints
import CPUBackend
import Model
import Tensors

/// The CPU backend with some (op, weight dtype) pairs refused, as a GPU backend without kernels
/// for a dtype answers `supports`; it counts uploads so a test can see where loading stopped.
final class RefusingBackend: ComputeBackend, @unchecked Sendable {
    // @unchecked: `uploads` is only touched by the loading thread of one test.
    typealias Tensor = CPUTensor
    let base = CPUBackend(threads: 1)
    let refused: Set<String>
    var uploads = 0

    init(refusing pairs: [(WeightOp, DType)]) { refused = Set(pairs.map { "\($0.0.rawValue) \($0.1.rawValue)" }) }

    var name: String { "refusing test backend" }
    var kvElementBytes: Int { base.kvElementBytes }
    var gpuCount: Int { 0 }
    func supports(_ op: WeightOp, weights: DType) -> Bool {
        !refused.contains("\(op.rawValue) \(weights.rawValue)") && base.supports(op, weights: weights)
    }
    func upload(_ weight: HostTensor) throws -> CPUTensor { uploads += 1; return try base.upload(weight) }
    func upload(stacking parts: [HostTensor]) throws -> CPUTensor { uploads += 1; return try base.upload(stacking: parts) }
    func upload(concatenatingRows parts: [HostTensor]) throws -> CPUTensor { uploads += 1; return try base.upload(concatenatingRows: parts) }
    func makeActivation(_ shape: [Int]) throws -> CPUTensor { try base.makeActivation(shape) }
    func makeIndices(_ count: Int) throws -> CPUTensor { try base.makeIndices(count) }
    func makeKVPool(blocks: Int, blockSize: Int, kvHeads: Int, headDim: Int) throws -> CPUTensor {
        try base.makeKVPool(blocks: blocks, blockSize: blockSize, kvHeads: kvHeads, headDim: headDim)
    }
    func write(_ values: [Int32], to tensor: CPUTensor) throws { try base.write(values, to: tensor) }
    func write(_ values: [Float], to tensor: CPUTensor) throws { try base.write(values, to: tensor) }
    func readFloats(_ tensor: CPUTensor, count: Int) throws -> [Float] { try base.readFloats(tensor, count: count) }
    func synchronize() throws { try base.synchronize() }
    func replayable(_ shape: StepShape, _ body: () throws -> Void) throws { try base.replayable(shape, body) }
    func embed(ids: CPUTensor, table: CPUTensor, out: CPUTensor, rows: Int, dim: Int) throws {
        try base.embed(ids: ids, table: table, out: out, rows: rows, dim: dim)
    }
    func attention(q: CPUTensor, kPool: CPUTensor, vPool: CPUTensor, batch: AttentionBatch<CPUTensor>, out: CPUTensor,
                   heads: Int, kvHeads: Int, headDim: Int, slidingWindow: Int?) throws {
        try base.attention(q: q, kPool: kPool, vPool: vPool, batch: batch, out: out, heads: heads, kvHeads: kvHeads,
                           headDim: headDim, slidingWindow: slidingWindow)
    }
    func normedMatmul(_ x: CPUTensor, norm: CPUTensor, eps: Float, weight: CPUTensor, out: CPUTensor,
                      rows: Int, inDim: Int, outDim: Int, gated: Bool) throws {
        try base.normedMatmul(x, norm: norm, eps: eps, weight: weight, out: out, rows: rows, inDim: inDim, outDim: outDim, gated: gated)
    }
    func matmulAdd(_ x: CPUTensor, weight: CPUTensor, into out: CPUTensor, rows: Int, inDim: Int, outDim: Int) throws {
        try base.matmulAdd(x, weight: weight, into: out, rows: rows, inDim: inDim, outDim: outDim)
    }
    func ropeAppendKV(qkv: CPUTensor, q: CPUTensor, kPool: CPUTensor, vPool: CPUTensor, positions: CPUTensor, slots: CPUTensor,
                      rows: Int, heads: Int, kvHeads: Int, headDim: Int, theta: Float) throws {
        try base.ropeAppendKV(qkv: qkv, q: q, kPool: kPool, vPool: vPool, positions: positions, slots: slots, rows: rows,
                              heads: heads, kvHeads: kvHeads, headDim: headDim, theta: theta)
    }
    func normedMoE(_ x: CPUTensor, norm: CPUTensor, eps: Float, router: CPUTensor, w1: CPUTensor, w2: CPUTensor, w3: CPUTensor,
                   into out: CPUTensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws {
        try base.normedMoE(x, norm: norm, eps: eps, router: router, w1: w1, w2: w2, w3: w3, into: out, rows: rows, dim: dim,
                           hidden: hidden, experts: experts, topK: topK)
    }
    func gatherRows(_ x: CPUTensor, rows: CPUTensor, out: CPUTensor, count: Int, dim: Int) throws {
        try base.gatherRows(x, rows: rows, out: out, count: count, dim: dim)
    }
    func zero(_ tensor: CPUTensor, count: Int) throws { try base.zero(tensor, count: count) }
    func allReduceSum(_ send: CPUTensor, into receive: CPUTensor, count: Int) throws {
        try base.allReduceSum(send, into: receive, count: count)
    }
    func allGatherColumns(_ shard: CPUTensor, into full: CPUTensor, rows: Int, columns: Int) throws {
        try base.allGatherColumns(shard, into: full, rows: rows, columns: columns)
    }
    func sample(logits: CPUTensor, parameters: CPUTensor, penaltyOffsets: CPUTensor, penalties: CPUTensor, out: CPUTensor,
                rows: Int, vocabularySize: Int, logprobs: Int) throws {
        try base.sample(logits: logits, parameters: parameters, penaltyOffsets: penaltyOffsets, penalties: penalties, out: out,
                        rows: rows, vocabularySize: vocabularySize, logprobs: logprobs)
    }
}

/// `ComputeBackend.supports` is asked before each weight's upload: an (op, dtype) the backend
/// lacks fails the load with the op, dtype and weight named, before that weight is uploaded.
@Suite struct BackendSupportTests {
    static let moe = ModelConfig(dim: 64, nLayers: 2, headDim: 16, hiddenDim: 96, nHeads: 4, nKVHeads: 2,
                                 normEps: 1e-5, vocabSize: 50, ropeTheta: 1e6, moe: .init(numExperts: 4, numExpertsPerTok: 2))

    @Test func unsupportedExpertDTypeFailsAtLoadNamingOpAndWeight() throws {
        let source = FP8QuantizingSource(try RandomWeights(config: Self.moe, seed: 1))
        let backend = RefusingBackend(refusing: [(.normedMoE, .e4m3)])
        do {
            _ = try TransformerWeights(source: source, backend: backend)
            Issue.record("loading e4m3 experts on a backend without them succeeded")
        } catch let error as BackendError {
            #expect(error == .unsupported("e4m3 weights for normedMoE (layers.0.feed_forward.experts.0.w1.weight) on refusing test backend"))
        }
        // Embeddings, layer 0's attention norm, wqkv, wo, ffn norm and router went up; no expert.
        #expect(backend.uploads == 6)
    }

    @Test func unsupportedProjectionDTypeFailsBeforeItsUpload() throws {
        let source = FP8QuantizingSource(try RandomWeights(config: Self.moe, seed: 1))
        let backend = RefusingBackend(refusing: [(.matmulAdd, .e4m3)])
        #expect(throws: BackendError.unsupported("e4m3 weights for matmulAdd (layers.0.attention.wo.weight) on refusing test backend")) {
            _ = try TransformerWeights(source: source, backend: backend)
        }
        #expect(backend.uploads == 3)   // embeddings, attention norm, wqkv
    }

    @Test func supportedDTypesLoad() throws {
        let backend = RefusingBackend(refusing: [(.normedMoE, .e4m3)])
        _ = try TransformerWeights(source: try RandomWeights(config: Self.moe, seed: 1), backend: backend)
        let expected = 1 + 2 * (5 + 3) + 2   // embeddings; per layer 2 norms, wqkv, wo, router, 3 stacks; final norm, output
        #expect(backend.uploads == expected)
    }
}
