import CPUBackend
import CUDABackend
import Chat
import Checkpoints
import Foundation
import Generation
import Model
import Tensors
import Tokenizers

/// Everything a front-end needs to talk to one model: weights on a backend, the tokenizer, the
/// instruct encoder and the continuous-batching engine. The only place a backend is chosen.
public struct ModelRuntime: Sendable {
    public let label: String
    public let directory: URL
    /// The weights' dtype on the device ("bf16", "fp8", …), reported to the AIME server as the quantisation.
    public let weightDType: String
    public let config: ModelConfig
    public let tokenizer: SentencePieceTokenizer
    public let encoder: InstructEncoder
    public let model: any LanguageModel
    public let engine: Engine

    public enum LoadError: Error, CustomStringConvertible {
        case noModel
        case noTokenizer(URL)
        case badDevice(String)
        case badLoRAScale(Float)
        public var description: String {
            switch self {
            case .noModel:
                return "no --ckpt-dir given and the demo model was not found (looked in: \(DemoModel.candidates.map(\.path).joined(separator: ", ")))"
            case .noTokenizer(let dir): return "no tokenizer.model[.v1|.v3] in \(dir.path); pass --tokenizer-path"
            case .badDevice(let d): return "unknown device '\(d)': use cpu, cuda or cuda:N"
            case .badLoRAScale(let s): return "--lora-scale must be a finite number, got \(s)"
            }
        }
    }

    /// Loads the checkpoint named by `options` (or the demo model) onto the chosen device.
    public static func load(_ options: RuntimeOptions, quiet: Bool = false) throws -> ModelRuntime {
        let dir: URL
        if let path = options.checkpointDirectory { dir = URL(fileURLWithPath: path) } else {
            guard let demo = DemoModel.locate() else { throw LoadError.noModel }
            dir = demo
        }
        let checkpoint = try MistralCheckpoint.load(directory: dir)
        let tokURL = options.tokenizerPath.map { URL(fileURLWithPath: $0) } ?? checkpoint.tokenizerURL
        guard let tokURL else { throw LoadError.noTokenizer(dir) }
        let tokenizer = try SentencePieceTokenizer(contentsOf: tokURL)
        let encoder = try InstructEncoder(tokenizer: tokenizer, version: InstructVersion.declared(byFile: tokURL))
        let model = try makeModel(try weights(checkpoint, options), options: options, quiet: quiet)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID], prefillChunk: 256, maxQueued: options.maxQueued,
                            prefixCaching: options.prefixCaching,
                            makeDecoder: { StreamingDetokenizer(tokenizer: tokenizer) })
        return ModelRuntime(label: dir.standardizedFileURL.lastPathComponent, directory: dir, weightDType: (options.quantization ?? checkpoint.quantization)?.rawValue ?? checkpoint.dtype.rawValue, config: checkpoint.config,
                            tokenizer: tokenizer, encoder: encoder, model: model, engine: engine)
    }

    /// The checkpoint's weights, with the `--lora` adapter merged in when `options` names one
    /// (checked against the model before anything is uploaded).
    public static func weights(_ checkpoint: MistralCheckpoint, _ options: RuntimeOptions) throws -> any WeightSource {
        guard let path = options.loraPath else { return checkpoint }
        guard options.loraScale.isFinite else { throw LoadError.badLoRAScale(options.loraScale) }
        let adapter = try LoRAAdapter.load(URL(fileURLWithPath: path), config: checkpoint.config, baseDType: checkpoint.dtype)
        return LoRAMergedWeights(base: checkpoint, adapter: adapter, scale: options.loraScale)
    }

    /// Builds the model of `source` on the device `options` names.
    public static func makeModel(_ source: any WeightSource, options: RuntimeOptions, quiet: Bool) throws -> any LanguageModel {
        try RuntimeDevice.make(options, quiet: quiet).build(source, options)
    }

    /// Uploads weights (quantized tensor by tensor as they go up when `options.quantization`
    /// says so) and sizes the KV pool: enough blocks for `maxBatchSize` sequences of
    /// `maxSequenceLength` tokens, capped by what the device can hold (`affordableBlocks`, asked
    /// after the weights are in place so it sees the memory that is really left). The element
    /// size of a cached K or V value is the backend's (`kvElementBytes`).
    public static func build<B: ComputeBackend>(_ source: any WeightSource, backend: B, options: RuntimeOptions, quiet: Bool,
                                                affordableBlocks: (_ bytesPerBlock: Int) throws -> Int) throws -> Transformer<B> {
        try buildRanks(source, backends: [backend], options: options, quiet: quiet) { _, bytes in try affordableBlocks(bytes) }[0]
    }

    /// The model split over `backends.count` ranks (`TensorShard`), one backend per rank, in
    /// `group`; on one backend, the plain model.
    public static func build<B: ComputeBackend>(_ source: any WeightSource, backends: [B], group: (any CollectiveGroup)?,
                                                options: RuntimeOptions, quiet: Bool,
                                                affordableBlocks: (_ rank: Int, _ bytesPerBlock: Int) throws -> Int) throws -> any LanguageModel {
        // A group of one (NCCL on one GPU, `--gpus 0`) still goes through its collectives.
        let ranks = try buildRanks(source, backends: backends, collectiveWhenAlone: group != nil, options: options, quiet: quiet,
                                   affordableBlocks: affordableBlocks)
        guard ranks.count > 1 else { return ranks[0] }
        guard let group else { throw BackendError.unsupported("\(ranks.count) ranks without a collective group") }
        return try TensorParallelModel(ranks: ranks, group: group)
    }

    /// Each rank's weights (its shard of every tensor, sliced after any quantization so that the
    /// row scales are the whole tensor's) and KV pools, one rank after the other. Every rank gets
    /// the same number of KV blocks: the fewest any rank can afford.
    private static func buildRanks<B: ComputeBackend>(_ source: any WeightSource, backends: [B], collectiveWhenAlone: Bool = false,
                                                      options: RuntimeOptions, quiet: Bool,
                                                      affordableBlocks: (_ rank: Int, _ bytesPerBlock: Int) throws -> Int) throws -> [Transformer<B>] {
        let c = source.config
        let shards = try TensorShard.plan(c, ranks: backends.count, collectiveWhenAlone: collectiveWhenAlone)
        let stored: any WeightSource
        let label: String
        switch options.quantization {
        case nil: (stored, label) = (source, "loading weights")
        case .fp8: (stored, label) = (FP8QuantizingSource(source), "loading weights (quantizing to fp8 e4m3)")
        }
        let progress = quiet ? nil : ProgressLine(label: backends.count > 1 ? "\(label) onto \(backends.count) ranks" : label)
        var weights: [TransformerWeights<B>] = []
        for (backend, shard) in zip(backends, shards) {
            let rankSource: any WeightSource = shard.ranks > 1 ? ShardedWeights(base: stored, shard: shard) : stored
            weights.append(try TransformerWeights(source: rankSource, backend: backend) { done, total in
                progress?.update(done: shard.rank * total + done, total: shard.ranks * total)
            })
        }
        progress?.finish()
        let blockSize = 16
        // Each sequence holds whole blocks: room for every sequence at the full length.
        let wanted = max(1, options.maxBatchSize) * ((options.maxSequenceLength + blockSize - 1) / blockSize)
        let cap = options.kvCacheTokens.map { max(1, ($0 + blockSize - 1) / blockSize) } ?? wanted
        var blocks = options.kvCacheTokens == nil ? wanted : cap
        for (backend, shard) in zip(backends, shards) {
            let bytesPerBlock = 2 * c.nLayers * shard.kvHeads * c.headDim * backend.kvElementBytes * blockSize
            blocks = min(blocks, try affordableBlocks(shard.rank, bytesPerBlock))
        }
        return try zip(backends, zip(shards, weights)).map { backend, sw in
            try Transformer(backend: backend, weights: sw.1, config: c,
                            maxBatchTokens: max(options.maxBatchTokens, options.maxBatchSize, 1), maxBatchSequences: max(1, options.maxBatchSize),
                            maxSequenceLength: options.maxSequenceLength, kvBlockCount: blocks, kvBlockSize: blockSize, shard: sw.0)
        }
    }
}
