import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny HTTP/1.1 server on 127.0.0.1 (SwiftNIO) that serves one tarball at `/model.tar`, with
/// the failures a download must survive: a connection dropped mid-body, Range ignored, an error
/// status, a file re-published under a new ETag.
actor TarballServer {
    struct Behaviour: Sendable {
        var supportsRange = true
        /// Per request, in order: close the connection after this many body bytes (nil: send all).
        var dropAfter: [Int?] = []
        /// Per request, in order: answer with this status and no body instead.
        var statuses: [Int?] = []
        var etag = "\"v1\""
    }

    struct Logged: Sendable, Equatable {
        var range: String?
        var status: Int
    }

    private var body: [UInt8]
    private var behaviour: Behaviour
    private(set) var requests: [Logged] = []
    private(set) var port = 0
    private var listener: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>?
    private var acceptTask: Task<Void, Never>?

    init(body: [UInt8], behaviour: Behaviour = Behaviour()) {
        self.body = body
        self.behaviour = behaviour
    }

    var url: String { "http://127.0.0.1:\(port)/model.tar" }

    func set(body: [UInt8], etag: String) {
        self.body = body
        behaviour.etag = etag
    }

    func set(_ behaviour: Behaviour) { self.behaviour = behaviour }

    func start() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        port = channel.channel.localAddress?.port ?? 0
        listener = channel
        acceptTask = Task {
            await withDiscardingTaskGroup { group in
                try? await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        }
    }

    func stop() async {
        try? await listener?.channel.close()
        listener = nil
        acceptTask?.cancel()
    }

    /// What to send for one request: status, headers, the body bytes, and where to cut it.
    private func plan(_ head: HTTPRequestHead) -> (status: Int, headers: HTTPHeaders, bytes: ArraySlice<UInt8>, cut: Int?) {
        let index = requests.count
        let range = head.headers.first(name: "range")
        var headers = HTTPHeaders()
        headers.add(name: "etag", value: behaviour.etag)
        if index < behaviour.statuses.count, let status = behaviour.statuses[index] {
            requests.append(Logged(range: range, status: status))
            headers.add(name: "content-length", value: "0")
            return (status, headers, [], nil)
        }
        let cut = index < behaviour.dropAfter.count ? behaviour.dropAfter[index] : nil
        if behaviour.supportsRange, let range, range.hasPrefix("bytes="), range.hasSuffix("-"),
           let start = Int(range.dropFirst(6).dropLast()) {
            guard start < body.count else {
                requests.append(Logged(range: range, status: 416))
                headers.add(name: "content-range", value: "bytes */\(body.count)")
                headers.add(name: "content-length", value: "0")
                return (416, headers, [], nil)
            }
            requests.append(Logged(range: range, status: 206))
            headers.add(name: "content-range", value: "bytes \(start)-\(body.count - 1)/\(body.count)")
            headers.add(name: "content-length", value: String(body.count - start))
            return (206, headers, body[start...], cut)
        }
        requests.append(Logged(range: range, status: 200))
        headers.add(name: "content-length", value: String(body.count))
        return (200, headers, body[...], cut)
    }

    nonisolated private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body: break
                case .end:
                    guard let requestHead = head else { continue }
                    let reply = await self.plan(requestHead)
                    try await outbound.write(.head(HTTPResponseHead(version: requestHead.version,
                                                                    status: HTTPResponseStatus(statusCode: reply.status),
                                                                    headers: reply.headers)))
                    var sent = 0
                    var rest = reply.bytes
                    while !rest.isEmpty {
                        var n = min(4096, rest.count)
                        if let cut = reply.cut { n = min(n, cut - sent) }
                        if n <= 0 { return }   // drop the connection mid-body
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: rest.prefix(n)))))
                        rest = rest.dropFirst(n)
                        sent += n
                    }
                    if let cut = reply.cut, sent >= cut, !reply.bytes.isEmpty, sent < reply.bytes.count { return }
                    try await outbound.write(.end(nil))
                }
            }
        }
    }
}
