import ArgumentParser
import Checkpoints
import Foundation
import Generation
import Model
import Roofline
import Runtime

/// Decode/prefill throughput on seeded random bf16 weights of a real model's shapes, reported
/// against the memory bandwidth measured in the same run (decode is memory-bound: the floor is
/// bytes read per step ÷ bandwidth).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark prefill and decode on random weights of a preset's real shapes.")

    @OptionGroup var model: ModelOptions
    @Option(help: "mistral-7b, mixtral-8x7b, mixtral-8x22b, codestral-22b, or tiny.") var preset: String = "mistral-7b"
    @Option(help: "Use only the first N layers (projections for the full model are printed separately).") var layers: Int?
    @Option(help: "Comma-separated batch sizes.") var batch: String = "1"
    @Option(name: .customLong("prompt-len")) var promptLen: Int = 128
    @Option(name: .customLong("gen-len")) var genLen: Int = 32
    @Option(help: "Weight seed.") var seed: UInt64 = 1
    @Flag(help: "Print results as JSON lines.") var json = false
    @Flag(help: "Serving benchmark: requests through the Engine (sampling, scheduling, streaming), next to the forward-only decode rate at the same batch.")
    var serve = false
    @Option(help: "--serve: requests to submit per concurrency level (default: the concurrency).") var requests: Int?
    @Option(help: "--serve: comma-separated numbers of requests in flight at once (default: --batch).") var concurrency: String?
    @Option(help: "--serve: sampling temperature (the AIME endpoint's default).") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "--serve: top-k.") var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "--serve: top-p.") var topP: Float = 0.9
    @Option(name: .customLong("vocab-size"), help: "Override the preset's vocabulary size.") var vocabSize: Int?
    @Flag(help: "Time the sample op alone (per call and per row) at each --batch, with --temperature/--top-k/--top-p.")
    var sampler = false
    @Option(name: .customLong("request-max-tokens"),
            help: "--serve: each request's max_tokens (e.g. the AIME default 4000); its answer still ends after --gen-len tokens.")
    var requestMaxTokens: Int?
    @Option(help: "Prefix-cache benchmark: a conversation of N turns through the Engine (--ckpt-dir, default the demo model).")
    var conversation: Int?
    @Option(name: .customLong("system-prompt"), help: "--conversation: the system prompt (none by default).")
    var systemPrompt: String?

    struct Row: Encodable {
        var device: String, preset: String, layers: Int, batch: Int
        /// bf16, or fp8 with --quantize fp8 (bytes_per_step counts weights at that stored size).
        var weights: String
        var prefill_tokens_per_s: Double
        var prefill_tflop_per_s: Double, measured_gemm_tflop_per_s: Double?, prefill_fraction_of_gemm_rate: Double?
        var decode_step_ms: Double, decode_tokens_per_s_per_seq: Double, decode_tokens_per_s_total: Double
        var bytes_per_step: Double, achieved_gb_per_s: Double, measured_bandwidth_gb_per_s: Double, fraction_of_bandwidth: Double
        var full_model_projected_tokens_per_s_per_seq: Double?
        /// Tensor parallelism: ranks (GPUs), and the all-reduces of a decode step timed alone (2
        /// per layer of batch × dim f32). bytes_per_step is then per GPU and fraction_of_bandwidth
        /// is of one GPU's measured bandwidth, i.e. of the N-GPU roofline.
        var ranks: Int = 1
        var allreduce_us: Double? = nil
        var allreduce_ms_per_step: Double? = nil
    }

    func run() async throws {
        guard var config = BenchPresets.config(preset) else {
            printError("unknown preset '\(preset)'; use \(BenchPresets.names.joined(separator: ", "))")
            throw ExitCode(1)
        }
        if let vocabSize { config.vocabSize = max(2, vocabSize) }
        let fullLayers = config.nLayers
        if let layers { config.nLayers = max(1, min(layers, config.nLayers)) }
        let batches = batch.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        guard !batches.isEmpty else { throw ValidationError("--batch needs positive integers") }
        if model.lora != nil, !(serve && model.ckptDir != nil) {
            throw ValidationError("bench runs on random weights; --lora needs a checkpoint (--serve --ckpt-dir DIR --lora PATH)")
        }
        var options = model
        let levels = concurrency.map { $0.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 } } ?? batches
        guard !levels.isEmpty else { throw ValidationError("--concurrency needs positive integers") }
        options.maxBatchSize = max(batches.max() ?? 1, levels.max() ?? 1)
        if let turns = conversation {
            try await runConversation(turns: turns)
            return
        }
        options.maxSeqLen = promptLen + max(genLen, requestMaxTokens ?? 0) + 1
        if serve {
            try await runServe(config: config, options: options, levels: levels)
            return
        }
        if sampler {
            let device = try RuntimeDevice.make(options.runtime, quiet: true)
            let row = RowSampling(temperature: temperature, topK: topK, topP: topP)
            for b in batches {
                let seconds = try device.timeSampling(b, config.vocabSize, row, -1)
                let line = SamplerRow(device: options.runtime.device ?? "default", vocabulary: config.vocabSize, rows: b,
                                      temperature: temperature, top_k: topK, top_p: topP,
                                      ms_per_call: seconds * 1e3, ms_per_row: seconds * 1e3 / Double(b))
                if json { printJSONLine(line) } else {
                    print(String(format: "sample op | V %d | %3d rows | %.3f ms per call, %.4f ms per row (temperature %.2f, top-k %d, top-p %.2f)",
                                 config.vocabSize, b, line.ms_per_call, line.ms_per_row, temperature, topK, topP))
                }
            }
            return
        }
        let source = try RandomWeights(config: config, seed: seed)
        let device = try RuntimeDevice.make(options.runtime, quiet: json)
        let lm = try device.build(source, options.runtime)
        let bandwidth = try device.measureBandwidth()
        let bf16Rate = try device.measureGEMMRate(false)
        // FP8 weights: prefill runs on FP8 tensor cores, so it is judged against their rate.
        let fp8Rate = options.runtime.quantization == .fp8 ? try device.measureGEMMRate(true) : nil
        let gemmRate = fp8Rate ?? bf16Rate
        try warmUp(lm, batches: batches, vocabSize: config.vocabSize)
        if !json {
            print("device: \(lm.deviceName); measured copy bandwidth \(String(format: "%.1f", bandwidth)) GB/s (read + write)"
                  + (bf16Rate.map { String(format: ", bf16 GEMM %.0f TFLOP/s (8192³, cuBLASLt)", $0 / 1e12) } ?? "")
                  + (fp8Rate.map { String(format: ", FP8 GEMM %.0f TFLOP/s (e4m3, the prefill reference)", $0 / 1e12) } ?? ""))
            let format = options.runtime.quantization?.rawValue ?? "bf16"
            print("preset \(preset), \(config.nLayers)/\(fullLayers) layers, weights \(String(format: "%.2f", Double(Roofline.weightBytes(config, options.runtime.quantization)) / 1e9)) GB \(format)")
            if let mem = try device.memoryInfo() {
                // After the weights and the KV pool are in place: what the pool got, and what is left.
                let kvTokens = lm.kvBlocks.blockCount * lm.kvBlocks.blockSize
                let perToken = 2 * config.nLayers * config.nKVHeads * config.headDim * device.kvBytesPerElement
                print(String(format: "device memory after loading: %.2f GiB free of %.2f GiB; KV pool %d tokens (%.2f GiB)",
                             Double(mem.free) / Double(1 << 30), Double(mem.total) / Double(1 << 30), kvTokens,
                             Double(kvTokens * perToken) / Double(1 << 30)))
            }
        }
        for b in batches {
            let row = try measure(lm, config: config, batch: b, bandwidth: bandwidth, gemmRate: gemmRate, fullLayers: fullLayers,
                                  kvBytes: device.kvBytesPerElement)
            if json { printJSONLine(row) } else {
                print(String(format: "batch %3d | prefill %8.1f tok/s %6.1f TFLOP/s", b, row.prefill_tokens_per_s, row.prefill_tflop_per_s)
                      + (row.prefill_fraction_of_gemm_rate.map { String(format: " = %.0f%% of GEMM", 100 * $0) } ?? ""))
                print(String(format: "          decode step %8.2f ms  %7.2f tok/s/seq  %8.1f tok/s total | %.2f GB/step  %.1f GB/s = %.0f%% of measured",
                             row.decode_step_ms, row.decode_tokens_per_s_per_seq,
                             row.decode_tokens_per_s_total, row.bytes_per_step / 1e9, row.achieved_gb_per_s, 100 * row.fraction_of_bandwidth))
                if let us = row.allreduce_us, let perStep = row.allreduce_ms_per_step {
                    print(String(format: "          %d ranks: %.2f GB/step per GPU; all-reduce of %d×%d f32 (%.0f KiB) %.1f µs alone, 2 per layer = %.2f ms/step (%.0f%% of the step)",
                                 row.ranks, row.bytes_per_step / 1e9, b, config.dim, Double(b * config.dim * 4) / 1024, us, perStep,
                                 100 * perStep / row.decode_step_ms))
                }
                if let p = row.full_model_projected_tokens_per_s_per_seq, config.nLayers != fullLayers {
                    print(String(format: "          projection for all %d layers at the same bandwidth fraction: %.2f tok/s/seq", fullLayers, p))
                }
            }
        }
    }

    /// `--serve`: the Engine under load, then the forward-only decode rate at the same batch on
    /// the same model, in the same run.
    private func runServe(config: ModelConfig, options: ModelOptions, levels: [Int]) async throws {
        let lm: any LanguageModel
        let engine: Engine
        var c2 = config
        let runtimeOptions = options.runtime
        if model.ckptDir != nil {
            let runtime = try ModelRuntime.load(runtimeOptions, quiet: json)
            lm = runtime.model
            engine = runtime.engine
            c2 = runtime.config
        } else {
            let device = try RuntimeDevice.make(runtimeOptions, quiet: json)
            lm = try device.build(try RandomWeights(config: config, seed: seed), runtimeOptions)
            engine = Engine(model: lm, stopTokens: [], prefillChunk: 256, prefixCaching: runtimeOptions.prefixCaching, makeDecoder: { TokenIDDecoder() })
        }
        try warmUp(lm, batches: levels, vocabSize: c2.vocabSize)
        if !json {
            print("device: \(lm.deviceName); \(model.ckptDir ?? preset), \(c2.nLayers) layers; sampling temperature \(temperature), top-k \(topK), top-p \(topP)")
        }
        for c in levels {
            try await serveLevel(c, lm: lm, engine: engine, config: c2)
        }
    }

    /// One concurrency level: an untimed round (graphs, plans, scratch for this batch), the timed
    /// round, then the forward-only decode rate at the same batch.
    private func serveLevel(_ c: Int, lm: any LanguageModel, engine: Engine, config c2: ModelConfig) async throws {
        let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
        var bench = ServingBenchmark(requests: requests ?? c, concurrency: c, promptLength: promptLen,
                                     generatedLength: genLen, vocabularySize: c2.vocabSize, sampling: sampling, seed: seed)
        bench.requestedMaxTokens = requestMaxTokens
        _ = await ServingBenchmark(requests: c, concurrency: c, promptLength: promptLen, generatedLength: 4,
                                   vocabularySize: c2.vocabSize, sampling: sampling, seed: seed).run(engine)   // untimed: graphs, plans
        let served = await bench.run(engine)
        let forward = try measure(lm, config: c2, batch: c, bandwidth: .nan, gemmRate: nil, fullLayers: c2.nLayers,
                                  kvBytes: lm.kvElementBytes)
        let ratio = (served.steady_tokens_per_s ?? served.output_tokens_per_s) / forward.decode_tokens_per_s_total
        if json {
            printJSONLine(ServeRow(device: lm.deviceName, preset: model.ckptDir ?? preset, layers: c2.nLayers,
                                   temperature: temperature, top_k: topK, top_p: topP, serving: served,
                                   forward_decode_tokens_per_s: forward.decode_tokens_per_s_total,
                                   forward_decode_step_ms: forward.decode_step_ms, steady_over_forward: ratio))
        } else {
            print(String(format: "serve  %d requests, %d at a time, prompt %d, %d tokens each | %d errors",
                         served.requests, served.concurrency, promptLen, genLen, served.errors))
            for message in served.error_messages { print("       error: " + message) }
            print(String(format: "       end to end %8.1f tok/s | steady decode %8.1f tok/s | TTFT p50 %.1f p99 %.1f ms | ITL p50 %.2f p99 %.2f ms",
                         served.output_tokens_per_s, served.steady_tokens_per_s ?? .nan, served.ttft_p50_ms, served.ttft_p99_ms,
                         served.itl_p50_ms, served.itl_p99_ms))
            print(String(format: "forward-only decode at batch %d: %8.1f tok/s (%.2f ms/step) | steady serving / forward-only = %.3f",
                         c, forward.decode_tokens_per_s_total, forward.decode_step_ms, ratio))
            print(String(format: "       max_tokens %d | running at once: peak %d, mean %.1f | %d preemptions | KV pool %d blocks of %d tokens",
                         served.max_tokens, served.peak_running, served.mean_running, served.preemptions, served.kv_blocks,
                         served.kv_block_size))
        }
    }

    /// `--conversation`: a multi-turn chat through the Engine and its prefix cache.
    private func runConversation(turns: Int) async throws {
        let runtime = try ModelRuntime.load(model.runtime, quiet: json)
        let result = try await ConversationBenchmark(turns: turns, systemPrompt: systemPrompt, maxTokens: genLen)
            .run(engine: runtime.engine, encoder: runtime.encoder)
        if json { printJSONLine(result); return }
        print("conversation of \(turns) turns on \(runtime.label) (\(runtime.model.deviceName)), system prompt: \(systemPrompt == nil ? "none" : "yes"), prefix caching \(result.prefix_caching ? "on" : "off")")
        for t in result.turns {
            print(String(format: "turn %2d | prompt %4d tokens | cached %4d (%5.1f%%) | generated %3d", t.turn, t.prompt_tokens,
                         t.cached_tokens, 100 * Double(t.cached_tokens) / Double(max(1, t.prompt_tokens)), t.generated_tokens))
        }
        print(String(format: "all turns: %d prompt tokens, %d from the prefix cache = %.1f%% hit rate (%.2f s)",
                     result.prompt_tokens, result.cached_tokens, 100 * result.hit_rate, result.wall_s))
    }

    struct SamplerRow: Encodable {
        var device: String, vocabulary: Int, rows: Int, temperature: Float, top_k: Int, top_p: Float
        var ms_per_call: Double, ms_per_row: Double
    }

    struct ServeRow: Encodable {
        var device: String, preset: String, layers: Int
        var temperature: Float, top_k: Int, top_p: Float
        var serving: ServingBenchmark.Result
        var forward_decode_tokens_per_s: Double, forward_decode_step_ms: Double
        var steady_over_forward: Double
    }

    /// One untimed prefill chunk and a few decode steps at every batch size first, so one-time
    /// work (kernel loading, matmul plans, scratch growth, graph recording of decode shapes)
    /// stays out of the timed prefill and decode. The warm-up prompt's tokens vary (a repeated
    /// token would send every token to the same two experts, leaving the MoE paths' shapes for
    /// spread-out routing unprepared).
    private func warmUp(_ lm: any LanguageModel, batches: [Int], vocabSize: Int) throws {
        let tokens = { (n: Int) in (0..<n).map { 3 + ($0 * 7919) % max(1, vocabSize - 3) } }
        var tables: [[Int]] = []
        defer { tables.forEach(lm.kvBlocks.release) }
        for _ in 0..<(batches.max() ?? 1) {
            var t: [Int] = []
            guard lm.kvBlocks.ensureCapacity(&t, tokens: promptLen + 4) else { throw ValidationError("KV pool too small") }
            tables.append(t)
        }
        let chunk = min(promptLen, lm.maxBatchTokens)
        _ = try lm.forward(PackedBatch(sequences: [.init(tokens: tokens(chunk), startPosition: 0, blockTable: tables[0])]))
        if promptLen > chunk {   // the shape of the last, shorter chunk
            let rest = promptLen % chunk
            if rest > 0 { _ = try lm.forward(PackedBatch(sequences: [.init(tokens: tokens(rest), startPosition: chunk, blockTable: tables[0])])) }
        }
        // The other sequences' caches hold nothing written yet: fine for timing, and released unread.
        for batch in batches {
            for step in 0..<3 {
                _ = try lm.forward(PackedBatch(sequences: (0..<batch).map {
                    .init(tokens: [4], startPosition: chunk + step, blockTable: tables[$0]) }))
            }
        }
    }

    private func measure(_ lm: any LanguageModel, config c: ModelConfig, batch: Int, bandwidth: Double, gemmRate: Double?,
                         fullLayers: Int, kvBytes: Int) throws -> Row {
        var rng = SystemRandomNumberGenerator()
        let prompts = (0..<batch).map { _ in (0..<promptLen).map { _ in Int.random(in: 3..<c.vocabSize, using: &rng) } }
        var tables: [[Int]] = []
        for _ in 0..<batch {
            var t: [Int] = []
            guard lm.kvBlocks.ensureCapacity(&t, tokens: promptLen + genLen) else { throw ValidationError("KV pool too small") }
            tables.append(t)
        }
        defer { tables.forEach(lm.kvBlocks.release) }
        // Prefill: every prompt, in chunks of the step limit.
        let prefillStart = DispatchTime.now().uptimeNanoseconds
        for s in 0..<batch {
            for start in stride(from: 0, to: promptLen, by: lm.maxBatchTokens) {
                let end = min(start + lm.maxBatchTokens, promptLen)
                _ = try lm.forward(PackedBatch(sequences: [.init(tokens: Array(prompts[s][start..<end]), startPosition: start, blockTable: tables[s])]))
            }
        }
        let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - prefillStart) / 1e9
        // Decode: all sequences step together; one warm-up step is not timed.
        var times: [Double] = []
        for step in 0..<genLen {
            let seqs = (0..<batch).map { s in
                PackedBatch.Sequence(tokens: [Int.random(in: 3..<c.vocabSize, using: &rng)], startPosition: promptLen + step, blockTable: tables[s])
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try lm.forward(PackedBatch(sequences: seqs))
            if step > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
        }
        times.sort()
        let stepSeconds = times.isEmpty ? .nan : times[times.count / 2]
        let context = promptLen + genLen / 2
        let ranked = (lm as? any RankedModel).flatMap { $0.collectiveRanks > 0 ? $0 : nil }
        let ranks = ranked?.collectiveRanks ?? 1
        let bytes = Double(Roofline.bytesPerDecodeStep(c, batch: batch, context: context, kvBytesPerElement: kvBytes,
                                                       quantization: model.quantize, ranks: ranks))
        let allReduce = try ranked?.secondsPerAllReduce(elements: batch * c.dim, perRound: 32, rounds: 5)
        let achieved = bytes / stepSeconds / 1e9
        let fraction = achieved / bandwidth
        var fullConfig = c
        fullConfig.nLayers = fullLayers
        let fullBytes = Double(Roofline.bytesPerDecodeStep(fullConfig, batch: batch, context: context, kvBytesPerElement: kvBytes,
                                                           quantization: model.quantize, ranks: ranks))
        let prefillRate = Double(batch) * Roofline.prefillFLOPs(c, tokens: promptLen) / prefillSeconds
        return Row(device: lm.deviceName, preset: preset, layers: c.nLayers, batch: batch, weights: model.quantize?.rawValue ?? "bf16",
                   prefill_tokens_per_s: Double(batch * promptLen) / prefillSeconds,
                   prefill_tflop_per_s: prefillRate / 1e12, measured_gemm_tflop_per_s: gemmRate.map { $0 / 1e12 },
                   prefill_fraction_of_gemm_rate: gemmRate.map { prefillRate / $0 },
                   decode_step_ms: stepSeconds * 1e3, decode_tokens_per_s_per_seq: 1 / stepSeconds,
                   decode_tokens_per_s_total: Double(batch) / stepSeconds,
                   bytes_per_step: bytes, achieved_gb_per_s: achieved, measured_bandwidth_gb_per_s: bandwidth,
                   fraction_of_bandwidth: fraction,
                   full_model_projected_tokens_per_s_per_seq: fraction * bandwidth * 1e9 / fullBytes,
                   ranks: ranks, allreduce_us: allReduce.map { $0 * 1e6 },
                   allreduce_ms_per_step: allReduce.map { $0 * Double(2 * c.nLayers) * 1e3 })
    }
}
