#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Tensors

/// How the `sample` family judges one row of a backend's output against the reference's.
///
/// Tokens must be equal, with one exception: backends add the same masses in another order (a
/// GPU block scan instead of the reference's running sum), so where the draw u·total, the top-p
/// target p·total or the min-p cut lies within `boundaryMargin` (relative) of a decision
/// boundary, the two may fall on either side. Such rows are counted, not failed, and the family
/// fails if they are more than a tiny fraction. Log-probabilities (of the chosen token when both
/// chose the same, and the top N) must agree within `logprobTolerance`, top ids exactly.
public enum SampleCheck {
    public static let boundaryMargin = 1e-5
    public static let logprobTolerance = 1e-4

    public enum Verdict: Equatable, Sendable {
        /// Same token, top ids equal; `logprobError` the largest |Δ| of the finite log-probabilities.
        case match(logprobError: Double)
        /// Different tokens where the row's decisions sit within `boundaryMargin` of a boundary.
        case boundary(margin: Double)
        case mismatch(String)
    }

    /// Compares one row's output (2 + 2·N values: token, logprob, N ids, N logprobs). `margin` is
    /// asked for only when the tokens differ (it re-derives the reference's decisions in f64).
    public static func compare(test t: ArraySlice<Float>, reference r: ArraySlice<Float>, topN n: Int,
                               margin: () -> Double) -> Verdict {
        let t = Array(t), r = Array(r)
        guard t.count == 2 + 2 * n, r.count == 2 + 2 * n else { return .mismatch("output length \(t.count), expected \(2 + 2 * n)") }
        let tt = t[0], tr = r[0]
        var error = 0.0
        func agree(_ a: Float, _ b: Float, _ what: String) -> String? {
            if a.isNaN || b.isNaN { return a.isNaN == b.isNaN ? nil : "\(what) \(a), reference \(b)" }
            if !b.isFinite || !a.isFinite { return a == b ? nil : "\(what) \(a), reference \(b)" }
            let d = Double(abs(a - b))
            error = max(error, d)
            return d <= logprobTolerance ? nil : "\(what) \(a), reference \(b)"
        }
        for j in 0..<n where t[2 + j] != r[2 + j] {
            return .mismatch("top id #\(j) is \(t[2 + j]), reference \(r[2 + j])")
        }
        for j in 0..<n {
            if let m = agree(t[2 + n + j], r[2 + n + j], "top logprob #\(j)") { return .mismatch(m) }
        }
        if tt == tr {
            if let m = agree(t[1], r[1], "logprob") { return .mismatch(m) }
            return .match(logprobError: error)
        }
        if tt.isNaN || tt < 0 || tr < 0 { return .mismatch("token \(tt), reference \(tr)") }
        let m = margin()
        return m < boundaryMargin ? .boundary(margin: m) : .mismatch("token \(Int(tt)), reference \(Int(tr)) (nearest boundary \(m))")
    }

    /// The smallest relative distance, in f64, between the reference's decisions for this row
    /// and a boundary: the draw target u·total from the cumulative masses of the kept tokens
    /// (in id order), the top-p target from the cumulative masses in (w desc, id asc) order, and
    /// the min-p cut from any penalised logit. Follows `RowSampler` step by step but sorts (a
    /// slow, plain derivation); ∞ where nothing is drawn (greedy, unusable rows).
    public static func margin(logits z: [Float], parameters p: [Float], penalties pairs: [Int32]) -> Double {
        let v = z.count
        guard v > 0, !z.contains(where: \.isNaN), let zMax = z.max(), zMax.isFinite else { return .infinity }
        var w = z
        if !pairs.isEmpty {
            let rep = p[SamplingColumn.repetitionPenalty.rawValue]
            let presence = p[SamplingColumn.presencePenalty.rawValue], frequency = p[SamplingColumn.frequencyPenalty.rawValue]
            for j in 0..<(pairs.count / 2) {
                let token = Int(pairs[2 * j]), count = pairs[2 * j + 1]
                guard token >= 0, token < v else { continue }
                var x = w[token]
                if rep != 1 { x = x > 0 ? x / rep : x * rep }
                x -= Float(count) * frequency + (count > 0 ? presence : 0)
                w[token] = x
            }
        }
        let wMax = w.max()!
        let temperature = p[SamplingColumn.temperature.rawValue]
        guard temperature != 0, wMax.isFinite else { return .infinity }
        let invT = 1 / temperature
        let minP = p[SamplingColumn.minP.rawValue], topP = p[SamplingColumn.topP.rawValue]
        let topK = Int(p[SamplingColumn.topK.rawValue])
        let u = Double(p[SamplingColumn.uniform.rawValue])
        let cut: Float = minP > 0 ? wMax + temperature * logf(minP) : -.infinity
        let k = topK > 0 ? min(topK, v) : v
        func mass(_ i: Int) -> Double { Double(expf((w[i] - wMax) * invT)) }
        var best = Double.infinity
        if cut.isFinite {
            for x in w where x.isFinite { best = min(best, Double(abs(x - cut)) / max(1, Double(abs(cut)))) }
        }
        var order = (0..<v).filter { w[$0] >= cut }.sorted { w[$0] > w[$1] || (w[$0] == w[$1] && $0 < $1) }
        if k < v { order = Array(order.prefix(k)) }
        if topP < 1 && order.count > 1 {
            var cumulative: [Double] = []
            var sum = 0.0
            for i in order { sum += mass(i); cumulative.append(sum) }
            let reach = Double(topP) * sum
            for c in cumulative { best = min(best, abs(c - reach) / sum) }
            let keep = (cumulative.firstIndex { $0 >= reach } ?? (order.count - 1)) + 1
            order = Array(order.prefix(keep))
        }
        let kept = order.sorted()
        var cumulative: [Double] = []
        var total = 0.0
        for i in kept { total += mass(i); cumulative.append(total) }
        if total > 0 {
            let target = u * total
            for c in cumulative { best = min(best, abs(c - target) / total) }
        }
        return best
    }
}
