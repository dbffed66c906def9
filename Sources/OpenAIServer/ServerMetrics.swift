import Generation
import Prometheus

/// The server's Prometheus metrics (`GET /metrics`), named after vLLM's where one exists.
///
/// Request, token and latency metrics are recorded as requests run; the engine's load (running
/// and waiting sequences, KV blocks) is read from `Engine.statistics()` at each scrape, so it is
/// never stale.
public final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let timeToFirstToken: ValueHistogram
    private let interToken: ValueHistogram
    private let running: Gauge
    private let waiting: Gauge
    private let kvUsed: Gauge
    private let kvTotal: Gauge
    private let kvUsage: Gauge
    private let steps: Gauge
    private let preemptions: Gauge
    private let failedSteps: Gauge
    private let kvCached: Gauge
    private let prefixQueries: Gauge
    private let prefixHits: Gauge
    private let prefixHitRate: Gauge

    public init() {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "mixtral", metricName: metric, unitName: unit, helpText: help)
        }
        promptTokens = registry.makeCounter(descriptor: name("prompt_tokens", "total", "Prompt tokens of accepted requests (per choice)."))
        generatedTokens = registry.makeCounter(descriptor: name("generation_tokens", "total", "Tokens generated."))
        // Buckets from 1 ms to 60 s: CPU demo runs and GPU runs both land inside.
        let latency: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 60]
        timeToFirstToken = registry.makeValueHistogram(
            descriptor: name("time_to_first_token", "seconds", "From the request's arrival to its first generated token."), buckets: latency)
        interToken = registry.makeValueHistogram(
            descriptor: name("inter_token_latency", "seconds", "Between consecutive tokens of one sequence."), buckets: latency)
        running = registry.makeGauge(descriptor: name("sequences_running", "", "Sequences admitted and stepping."))
        waiting = registry.makeGauge(descriptor: name("sequences_waiting", "", "Requests waiting for admission."))
        kvUsed = registry.makeGauge(descriptor: name("kv_blocks_used", "", "KV-cache blocks held by sequences."))
        kvTotal = registry.makeGauge(descriptor: name("kv_blocks", "total", "KV-cache blocks in the pool."))
        kvUsage = registry.makeGauge(descriptor: name("kv_cache_usage", "ratio", "Share of KV-cache blocks in use (0–1)."))
        steps = registry.makeGauge(descriptor: name("engine_steps", "", "Forward steps the engine has run."))
        preemptions = registry.makeGauge(descriptor: name("preemptions", "", "Sequences preempted (KV blocks freed, recomputed later) so far."))
        failedSteps = registry.makeGauge(descriptor: name("failed_steps", "", "Forward steps that failed (their sequences ended with an error)."))
        kvCached = registry.makeGauge(descriptor: name("kv_blocks_cached", "", "KV-cache blocks kept for prefix reuse and held by no sequence."))
        prefixQueries = registry.makeGauge(descriptor: name("prefix_cache_queries", "tokens", "Prompt tokens looked up in the prefix cache so far."))
        prefixHits = registry.makeGauge(descriptor: name("prefix_cache_hits", "tokens", "Prompt tokens whose KV came from the prefix cache so far."))
        prefixHitRate = registry.makeGauge(descriptor: name("prefix_cache_hit", "ratio", "Prefix-cache hits over queries since start (0–1)."))
    }

    func request(route: String, status: Int) {
        // Made per label pair on first use; the registry hands back the same counter afterwards.
        let requests = MetricNameDescriptor(namespace: "mixtral", metricName: "http_requests", unitName: "total",
                                            helpText: "HTTP requests answered, by route and status code.")
        registry.makeCounter(descriptor: requests, labels: [("route", route), ("status", String(status))]).increment()
    }

    func accepted(promptTokens count: Int) { promptTokens.increment(by: Int64(count)) }
    func generated(tokens count: Int) { generatedTokens.increment(by: Int64(count)) }
    func firstToken(nanoseconds: UInt64) { timeToFirstToken.record(Double(nanoseconds) / 1e9) }
    func interToken(nanoseconds: UInt64) { interToken.record(Double(nanoseconds) / 1e9) }

    /// The Prometheus text, with the engine's gauges read now (nil before the model is loaded).
    func exposition(engine: EngineStatistics?) -> String {
        if let s = engine {
            running.set(Double(s.running))
            waiting.set(Double(s.waiting))
            kvUsed.set(Double(s.kvBlocksUsed))
            kvTotal.set(Double(s.kvBlocksTotal))
            kvUsage.set(s.kvBlocksTotal > 0 ? Double(s.kvBlocksUsed) / Double(s.kvBlocksTotal) : 0)
            steps.set(Double(s.steps))
            preemptions.set(Double(s.preemptions))
            failedSteps.set(Double(s.failedSteps))
            kvCached.set(Double(s.kvBlocksCached))
            prefixQueries.set(Double(s.prefixCacheQueryTokens))
            prefixHits.set(Double(s.prefixCacheHitTokens))
            prefixHitRate.set(s.prefixCacheQueryTokens > 0 ? Double(s.prefixCacheHitTokens) / Double(s.prefixCacheQueryTokens) : 0)
        }
        return registry.emitToString()
    }
}
