import CUDABackend
import Dispatch
import Foundation
import Tensors
import BackendConformance

/// The MoE experts alone at Mixtral-8x7B shapes (D 4096, F 14336, E 8, top-2), each expert path
/// at each step size, from decode batches to a 2048-token prefill chunk: which path wins where
/// (the `moeExperts` dispatch), against the copy bandwidth and the GEMM rate measured in the
/// same run. Host clock around 10 launches between syncs (the chains are ≥ 100 µs, so the
/// launch overhead is a few percent); routing is uniform random top-2, drawn on the host.
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
        let paths: [CUDABackend.MoEPath] = [.tensorCore, .dense, .grouped, .automatic]
        say("  tokens  path        time       weights touched   % of copy   TFLOP/s (routed)   % of GEMM   max |Δ| vs dense")
        let saved = backend.moePath
        defer { backend.moePath = saved }
        for t in [12, 16, 32, 64, 128, 256, 512, 2048] {
            let x = try backend.makeActivation([t, d])
            try backend.write(rng.floats(t * d), to: x)
            var ids: [Int32] = [], weights: [Float] = []
            for _ in 0..<t {
                let a = Int32.random(in: 0..<Int32(e), using: &rng)
                var b = Int32.random(in: 0..<Int32(e - 1), using: &rng)
                if b >= a { b += 1 }
                ids += [a, b]
                let w = Float.random(in: 0.2..<0.8, using: &rng)
                weights += [w, 1 - w]
            }
            let touched = Set(ids).count
            let idT = try backend.makeIndices(t * k), wT = try backend.makeActivation([t, k]), out = try backend.makeActivation([t, d])
            try backend.write(ids, to: idT)
            try backend.write(weights, to: wT)
            var reference: [Float]?
            for path in [CUDABackend.MoEPath.dense] + paths.filter({ $0 != .dense }) {
                backend.moePath = path
                let run = { try backend.moeExperts(x, w1: w1, w2: w2, w3: w3, ids: idT, weights: wT, out: out,
                                                   rows: t, dim: d, hidden: f, experts: e, topK: k) }
                for _ in 0..<2 { try run() }
                try backend.synchronize()
                let n = 10
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<n { try run() }
                try backend.synchronize()
                let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(n)
                let result = try backend.readFloats(out, count: t * d)
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
}
