import Chat
import HTTPTypes
import Hummingbird
import NIOCore

/// The outermost layer: every failure becomes OpenAI's error body (`APIError`), including the
/// framework's own (404 for an unknown route, 413 for a body over the limit), and every answer
/// is counted in the request metric by route and status.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let route = Self.routeLabel(request.uri.path)
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = Self.response(error)
        } catch let error as any HTTPResponseError {
            response = Self.response(Self.apiError(status: Int(error.status.code), path: request.uri.path))
        } catch {
            response = Self.response(APIError(status: 500, type: .serverError, "\(error)"))
        }
        metrics.request(route: route, status: Int(response.status.code))
        return response
    }

    static func apiError(status: Int, path: String) -> APIError {
        switch status {
        case 404: return APIError(status: 404, type: .notFound, code: "unknown_url", "unknown route \(path)")
        case 405: return APIError(status: 405, type: .invalidRequest, code: "method_not_allowed", "method not allowed on \(path)")
        case 413: return APIError(status: 413, type: .invalidRequest, code: "request_too_large", "the request body is larger than the server accepts")
        default: return APIError(status: status, type: status >= 500 ? .serverError : .invalidRequest, "request failed (\(status))")
        }
    }

    static func response(_ error: APIError) -> Response {
        jsonResponse(error.body, status: error.status)
    }

    /// Known routes by name; anything else as "other", so scanners cannot grow the label set.
    static func routeLabel(_ path: String) -> String {
        switch path {
        case "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics": return path
        default: return path.hasPrefix("/v1/models/") ? "/v1/models/{id}" : "other"
        }
    }
}

/// `--api-key`: every route wants `Authorization: Bearer <key>` (401 otherwise).
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError(status: 401, type: .authentication, code: "invalid_api_key",
                           "no API key given: send 'Authorization: Bearer <key>'")
        }
        let given = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : header
        guard Self.constantTimeEqual(given, key) else {
            throw APIError(status: 401, type: .authentication, code: "invalid_api_key", "incorrect API key")
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so the time taken does not tell how much of a guess was right.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}

func jsonResponse(_ json: JSONValue, status: Int = 200) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: HTTPResponse.Status(code: status), headers: headers,
                    body: ResponseBody(byteBuffer: ByteBuffer(string: json.pythonJSON)))
}
