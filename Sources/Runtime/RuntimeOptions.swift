import Checkpoints

/// Where a model comes from and how it runs: what every front-end (chat, generate, worker, serve,
/// bench) passes to `ModelRuntime.load`. The CLI fills it from its flags.
public struct RuntimeOptions: Sendable, Equatable {
    /// Checkpoint folder; nil loads the demo model.
    public var checkpointDirectory: String?
    /// Tokenizer file, if not next to the weights.
    public var tokenizerPath: String?
    /// Longest prompt + answer, in tokens.
    public var maxSequenceLength: Int
    /// Most sequences decoded together.
    public var maxBatchSize: Int
    /// Most tokens in one forward step (longer prompts are prefilled in chunks).
    public var maxBatchTokens: Int
    /// "cpu", "cuda", "cuda:N"; nil picks the first GPU when one is present, else the CPU.
    public var device: String?
    /// Share of free GPU memory to use for weights and KV cache.
    public var gpuMemoryFraction: Double
    /// CPU threads (nil: all cores).
    public var threads: Int?
    /// Most requests waiting for admission; a submit past it fails with `GenerationError.queueFull`
    /// (nil: unbounded). For servers: the worker takes only as many jobs as it has slots.
    public var maxQueued: Int?
    /// Quantize the weights while they load (nil: keep the stored dtype).
    public var quantization: WeightQuantization?
    /// A LoRA adapter (`lora.safetensors` from mistral-finetune) merged into the weights at load,
    /// before any quantization.
    public var loraPath: String?
    /// The adapter's scale: W' = W + loraScale·(B·A) (mistral-inference's default is 2.0).
    public var loraScale: Float
    /// Reuse the KV of earlier requests' common prompt prefixes (on by default).
    public var prefixCaching: Bool
    /// Tokens the KV pool holds, all sequences together (nil: room for `maxBatchSize` sequences
    /// of `maxSequenceLength`, capped by the device's memory). Fixes the KV memory, e.g. to
    /// compare scheduling policies.
    public var kvCacheTokens: Int? = nil
    /// Ranks the model is split over by tensor parallelism (`TensorShard`): GPUs on CUDA, thread
    /// groups on the CPU (which share `threads`).
    public var tensorParallel: Int = 1
    /// The GPUs of a tensor-parallel model (nil: `tensorParallel` GPUs from the `device`'s ordinal).
    public var gpus: [Int]? = nil

    public init(checkpointDirectory: String? = nil, tokenizerPath: String? = nil, maxSequenceLength: Int = 4096,
                maxBatchSize: Int = 8, maxBatchTokens: Int = 2048, device: String? = nil,
                gpuMemoryFraction: Double = 0.9, threads: Int? = nil, maxQueued: Int? = nil,
                quantization: WeightQuantization? = nil, loraPath: String? = nil, loraScale: Float = 2.0, prefixCaching: Bool = true) {
        self.checkpointDirectory = checkpointDirectory
        self.tokenizerPath = tokenizerPath
        self.maxSequenceLength = maxSequenceLength
        self.maxBatchSize = maxBatchSize
        self.maxBatchTokens = maxBatchTokens
        self.device = device
        self.gpuMemoryFraction = gpuMemoryFraction
        self.threads = threads
        self.maxQueued = maxQueued
        self.quantization = quantization
        self.loraPath = loraPath
        self.loraScale = loraScale
        self.prefixCaching = prefixCaching
    }
}
