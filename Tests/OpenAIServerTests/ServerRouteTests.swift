import Chat
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

import OpenAIServer

/// The routes over a real socket (Hummingbird's live test client, or AsyncHTTPClient where a
/// test sends several generation requests) with the demo model: SSE as
/// OpenAI sends it, streamed and non-streamed tool calls equal, and the error statuses.
/// (Run in release: the live client's 20 s read timeout is too short for a debug-build model.)
@Suite("OpenAI server routes with the Chloe-tiny model", .serialized)
struct ServerRouteTests {
    static let key = "sk-test"

    func app(_ slot: ModelSlot, maxBody: Int = 1 << 16) -> some ApplicationProtocol {
        let server = OpenAIServer(configuration: ServerConfiguration(apiKey: Self.key, maxBodyBytes: maxBody), slot: slot)
        return Application(router: server.makeRouter())
    }

    var auth: HTTPFields { [.authorization: "Bearer \(Self.key)", .contentType: "application/json"] }

    func json(_ buffer: ByteBuffer) throws -> JSONObject {
        try #require(try JSONParser.parse(String(buffer: buffer)).objectValue)
    }

    /// The `data:` payloads of an SSE body; checks the framing on the way.
    func events(_ buffer: ByteBuffer) throws -> [String] {
        let text = String(buffer: buffer)
        #expect(text.hasSuffix("data: [DONE]\n\n"))
        let parts = text.components(separatedBy: "\n\n").dropLast()   // "" after the last separator
        return try parts.map { part in
            try #require(part.hasPrefix("data: "), "every event is one data line: \(part)")
            return String(part.dropFirst(6))
        }
    }

    static let weather = #"{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city."}}, "required": ["city"]}}}"#

    @Test("a tool call: the streamed deltas assemble into exactly the non-streamed call")
    func toolCallStreamedAndNot() async throws {
        let slot = ModelSlot(try Chloe.served())
        let body = #"{"model": "chloe-tiny", "messages": [{"role": "user", "content": "What is the weather in Oslo?"}], "tools": ["# + Self.weather + #"], "temperature": 0"#
        // AsyncHTTPClient rather than the live test client: the server closes the connection after
        // a non-streamed answer (`Connection: close`, see `answerUnlessClosed`), and only a real
        // client opens a new one for the next request.
        try await app(slot).test(.ahc()) { client in
            let full = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: auth,
                                                body: ByteBuffer(string: body + "}"))
            #expect(full.status == .ok)
            let choice = try #require(try json(full.body)["choices"]?.arrayValue?.first?.objectValue)
            #expect(choice["finish_reason"] == .string("tool_calls"))
            let message = try #require(choice["message"]?.objectValue)
            #expect(message["content"] == .null)
            let call = try #require(message["tool_calls"]?.arrayValue?.first?.objectValue)
            let function = try #require(call["function"]?.objectValue)
            #expect(function["name"] == .string("get_weather"))
            #expect(try JSONParser.parse(try #require(function["arguments"]?.stringValue))
                    == .object(JSONObject([("city", .string("Oslo"))])))
            #expect(ToolCallIDMap.isValid(try #require(call["id"]?.stringValue)))

            let streamed = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: auth,
                                                    body: ByteBuffer(string: body + #", "stream": true, "stream_options": {"include_usage": true}}"#))
            #expect(streamed.headers[.contentType] == "text/event-stream")
            let chunks = try events(streamed.body).dropLast().map { try #require(try JSONParser.parse($0).objectValue) }
            // First chunk: the role. Then the call's header delta (index, id, type, name) and its
            // arguments; then finish_reason; then the usage chunk with no choices.
            let deltas = chunks.compactMap { $0["choices"]?.arrayValue?.first?.objectValue }
            #expect(deltas.first?["delta"] == .object(JSONObject([("role", .string("assistant")), ("content", .string(""))])))
            let calls = deltas.compactMap { $0["delta"]?.objectValue?["tool_calls"]?.arrayValue?.first?.objectValue }
            #expect(calls.count == 2)
            #expect(calls.first?["index"] == .number(.integer("0")) && calls.first?["type"] == .string("function"))
            #expect(calls.first?["function"]?.objectValue?["name"] == .string("get_weather"))
            #expect(calls.first?["function"]?.objectValue?["arguments"] == .string(""))
            let arguments = calls.compactMap { $0["function"]?.objectValue?["arguments"]?.stringValue }.joined()
            #expect(.string(arguments) == function["arguments"])
            #expect(deltas.compactMap { $0["finish_reason"]?.stringValue } == ["tool_calls"])
            #expect(chunks.last?["choices"] == .array([]))
            #expect(chunks.last?["usage"]?.objectValue?["completion_tokens"] == (try json(full.body))["usage"]?.objectValue?["completion_tokens"])
            #expect(chunks.dropLast().allSatisfy { $0["usage"] == .null })
        }
    }

    @Test("content streams as deltas that add up to the non-streamed answer")
    func contentStream() async throws {
        let slot = ModelSlot(try Chloe.served())
        let body = #"{"messages": [{"role": "user", "content": "What is 47 plus 35?"}], "temperature": 0"#
        try await app(slot).test(.ahc()) { client in   // a new connection per request, as above
            let full = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: auth, body: ByteBuffer(string: body + "}"))
            let answer = try json(full.body)["choices"]?.arrayValue?.first?.objectValue?["message"]?.objectValue?["content"]
            #expect(answer == .string("47 + 35 = 82."))
            let streamed = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: auth,
                                                    body: ByteBuffer(string: body + #", "stream": true}"#))
            let text = try events(streamed.body).dropLast().map { try JSONParser.parse($0) }.compactMap {
                $0.objectValue?["choices"]?.arrayValue?.first?.objectValue?["delta"]?.objectValue?["content"]?.stringValue
            }.joined()
            #expect(.string(text) == answer)
        }
    }

    @Test("error statuses and bodies: 401, 404 route and model, 413, 400, 503 while loading")
    func errors() async throws {
        let slot = ModelSlot(try Chloe.served())
        try await app(slot, maxBody: 1000).test(.live) { client in
            func check(_ uri: String, _ method: HTTPRequest.Method = .post, headers: HTTPFields? = nil, body: String = "{}",
                       status: HTTPResponse.Status, code: String? = nil) async throws {
                let r = try await client.execute(uri: uri, method: method, headers: headers ?? auth, body: ByteBuffer(string: body))
                #expect(r.status == status, "\(uri) \(body.prefix(40))")
                let error = try #require(try json(r.body)["error"]?.objectValue)
                #expect(error.keys == ["message", "type", "param", "code"])
                if let code { #expect(error["code"] == .string(code), "\(uri)") }
            }
            try await check("/v1/models", .get, headers: [:], status: .unauthorized, code: "invalid_api_key")
            try await check("/health", .get, headers: [.authorization: "Bearer nope"], status: .unauthorized)
            try await check("/v1/nothing", .get, status: .notFound, code: "unknown_url")
            try await check("/v1/chat/completions", body: #"{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}"#,
                            status: .notFound, code: "model_not_found")
            try await check("/v1/chat/completions", body: String(repeating: " ", count: 2000) + "{}", status: .contentTooLarge,
                            code: "request_too_large")
            try await check("/v1/chat/completions", body: "{", status: .badRequest, code: "invalid_json")
            try await check("/v1/chat/completions", body: #"{"messages": [{"role": "user", "content": "hi"}], "n": 99}"#, status: .badRequest)
            try await check("/v1/completions", body: #"{"prompt": "a", "suffix": "b"}"#, status: .badRequest)
            slot.set(.loading)
            try await check("/health", .get, status: .serviceUnavailable, code: "model_loading")
            try await check("/v1/chat/completions", body: #"{"messages": [{"role": "user", "content": "hi"}]}"#,
                            status: .serviceUnavailable, code: "model_loading")
        }
    }
}
