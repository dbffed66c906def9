import Foundation
import Generation
import Synchronization

/// Load through the Engine, the way a user's requests arrive: `requests` prompts of random
/// tokens submitted with at most `concurrency` in flight, each generating `genLen` tokens with
/// the given sampling (sampling, scheduling, detokenizing and event delivery all included).
///
/// What it reports:
/// - end to end: output tokens ÷ wall time from the first submit to the last finish (prefill
///   and ramp-up included);
/// - steady state: tokens delivered while every slot is decoding (from the moment the last of the
///   first `concurrency` requests has its first token to the first finish), which is what the
///   forward-only decode rate at the same batch bounds;
/// - time to first token and inter-token latency percentiles, per token event as the client
///   sees it;
/// - how many sequences ran at once (the engine's running count, sampled every millisecond:
///   peak and mean) and how many were preempted. With `requestedMaxTokens` (e.g. the AIME
///   endpoint's default 4000) each request asks for that many tokens, as clients do, and its
///   answer ends after `generatedLength` (the client cancels it there, as an end-of-sequence
///   token would end it): what KV blocks on demand serve more of than a reservation of the
///   whole `max_tokens` up front.
public struct ServingBenchmark: Sendable {
    public var requests: Int
    public var concurrency: Int
    public var promptLength: Int
    public var generatedLength: Int
    public var vocabularySize: Int
    public var sampling: SamplingParameters
    public var seed: UInt64
    /// Each request's `max_tokens` when it is larger than what it generates (nil: `generatedLength`).
    public var requestedMaxTokens: Int? = nil

    public init(requests: Int, concurrency: Int, promptLength: Int, generatedLength: Int, vocabularySize: Int,
                sampling: SamplingParameters, seed: UInt64 = 1) {
        self.requests = requests
        self.concurrency = concurrency
        self.promptLength = promptLength
        self.generatedLength = generatedLength
        self.vocabularySize = vocabularySize
        self.sampling = sampling
        self.seed = seed
    }

    public struct Result: Sendable, Encodable {
        public var requests: Int
        public var concurrency: Int
        public var errors: Int
        /// The distinct messages of the failed requests (at most 3), so a failure can be read.
        public var error_messages: [String]
        public var output_tokens: Int
        public var wall_s: Double
        public var output_tokens_per_s: Double
        public var steady_tokens_per_s: Double?
        public var ttft_p50_ms: Double
        public var ttft_p99_ms: Double
        public var itl_p50_ms: Double
        public var itl_p99_ms: Double
        /// Each request's max_tokens.
        public var max_tokens: Int
        public var peak_running: Int
        public var mean_running: Double
        public var preemptions: Int
        public var kv_blocks: Int
        public var kv_block_size: Int
    }

    /// One request's timeline, in seconds from the benchmark's start.
    struct Timeline: Sendable {
        var submitted: Double
        var tokens: [Double] = []
        var failed = false
        var error: String?
    }

    public func run(_ engine: Engine) async -> Result {
        let clock = ContinuousClock()
        let start = clock.now
        func seconds() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        let prompts: [[Int]] = (0..<requests).map { r in
            var state = seed &+ UInt64(r) &* 0x9E37_79B9_7F4A_7C15
            return (0..<promptLength).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return 3 + Int((state >> 33) % UInt64(max(1, vocabularySize - 3)))
            }
        }
        var parameters = sampling
        parameters.maxTokens = max(generatedLength, requestedMaxTokens ?? 0)
        parameters.ignoreEOS = true
        let params = parameters
        let endsEarly = parameters.maxTokens > generatedLength
        let generatedLength = self.generatedLength
        let preemptionsBefore = engine.statistics().preemptions
        // The engine's running count, sampled while the clients run.
        let occupancy = Occupancy()
        let sampler = Task.detached {
            while !occupancy.isDone {
                occupancy.record(engine.statistics().running)
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        let timelines = await withTaskGroup(of: [(Int, Timeline)].self) { group in
            let next = Counter()
            for _ in 0..<max(1, min(concurrency, requests)) {
                group.addTask {
                    var done: [(Int, Timeline)] = []
                    while let r = next.take(below: requests) {
                        var p = params
                        p.seed = params.seed.map { $0 &+ UInt64(r) } ?? UInt64(r)
                        var line = Timeline(submitted: seconds())
                        do {
                            let handle = try engine.submit(promptTokens: prompts[r], sampling: p)
                            for await event in handle.events {
                                switch event {
                                case .token:
                                    guard line.tokens.count < generatedLength else { break }
                                    line.tokens.append(seconds())
                                    // The answer is complete: stop it as its end token would.
                                    if endsEarly && line.tokens.count == generatedLength { handle.cancel() }
                                case .finished(let reason, _, _, let error):
                                    line.failed = reason == .error || (reason == .cancelled && line.tokens.count < generatedLength)
                                    if line.failed { line.error = error?.description ?? "\(reason)" }
                                case .prefillProgress, .logprobs: break
                                }
                            }
                        } catch {
                            line.failed = true
                            line.error = "\(error)"
                        }
                        done.append((r, line))
                    }
                    return done
                }
            }
            var all: [(Int, Timeline)] = []
            for await part in group { all += part }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let wall = seconds()
        occupancy.finish()
        await sampler.value
        let (peak, sum, samples) = occupancy.totals
        let statistics = engine.statistics()
        let ok = timelines.filter { !$0.failed && !$0.tokens.isEmpty }
        let output = timelines.reduce(0) { $0 + $1.tokens.count }
        let ttft = ok.map { ($0.tokens[0] - $0.submitted) * 1e3 }.sorted()
        let itl = ok.flatMap { line in zip(line.tokens.dropFirst(), line.tokens).map { ($0 - $1) * 1e3 } }.sorted()
        // Steady state: from when the first wave is all decoding to the first finish.
        var steady: Double?
        let wave = ok.prefix(concurrency)
        if wave.count == min(concurrency, requests), let from = wave.map({ $0.tokens[0] }).max(),
           let to = ok.map({ $0.tokens[$0.tokens.count - 1] }).min(), to > from {
            let inWindow = timelines.reduce(0) { $0 + $1.tokens.filter { $0 > from && $0 <= to }.count }
            steady = Double(inWindow) / (to - from)
        }
        var messages: [String] = []
        for case let m? in timelines.map(\.error) where !messages.contains(m) && messages.count < 3 { messages.append(m) }
        return Result(requests: requests, concurrency: concurrency, errors: timelines.count - ok.count,
                      error_messages: messages,
                      output_tokens: output, wall_s: wall, output_tokens_per_s: Double(output) / wall,
                      steady_tokens_per_s: steady,
                      ttft_p50_ms: Self.percentile(ttft, 0.5), ttft_p99_ms: Self.percentile(ttft, 0.99),
                      itl_p50_ms: Self.percentile(itl, 0.5), itl_p99_ms: Self.percentile(itl, 0.99),
                      max_tokens: parameters.maxTokens, peak_running: peak,
                      mean_running: samples == 0 ? 0 : Double(sum) / Double(samples),
                      preemptions: statistics.preemptions - preemptionsBefore,
                      kv_blocks: engine.model.kvBlocks.blockCount, kv_block_size: engine.model.kvBlocks.blockSize)
    }

    /// Nearest-rank percentile of sorted values (NaN when empty).
    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}

/// The engine's running count as sampled during a run.
private final class Occupancy: Sendable {
    private let state = Mutex((peak: 0, sum: 0, samples: 0, done: false))
    var isDone: Bool { state.withLock { $0.done } }
    func finish() { state.withLock { $0.done = true } }
    func record(_ running: Int) {
        state.withLock { o in
            o.peak = max(o.peak, running)
            o.sum += running
            o.samples += 1
        }
    }
    var totals: (peak: Int, sum: Int, samples: Int) { state.withLock { ($0.peak, $0.sum, $0.samples) } }
}

/// A shared request counter for the benchmark's client tasks.
private final class Counter: Sendable {
    private let value = Mutex(0)
    func take(below limit: Int) -> Int? {
        value.withLock { v in
            guard v < limit else { return nil }
            defer { v += 1 }
            return v
        }
    }
}

/// Token ids as text for models without a tokenizer (random weights): the benchmark then still
/// pays for an incremental decoder call per token, as a real model's stream does.
public struct TokenIDDecoder: IncrementalDecoder {
    public init() {}
    public mutating func append(_ id: Int) -> String { " \(id)" }
    public mutating func finish() -> String { "" }
}
