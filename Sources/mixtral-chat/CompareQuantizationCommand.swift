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

    func run() throws {
        do {
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
            printJSONLine(result)
            print(String(format: "%d prompts, %d positions: mean KL %.3g nats (max %.3g), top-1 agreement %.2f%%, "
                         + "identical greedy prefix %.1f of ≤ %d tokens, %.1f%% of continuations identical (%.0f s)",
                         result.prompts, result.positions, result.meanKL, result.maxKL, 100 * result.top1Agreement,
                         result.meanIdenticalPrefix, tokens, 100 * result.identicalContinuations,
                         Date().timeIntervalSince(start)) + " on \(a.deviceName)")
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
