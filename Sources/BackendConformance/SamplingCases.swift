#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

/// One sampling setting of the `sample` family: a row's parameters except its draw.
struct SamplingSetting {
    var name: String
    var temperature: Float
    var topK: Float = 0
    var topP: Float = 1
    var minP: Float = 0
    var repetition: Float = 1
    var presence: Float = 0
    var frequency: Float = 0
    /// Rows get (token, count) pairs for the penalties.
    var penalised = false
    /// Also run on the special row kinds and every logprobs count.
    var thorough = false

    /// Every parameter alone and the combinations the product uses (the AIME endpoint's
    /// defaults: temperature 0.8, top-k 40, top-p 0.9), with top-k above 1024 and above V too.
    static let all: [SamplingSetting] = [
        SamplingSetting(name: "greedy", temperature: 0, thorough: true),
        SamplingSetting(name: "temperature 0.8", temperature: 0.8, thorough: true),
        SamplingSetting(name: "temperature 1.5", temperature: 1.5),
        SamplingSetting(name: "top-k 40", temperature: 0.8, topK: 40),
        SamplingSetting(name: "top-k 1", temperature: 1, topK: 1),
        SamplingSetting(name: "top-k 2000", temperature: 1, topK: 2000),
        SamplingSetting(name: "top-k 10^6 (> V)", temperature: 1, topK: 1_000_000),
        SamplingSetting(name: "top-p 0.9", temperature: 0.8, topP: 0.9, thorough: true),
        SamplingSetting(name: "top-p 0.5, temperature 1.3", temperature: 1.3, topP: 0.5),
        SamplingSetting(name: "top-p 0.95, temperature 2", temperature: 2, topP: 0.95),
        SamplingSetting(name: "top-k 1024", temperature: 1, topK: 1024),
        SamplingSetting(name: "min-p 0.5, top-k 40", temperature: 1, topK: 40, minP: 0.5),
        SamplingSetting(name: "AIME: temperature 0.8, top-k 40, top-p 0.9", temperature: 0.8, topK: 40, topP: 0.9, thorough: true),
        SamplingSetting(name: "top-k 3000, top-p 0.95", temperature: 1, topK: 3000, topP: 0.95),
        SamplingSetting(name: "min-p 0.05", temperature: 1, minP: 0.05, thorough: true),
        SamplingSetting(name: "min-p 0.1 + AIME", temperature: 0.8, topK: 40, topP: 0.9, minP: 0.1),
        SamplingSetting(name: "repetition 1.3 + AIME", temperature: 0.8, topK: 40, topP: 0.9, repetition: 1.3, penalised: true),
        SamplingSetting(name: "presence 0.7", temperature: 0.8, presence: 0.7, penalised: true),
        SamplingSetting(name: "frequency 0.4, top-p 0.9", temperature: 0.8, topP: 0.9, frequency: 0.4, penalised: true),
        SamplingSetting(name: "greedy + all penalties", temperature: 0, repetition: 1.2, presence: 0.5, frequency: 0.3,
                        penalised: true, thorough: true),
    ]
}

/// What the logits rows of a case look like.
enum SamplingRows: String, CaseIterable {
    case normal = "N(0, 3²) logits"
    case peaked = "five peaks"
    case ties = "ties (multiples of 0.5)"
    case negativeInfinity = "−inf filled, ≤ 60 finite"
    case unusable = "NaN, all −inf, +inf and ±0 rows first"
}

extension BackendConformance {
    /// `sample` against the reference: random rows at V 32000, 32768 and 131072, 1 to 64 rows,
    /// every `SamplingSetting`, logprobs −1 (none), 0, 5 and 20, the same uniform draws on both.
    /// Each case's name says V, R, setting, rows and logprobs, so a failure names what to rerun.
    /// Token mismatches are allowed only where `SampleCheck.margin` puts the row's decision
    /// within 1e-5 of a boundary, and at most 1 row in 200 of those that draw.
    mutating func sampleCases() throws -> [ConformanceResult] {
        var results: [ConformanceResult] = []
        var drawnRows = 0, boundaryRows = 0
        var counter = 0
        for v in [32000, 32768, 131072] {
            for setting in SamplingSetting.all {
                var variants: [(SamplingRows, Int)] = [(.normal, [-1, 0, 5, 20][counter % 4])]
                if setting.thorough {
                    // Every logprobs count at one V (the kernel's paths do not depend on V), the
                    // special rows at all three.
                    variants = (v == 32768 ? [-1, 0, 5, 20] : [[-1, 0, 5, 20][counter % 4]]).map { (.normal, $0) }
                        + [(.peaked, 5), (.ties, 20), (.negativeInfinity, 5), (.unusable, 5)]
                }
                for (kind, logprobs) in variants {
                    counter += 1
                    // 1 to 64 rows for normal rows (fewer at V 131072, to keep the CPU reference
                    // quick in debug builds), at most 8 of the special kinds.
                    let rowChoices = v > 100_000 ? [1, 4, 9] : (kind == .normal ? [1, 3, 8, 17, 64] : [1, 3, 8])
                    let rows = max(rowChoices[counter % rowChoices.count], kind == .unusable ? 4 : 1)
                    let (result, boundary) = try sampleCase(v: v, rows: rows, setting: setting, kind: kind, logprobs: logprobs)
                    results.append(result)
                    boundaryRows += boundary
                    if setting.temperature != 0 { drawnRows += rows }
                }
            }
        }
        let allowed = max(1, drawnRows / 200)
        results.append(ConformanceResult(
            name: "sample: \(boundaryRows) token(s) differ within 1e-5 of a boundary, of \(drawnRows) drawn rows (≤ \(allowed) allowed)",
            error: 0, tolerance: 0, mismatch: boundaryRows <= allowed ? nil : "too many boundary mismatches"))
        return results
    }

    /// One case; returns its result and how many rows differed at a boundary.
    mutating func sampleCase(v: Int, rows: Int, setting s: SamplingSetting, kind: SamplingRows,
                             logprobs: Int) throws -> (ConformanceResult, Int) {
        let z = sampleRows(kind, rows: rows, v: v)                                       // (R, V)
        var parameters: [Float] = []                                                      // (R, columns)
        var offsets: [Int32] = [0], pairs: [Int32] = []                                   // (R+1), (P, 2)
        for _ in 0..<rows {
            var c = [Float](repeating: 0, count: SamplingColumn.count)
            c[SamplingColumn.temperature.rawValue] = s.temperature
            c[SamplingColumn.topK.rawValue] = s.topK
            c[SamplingColumn.topP.rawValue] = s.topP
            c[SamplingColumn.minP.rawValue] = s.minP
            c[SamplingColumn.repetitionPenalty.rawValue] = s.repetition
            c[SamplingColumn.presencePenalty.rawValue] = s.presence
            c[SamplingColumn.frequencyPenalty.rawValue] = s.frequency
            c[SamplingColumn.uniform.rawValue] = Float.random(in: 0..<1, using: &rng)
            parameters += c
            if s.penalised {
                // Distinct tokens (one pair per token, as the contract says), counts 0...5.
                var tokens = Set<Int32>()
                let wanted = Int.random(in: 1...400, using: &rng)
                while tokens.count < wanted { tokens.insert(Int32.random(in: 0..<Int32(v), using: &rng)) }
                for t in tokens.sorted() { pairs += [t, Int32.random(in: 0...5, using: &rng)] }
            }
            offsets.append(Int32(pairs.count / 2))
        }
        let n = max(logprobs, 0), stride = 2 + 2 * n
        let logits = try activation(z, [rows, v])
        let params = try activation(parameters, [rows, SamplingColumn.count])
        let offsetsPair = try indices(offsets)
        let pairsPair = try indices(pairs)
        let out = try output([rows, stride])
        try test.sample(logits: logits.t, parameters: params.t, penaltyOffsets: offsetsPair.t, penalties: pairsPair.t,
                        out: out.t, rows: rows, vocabularySize: v, logprobs: logprobs)
        try reference.sample(logits: logits.r, parameters: params.r, penaltyOffsets: offsetsPair.r, penalties: pairsPair.r,
                             out: out.r, rows: rows, vocabularySize: v, logprobs: logprobs)
        let (a, b) = try read(out, rows * stride)
        var error = 0.0, boundary = 0
        var problems: [String] = []
        for r in 0..<rows {
            let verdict = SampleCheck.compare(test: a[(r * stride)..<((r + 1) * stride)], reference: b[(r * stride)..<((r + 1) * stride)],
                                              topN: n) {
                SampleCheck.margin(logits: Array(z[(r * v)..<((r + 1) * v)]),
                                   parameters: Array(parameters[(r * SamplingColumn.count)..<((r + 1) * SamplingColumn.count)]),
                                   penalties: Array(pairs[(2 * Int(offsets[r]))..<(2 * Int(offsets[r + 1]))]))
            }
            switch verdict {
            case .match(let e): error = max(error, e)
            case .boundary: boundary += 1
            case .mismatch(let m): problems.append("row \(r): \(m)")
            }
        }
        let name = "sample V \(v) R \(rows) \(s.name) / \(kind.rawValue) / logprobs \(logprobs)"
            + (boundary > 0 ? " (\(boundary) at a boundary)" : "")
        let mismatch = problems.isEmpty ? nil : problems.prefix(3).joined(separator: "; ")
            + (problems.count > 3 ? " (+\(problems.count - 3) rows)" : "")
        return (ConformanceResult(name: name, error: error, tolerance: SampleCheck.logprobTolerance, mismatch: mismatch), boundary)
    }

    /// Logits rows (R, V) of `kind`, seeded from the suite's generator.
    mutating func sampleRows(_ kind: SamplingRows, rows: Int, v: Int) -> [Float] {
        // N(0, 1) by Box–Muller: language-model logits are closer to normal than to uniform.
        func normal() -> Float {
            let u1 = Float.random(in: Float.leastNormalMagnitude..<1, using: &rng), u2 = Float.random(in: 0..<1, using: &rng)
            return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
        }
        var z = (0..<(rows * v)).map { _ in 3 * normal() }
        switch kind {
        case .normal:
            break
        case .peaked:
            let peaks = (0..<5).map { _ in Int.random(in: 0..<v, using: &rng) }
            for r in 0..<rows { for p in peaks { z[r * v + p] += 12 } }
        case .ties:
            z = z.map { ($0 * 2).rounded() / 2 }
        case .negativeInfinity:
            for r in 0..<rows {
                for i in 0..<v { z[r * v + i] = -.infinity }
                for _ in 0..<Int.random(in: 1..<60, using: &rng) { z[r * v + Int.random(in: 0..<v, using: &rng)] = normal() }
            }
        case .unusable:
            z[Int.random(in: 0..<v, using: &rng)] = .nan                          // row 0: a NaN
            for i in 0..<v { z[v + i] = -.infinity }                              // row 1: no finite value
            z[2 * v + Int.random(in: 0..<v, using: &rng)] = .infinity             // row 2: +inf
            for i in 0..<v { z[3 * v + i] = i % 3 == 0 ? -0.0 : 0 }               // row 3: ±0 ties everywhere
        }
        return z
    }
}
