import Chat
import Dispatch
import Generation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// `mixtral-chat serve`: OpenAI's HTTP API over one model.
///
/// Routes: `GET /health`, `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`,
/// `POST /v1/completions`, `GET /metrics`. The server listens before the model is loaded, so a
/// supervisor sees `/health` answer 503 during loading and 200 once requests can be served.
/// SIGTERM and SIGINT stop accepting connections and let the running requests finish
/// (Hummingbird's graceful shutdown under swift-service-lifecycle).
public struct OpenAIServer: Sendable {
    public let configuration: ServerConfiguration
    public let slot: ModelSlot
    public let metrics: ServerMetrics
    let logger: Logger

    public init(configuration: ServerConfiguration, slot: ModelSlot = ModelSlot(), metrics: ServerMetrics = ServerMetrics(),
                logger: Logger = Logger(label: "mixtral-chat.serve")) {
        self.configuration = configuration
        self.slot = slot
        self.metrics = metrics
        self.logger = logger
    }

    /// The routes with their middleware: error bodies and metrics outermost, then the API key.
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware(metrics: metrics))
        if let key = configuration.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        let slot = self.slot, metrics = self.metrics, maxBody = configuration.maxBodyBytes, timeout = configuration.requestTimeout

        router.get("/health") { _, _ -> Response in
            _ = try slot.model()
            return jsonResponse(.obj([("status", .string("ok"))]))
        }
        router.get("/v1/models") { _, _ -> Response in
            let model = try slot.model()
            return jsonResponse(.obj([("object", .string("list")), ("data", .array([Self.modelJSON(model)]))]))
        }
        router.get("/v1/models/{id}") { _, context -> Response in
            let model = try slot.model()
            let id = context.parameters.get("id") ?? ""
            try checkModelName(id, served: model.name)
            return jsonResponse(Self.modelJSON(model))
        }
        router.get("/metrics") { _, _ -> Response in
            var stats: EngineStatistics?
            if case .ready(let model) = slot.current { stats = model.engine.statistics() }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers,
                            body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition(engine: stats))))
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            let start = DispatchTime.now().uptimeNanoseconds
            var request = request
            let fields = try RequestFields(body: Array(buffer: try await request.collectBody(upTo: maxBody)))
            let accepted = try ChatCompletions(model: try slot.model(), metrics: metrics, timeout: timeout).accept(fields, startNanos: start)
            if accepted.request.stream {
                return Self.eventStream(request, cancel: accepted.run.cancel) { write in try await accepted.stream(write) }
            }
            return try await Self.answerUnlessClosed(request, cancel: accepted.run.cancel) { await accepted.collect() }
        }
        router.post("/v1/completions") { request, _ -> Response in
            let start = DispatchTime.now().uptimeNanoseconds
            var request = request
            let fields = try RequestFields(body: Array(buffer: try await request.collectBody(upTo: maxBody)))
            let accepted = try TextCompletions(model: try slot.model(), metrics: metrics, timeout: timeout).accept(fields, startNanos: start)
            if accepted.stream {
                return Self.eventStream(request, cancel: accepted.run.cancel) { write in try await accepted.streamChunks(write) }
            }
            return try await Self.answerUnlessClosed(request, cancel: accepted.run.cancel) { await accepted.collect() }
        }
        return router
    }

    static func modelJSON(_ model: ServedModel) -> JSONValue {
        .obj([("id", .string(model.name)), ("object", .string("model")), ("created", .int(0)), ("owned_by", .string("mixtral-chat")),
              ("max_model_len", .int(model.contextLength))])
    }

    /// An SSE response whose generation is cancelled when the client closes the connection
    /// (noticed by Hummingbird's inbound-close handler even between tokens) or a write fails.
    static func eventStream(_ request: Request, cancel: @escaping @Sendable () -> Void,
                            _ produce: @escaping @Sendable ((String) async throws -> Void) async throws -> Void) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await request.body.consumeWithInboundCloseHandler { _ in
                try await produce { text in try await writer.write(ByteBuffer(string: text)) }
            } onInboundClosed: {
                cancel()
            }
            try await writer.finish(nil)
        })
    }

    /// Listens, loads the model (`load`, run off the async threads: it blocks for the whole
    /// load), and serves until SIGTERM or SIGINT, then drains. A failed load stops the server and
    /// throws its error.
    public func run(load: @escaping @Sendable () throws -> ServedModel,
                    onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) async throws {
        let app = Application(
            router: makeRouter(),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port),
                                                    serverName: "mixtral-chat"),
            onServerRunning: { channel in
                onListening(configuration.host, channel.localAddress?.port ?? configuration.port)
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let slot = self.slot
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                do {
                    let model = try await withCheckedThrowingContinuation { (c: CheckedContinuation<ServedModel, any Error>) in
                        DispatchQueue.global().async { c.resume(with: Result { try load() }) }
                    }
                    slot.set(.ready(model))
                } catch {
                    slot.set(.failed("\(error)"))
                    await group.triggerGracefulShutdown()
                    throw error
                }
            }
            try await tasks.waitForAll()
        }
    }
}
