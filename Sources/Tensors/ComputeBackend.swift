/// The operations the Mistral forward pass needs from a device: the eight model-level ops it
/// calls (embed, normedMatmul, ropeAppendKV, attention, matmulAdd, normedMoE, gatherRows,
/// sample) plus memory, step replay, and three collectives when a model is split over several
/// devices; not forty tensor primitives and not whole layers.
///
/// The forward pass is written once, in `Model`, against this protocol. Every backend is checked
/// op by op against `CPUBackend` (the reference) by normalised error (`BackendConformance`). The
/// unfused steps of the fused ops (rmsNorm, matmul, rope, appendKV, swiGLU, add, moeRoute,
/// moeExperts) are not ops: the CPU backend keeps them as its reference (CPUBackend+Reference).
/// A backend states which weight dtypes each op reads (`supports`), so a model it cannot run
/// fails at load with the op and dtype named.
///
/// Conventions every implementation follows:
/// - Buffers are allocated once at their maximum size; every op takes explicit row counts so a
///   step with fewer tokens reuses the same buffers (no allocation per token).
/// - Activations are created with `makeActivation` and hold whatever float type the backend
///   computes in; accumulation is always f32. Weights keep their stored dtype (bf16/f16/f32).
/// - Row-major, C order. Legend: T tokens in the packed batch, S sequences, D model dim,
///   H query heads, G KV heads, Dh head dim, F FFN hidden dim, E experts, K experts per token,
///   V vocabulary, N blocks in the KV pool, B tokens per KV block.
/// - Ops are asynchronous with respect to the host; only `read*` and `synchronize` wait.
public protocol ComputeBackend: AnyObject, Sendable {
    associatedtype Tensor: AnyObject & Sendable

    /// Human-readable device name, e.g. "cpu (2 threads)" or "NVIDIA H100 80GB HBM3".
    var name: String { get }
    /// Bytes of one cached K or V element in this backend's KV pool (f32 on the CPU, bf16 on a
    /// GPU): what the KV-pool sizing multiplies by.
    var kvElementBytes: Int { get }
    /// GPUs this backend computes on (0 for the CPU), as reported to the AIME server.
    var gpuCount: Int { get }
    /// Whether `op` runs with its weight matrix in `weights` (ggml's `supports_op`): the model
    /// asks before each upload (`requireSupport`), so an unsupported combination is an error at
    /// load time naming the op and dtype, not a failure in the first step. A plain function of
    /// its arguments (a table), constant for the backend's lifetime.
    func supports(_ op: WeightOp, weights: DType) -> Bool

    // MARK: memory

    /// Makes a weight available to the device in its stored dtype (the CPU uses the mapped bytes
    /// in place).
    func upload(_ weight: HostTensor) throws -> Tensor
    /// A logical stack of equally-shaped weights, e.g. E expert matrices (F, D) → (E, F, D). A
    /// backend may keep the parts where they are (CPU) or copy them into one buffer (GPU).
    func upload(stacking parts: [HostTensor]) throws -> Tensor
    /// Weights that multiply the same input, joined along their output rows: parts (Nᵢ, K) →
    /// (ΣNᵢ, K), e.g. wq, wk, wv → one (H·Dh + 2·G·Dh, D) projection, or w1, w3 → (2F, D). One
    /// product then reads them in one pass (one launch instead of three on a GPU). A backend may
    /// keep the parts where they are (CPU) or copy them into one buffer (GPU).
    func upload(concatenatingRows parts: [HostTensor]) throws -> Tensor
    /// An uninitialised activation buffer of `shape` in the backend's compute float type.
    func makeActivation(_ shape: [Int]) throws -> Tensor
    /// An uninitialised i32 buffer of `count` elements.
    func makeIndices(_ count: Int) throws -> Tensor
    /// A paged KV pool for one layer: (N, B, G, Dh), in the backend's KV dtype.
    func makeKVPool(blocks: Int, blockSize: Int, kvHeads: Int, headDim: Int) throws -> Tensor
    /// Copies host values into the first `values.count` elements of an i32 buffer.
    func write(_ values: [Int32], to tensor: Tensor) throws
    /// Copies host values into the first `values.count` elements of an activation buffer.
    func write(_ values: [Float], to tensor: Tensor) throws
    /// Reads the first `count` elements of an activation (or i32) buffer as f32; waits for the device.
    func readFloats(_ tensor: Tensor, count: Int) throws -> [Float]
    /// Waits until all queued work is done.
    func synchronize() throws
    /// Runs `body`, which only queues ops whose sizes are fixed by `shape`, and may replay it.
    ///
    /// Why: a decode step is ~10 small launches per layer, and at batch 1 the time between
    /// launches is a large part of the step. A GPU backend records the ops of a shape once
    /// (a CUDA graph) and replays the recording for later steps of the same shape, so `body`
    /// must not depend on anything but `shape` and the contents of device buffers (index
    /// arrays are written before the call). The CPU backend just runs `body`.
    func replayable(_ shape: StepShape, _ body: () throws -> Void) throws

    // MARK: model ops

    /// out[t, :] = table[ids[t], :]. ids (T) i32, table (V, D), out (T, D).
    func embed(ids: Tensor, table: Tensor, out: Tensor, rows: Int, dim: Int) throws
    /// Causal (optionally sliding-window) GQA attention of packed queries over the paged pools.
    /// q (T, H, Dh) already roped; out (T, H, Dh). See `AttentionBatch` for the index layout.
    func attention(q: Tensor, kPool: Tensor, vPool: Tensor, batch: AttentionBatch<Tensor>, out: Tensor,
                   heads: Int, kvHeads: Int, headDim: Int, slidingWindow: Int?) throws
    /// The product that opens a sub-block, with its RMSNorm: out = rmsNorm(x; norm, eps) · Wᵀ
    /// (rmsNorm(x)[t] = x[t] / sqrt(mean(x[t]²) + eps) · norm, in f32; W (outDim, inDim) as stored
    /// by PyTorch's nn.Linear), or with `gated` (weight = [W₁; W₃] joined by rows, (2·outDim,
    /// inDim)) out = silu(rmsNorm(x)·W₁ᵀ) * (rmsNorm(x)·W₃ᵀ). Why one op: at decode sizes a GPU computes the norm
    /// inside the product (the split warps of a row see all of x between them), saving a launch
    /// and the normed activation's round trip. x (T, inDim), norm (inDim), out (T, outDim).
    func normedMatmul(_ x: Tensor, norm: Tensor, eps: Float, weight: Tensor, out: Tensor,
                      rows: Int, inDim: Int, outDim: Int, gated: Bool) throws
    /// out += x · Wᵀ: a product added into the residual stream in place (no separate add).
    /// x (T, inDim), weight (outDim, inDim), out (T, outDim).
    func matmulAdd(_ x: Tensor, weight: Tensor, into out: Tensor, rows: Int, inDim: Int, outDim: Int) throws
    /// From the joined projection qkv (T, H + 2G, Dh) (q heads, then k heads, then v heads):
    /// q (T, H, Dh) = rope(q part); the pools get rope(k part) and the v part at flat slot
    /// `slots[t]` (= block · B + offset). rope is the interleaved (complex-pair) rotary embedding
    /// of mistral-inference: pairs (x[2i], x[2i+1]) rotate by positions[t] · theta^(−2i/Dh).
    /// qkv is left as it was.
    func ropeAppendKV(qkv: Tensor, q: Tensor, kPool: Tensor, vPool: Tensor, positions: Tensor, slots: Tensor,
                      rows: Int, heads: Int, kvHeads: Int, headDim: Int, theta: Float) throws
    /// The whole mixture-of-experts feed-forward of a layer, added into the residual:
    /// out[t] += Σ_k weights[t,k] · w2[e] · (silu(w1[e]·x̂[t]) * (w3[e]·x̂[t])), e = ids[t,k], where
    /// x̂ = rmsNorm(x; norm, eps), logits = x̂ · routerᵀ (T, E), and ids, weights the Mixtral
    /// routing of the logits: top-k over the logits, *then* softmax over the k chosen (not
    /// softmax-then-top-k); ties pick the lower expert index (as torch.topk on CPU).
    /// Why one op: the router, the routing and the residual add belong to the block, and a GPU
    /// can then merge launches at decode sizes (the router GEMV also writes x̂; routing and the
    /// grouping sort are one launch; the combine adds into the residual) with the norm, logits,
    /// ids and weights kept in its own scratch. x may be `out` (the forward pass passes the
    /// residual stream as both). x, out (T, D); norm (D); router (E, D); w1, w3 (E, F, D);
    /// w2 (E, D, F), stacked uploads.
    func normedMoE(_ x: Tensor, norm: Tensor, eps: Float, router: Tensor, w1: Tensor, w2: Tensor, w3: Tensor,
                   into out: Tensor, rows: Int, dim: Int, hidden: Int, experts: Int, topK: Int) throws
    /// out[s] = x[rows[s]] for s < count. x (T, D), rows (S) i32, out (S, D).
    func gatherRows(_ x: Tensor, rows: Tensor, out: Tensor, count: Int, dim: Int) throws
    /// Picks one token per row of logits, so that only ids (and requested log-probabilities)
    /// leave the device. logits (R, V); parameters (R, `SamplingColumn.count`) f32, see
    /// `SamplingColumn`; penaltyOffsets (R+1) i32 and penalties (P, 2) i32: row r's
    /// penalised tokens are pairs (token, times it occurs in the output so far) at
    /// penaltyOffsets[r]..<penaltyOffsets[r+1], one pair per distinct token of prompt + output;
    /// out (R, 2 + 2·N) f32 with N = max(logprobs, 0): [token, logprob, N top ids, N top logprobs].
    ///
    /// Per row, in this order (vLLM's): the raw logits z are checked (a NaN, or no finite
    /// maximum, gives token −1); penalties make w from z (repetition p: w = w > 0 ? w/p : w·p;
    /// then w −= count·frequency + (count > 0 ? presence : 0)); temperature 0 takes argmax w
    /// (ties → lowest id); otherwise s = w / T and the candidates are the tokens with
    /// softmax(s) ≥ minP · its maximum, cut to the top-k by (s desc, id asc), cut by top-p to the
    /// shortest prefix of that order whose renormalised mass reaches p. The token is then the
    /// first candidate, walking candidates by ascending id, at which the cumulative mass exceeds
    /// u · (their total mass), u the row's uniform draw. logprob = z[token] − logsumexp(z) (the
    /// model's raw distribution, as OpenAI reports it) and the top ids are the N largest z
    /// (ties → lowest id); with logprobs < 0 no log-probabilities are computed (out (R, 2),
    /// logprob 0).
    func sample(logits: Tensor, parameters: Tensor, penaltyOffsets: Tensor, penalties: Tensor, out: Tensor,
                rows: Int, vocabularySize: Int, logprobs: Int) throws

    // MARK: tensor parallelism
    // A model split over N ranks (one backend each) calls these in the same order on every rank;
    // a model on one rank never calls them. See `TensorShard` for the split.

    /// Sets the first `count` elements of an activation to 0.
    func zero(_ tensor: Tensor, count: Int) throws
    /// receive[i] = Σ over the group's ranks of their send[i] for i < count, on every rank, summed
    /// in rank order (so every rank holds the same bits). f32 activations; send may be receive.
    func allReduceSum(_ send: Tensor, into receive: Tensor, count: Int) throws
    /// Every rank's shard (rows, columns) side by side, on every rank: full (rows, N·columns) with
    /// rank r's shard in columns r·columns..<(r+1)·columns (e.g. logits split by vocabulary).
    func allGatherColumns(_ shard: Tensor, into full: Tensor, rows: Int, columns: Int) throws
}

/// The ops that read a weight matrix, as `ComputeBackend.supports` asks about them: the dtype is
/// that of the op's matrix (the embedding table, the product's weight, the expert stacks). Norm
/// vectors and the MoE router stay bf16/f16/f32 in every scheme (an FP8 model quantizes only the
/// projections and experts), so they are not asked about.
public enum WeightOp: String, CaseIterable, Sendable {
    case embed, normedMatmul, matmulAdd, normedMoE
}

extension ComputeBackend {
    /// Throws `BackendError.unsupported` naming the op, the dtype, the weight and the backend
    /// when `supports(op, weights: dtype)` is false.
    public func requireSupport(_ op: WeightOp, weights dtype: DType, for what: @autoclosure () -> String) throws {
        guard supports(op, weights: dtype) else {
            throw BackendError.unsupported("\(dtype.rawValue) weights for \(op.rawValue) (\(what())) on \(name)")
        }
    }
}

/// The columns of the `sample` op's per-row parameters, (R, `count`) f32.
public enum SamplingColumn: Int, CaseIterable, Sendable {
    case temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty
    /// The row's random draw in [0, 1).
    case uniform
    public static let count = allCases.count
}

/// What fixes the launches of one forward step: its packed token count, sequence count and
/// number of rows that produce logits. The key of `ComputeBackend.replayable`.
public struct StepShape: Hashable, Sendable {
    public var tokens: Int
    public var sequences: Int
    public var logitRows: Int
    /// The `sample` op's `logprobs` (nil when the step returns logits instead of sampling).
    public var sampledLogprobs: Int?

    public init(tokens: Int, sequences: Int, logitRows: Int, sampledLogprobs: Int? = nil) {
        self.tokens = tokens
        self.sequences = sequences
        self.logitRows = logitRows
        self.sampledLogprobs = sampledLogprobs
    }
}

/// Index tensors describing one packed batch for attention, uploaded once per engine step.
///
/// Worked example: three sequences with 5, 7 and 2 new tokens this step, whose caches already
/// hold 0, 3 and 10 tokens, with B = 4 tokens per block:
/// ```
/// queryStart  = [0, 5, 12, 14]                 // (S+1) token offsets into the packed batch
/// positions   = [0 1 2 3 4 | 3 4 5 6 7 8 9 | 10 11]   // (T) absolute position of each token
/// contextLens = [5, 10, 12]                    // (S) cached tokens after this step's append
/// blockTables = [[7, 2, -, -], [0, 5, 9, -], [3, 4, 8, -]]  // (S, maxBlocks), - = unused
/// ```
/// Token j of sequence s lives at pool slot `blockTables[s][j / B] * B + j % B`. A query at
/// position p attends to keys j with max(0, p − W + 1) ≤ j ≤ p, where W is the sliding window
/// (a position sees W keys including itself) or unbounded.
public struct AttentionBatch<Tensor>: @unchecked Sendable {
    // @unchecked: a plain bundle of device handles owned by the model's step buffers.
    public var sequences: Int
    public var tokens: Int
    public var blockSize: Int
    public var maxBlocksPerSequence: Int
    public var queryStart: Tensor      // (S+1) i32
    public var positions: Tensor       // (T) i32
    public var contextLens: Tensor     // (S) i32
    public var blockTables: Tensor     // (S, maxBlocksPerSequence) i32
    /// Host copies of the small index arrays, for backends that plan work on the host
    /// (CPU threading, GPU split-KV decisions). Same contents as the device tensors.
    public var hostQueryStart: [Int32]
    public var hostContextLens: [Int32]
    public var hostPositions: [Int32]
    public var hostBlockTables: [Int32]

    public init(sequences: Int, tokens: Int, blockSize: Int, maxBlocksPerSequence: Int,
                queryStart: Tensor, positions: Tensor, contextLens: Tensor, blockTables: Tensor,
                hostQueryStart: [Int32], hostContextLens: [Int32], hostPositions: [Int32], hostBlockTables: [Int32]) {
        self.sequences = sequences
        self.tokens = tokens
        self.blockSize = blockSize
        self.maxBlocksPerSequence = maxBlocksPerSequence
        self.queryStart = queryStart
        self.positions = positions
        self.contextLens = contextLens
        self.blockTables = blockTables
        self.hostQueryStart = hostQueryStart
        self.hostContextLens = hostContextLens
        self.hostPositions = hostPositions
        self.hostBlockTables = hostBlockTables
    }
}

/// Errors any backend can raise; backend-specific failures carry their own detail.
public enum BackendError: Error, CustomStringConvertible, Equatable {
    case outOfMemory(requestedBytes: Int, detail: String)
    case unsupported(String)
    case shapeMismatch(String)
    case device(String)

    public var description: String {
        switch self {
        case .outOfMemory(let bytes, let detail): return "out of device memory allocating \(bytes) bytes: \(detail)"
        case .unsupported(let what): return "unsupported: \(what)"
        case .shapeMismatch(let what): return "shape mismatch: \(what)"
        case .device(let what): return "device error: \(what)"
        }
    }
}

/// The ranks of a tensor-parallel group, as the model that drives them sees it: when one rank's
/// step fails, `abort` makes the others' collectives throw instead of waiting forever, and
/// `reset` readies the group for the next step once every rank has returned.
public protocol CollectiveGroup: AnyObject, Sendable {
    var size: Int { get }
    func abort(_ reason: String)
    func reset()
}
