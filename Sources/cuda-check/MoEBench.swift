import CUDABackend
import Dispatch
import Foundation
import Tensors
import BackendConformance

/// The MoE feed-forward (`normedMoE`) at Mixtral-8x7B shapes (D 4096, F 14336, E 8, top-2), each
/// expert path at each step size, from decode batches to a 2048-token prefill chunk: which path
/// wins where (the normedMoE dispatch), against the copy bandwidth and the GEMM rate measured in
/// the same run. Host clock around 10 launches between syncs (the chains are ≥ 100 µs, so the
/// launch overhead is a few percent). The norm, the router (E × D, 64 KiB) and the routing are
/// in the time, a few µs against ≥ 100; the random router and activations route about
/// uniformly, and the experts touched are counted from the host's own routing of the same
/// inputs (f32, so a near-tie may count differently from the device: a count, not a check).
extension Bench {
    func moeBench(bandwidth: Double, gemmRate: Double) throws {
        let (d, f, e, k) = (4096, 14336, 8, 2)
        var rng = SplitMix64(seed: 11)
        // Two distinct random experts, alternated: every expert is 352 MB, far past L2 either way.
        let parts = (0..<2).map { _ in (HostTensor.owning(rng.floats(f * d, scale: 0.02), shape: [f, d], dtype: .bf16),
                                        HostTensor.owning(rng.floats(d * f, scale: 0.02), shape: [d, f], dtype: .bf16)) }
        let w1 = try backend.upload(stacking: (0..<e).map { parts[$0 % 2].0 })
        let w3 = try backend.upload(stacking: (0..<e).map { parts[($0 + 1) % 2].0 })
        let w2 = try backend.upload(stacking: (0..<e).map { parts[$0 % 2].1 })
        let expertBytes = Double(3 * f * d * 2)
        let normValues = (0..<d).map { _ in Float.random(in: 0.5..<1.5, using: &rng) }
        let routerValues = rng.floats(e * d, scale: 0.3)
        let norm = try backend.upload(HostTensor.owning(normValues, shape: [d], dtype: .bf16))
        let router = try backend.upload(HostTensor.owning(routerValues, shape: [e, d], dtype: .bf16))
        let paths: [CUDABackend.MoEPath] = [.tensorCore, .dense, .grouped, .automatic]
        say("  tokens  path        time       weights touched   % of copy   TFLOP/s (routed)   % of GEMM   max |Δ| vs dense")
        let saved = backend.moePath
        defer { backend.moePath = saved }
        for t in [12, 16, 32, 64, 128, 256, 512, 2048] {
            let x = try backend.makeActivation([t, d])
            let xValues = rng.floats(t * d)
            try backend.write(xValues, to: x)
            let touched = Self.expertsRouted(x: xValues, norm: normValues, router: routerValues, rows: t, dim: d,
                                             experts: e, topK: k)
            let out = try backend.makeActivation([t, d])
            let zeros = [Float](repeating: 0, count: t * d)
            var reference: [Float]?
            for path in [CUDABackend.MoEPath.dense] + paths.filter({ $0 != .dense }) {
                backend.moePath = path
                // normedMoE adds into `out`: one call from zero gives the mixture to compare.
                let run = { try backend.normedMoE(x, norm: norm, eps: 1e-5, router: router, w1: w1, w2: w2, w3: w3,
                                                  into: out, rows: t, dim: d, hidden: f, experts: e, topK: k) }
                try backend.write(zeros, to: out)
                try run()
                let result = try backend.readFloats(out, count: t * d)
                try run()
                try backend.synchronize()
                let n = 10
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<n { try run() }
                try backend.synchronize()
                let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(n)
                let diff = reference.map { r in zip(r, result).map { abs($0 - $1) }.max() ?? 0 } ?? 0
                if reference == nil { reference = result }
                let bytes = Double(touched) * expertBytes
                let flops = 2.0 * Double(t * k) * 3 * Double(f * d)
                let name = path.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                say(String(format: "  %6d  ", t) + name + String(format: " %8.1f us   %2d × 352 MB   %9.1f%%   %9.1f        %9.1f%%   %.2e",
                           s * 1e6, touched, 100 * bytes / s / bandwidth,
                           flops / s / 1e12, 100 * flops / s / gemmRate, diff))
            }
        }
    }

    /// Distinct experts chosen by the Mixtral routing (top-k of rmsNorm(x)·routerᵀ, ties → lower
    /// index) of `rows` tokens, computed on the host in f32. The weights are rounded to bf16 as
    /// the upload stores them.
    static func expertsRouted(x: [Float], norm: [Float], router: [Float], rows: Int, dim: Int, experts: Int, topK: Int) -> Int {
        let normB = norm.map { BFloat16.toFloat(BFloat16.fromFloat($0)) }, routerB = router.map { BFloat16.toFloat(BFloat16.fromFloat($0)) }
        var chosen = Set<Int>()
        for t in 0..<rows {
            let row = x[(t * dim)..<((t + 1) * dim)]
            let rms = 1 / (row.reduce(0) { $0 + $1 * $1 } / Float(dim) + 1e-5).squareRoot()
            let normed = zip(row, normB).map { $0 * rms * $1 }
            let logits = (0..<experts).map { e in zip(normed, routerB[(e * dim)..<((e + 1) * dim)]).reduce(0) { $0 + $1.0 * $1.1 } }
            let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            chosen.formUnion(order.prefix(topK))
        }
        return chosen.count
    }
}
