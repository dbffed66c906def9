import Foundation

/// How the worker describes its model to the server (`model_parameters` of `/worker_login`,
/// shown to users by `/api/endpoints/mixtral_chat`).
public struct ModelDescription: Sendable, Equatable {
    public var label: String
    public var quantization: String
    public var size: String
    public var family: String
    public var type: String
    public var repoName: String

    public init(label: String, quantization: String = "none", size: String = "Unknown",
                family: String = "Unknown", type: String = "LLM", repoName: String? = nil) {
        self.label = label
        self.quantization = quantization
        self.size = size
        self.family = family
        self.type = type
        self.repoName = repoName ?? label
    }

    /// Derives the description from a checkpoint folder, as the PyTorch worker does: the label is
    /// the folder's name (`…/Mixtral-8x7B-Instruct-v0.1` → `Mixtral-8x7B-Instruct-v0.1`); family and
    /// size are read off that name (`Mixtral`, `8x7B`) when they appear in it.
    public static func fromCheckpoint(directory: String, quantization: String = "none") -> ModelDescription {
        var path = directory
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let label = path.split(separator: "/").last.map(String.init) ?? path
        let lower = label.lowercased()
        let family: String
        if lower.contains("mixtral") {
            family = "Mixtral"
        } else if lower.contains("codestral") {
            family = "Codestral"
        } else if lower.contains("mistral") {
            family = "Mistral"
        } else {
            family = "Unknown"
        }
        return ModelDescription(label: label.isEmpty ? "Unknown" : label, quantization: quantization,
                                size: sizeTag(in: label) ?? "Unknown", family: family)
    }

    /// The first `NxMB` or `MB` tag of a name (`8x22B`, `7B`, `22b`), upper-cased.
    static func sizeTag(in name: String) -> String? {
        let parts = name.split(whereSeparator: { $0 == "-" || $0 == "_" || $0 == "." || $0 == " " })
        for part in parts {
            let token = part.uppercased()
            guard token.hasSuffix("B"), token.count >= 2 else { continue }
            let body = token.dropLast()
            let pieces = body.split(separator: "X", omittingEmptySubsequences: false)
            guard (1...2).contains(pieces.count),
                pieces.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isNumber || $0 == "." } })
            else { continue }
            return token
        }
        return nil
    }
}

/// Everything the worker service needs; the CLI (`mixtral-chat worker`) fills it from flags.
public struct WorkerConfiguration: Sendable {
    /// The AIME API Server's base URL, e.g. `http://127.0.0.1:7777`.
    public var apiServer: String
    /// The job type's worker secret (`[WORKER] auth_key` of the endpoint config). Never logged.
    public var authKey: String
    public var jobType: String
    /// Most jobs run at once; each job request asks for `maxBatchSize - running` jobs.
    public var maxBatchSize: Int
    /// The model's context window, reported as `max_seq_len`; a job whose prompt does not fit
    /// fails with an error result, generation stops when the window is full.
    public var maxSeqLen: Int
    public var model: ModelDescription
    /// The worker's name on the server (`auth`), unique per worker process.
    public var workerName: String
    public var gpuName: String
    public var numGPUs: Int
    public var framework: String
    public var frameworkVersion: String

    /// Shortest gap between two progress POSTs (the reference worker: at most 5 per second).
    public var progressInterval: Duration
    /// Longest gap between two progress updates of one running job, also during a long prefill;
    /// the server drops a worker it has not heard from for 2 × request_timeout (120 s).
    public var progressHeartbeat: Duration
    /// Retry backoff while the server is unreachable: starts here, doubles, capped at `backoffMax`.
    public var backoffInitial: Duration
    public var backoffMax: Duration
    /// Added to the server's long-poll length for the HTTP client timeout (protocol §3: ≥ 15 s).
    public var pollTimeoutMargin: Duration
    /// Timeout of the short calls (login, progress, result).
    public var requestTimeout: Duration
    /// After `drain()`, how long undelivered results are retried while the server is unreachable
    /// before the worker gives up on them and stops.
    public var drainDeadline: Duration

    public static let defaultAuthKey = "5b07e305b50505ca2b3284b4ae5f65d1"
    public static let interfaceVersion = "MixtralChat AIME worker 0.1"

    public init(apiServer: String, authKey: String = WorkerConfiguration.defaultAuthKey,
                jobType: String = "mixtral", maxBatchSize: Int = 1, maxSeqLen: Int = 32768,
                model: ModelDescription = ModelDescription(label: "Unknown"),
                workerName: String? = nil, gpuName: String = "CPU", numGPUs: Int = 0,
                framework: String = "MixtralChat", frameworkVersion: String = "0.1") {
        self.apiServer = apiServer
        self.authKey = authKey
        self.jobType = jobType
        self.maxBatchSize = maxBatchSize
        self.maxSeqLen = maxSeqLen
        self.model = model
        self.gpuName = gpuName
        self.numGPUs = numGPUs
        self.framework = framework
        self.frameworkVersion = frameworkVersion
        self.workerName = workerName
            ?? WorkerConfiguration.defaultWorkerName(gpuName: gpuName, numGPUs: numGPUs)
        self.progressInterval = .milliseconds(200)
        self.progressHeartbeat = .seconds(10)
        self.backoffInitial = .milliseconds(500)
        self.backoffMax = .seconds(30)
        self.pollTimeoutMargin = .seconds(15)
        self.requestTimeout = .seconds(30)
        self.drainDeadline = .seconds(120)
    }

    /// `<hostname>#<pid>_<num_gpus>x<gpu_name>`, like the library's
    /// `<hostname>#<port_offset>_<num_gpus>x<gpu_name>` but unique per process.
    public static func defaultWorkerName(gpuName: String, numGPUs: Int) -> String {
        let host = ProcessInfo.processInfo.hostName
        let gpu = gpuName.replacingOccurrences(of: " ", with: "_")
        return "\(host)#\(ProcessInfo.processInfo.processIdentifier)_\(numGPUs)x\(gpu)"
    }

    /// Checks what the flags cannot express; a bad value is a clear error, not a crash.
    public func validate() throws(WorkerError) {
        guard let url = URL(string: apiServer), let scheme = url.scheme, ["http", "https"].contains(scheme),
            url.host != nil
        else {
            throw .configuration("--api-server must be an http(s) URL such as http://127.0.0.1:7777, got '\(apiServer)'")
        }
        guard maxBatchSize >= 1 else { throw .configuration("--max-batch-size must be at least 1, got \(maxBatchSize)") }
        guard maxSeqLen >= 2 else { throw .configuration("--max-seq-len must be at least 2, got \(maxSeqLen)") }
        guard !authKey.isEmpty else { throw .configuration("--api-auth-key must not be empty") }
        guard !jobType.isEmpty else { throw .configuration("--job-type must not be empty") }
    }

    /// `apiServer` without a trailing slash, for joining route paths.
    var baseURL: String {
        var base = apiServer
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}

/// Errors that stop the worker (everything else is retried or fails a single job).
public enum WorkerError: Error, Sendable, Equatable, CustomStringConvertible {
    case configuration(String)
    /// The server refused the login (wrong auth key, unknown job type).
    case loginRejected(String)

    public var description: String {
        switch self {
        case .configuration(let message): return "worker configuration: \(message)"
        case .loginRejected(let message): return "AIME API server refused the worker login: \(message)"
        }
    }
}
