import AIMEWorker
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny HTTP/1.1 server on 127.0.0.1 (SwiftNIO) that speaks the AIME worker protocol through
/// `AIMEProtocolState`. It can stop listening and start again on the same port, which is how
/// tests make the server go offline or restart.
actor AIMETestServer {
    let state: AIMEProtocolState
    private(set) var port = 0
    private var listener: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>?
    private var acceptTask: Task<Void, Never>?
    private var connections: [ObjectIdentifier: any Channel] = [:]

    init(pollSeconds: Int = 1) {
        state = AIMEProtocolState(pollSeconds: pollSeconds)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Starts listening (on a free port the first time, on the same port afterwards).
    func start() async throws {
        precondition(listener == nil, "test server started twice")
        let state = self.state
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        port = channel.channel.localAddress?.port ?? 0
        listener = channel
        acceptTask = Task {
            await withDiscardingTaskGroup { group in
                try? await channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        self.register(connection.channel)
                        group.addTask {
                            await Self.serve(connection, state: state)
                            await self.unregister(connection.channel)
                        }
                    }
                }
            }
        }
    }

    /// Stops listening and closes every open connection (clients see resets / refusals).
    func stop() async {
        guard let listener else { return }
        self.listener = nil
        await state.dropOpenPolls()
        try? await listener.channel.close()
        for connection in connections.values { try? await connection.close() }
        connections = [:]
        await acceptTask?.value
        acceptTask = nil
    }

    /// A server restart (§ "login required after restart"): connections drop, logins are lost,
    /// and with `keepJobs` false the jobs too; the server is back after `downtime`.
    func restart(keepJobs: Bool, downtime: Duration = .milliseconds(300)) async throws {
        await stop()
        await state.restart(keepJobs: keepJobs)
        try await Task.sleep(for: downtime)
        try await start()
    }

    private func register(_ channel: any Channel) { connections[ObjectIdentifier(channel)] = channel }
    private func unregister(_ channel: any Channel) { connections[ObjectIdentifier(channel)] = nil }

    private static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
                               state: AIMEProtocolState) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let requestHead):
                    head = requestHead
                    body.clear()
                case .body(var chunk):
                    body.writeBuffer(&chunk)
                case .end:
                    guard let requestHead = head else { continue }
                    let path = String(requestHead.uri.split(separator: "?").first ?? "")
                    guard let reply = await state.handle(path: path, body: Data(body.readableBytesView),
                                                         closed: connection.channel.closeFuture) else {
                        return  // close without answering, as a dying server does
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "content-type", value: "application/json")
                    headers.add(name: "access-control-allow-origin", value: "*")
                    headers.add(name: "content-length", value: String(reply.body.utf8.count))
                    try await outbound.write(.head(HTTPResponseHead(
                        version: requestHead.version, status: HTTPResponseStatus(statusCode: reply.status), headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: reply.body))))
                    try await outbound.write(.end(nil))
                }
            }
        }
    }
}
