import ArgumentParser
import Checkpoints
import Generation
import Runtime

/// Where the model comes from and how it runs. Shared by chat, generate, worker and bench.
struct ModelOptions: ParsableArguments {
    @Option(name: [.customLong("ckpt-dir"), .customLong("ckpt_dir")],
            help: "Checkpoint folder (params.json + consolidated.safetensors|.00.pth + tokenizer.model, or a Hugging Face folder). Default: the demo model.")
    var ckptDir: String?

    @Option(name: [.customLong("tokenizer-path"), .customLong("tokenizer_path")],
            help: "Tokenizer file, if not next to the weights.")
    var tokenizerPath: String?

    @Option(name: [.customLong("max-seq-len"), .customLong("max_seq_len")], help: "Longest prompt + answer, in tokens.")
    var maxSeqLen: Int = 4096

    @Option(name: [.customLong("max-batch-size"), .customLong("max_batch_size")],
            help: "Most sequences decoded together (default 8; the worker's default is 1, as the seed's).")
    var maxBatchSizeOption: Int?

    @Option(name: [.customLong("max-batch-tokens"), .customLong("max_batch_tokens")],
            help: "Most tokens in one forward step: prompts longer than this are prefilled in chunks of this size.")
    var maxBatchTokens: Int = 2048

    @Option(name: [.customLong("gpu-id"), .customLong("gpu_id")], help: "GPU index (same as --device cuda:N).")
    var gpuID: Int?

    /// The batch size in force: the flag, or 8.
    var maxBatchSize: Int {
        get { maxBatchSizeOption ?? 8 }
        set { maxBatchSizeOption = newValue }
    }

    /// --device, with --gpu-id folded in.
    var deviceName: String? {
        if let gpuID, device == nil || device == "cuda" { return "cuda:\(gpuID)" }
        return device
    }

    @Option(name: .customLong("device"), help: "cpu, cuda or cuda:N (default: cuda when a GPU is present, else cpu).")
    var device: String?

    @Option(name: [.customLong("gpu-memory-fraction")], help: "Share of free GPU memory to use for weights and KV cache.")
    var gpuMemoryFraction: Double = 0.9

    @Option(name: .customLong("threads"), help: "CPU threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("quantize"),
            help: "Quantize weights while loading: fp8 (e4m3, one scale per output row; embeddings, output and MoE router stay as stored).")
    var quantize: WeightQuantization?

    @Option(name: [.customLong("lora"), .customLong("lora_path")],
            help: "LoRA adapter (lora.safetensors from mistral-finetune), merged into the weights at load.")
    var lora: String?

    @Option(name: [.customLong("lora-scale")], help: "With --lora: W' = W + scale·(B·A) (mistral-inference's 2.0).")
    var loraScale: Float = 2.0

    @Option(name: [.customLong("tensor-parallel"), .customLong("tp")],
            help: "Split the model over N ranks by tensor parallelism (on the CPU: N groups of threads).")
    var tensorParallel: Int = 1

    @Option(name: .customLong("gpus"), parsing: .next, help: "With CUDA: the GPUs to split the model over, e.g. 0,1 (default: --tensor-parallel GPUs from --device's). One GPU here runs through NCCL.",
            transform: { list in
                try list.split(separator: ",").map {
                    guard let n = Int(String($0).filter { !$0.isWhitespace }), n >= 0 else { throw ValidationError("--gpus takes GPU ordinals like 0,1, got '\(list)'") }
                    return n
                }
            })
    var gpus: [Int]?

    @Flag(name: .customLong("no-prefix-caching"),
          help: "Compute every prompt in full instead of reusing the KV cache of earlier prompts' common prefixes.")
    var noPrefixCaching = false

    @Option(name: .customLong("kv-cache-tokens"),
            help: "Size the KV pool for this many tokens (default: what --gpu-memory-fraction allows on a GPU, at most 4 GiB on the CPU; sequences take blocks as they grow and are preempted when it runs out).")
    var kvCacheTokens: Int?

    /// What `ModelRuntime.load` takes.
    var runtime: RuntimeOptions {
        var options = RuntimeOptions(checkpointDirectory: ckptDir, tokenizerPath: tokenizerPath, maxSequenceLength: maxSeqLen,
                                     maxBatchSize: maxBatchSize, maxBatchTokens: maxBatchTokens, device: deviceName,
                                     gpuMemoryFraction: gpuMemoryFraction, threads: threads, quantization: quantize,
                                     loraPath: lora, loraScale: loraScale, prefixCaching: !noPrefixCaching)
        options.tensorParallel = tensorParallel
        options.gpus = gpus
        options.kvCacheTokens = kvCacheTokens
        return options
    }
}

extension WeightQuantization: ExpressibleByArgument {}

/// How tokens are picked. Shared by chat and generate.
struct SamplingOptions: ParsableArguments {
    @Option(help: "0 = greedy.") var temperature: Float = 0.7
    @Option(name: [.customLong("top-p"), .customLong("top_p")]) var topP: Float = 0.9
    @Option(name: [.customLong("top-k"), .customLong("top_k")], help: "0 disables.") var topK: Int = 40
    @Option(name: [.customLong("repetition-penalty")]) var repetitionPenalty: Float = 1.0
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than min-p × the most likely one; 0 disables.") var minP: Float = 0
    @Option(name: .customLong("presence-penalty"), help: "OpenAI's presence penalty on generated tokens (−2…2).") var presencePenalty: Float = 0
    @Option(name: .customLong("frequency-penalty"), help: "OpenAI's frequency penalty on generated tokens (−2…2).") var frequencyPenalty: Float = 0
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past the end-of-sequence token (until --max-tokens).") var ignoreEOS = false
    @Option(help: "Random seed; the same seed gives the same output.") var seed: UInt64?
    @Option(name: [.customLong("max-tokens"), .customLong("max_gen_tokens")], help: "Most tokens to generate.") var maxTokens: Int = 512
    @Option(name: .customLong("stop"), help: "Stop before this string (repeatable).") var stop: [String] = []

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repetitionPenalty,
                           presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty,
                           seed: seed, maxTokens: maxTokens, stop: stop, ignoreEOS: ignoreEOS)
    }
}
