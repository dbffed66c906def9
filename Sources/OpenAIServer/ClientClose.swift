import Chat
import HTTPTypes
import Hummingbird
import Synchronization

/// Whether the client closed its connection before a non-streamed answer was ready.
///
/// Hummingbird reports the close through `consumeWithInboundCloseHandler`, and it also calls the
/// handler when the operation ends normally (it cancels its read of the inbound stream then),
/// so a close only counts while the answer is still being generated.
final class ClientCloseWatch: Sendable {
    private let state = Mutex((answered: false, closedEarly: false))

    /// The generation finished; a close from now on is the connection's normal end.
    func answered() { state.withLock { $0.answered = true } }

    /// The inbound stream closed; true if that was before the answer (the client gave up).
    func inboundClosed() -> Bool {
        state.withLock { s in
            if !s.answered { s.closedEarly = true }
            return s.closedEarly
        }
    }

    var closedEarly: Bool { state.withLock { $0.closedEarly } }
}

extension OpenAIServer {
    /// A non-streamed answer whose generation is cancelled as soon as the client closes the
    /// connection (a client that timed out or was killed), as `eventStream` does for streams:
    /// otherwise the sequences would run to `max_tokens` for nobody, holding batch slots and KV
    /// blocks. Watching for the close consumes the connection's inbound stream, so Hummingbird
    /// does not reuse the connection afterwards; the answer says `Connection: close`, so that a
    /// keep-alive client opens a new one rather than sending its next request into a closing
    /// socket. A request cut this way is answered 499 (nginx's "client closed request"): nobody
    /// reads it, but `mixtral_http_requests_total` then tells abandoned requests from answered
    /// ones and from server errors.
    static func answerUnlessClosed(_ request: Request, cancel: @escaping @Sendable () -> Void,
                                   _ collect: () async -> Result<JSONValue, APIError>) async throws -> Response {
        let watch = ClientCloseWatch()
        let result = try await request.body.consumeWithInboundCloseHandler { _ in
            let result = await collect()
            watch.answered()
            return result
        } onInboundClosed: {
            if watch.inboundClosed() { cancel() }
        }
        var response: Response
        if watch.closedEarly {
            response = OpenAIErrorMiddleware<BasicRequestContext>.response(APIError(
                status: 499, type: .invalidRequest, code: "client_closed_request",
                "the client closed the connection before the answer was ready"))
        } else {
            switch result {
            case .success(let json): response = jsonResponse(json)
            case .failure(let error): response = OpenAIErrorMiddleware<BasicRequestContext>.response(error)
            }
        }
        response.headers[.connection] = "close"
        return response
    }
}
