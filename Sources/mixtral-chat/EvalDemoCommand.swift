import ArgumentParser
import DemoEvaluation
import Foundation
import Runtime

struct EvalDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-demo",
        abstract: "Score the demo model on its held-out set at temperature 0, per skill.")

    @OptionGroup var model: ModelOptions
    @Option(help: "Held-out JSONL (default: eval/heldout.jsonl in the model folder).") var heldout: String?
    @Flag(help: "Print one JSON object per item, then the scores.") var json = false

    struct Score: Encodable { var skill: String; var correct: Int; var total: Int; var accuracy: Double; var target: Double? }

    func run() async throws {
        var options = model
        if options.maxBatchSize < 16 { options.maxBatchSize = 16 }
        options.maxSeqLen = min(options.maxSeqLen, 1024)
        let runtime: ModelRuntime
        do { runtime = try ModelRuntime.load(options.runtime, quiet: json) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let file = heldout.map { URL(fileURLWithPath: $0) } ?? runtime.directory.appendingPathComponent("eval/heldout.jsonl")
        let items = try HeldOutItem.load(file)
        let evaluator = DemoEvaluator(engine: runtime.engine, encoder: runtime.encoder, tokenizer: runtime.tokenizer)
        let start = Date()
        let results = try await evaluator.run(items)
        let seconds = Date().timeIntervalSince(start)
        let scores = DemoEvaluator.scores(results)
        if json {
            for s in scores {
                printJSONLine(Score(skill: s.skill, correct: s.correct, total: s.total, accuracy: s.accuracy, target: DemoEvaluator.targets[s.skill]))
            }
        } else {
            print("skill         correct  accuracy  target")
            for s in scores {
                let target = DemoEvaluator.targets[s.skill].map { String(format: "≥ %.0f%%", 100 * $0) } ?? ""
                print(s.skill.padding(toLength: 13, withPad: " ", startingAt: 0)
                      + String(format: "%4d/%-4d  %6.1f%%  ", s.correct, s.total, 100 * s.accuracy) + target)
            }
            let matches = results.filter(\.promptMatches).count
            print("prompts encoded identically to mistral-common: \(matches)/\(results.count)")
            print("\(results.count) prompts in \(String(format: "%.1f", seconds)) s on \(runtime.model.deviceName)")
        }
        let missed = scores.filter { s in DemoEvaluator.targets[s.skill].map { s.accuracy < $0 } ?? false }
        if !missed.isEmpty { throw ExitCode(1) }
    }
}
