import ArgumentParser
import Foundation
import Logging
import OpenAIServer
import Runtime

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "OpenAI-compatible HTTP server: /v1/chat/completions (tools, streaming), /v1/completions, /v1/models, /health, /metrics.",
        discussion: """
            Listens at once and loads the model (GET /health is 503 until it is ready). Ctrl-C or \
            SIGTERM stops accepting requests and finishes the running ones. See docs/server.md.
            """)

    @OptionGroup var model: ModelOptions
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).") var port = 8000
    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every route.") var apiKey: String?
    @Option(name: .customLong("served-model-name"), help: "The model's name in the API (default: the checkpoint folder's name).")
    var servedModelName: String?
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body; larger ones get 413.") var maxBodyBytes = 4 << 20
    @Option(name: .customLong("max-queued"), help: "Most requests waiting for a batch slot; more get 429 (default: unbounded).")
    var maxQueued: Int?
    @Option(name: .customLong("request-timeout"),
            help: "Seconds a request may wait and run; past it, it ends with 504 and what it streamed (default: no limit).")
    var requestTimeout: Double?
    @Option(name: [.customLong("log-level")], help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if maxBodyBytes < 1 { throw ValidationError("--max-body-bytes must be at least 1") }
        if let maxQueued, maxQueued < 0 { throw ValidationError("--max-queued must be ≥ 0") }
        if let requestTimeout, !(requestTimeout > 0) { throw ValidationError("--request-timeout must be a positive number of seconds") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var runtimeOptions = model.runtime
        runtimeOptions.maxQueued = maxQueued
        let options = runtimeOptions
        let name = servedModelName
        let server = OpenAIServer(configuration: ServerConfiguration(host: host, port: port, apiKey: apiKey, maxBodyBytes: maxBodyBytes,
                                                                     requestTimeout: requestTimeout.map { .milliseconds(Int(($0 * 1000).rounded(.up))) }))
        do {
            try await server.run(load: {
                let runtime = try ModelRuntime.load(options)
                FileHandle.standardError.write(Data("model ready: \(runtime.label) on \(runtime.model.deviceName)\n".utf8))
                return ServedModel(engine: runtime.engine, encoder: runtime.encoder, tokenizer: runtime.tokenizer,
                                   name: name ?? runtime.label)
            }, onListening: { host, port in
                FileHandle.standardError.write(Data("listening on http://\(host):\(port)\n".utf8))
            })
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
