import CPUBackend
import Chat
import Checkpoints
import Foundation
import Generation
import Model
import Tokenizers

import OpenAIServer
import TestSupport

/// The demo model (models/chloe-tiny, Mistral's v3 instruct format with tool calls) on the CPU,
/// served under the name "chloe-tiny": its answers are known exactly (models/chloe-tiny/README.md),
/// so the routes can be checked with real generations.
enum Chloe {
    static let directory = TestPaths.chloeTiny

    static func served(maxQueued: Int? = nil, maxBatch: Int = 8) throws -> ServedModel {
        let tokenizer = try SentencePieceTokenizer(contentsOf: directory.appendingPathComponent("tokenizer.model.v3"))
        let checkpoint = try MistralCheckpoint.load(directory: directory)
        let model = try cpuTransformer(checkpoint, threads: 2, maxBatchTokens: 256, maxBatchSequences: maxBatch,
                                       maxSequenceLength: 256, kvBlockCount: 16 * maxBatch, kvBlockSize: 16)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID], maxQueued: maxQueued,
                            makeDecoder: { StreamingDetokenizer(tokenizer: tokenizer) })
        return ServedModel(engine: engine, encoder: try InstructEncoder(tokenizer: tokenizer), tokenizer: tokenizer, name: "chloe-tiny")
    }
}

