import ArgumentParser
import Checkpoints
import DemoEvaluation
import Foundation
import Runtime
import Tokenizers

/// `mixtral-chat compare-quantization`: the model with `--quantize fp8` against its stored
/// weights on the held-out prompts — mean KL of next-token distributions, top-1 agreement and
/// greedy agreement over `--tokens` tokens (`QuantizationComparison`).
struct CompareQuantization: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare-quantization",
        abstract: "Mean KL divergence and greedy agreement of the fp8-quantized model against the stored weights, on held-out prompts.")

    @OptionGroup var model: ModelOptions
    @Option(help: "Held-out JSONL (default: eval/heldout.jsonl in the model folder).") var heldout: String?
    @Option(help: "Greedy tokens per prompt.") var tokens: Int = 256
    @Option(help: "Use only the first N prompts.") var limit: Int?
    @Option(help: "Instead of a checkpoint: seeded random weights of a bench preset's real shapes (mistral-7b, mixtral-8x7b, …), on random prompts.")
    var preset: String?
    @Option(help: "--preset: use only the first N layers.") var layers: Int?
    @Option(name: .customLong("prompts"), help: "--preset: number of random prompts.") var promptCount: Int = 8
    @Option(name: .customLong("prompt-len"), help: "--preset: tokens per random prompt.") var promptLength: Int = 64

    func run() throws {
        do {
            if let preset {
                try runRandom(preset)
                return
            }
            var options = model.runtime
            options.maxBatchSize = 1
            options.maxSequenceLength = max(options.maxSequenceLength, 1024)
            let dir = options.checkpointDirectory.map { URL(fileURLWithPath: $0) } ?? DemoModel.locate()
            guard let dir else { throw ModelRuntime.LoadError.noModel }
            let checkpoint = try MistralCheckpoint.load(directory: dir)
            var reference = options, test = options
            reference.quantization = nil
            test.quantization = .fp8
            let a = try ModelRuntime.makeModel(checkpoint, options: reference, quiet: false)
            let b = try ModelRuntime.makeModel(checkpoint, options: test, quiet: false)
            let file = heldout.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("eval/heldout.jsonl")
            var prompts = try HeldOutItem.load(file).map(\.promptTokens)
            if let limit { prompts = Array(prompts.prefix(limit)) }
            let eos = try checkpoint.tokenizerURL.map { try SentencePieceTokenizer(contentsOf: $0).eosID }
            let start = Date()
            let result = try QuantizationComparison.run(reference: a, test: b, prompts: prompts, tokens: tokens, stopToken: eos)
            report(result, seconds: Date().timeIntervalSince(start), device: a.deviceName)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }

    func report(_ result: QuantizationComparison.Result, seconds: Double, device: String) {
        printJSONLine(result)
        print(String(format: "%d prompts, %d positions: mean KL %.3g nats (max %.3g), top-1 agreement %.2f%%, "
                     + "identical greedy prefix %.1f of ≤ %d tokens, %.1f%% of continuations identical (%.0f s)",
                     result.prompts, result.positions, result.meanKL, result.maxKL, 100 * result.top1Agreement,
                     result.meanIdenticalPrefix, tokens, 100 * result.identicalContinuations, seconds) + " on \(device)")
    }

    /// The same comparison on seeded random weights of a preset's shapes (both models on one
    /// device, each with a KV pool for one prompt and its continuation): what FP8 does to real-size
    /// products, the activation rounding of the tensor-core prefill included, without a download.
    func runRandom(_ preset: String) throws {
        guard var config = BenchPresets.config(preset) else {
            throw ValidationError("unknown preset '\(preset)'; use \(BenchPresets.names.joined(separator: ", "))")
        }
        if let layers { config.nLayers = max(1, min(layers, config.nLayers)) }
        guard promptCount > 0, promptLength > 0 else { throw ValidationError("--prompts and --prompt-len must be positive") }
        var options = model.runtime
        options.maxBatchSize = 1
        options.maxSequenceLength = max(options.maxSequenceLength, promptLength + tokens + 1)
        options.kvCacheTokens = promptLength + tokens + 64
        let source = try RandomWeights(config: config, seed: 13)
        let device = try RuntimeDevice.make(options, quiet: false)
        var reference = options, test = options
        reference.quantization = nil
        test.quantization = .fp8
        let a = try device.build(source, reference)
        let b = try device.build(source, test)
        var state: UInt64 = 29   // a seeded LCG: the same prompts every run
        let prompts = (0..<promptCount).map { _ in (0..<promptLength).map { _ -> Int in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return 3 + Int((state >> 33) % UInt64(config.vocabSize - 3))
        } }
        let start = Date()
        let result = try QuantizationComparison.run(reference: a, test: b, prompts: prompts, tokens: tokens, stopToken: nil)
        print("preset \(preset), \(config.nLayers) layers, random weights (seed 13), \(promptCount) random prompts of \(promptLength) tokens")
        report(result, seconds: Date().timeIntervalSince(start), device: a.deviceName)
    }
}
