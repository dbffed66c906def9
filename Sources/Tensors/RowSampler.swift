#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// The reference implementation of one row of `ComputeBackend.sample` (its doc comment is the
/// contract), written for speed on a CPU: partial selection instead of sorting the vocabulary,
/// and grow-only scratch so a steady decode loop allocates nothing.
///
/// Cost per row of V logits with top-k 40: one pass for the maximum and the NaN check, one
/// selection pass that compares each logit with the current k-th best (a binary heap of k
/// entries), and work on the k candidates. Exponentials are taken of candidates only, except
/// when top-k is off (every token is a candidate) or log-probabilities are asked for
/// (logsumexp over the row). The CPU backend runs it per row; models without a backend (test
/// doubles) sample their host logits with it.
public final class RowSampler {
    private var penalised: UnsafeMutablePointer<Float>
    private var penalisedCapacity = 0
    private var heapLogit: UnsafeMutablePointer<Float>
    private var heapID: UnsafeMutablePointer<Int32>
    private var mass: UnsafeMutablePointer<Double>
    private var capacity = 0

    public init() {
        penalised = .allocate(capacity: 1)
        heapLogit = .allocate(capacity: 1)
        heapID = .allocate(capacity: 1)
        mass = .allocate(capacity: 1)
    }

    deinit {
        penalised.deallocate()
        heapLogit.deallocate()
        heapID.deallocate()
        mass.deallocate()
    }

    private func reserve(candidates: Int) {
        guard candidates > capacity else { return }
        heapLogit.deallocate(); heapID.deallocate(); mass.deallocate()
        capacity = max(candidates, 2 * capacity)
        heapLogit = .allocate(capacity: capacity)
        heapID = .allocate(capacity: capacity)
        mass = .allocate(capacity: capacity)
    }

    private func reservePenalised(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > penalisedCapacity {
            penalised.deallocate()
            penalisedCapacity = count
            penalised = .allocate(capacity: count)
        }
        return penalised
    }

    /// Samples one row. `z` (V) raw logits; `p` the row's `SamplingColumn.count` parameters;
    /// `penalties` (token, output count) pairs; `out` (2 + 2·max(logprobs, 0)).
    public func sample(_ z: UnsafePointer<Float>, vocabularySize v: Int, parameters p: UnsafePointer<Float>,
                penalties: UnsafeBufferPointer<Int32>, logprobs: Int, out: UnsafeMutablePointer<Float>) {
        let n = max(logprobs, 0)
        // Raw pass: validity and maximum.
        var zMax = -Float.infinity
        var bad = false
        for i in 0..<v {
            let x = z[i]
            if x != x { bad = true; break }
            if x > zMax { zMax = x }
        }
        if bad || !zMax.isFinite {
            out[0] = -1
            out[1] = .nan
            for j in 0..<n { out[2 + j] = -1; out[2 + n + j] = .nan }
            return
        }
        var lse: Float = 0
        if logprobs >= 0 {
            var sum = 0.0
            for i in 0..<v { sum += Double(expf(z[i] - zMax)) }
            lse = zMax + Float(log(sum))
        }

        // Penalties on a copy of the row (the raw row stays for the log-probabilities).
        var w = z
        var wMax = zMax
        let pairs = penalties.count / 2
        if pairs > 0 {
            let copy = reservePenalised(v)
            copy.update(from: z, count: v)
            let rep = p[SamplingColumn.repetitionPenalty.rawValue]
            let presence = p[SamplingColumn.presencePenalty.rawValue]
            let frequency = p[SamplingColumn.frequencyPenalty.rawValue]
            for j in 0..<pairs {
                let token = Int(penalties[2 * j]), count = penalties[2 * j + 1]
                guard token >= 0, token < v else { continue }
                var x = copy[token]
                if rep != 1 { x = x > 0 ? x / rep : x * rep }
                x -= Float(count) * frequency + (count > 0 ? presence : 0)
                copy[token] = x
            }
            wMax = -Float.infinity
            for i in 0..<v where copy[i] > wMax { wMax = copy[i] }
            w = UnsafePointer(copy)
        }

        let temperature = p[SamplingColumn.temperature.rawValue]
        let chosen: Int
        if temperature == 0 || !wMax.isFinite {
            var best = 0
            for i in 1..<max(v, 1) where w[i] > w[best] { best = i }
            chosen = best
        } else {
            chosen = draw(w, vocabularySize: v, maximum: wMax, temperature: temperature, parameters: p)
        }
        out[0] = Float(chosen)
        out[1] = logprobs >= 0 ? z[chosen] - lse : 0
        if n > 0 {
            let count = selectTop(z, vocabularySize: v, k: min(n, v), cut: -.infinity)
            sortCandidatesByLogit(count)
            for j in 0..<n {
                if j < count {
                    out[2 + j] = Float(heapID[j])
                    out[2 + n + j] = heapLogit[j] - lse
                } else {
                    out[2 + j] = -1
                    out[2 + n + j] = -.infinity
                }
            }
        }
    }

    /// The temperature > 0 path: min-p, top-k, top-p, then the draw (see the op's contract).
    private func draw(_ w: UnsafePointer<Float>, vocabularySize v: Int, maximum wMax: Float, temperature: Float,
                      parameters p: UnsafePointer<Float>) -> Int {
        let invT = 1 / temperature
        let minP = p[SamplingColumn.minP.rawValue]
        let topKValue = Int(p[SamplingColumn.topK.rawValue])
        let topP = p[SamplingColumn.topP.rawValue]
        let u = Double(p[SamplingColumn.uniform.rawValue])
        // softmax(s)_i ≥ minP · max ⇔ w_i ≥ wMax + T·ln(minP).
        let cut: Float = minP > 0 ? wMax + temperature * logf(minP) : -.infinity
        let k = topKValue > 0 ? min(topKValue, v) : v
        @inline(__always) func weight(_ x: Float) -> Double { Double(expf((x - wMax) * invT)) }

        if k == v && topP >= 1 {
            // Every token at or above the cut is a candidate: walk the row itself.
            var total = 0.0
            for i in 0..<v where w[i] >= cut { total += weight(w[i]) }
            let target = u * total
            var acc = 0.0, last = 0
            for i in 0..<v where w[i] >= cut {
                acc += weight(w[i])
                last = i
                if acc > target { return i }
            }
            return last
        }

        var count: Int
        if k < v {
            count = selectTop(w, vocabularySize: v, k: k, cut: cut)
        } else {
            reserve(candidates: v)
            count = 0
            for i in 0..<v where w[i] >= cut {
                heapLogit[count] = w[i]
                heapID[count] = Int32(i)
                count += 1
            }
        }
        if topP < 1 && count > 1 {
            sortCandidatesByLogit(count)
            var total = 0.0
            for j in 0..<count { mass[j] = weight(heapLogit[j]); total += mass[j] }
            let reach = Double(topP) * total
            var cumulative = 0.0, keep = count
            for j in 0..<count {
                cumulative += mass[j]
                if cumulative >= reach { keep = j + 1; break }
            }
            count = keep
        }
        sortCandidatesByID(count)
        var total = 0.0
        for j in 0..<count { mass[j] = weight(heapLogit[j]); total += mass[j] }
        let target = u * total
        var acc = 0.0
        for j in 0..<count {
            acc += mass[j]
            if acc > target { return Int(heapID[j]) }
        }
        return Int(heapID[max(count - 1, 0)])
    }

    /// The k largest of `x` at or above `cut`, ranked by (value desc, id asc), into the candidate
    /// arrays (unordered: a min-heap on the worst kept). Returns how many were kept (≤ k).
    private func selectTop(_ x: UnsafePointer<Float>, vocabularySize v: Int, k: Int, cut: Float) -> Int {
        reserve(candidates: k)
        var count = 0
        var i = 0
        // Fill the heap with the first k tokens at or above the cut.
        while i < v && count < k {
            if x[i] >= cut {
                heapLogit[count] = x[i]
                heapID[count] = Int32(i)
                siftUp(count)
                count += 1
            }
            i += 1
        }
        guard count == k else { return count }
        // Later ids only displace the worst on a strictly larger value (ties keep the lower id).
        var worst = heapLogit[0]
        while i < v {
            let value = x[i]
            if value > worst {
                heapLogit[0] = value
                heapID[0] = Int32(i)
                siftDown(0, count)
                worst = heapLogit[0]
            }
            i += 1
        }
        return count
    }

    /// Heap order: the root is the worst kept candidate (smallest value; among equals, largest id).
    @inline(__always) private func worse(_ a: Int, _ b: Int) -> Bool {
        heapLogit[a] < heapLogit[b] || (heapLogit[a] == heapLogit[b] && heapID[a] > heapID[b])
    }

    @inline(__always) private func swapAt(_ a: Int, _ b: Int) {
        let l = heapLogit[a]; heapLogit[a] = heapLogit[b]; heapLogit[b] = l
        let d = heapID[a]; heapID[a] = heapID[b]; heapID[b] = d
    }

    private func siftUp(_ start: Int) {
        var c = start
        while c > 0 {
            let parent = (c - 1) / 2
            guard worse(c, parent) else { return }
            swapAt(c, parent)
            c = parent
        }
    }

    private func siftDown(_ start: Int, _ count: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            var child = left
            if left + 1 < count && worse(left + 1, left) { child = left + 1 }
            guard worse(child, parent) else { return }
            swapAt(child, parent)
            parent = child
        }
    }

    /// Candidates into (value desc, id asc) order.
    private func sortCandidatesByLogit(_ count: Int) {
        sortCandidates(count) { la, ia, lb, ib in la > lb || (la == lb && ia < ib) }
    }

    /// Candidates into ascending id order.
    private func sortCandidatesByID(_ count: Int) {
        sortCandidates(count) { _, ia, _, ib in ia < ib }
    }

    /// Sorts the candidate arrays together, in place (insertion sort for the usual few dozen
    /// candidates, heap sort past that: no allocation either way).
    private func sortCandidates(_ count: Int, by less: (Float, Int32, Float, Int32) -> Bool) {
        guard count > 1 else { return }
        if count <= 64 {
            for a in 1..<count {
                let l = heapLogit[a], d = heapID[a]
                var b = a - 1
                while b >= 0 && less(l, d, heapLogit[b], heapID[b]) {
                    heapLogit[b + 1] = heapLogit[b]
                    heapID[b + 1] = heapID[b]
                    b -= 1
                }
                heapLogit[b + 1] = l
                heapID[b + 1] = d
            }
            return
        }
        @inline(__always) func before(_ a: Int, _ b: Int) -> Bool { less(heapLogit[a], heapID[a], heapLogit[b], heapID[b]) }
        func sift(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && before(child, child + 1) { child += 1 }
                guard before(root, child) else { return }
                swapAt(root, child)
                root = child
            }
        }
        for start in stride(from: count / 2 - 1, through: 0, by: -1) { sift(start, count) }
        for end in stride(from: count - 1, to: 0, by: -1) {
            swapAt(0, end)
            sift(0, end)
        }
    }
}
