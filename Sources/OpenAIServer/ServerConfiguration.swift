/// `serve`'s settings that are not about the model.
public struct ServerConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// Requests must send `Authorization: Bearer <key>` on every route when set.
    public var apiKey: String?
    /// Largest request body accepted; larger ones get 413.
    public var maxBodyBytes: Int
    /// Longest a request may wait and run; past it, it ends with 504 (nil: no limit).
    public var requestTimeout: Duration?

    public init(host: String = "127.0.0.1", port: Int = 8000, apiKey: String? = nil, maxBodyBytes: Int = 4 << 20,
                requestTimeout: Duration? = nil) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.requestTimeout = requestTimeout
    }
}
