import AIMEWorker
import CPUBackend
import Chat
import Checkpoints
import Foundation
import Generation
import Model
import Testing
import Tokenizers
import TestSupport

/// The worker's real generation path: AIME job_data → `JobInput` → `InstructJobEncoder` (Chat) →
/// `Engine` → the Chloe-tiny demo model (models/chloe-tiny) on the CPU, checked against
/// independent references made by tools/fixtures/make_aime_prompt_fixtures.py (mistral-common's
/// prompt tokens; PyTorch's greedy answers from models/chloe-tiny/eval/torch_greedy.jsonl).
enum ChloeFixtures {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let fixtures = testsDirectory.appendingPathComponent("Fixtures")
    static let modelDirectory = TestPaths.chloeTiny

    struct PromptCase: Decodable {
        var name: String
        var job_data: AIMEJSON
        var tokens: [Int]
    }

    struct ChloeJob: Decodable {
        var skill: String
        var job_data: AIMEJSON
        var text: String
        var prompt_tokens: Int
        var generated_tokens: Int
    }

    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: fixtures.appendingPathComponent(name)))
    }

    static func tokenizer() throws -> SentencePieceTokenizer {
        try SentencePieceTokenizer(contentsOf: modelDirectory.appendingPathComponent("tokenizer.model.v3"))
    }
}

@Suite("AIME worker with the Chloe-tiny model")
struct ChloeWorkerTests {
    @Test("job_data → prompt tokens equal mistral-common's for the same dialog")
    func promptTokensMatchMistralCommon() throws {
        let encoder = InstructJobEncoder(try InstructEncoder(tokenizer: try ChloeFixtures.tokenizer()))
        let cases = try ChloeFixtures.load("aime_prompts.json", as: [ChloeFixtures.PromptCase].self)
        #expect(cases.count == 6)
        for testCase in cases {
            let input = try JobInput.parse(try #require(testCase.job_data.objectValue))
            #expect(try encoder.encode(input.messages) == testCase.tokens, "\(testCase.name)")
        }
    }

    @Test("role orders mistral-common rejects fail in the encoder with its message")
    func encoderRejection() throws {
        let encoder = InstructJobEncoder(try InstructEncoder(tokenizer: try ChloeFixtures.tokenizer()))
        #expect(throws: ChatError.self) {
            _ = try encoder.encode([JobMessage(role: .assistant, content: "I speak first")])
        }
    }

    @Test("a batch of held-out dialogues through the worker answers exactly as PyTorch's greedy decoding")
    func chloeAnswersThroughTheWorker() async throws {
        let jobs = try ChloeFixtures.load("aime_chloe_jobs.json", as: [ChloeFixtures.ChloeJob].self)
        let tokenizer = try ChloeFixtures.tokenizer()
        let checkpoint = try MistralCheckpoint.load(directory: ChloeFixtures.modelDirectory)
        let model = try cpuTransformer(checkpoint, threads: 2, maxBatchTokens: 256, maxBatchSequences: 8, maxSequenceLength: 256,
                                       kvBlockCount: 160, kvBlockSize: 16)
        let engine = Engine(model: model, stopTokens: [tokenizer.eosID], makeDecoder: { StreamingDetokenizer(tokenizer: tokenizer) })
        let runner = EngineJobRunner(engine: engine, encoder: InstructJobEncoder(try InstructEncoder(tokenizer: tokenizer)))

        let server = AIMETestServer(pollSeconds: 1)
        try await server.start()
        var configuration = Harness.configuration(url: await server.url, maxBatch: 4)
        configuration.maxSeqLen = model.maxSequenceLength
        configuration.model = .fromCheckpoint(directory: ChloeFixtures.modelDirectory.path, quantization: checkpoint.dtype.rawValue)
        // Queued before the worker starts, so the first four arrive in one job reply.
        var ids: [String] = []
        for job in jobs {
            var input = try #require(job.job_data.objectValue)
            input["job_id"] = nil
            ids.append(await server.state.submit(input))
        }
        let worker = AIMEWorkerService(configuration: configuration, runner: runner)
        let run = Task { try await worker.run() }
        for (id, job) in zip(ids, jobs) {
            let found = await eventually(timeout: .seconds(60)) { await server.state.job(id)?.results.isEmpty == false }
            try #require(found, "no result for \(job.skill)")
            let result = try #require(await server.state.job(id)?.results.first)
            #expect(result["text"]?.stringValue == job.text, "\(job.skill)")
            #expect(result["prompt_length"]?.intValue == job.prompt_tokens, "\(job.skill)")
            #expect(result["num_generated_tokens"]?.intValue == job.generated_tokens, "\(job.skill)")
            #expect(result["current_context_length"]?.intValue == job.prompt_tokens + job.generated_tokens)
            #expect(result["model_name"]?.stringValue == "chloe-tiny")
            #expect(result["error"] == nil)
            // The progress texts grew as prefixes of the answer.
            for item in await server.state.job(id)?.progress ?? [] {
                #expect(job.text.hasPrefix(item["progress_data"]?["text"]?.stringValue ?? "?"))
            }
        }
        await worker.drain()
        try await run.value
        await server.stop()
        #expect(await server.state.handedOutBatches.first?.count == 4, "the first four jobs arrive as one batch")
    }
}
