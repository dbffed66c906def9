import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP exchange with the AIME API Server, classified the way the worker reacts to it.
enum APIReply: Sendable {
    /// HTTP 200 and a JSON body (which may be the literal `null`, see protocol §2.3).
    case json(AIMEJSON)
    /// Any other HTTP status; `body` is the JSON body when there was one.
    case status(Int, body: AIMEJSON?)
}

/// The server could not be reached, or the exchange broke: connection refused or reset, client
/// timeout, HTTP 503 ("Response Timeout" / "Worker - Server connection broke"), or a 200 whose body
/// is not JSON. All mean "try again later".
struct Unreachable: Error, Sendable, CustomStringConvertible {
    var description: String
}

/// The worker's HTTP side: POSTs JSON to the server's worker routes.
///
/// Never logs request bodies: they carry the worker's `auth_key`.
struct APIConnection: Sendable {
    let client: HTTPClient
    let baseURL: String

    /// Bodies larger than this are refused (a reply is a few KB; a batch of job_data a few MB at most).
    static let maxReplyBytes = 64 << 20

    func post(_ path: String, _ body: AIMEJSON, timeout: Duration) async throws -> APIReply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "accept", value: "application/json")
        let data: Data
        do {
            data = try JSONEncoder().encode(body)
        } catch {
            throw Unreachable(description: "could not encode the request for \(path): \(error)")
        }
        request.body = .bytes(ByteBuffer(bytes: data))
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.nanoseconds)))
            bytes = try await response.body.collect(upTo: Self.maxReplyBytes)
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as HTTPClientError where error == .cancelled {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw Unreachable(description: Self.describe(error))
        }
        let json = try? JSONDecoder().decode(AIMEJSON.self, from: Data(bytes.readableBytesView))
        let code = Int(response.status.code)
        if code == 503 {
            throw Unreachable(description: "HTTP 503 from \(path)")
        }
        guard code == 200 else { return .status(code, body: json) }
        guard let json else {
            throw Unreachable(description: "reply to \(path) is not JSON (\(bytes.readableBytes) bytes)")
        }
        return .json(json)
    }

    private static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        return text.count > 160 ? String(text.prefix(157)) + "…" : text
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    var seconds: Double { Double(nanoseconds) / 1e9 }
}
