import AIMEWorker
import Foundation
import Testing

/// `job_data` parsing without a server. Expected values come from the endpoint contract in
/// shared/aime-protocol.md §2.3/§5 and mistral-common's role-order rules.
@Suite("AIME job input")
struct JobInputTests {
    private func entry(_ json: String) throws -> [String: AIMEJSON] {
        let value = try JSONDecoder().decode(AIMEJSON.self, from: Data(json.utf8))
        return try #require(value.objectValue)
    }

    @Test("a real captured job_data entry: prompt appended as the final user turn, secrets ignored")
    func capturedEntry() throws {
        let input = try JobInput.parse(entry("""
            {"prompt_input": "Batch question number 1?",
             "chat_context": [{"role": "system", "content": "You are a helpful, respectful and honest assistant named Chloe."},
                              {"role": "user", "content": "Hello, Chloe."},
                              {"role": "assistant", "content": "How can I assist you today?"}],
             "top_k": 40, "top_p": 0.9, "temperature": 0.8, "max_gen_tokens": 64,
             "key": "6a17e2a5-b706-03cb-1a32-94b4a1df67da", "wait_for_result": false,
             "job_id": "5222f5ca-895d-4e10-afd8-9550b7555165#5",
             "start_time": 1795728253.0273626, "start_time_compute": null}
            """))
        #expect(input.messages == [
            JobMessage(role: .system, content: "You are a helpful, respectful and honest assistant named Chloe."),
            JobMessage(role: .user, content: "Hello, Chloe."),
            JobMessage(role: .assistant, content: "How can I assist you today?"),
            JobMessage(role: .user, content: "Batch question number 1?"),
        ])
        #expect(input.sampling == JobSampling(temperature: 0.8, topK: 40, topP: 0.9, maxGenTokens: 64))
    }

    @Test("defaults fill absent parameters; null chat_context with a prompt is a one-turn dialog")
    func defaults() throws {
        let input = try JobInput.parse(entry(#"{"prompt_input": "Hi", "chat_context": null, "job_id": "a#1"}"#))
        #expect(input.messages == [JobMessage(role: .user, content: "Hi")])
        #expect(input.sampling == JobInput.defaultSampling)
        #expect(JobInput.defaultSampling == JobSampling(temperature: 0.8, topK: 40, topP: 0.9, maxGenTokens: 2000))
    }

    @Test("content as a list of text parts; a trailing assistant turn stays last (continue); temperature 0 kept")
    func partsAndContinuation() throws {
        let input = try JobInput.parse(entry("""
            {"prompt_input": "", "temperature": 0, "top_k": 40.0,
             "chat_context": [{"role": "user", "content": [{"type": "text", "text": "Tell "}, {"type": "text", "text": "a story"}]},
                              {"role": "assistant", "content": "Once upon a time"}]}
            """))
        #expect(input.messages.last == JobMessage(role: .assistant, content: "Once upon a time"))
        #expect(input.messages.first == JobMessage(role: .user, content: "Tell a story"))
        #expect(input.sampling.temperature == 0)
        #expect(input.sampling.topK == 40)
    }

    @Test("junk and out-of-range values are rejected with the field named", arguments: [
        (#"{"prompt_input": "x", "chat_context": {"role": "user"}}"#, "chat_context must be a list"),
        (#"{"prompt_input": "x", "chat_context": 42}"#, "chat_context must be a list"),
        (#"{"prompt_input": "x", "chat_context": ["hello"]}"#, "chat_context[0] must be an object"),
        (#"{"prompt_input": "x", "chat_context": [{"content": "hi"}]}"#, "chat_context[0].role must be a string"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "user"}]}"#, "chat_context[0].content is missing"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "user", "content": 5}]}"#, "content must be a string or a list"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, "must be a text part"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "6a17e2a5-b706-03cb-1a32-94b4a1df67da", "content": "x"}]}"#,
         "role (a string of 36 characters) is not one of"),
        (#"{"prompt_input": 7}"#, "prompt_input must be a string"),
        (#"{"prompt_input": ""}"#, "no user message"),
        (#"{"prompt_input": "", "chat_context": [{"role": "system", "content": "s"}]}"#, "no user message"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "system", "content": "s"}, {"role": "tool", "content": "t"}]}"#,
         "Unexpected role 'tool' after role 'system'"),
        (#"{"prompt_input": "x", "chat_context": [{"role": "user", "content": "u"}, {"role": "tool", "content": "t"}, {"role": "system", "content": "s"}]}"#,
         "Unexpected role 'tool' after role 'user'"),
        (#"{"prompt_input": "x", "top_k": 0}"#, "top_k must be an integer in 1...1000, got 0"),
        (#"{"prompt_input": "x", "top_k": 5000}"#, "got 5000"),
        (#"{"prompt_input": "x", "top_k": 0.5}"#, "top_k must be an integer"),
        (#"{"prompt_input": "x", "top_k": "40"}"#, "top_k must be an integer in 1...1000, got a string"),
        (#"{"prompt_input": "x", "top_p": 0}"#, "top_p must be"),
        (#"{"prompt_input": "x", "top_p": 1.5}"#, "top_p must be"),
        (#"{"prompt_input": "x", "temperature": -0.1}"#, "temperature must be"),
        (#"{"prompt_input": "x", "temperature": true}"#, "got a boolean"),
        (#"{"prompt_input": "x", "max_gen_tokens": 0}"#, "max_gen_tokens must be a positive integer"),
    ])
    func rejected(json: String, message: String) throws {
        let fields = try entry(json)
        #expect {
            _ = try JobInput.parse(fields)
        } throws: { error in
            String(describing: error).contains(message)
        }
    }

    @Test("AIMEJSON keeps integers and floats apart and reads null, nested lists and objects")
    func jsonValueRoundTrip() throws {
        let text = #"{"a": 1, "b": 1.5, "c": null, "d": [true, "x"], "e": {}}"#
        let value = try JSONDecoder().decode(AIMEJSON.self, from: Data(text.utf8))
        #expect(value == ["a": 1, "b": 1.5, "c": nil, "d": [true, "x"], "e": [:]])
        let again = try JSONDecoder().decode(AIMEJSON.self, from: JSONEncoder().encode(value))
        #expect(again == value)
        #expect(String(decoding: try JSONEncoder().encode(AIMEJSON.int(3)), as: UTF8.self) == "3")
    }
}

@Suite("AIME worker configuration")
struct WorkerConfigurationTests {
    @Test("model description from the checkpoint folder name", arguments: [
        ("/models/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B-Instruct-v0.1", "Mixtral", "8X7B"),
        ("/data/mistral-7b-instruct-v0.3/", "mistral-7b-instruct-v0.3", "Mistral", "7B"),
        ("Codestral-22B-v0.1", "Codestral-22B-v0.1", "Codestral", "22B"),
        ("/ckpt/mixtral_8x22b_instruct", "mixtral_8x22b_instruct", "Mixtral", "8X22B"),
        ("/ckpt/demo", "demo", "Unknown", "Unknown"),
    ])
    func modelDescription(directory: String, label: String, family: String, size: String) {
        let model = ModelDescription.fromCheckpoint(directory: directory, quantization: "bf16")
        #expect(model.label == label)
        #expect(model.family == family)
        #expect(model.size == size)
        #expect(model.quantization == "bf16")
    }

    @Test("defaults as the PyTorch worker; invalid settings are clear errors")
    func defaultsAndValidation() throws {
        let configuration = WorkerConfiguration(apiServer: "http://127.0.0.1:7777")
        #expect(configuration.authKey == "5b07e305b50505ca2b3284b4ae5f65d1")
        #expect(configuration.jobType == "mixtral")
        #expect(configuration.maxBatchSize == 1)
        try configuration.validate()
        var bad = configuration
        bad.maxBatchSize = 0
        #expect(throws: WorkerError.self) { try bad.validate() }
        bad = configuration
        bad.apiServer = "127.0.0.1:7777"
        #expect(throws: WorkerError.self) { try bad.validate() }
    }
}
