import ArgumentParser
import Checkpoints
import Foundation
import Runtime

/// `mixtral-chat quantize --ckpt-dir IN --out OUT --to fp8`: writes a native FP8 checkpoint that
/// every model command loads directly (no --quantize needed, no re-quantizing).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint quantized to FP8 (e4m3 + one f32 scale per output row) in Mistral's native layout.")

    @Option(name: [.customLong("ckpt-dir"), .customLong("ckpt_dir")], help: "Checkpoint folder to read (native or Hugging Face).")
    var ckptDir: String

    @Option(help: "Folder to write (params.json, consolidated.safetensors, tokenizer files).")
    var out: String

    @Option(help: "Target format: fp8.")
    var to: WeightQuantization

    func run() throws {
        do {
            let checkpoint = try MistralCheckpoint.load(directory: URL(fileURLWithPath: ckptDir))
            let progress = ProgressLine(label: "quantizing to \(to.rawValue) e4m3")
            try FP8CheckpointWriter.write(checkpoint, to: URL(fileURLWithPath: out)) { done, total in
                progress.update(done: done, total: total)
            }
            progress.finish()
            print("wrote \(out) (params.json marks \"quantization\": \(FP8CheckpointWriter.formatName))")
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
