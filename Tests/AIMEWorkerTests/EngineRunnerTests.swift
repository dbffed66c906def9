import AIMEWorker
import CPUBackend
import Foundation
import Checkpoints
import Generation
import Model
import NIOConcurrencyHelpers
import Testing
import TestSupport

/// TEST DOUBLE model: a `LanguageModel` whose logits make token (last + 1) mod V the greedy
/// choice, so the real `Engine`'s output for any prompt is known exactly. Each step takes 5 ms. It
/// records the largest number of sequences it saw in one forward pass (continuous batching at work).
final class CountingModel: LanguageModel, Sendable {
    let config = ModelConfig(dim: 8, nLayers: 1, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                             normEps: 1e-5, vocabSize: 64)
    let kvBlocks = KVBlockAllocator(blockCount: 64, blockSize: 4)
    let maxBatchTokens = 64
    let maxBatchSequences = 8
    let maxSequenceLength = 96
    let deviceName = "counting"
    let widestBatch = NIOLockedValueBox(0)

    func forward(_ batch: PackedBatch) throws -> Logits {
        widestBatch.withLockedValue { $0 = max($0, batch.sequences.count) }
        Thread.sleep(forTimeInterval: 0.005)  // a step takes time, as on a real device, so jobs overlap
        let V = config.vocabSize
        var values = [Float](repeating: 0, count: batch.sequences.count * V)
        for (s, seq) in batch.sequences.enumerated() {
            let next = ((seq.tokens.last ?? 0) + 1) % V
            for v in 0..<V { values[s * V + v] = -Float((v - next + V) % V) }
        }
        return Logits(rows: batch.sequences.count, vocabularySize: V, values: values)
    }
}

/// TEST DOUBLE decoder: token n decodes to "t<n> ".
struct TokenNameDecoder: IncrementalDecoder {
    mutating func append(_ id: Int) -> String { "t\(id) " }
    mutating func finish() -> String { "" }
}

/// TEST DOUBLE encoder: one token per message, 10 + the content's word count (so a prompt's last
/// token, and with it the greedy answer, is known).
struct WordCountEncoder: JobPromptEncoder {
    func encode(_ messages: [JobMessage]) throws -> [Int] {
        [1] + messages.map { 10 + $0.content.split(separator: " ").count }
    }
}

@Suite("AIME worker with the real Engine")
struct EngineRunnerTests {
    @Test("jobs run through EngineJobRunner and the real Engine; results match the engine's greedy output")
    func engineEndToEnd() async throws {
        let model = CountingModel()
        let engine = Engine(model: model, stopTokens: [63], makeDecoder: { TokenNameDecoder() })
        let server = AIMETestServer(pollSeconds: 1)
        try await server.start()
        var configuration = Harness.configuration(url: await server.url, maxBatch: 3)
        configuration.maxSeqLen = model.maxSequenceLength
        let worker = AIMEWorkerService(configuration: configuration,
                                       runner: EngineJobRunner(engine: engine, encoder: WordCountEncoder()))

        // Prompts end in token 10 + words; greedy continues +1 per token.
        let jobs: [(prompt: String, maxGen: Int)] = [("one two three", 5), ("four", 4), ("a b c d e f g h", 6)]
        var ids: [String] = []
        for job in jobs {
            ids.append(await server.state.submit(["prompt_input": .string(job.prompt), "temperature": 0,
                                                  "max_gen_tokens": .int(job.maxGen)]))
        }
        // A prompt longer than the model's 96-token context fails alone.
        let tooLong: AIMEJSON = .array(Array(repeating: ["role": "user", "content": "x"], count: 120))
        let longID = await server.state.submit(["prompt_input": "y", "chat_context": tooLong])
        // Jobs are queued first, so the worker's first job reply carries them together.
        let run = Task { try await worker.run() }

        for (id, job) in zip(ids, jobs) {
            let found = await eventually { await server.state.job(id)?.results.isEmpty == false }
            try #require(found)
            let result = try #require(await server.state.job(id)?.results.first)
            let last = 10 + job.prompt.split(separator: " ").count
            let expected = (1...job.maxGen).map { "t\(last + $0) " }.joined()
            #expect(result["text"]?.stringValue == expected)
            #expect(result["num_generated_tokens"]?.intValue == job.maxGen)
            #expect(result["prompt_length"]?.intValue == 2)
            #expect(result["current_context_length"]?.intValue == 2 + job.maxGen)
            #expect(result["error"] == nil)
        }
        let longFound = await eventually { await server.state.job(longID)?.results.isEmpty == false }
        try #require(longFound)
        let longResult = await server.state.job(longID)?.results.first
        #expect(longResult?["error"]?.stringValue?.contains("does not fit the context") == true)

        await worker.drain()
        try await run.value
        await server.stop()
        #expect(model.widestBatch.withLockedValue { $0 } >= 2, "the engine should have batched the jobs")
        #expect(model.kvBlocks.freeBlocks == 64)
    }
}

/// The tiny dense model of Tests/ModelTests/Fixtures/dense (made by
/// tools/fixtures/make_tiny_models.py) with its greedy continuations from the independent numpy
/// forward pass (tools/fixtures/reference_forward.py), run on the CPU backend.
enum DenseFixture {
    static let directory = TestPaths.tinyModels.appendingPathComponent("dense")

    struct Reference: Decodable {
        var prompts: [[Int]]
        var greedy: [[Int]]
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory.appendingPathComponent("reference.json")))
    }

    static func model() throws -> Transformer<CPUBackend> {
        try cpuTransformer(try MistralCheckpoint.load(directory: directory), threads: 2, maxBatchTokens: 96,
                           maxBatchSequences: 4, maxSequenceLength: 64, kvBlockCount: 64, kvBlockSize: 4)
    }
}

/// TEST DOUBLE encoder for the fixture model (it has no tokenizer): the user's message "<i>"
/// selects the fixture's reference prompt i.
struct ReferencePromptEncoder: JobPromptEncoder {
    let prompts: [[Int]]
    struct UnknownPrompt: Error {}
    func encode(_ messages: [JobMessage]) throws -> [Int] {
        guard let index = Int(messages.last?.content ?? ""), prompts.indices.contains(index) else { throw UnknownPrompt() }
        return prompts[index]
    }
}

extension EngineRunnerTests {
    @Test("a batch of jobs through the real Engine and the tiny dense model matches the numpy greedy reference")
    func tinyModelEndToEnd() async throws {
        let reference = try DenseFixture.reference()
        let model = try DenseFixture.model()
        let engine = Engine(model: model, stopTokens: [], makeDecoder: { AngleDecoder() })
        let server = AIMETestServer(pollSeconds: 1)
        try await server.start()
        var configuration = Harness.configuration(url: await server.url, maxBatch: 3)
        configuration.maxSeqLen = model.maxSequenceLength
        let runner = EngineJobRunner(engine: engine, encoder: ReferencePromptEncoder(prompts: reference.prompts))
        let worker = AIMEWorkerService(configuration: configuration, runner: runner)
        var ids: [String] = []
        for (index, greedy) in reference.greedy.enumerated() {
            ids.append(await server.state.submit(["prompt_input": .string(String(index)), "temperature": 0,
                                                  "max_gen_tokens": .int(greedy.count)]))
        }
        let run = Task { try await worker.run() }
        for (index, id) in ids.enumerated() {
            let found = await eventually(timeout: .seconds(30)) { await server.state.job(id)?.results.isEmpty == false }
            try #require(found)
            let result = try #require(await server.state.job(id)?.results.first)
            let greedy = reference.greedy[index]
            #expect(result["text"]?.stringValue == greedy.map { "<\($0)>" }.joined())
            #expect(result["num_generated_tokens"]?.intValue == greedy.count)
            #expect(result["prompt_length"]?.intValue == reference.prompts[index].count)
            #expect(result["current_context_length"]?.intValue == reference.prompts[index].count + greedy.count)
            #expect(result["max_seq_len"]?.intValue == 64)
        }
        await worker.drain()
        try await run.value
        await server.stop()
    }
}
