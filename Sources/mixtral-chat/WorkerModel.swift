import AIMEWorker
import ArgumentParser
import CPUBackend
import CUDABackend
import CUDADriver
import Chat
import Checkpoints
import Foundation
import Generation
import Logging
import Model
import Tensors
import Tokenizers

/// Loads a checkpoint for `mixtral-chat worker`: weights on the chosen device, a KV pool sized for
/// `maxBatchSize` full-length jobs (CPU) or for the GPU's free memory, the continuous-batching
/// Engine, and the checkpoint's instruct encoder.
enum WorkerModel {
    struct Loaded {
        var runner: EngineJobRunner
        var maxSeqLen: Int
        var description: ModelDescription
        var gpuName: String
        var numGPUs: Int
    }

    /// Context window when `--max-seq-len` is not given (the model's own is far larger for
    /// Mixtral; KV memory grows with it).
    static let defaultContext = 8192
    static let blockSize = 16

    static func load(checkpointDirectory: String, device: String, gpuID: Int?, maxSeqLen: Int?,
                     maxBatchSize: Int, logger: Logger) throws -> Loaded {
        let path = NSString(string: checkpointDirectory).expandingTildeInPath
        let checkpoint = try MistralCheckpoint.load(directory: URL(fileURLWithPath: path))
        guard let tokenizerURL = checkpoint.tokenizerURL else {
            throw ValidationError("no tokenizer.model (or tokenizer.model.v*) in \(path)")
        }
        let tokenizer = try SentencePieceTokenizer(contentsOf: tokenizerURL)
        let encoder = try InstructEncoder(tokenizer: tokenizer)
        let context = maxSeqLen ?? defaultContext
        let description = ModelDescription.fromCheckpoint(directory: path, quantization: checkpoint.dtype.rawValue)
        let blocksPerJob = (context + blockSize - 1) / blockSize
        logger.info("loading \(description.label) (\(checkpoint.dtype.rawValue)) on \(device)")

        var choice = try parseDevice(device, gpuID: gpuID)
        if case .auto = choice {
            if CUDAProbe.probe().isAvailable {
                choice = .cuda(gpuID ?? 0)
            } else {
                logger.notice("no usable GPU found: running on the CPU")
                choice = .cpu
            }
        }
        switch choice {
        case .cpu, .auto:
            let backend = CPUBackend()
            let runner = try makeRunner(backend: backend, checkpoint: checkpoint, tokenizer: tokenizer, encoder: encoder,
                                        context: context, maxBatchSize: maxBatchSize, blocks: blocksPerJob * maxBatchSize)
            return Loaded(runner: runner, maxSeqLen: context, description: description, gpuName: "CPU", numGPUs: 0)
        case .cuda(let ordinal):
            let backend = try CUDABackend(ordinal: ordinal)
            let weights = try TransformerWeights(source: checkpoint, backend: backend)
            let config = checkpoint.config
            let bytes = CUDABackend.kvBytesPerBlock(layers: config.nLayers, blockSize: blockSize,
                                                    kvHeads: config.nKVHeads, headDim: config.headDim)
            let blocks = try backend.kvPoolBlocks(bytesPerBlock: bytes, minimumBlocks: blocksPerJob)
            let runner = try makeRunner(backend: backend, weights: weights, config: config, tokenizer: tokenizer,
                                        encoder: encoder, context: context, maxBatchSize: maxBatchSize,
                                        blocks: min(blocks, blocksPerJob * maxBatchSize))
            return Loaded(runner: runner, maxSeqLen: context, description: description, gpuName: backend.name, numGPUs: 1)
        }
    }

    private enum Device { case auto, cpu, cuda(Int) }

    private static func parseDevice(_ text: String, gpuID: Int?) throws -> Device {
        switch text.lowercased() {
        case "auto": return .auto
        case "cpu": return .cpu
        case "cuda", "gpu": return .cuda(gpuID ?? 0)
        default:
            if text.lowercased().hasPrefix("cuda:"), let ordinal = Int(text.dropFirst(5)), ordinal >= 0 {
                return .cuda(ordinal)
            }
            throw ValidationError("--device must be auto, cpu, cuda or cuda:N, got '\(text)'")
        }
    }

    private static func makeRunner<Backend: ComputeBackend>(
        backend: Backend, checkpoint: MistralCheckpoint, tokenizer: SentencePieceTokenizer, encoder: InstructEncoder,
        context: Int, maxBatchSize: Int, blocks: Int
    ) throws -> EngineJobRunner {
        let weights = try TransformerWeights(source: checkpoint, backend: backend)
        return try makeRunner(backend: backend, weights: weights, config: checkpoint.config, tokenizer: tokenizer,
                              encoder: encoder, context: context, maxBatchSize: maxBatchSize, blocks: blocks)
    }

    private static func makeRunner<Backend: ComputeBackend>(
        backend: Backend, weights: TransformerWeights<Backend>, config: ModelConfig, tokenizer: SentencePieceTokenizer,
        encoder: InstructEncoder, context: Int, maxBatchSize: Int, blocks: Int
    ) throws -> EngineJobRunner {
        let model = try Transformer(backend: backend, weights: weights, config: config,
                                    maxBatchTokens: max(256, maxBatchSize), maxBatchSequences: maxBatchSize,
                                    maxSequenceLength: context, kvBlockCount: blocks, kvBlockSize: blockSize)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID],
                            makeDecoder: { DetokenizingDecoder(StreamingDetokenizer(tokenizer: tokenizer)) })
        return EngineJobRunner(engine: engine, encoder: InstructJobEncoder(encoder))
    }
}

/// The SentencePiece streaming detokenizer as the Engine's decoder.
private struct DetokenizingDecoder: IncrementalDecoder {
    var inner: StreamingDetokenizer
    init(_ inner: StreamingDetokenizer) { self.inner = inner }
    mutating func append(_ id: Int) -> String { inner.append(id) }
    mutating func finish() -> String { inner.finish() }
}
