import Dispatch
import Foundation
import Tensors

/// The base model's weights with a LoRA adapter merged in at load, as mistral-inference's
/// `load_lora` does: W' = W + scale·(B·A) for every weight the adapter covers (default scale 2.0,
/// mistral-inference's `scaling`), every other weight passed through untouched.
///
/// It sits between the checkpoint reader and `TransformerWeights`, so whatever the upload does
/// next (FP8 quantisation, tensor-parallel sharding) sees the merged weights, and a merged tensor
/// lives only until it is uploaded. The sum is formed in f32 (B·A accumulated over the rank, then
/// scaled and added to the widened W) and rounded once to W's dtype; mistral-inference rounds B·A
/// to bf16 before the add, so the two can differ by one bf16 step where a sum lies near a rounding
/// boundary.
public struct LoRAMergedWeights: WeightSource {
    public let base: any WeightSource
    public let adapter: LoRAAdapter
    public let scale: Float

    public init(base: any WeightSource, adapter: LoRAAdapter, scale: Float = 2.0) {
        self.base = base
        self.adapter = adapter
        self.scale = scale
    }

    public var config: ModelConfig { base.config }

    public func tensor(_ key: WeightKey) throws -> HostTensor {
        let w = try base.tensor(key)
        guard let pair = adapter.pairs[key] else { return w }
        guard Self.mergeable.contains(w.dtype) else {
            throw CheckpointError(.unsupported, file: adapter.file.lastPathComponent, tensor: key.loraName(.a),
                                  "the base weight \(key.nativeName) is \(w.dtype); a LoRA merge needs bf16, f16 or f32 weights")
        }
        return Self.merge(w, pair, scale: scale)
    }

    /// The weight dtypes a merge can write back (FP8 checkpoints are merged before quantizing, not after).
    static let mergeable: Set<DType> = [.bf16, .f16, .f32]

    /// W (out, in) + scale · B (out, r) · A (r, in), in W's dtype. Rows in parallel; each row is
    /// widened once, gets r scaled rows of A added (contiguous, so the loop vectorises), and is
    /// rounded back.
    static func merge(_ w: HostTensor, _ pair: LoRAAdapter.Pair, scale: Float) -> HostTensor {
        let rows = w.shape[0], cols = w.shape[1], rank = pair.rank
        let a = pair.a.floats()   // (r, in)
        let b = pair.b.floats()   // (out, r)
        let storage = OwnedBytes(count: w.data.count)
        let out = MergeOutput(raw: storage.pointer)
        let dtype = w.dtype
        let chunk = 16
        let chunks = (rows + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let delta = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { delta.deallocate() }
            a.withUnsafeBufferPointer { aBuffer in
                b.withUnsafeBufferPointer { bBuffer in
                    let aBase = aBuffer.baseAddress!, bBase = bBuffer.baseAddress!
                    for row in (c * chunk)..<min(rows, (c + 1) * chunk) {
                        delta.initialize(repeating: 0, count: cols)
                        for k in 0..<rank {
                            let coefficient = bBase[row * rank + k]
                            let aRow = aBase + k * cols
                            for j in 0..<cols { delta[j] += coefficient * aRow[j] }
                        }
                        let offset = row * cols
                        switch dtype {
                        case .bf16:
                            let src = w.data.baseAddress!.assumingMemoryBound(to: UInt16.self) + offset
                            let dst = out.raw.assumingMemoryBound(to: UInt16.self) + offset
                            for j in 0..<cols { dst[j] = BFloat16.fromFloat(BFloat16.toFloat(src[j]) + scale * delta[j]) }
                        case .f16:
                            let src = w.data.baseAddress!.assumingMemoryBound(to: UInt16.self) + offset
                            let dst = out.raw.assumingMemoryBound(to: UInt16.self) + offset
                            for j in 0..<cols {
                                dst[j] = Float16(Float(Float16(bitPattern: src[j])) + scale * delta[j]).bitPattern
                            }
                        case .i32, .e4m3:
                            break   // refused in tensor(_:) before merging
                        case .f32:
                            let src = w.data.baseAddress!.assumingMemoryBound(to: Float.self) + offset
                            let dst = out.raw.assumingMemoryBound(to: Float.self) + offset
                            for j in 0..<cols { dst[j] = src[j] + scale * delta[j] }
                        }
                    }
                }
            }
        }
        return HostTensor(dtype: dtype, shape: w.shape,
                          data: UnsafeRawBufferPointer(start: storage.pointer, count: storage.count), owner: storage)
    }
}

/// The merged tensor the parallel rows write into.
private struct MergeOutput: @unchecked Sendable {
    // @unchecked: each concurrentPerform iteration writes its own rows, and the buffer is not
    // read until concurrentPerform has returned.
    let raw: UnsafeMutableRawPointer
}
