import CPUBackend
import CUDABackend
import CUDADriver
import Chat
import Checkpoints
import Foundation
import Generation
import Model
import Tensors
import Tokenizers

/// Everything a front-end needs to talk to one model: weights on a backend, the tokenizer, the
/// instruct encoder and the continuous-batching engine. The only place a backend is chosen.
struct ModelRuntime: Sendable {
    let label: String
    let directory: URL
    /// The weights' stored dtype ("bf16", …), reported to the AIME server as the quantisation.
    let weightDType: String
    let config: ModelConfig
    let tokenizer: SentencePieceTokenizer
    let encoder: InstructEncoder
    let model: any LanguageModel
    let engine: Engine

    enum LoadError: Error, CustomStringConvertible {
        case noModel
        case noTokenizer(URL)
        case badDevice(String)
        var description: String {
            switch self {
            case .noModel:
                return "no --ckpt-dir given and the demo model was not found (looked in: \(DemoModel.candidates.map(\.path).joined(separator: ", ")))"
            case .noTokenizer(let dir): return "no tokenizer.model[.v1|.v3] in \(dir.path); pass --tokenizer-path"
            case .badDevice(let d): return "unknown device '\(d)': use cpu, cuda or cuda:N"
            }
        }
    }

    /// Loads the checkpoint named by `options` (or the demo model) onto the chosen device.
    static func load(_ options: ModelOptions, quiet: Bool = false) throws -> ModelRuntime {
        let dir: URL
        if let path = options.ckptDir { dir = URL(fileURLWithPath: path) } else {
            guard let demo = DemoModel.locate() else { throw LoadError.noModel }
            dir = demo
        }
        let checkpoint = try MistralCheckpoint.load(directory: dir)
        let tokURL = options.tokenizerPath.map { URL(fileURLWithPath: $0) } ?? checkpoint.tokenizerURL
        guard let tokURL else { throw LoadError.noTokenizer(dir) }
        let tokenizer = try SentencePieceTokenizer(contentsOf: tokURL)
        let encoder = try InstructEncoder(tokenizer: tokenizer, version: InstructVersion.declared(byFile: tokURL))
        let model = try makeModel(checkpoint, options: options, quiet: quiet)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID], prefillChunk: 256,
                            makeDecoder: { StreamingDetokenizer(tokenizer: tokenizer) })
        return ModelRuntime(label: dir.standardizedFileURL.lastPathComponent, directory: dir, weightDType: checkpoint.dtype.rawValue, config: checkpoint.config,
                            tokenizer: tokenizer, encoder: encoder, model: model, engine: engine)
    }

    static func makeModel(_ source: any WeightSource, options: ModelOptions, quiet: Bool) throws -> any LanguageModel {
        switch try DeviceChoice.parse(options.deviceName) {
        case .cpu:
            let backend = CPUBackend(threads: options.threads)
            return try build(source, backend: backend, options: options, quiet: quiet, kvElementBytes: 4) { bytesPerBlock in
                max(1, (4 << 30) / bytesPerBlock)   // KV pool: at most 4 GiB of host memory
            }
        case .cuda(let ordinal):
            let backend = try CUDABackend(ordinal: ordinal)
            return try build(source, backend: backend, options: options, quiet: quiet, kvElementBytes: 2) { bytesPerBlock in
                try backend.kvPoolBlocks(bytesPerBlock: bytesPerBlock, memoryFraction: options.gpuMemoryFraction)
            }
        }
    }

    /// Uploads weights and sizes the KV pool: enough blocks for `max-batch-size` sequences of
    /// `max-seq-len` tokens, capped by what the device can hold (`affordableBlocks`, asked after
    /// the weights are in place so it sees the memory that is really left).
    static func build<B: ComputeBackend>(_ source: any WeightSource, backend: B, options: ModelOptions, quiet: Bool, kvElementBytes: Int,
                                         affordableBlocks: (_ bytesPerBlock: Int) throws -> Int) throws -> Transformer<B> {
        let c = source.config
        let progress = quiet ? nil : ProgressLine(label: "loading weights")
        let weights = try TransformerWeights(source: source, backend: backend) { done, total in
            progress?.update(done: done, total: total)
        }
        progress?.finish()
        let blockSize = 16
        let bytesPerBlock = 2 * c.nLayers * c.nKVHeads * c.headDim * kvElementBytes * blockSize
        // Each sequence holds whole blocks: room for every sequence at the full length.
        let wanted = max(1, options.maxBatchSize) * ((options.maxSeqLen + blockSize - 1) / blockSize)
        let blocks = min(wanted, try affordableBlocks(bytesPerBlock))
        return try Transformer(backend: backend, weights: weights, config: c,
                               maxBatchTokens: max(options.maxBatchTokens, options.maxBatchSize, 1), maxBatchSequences: max(1, options.maxBatchSize),
                               maxSequenceLength: options.maxSeqLen, kvBlockCount: blocks, kvBlockSize: blockSize)
    }
}

/// `--device`: cpu, cuda or cuda:N; without it, the first GPU when one is present, else the CPU.
enum DeviceChoice: Equatable {
    case cpu
    case cuda(Int)

    static func parse(_ text: String?) throws -> DeviceChoice {
        guard let text else { return CUDAProbe.probe().isAvailable ? .cuda(0) : .cpu }
        if text == "cpu" { return .cpu }
        if text == "cuda" || text == "gpu" { return .cuda(0) }
        if text.hasPrefix("cuda:"), let n = Int(text.dropFirst(5)), n >= 0 { return .cuda(n) }
        throw ModelRuntime.LoadError.badDevice(text)
    }
}

/// A one-line progress display on stderr.
final class ProgressLine: @unchecked Sendable {
    // @unchecked: used from the loading thread only.
    let label: String
    let start = Date()
    var lastPrint = Date.distantPast

    init(label: String) { self.label = label }

    func update(done: Int, total: Int) {
        let now = Date()
        guard now.timeIntervalSince(lastPrint) > 0.1 || done == total else { return }
        lastPrint = now
        let pct = total > 0 ? 100 * done / total : 100
        FileHandle.standardError.write(Data("\r\(label): \(pct)% (\(done)/\(total))".utf8))
    }

    func finish() {
        FileHandle.standardError.write(Data(String(format: "\r\(label): done in %.1f s\n", Date().timeIntervalSince(start)).utf8))
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
}

