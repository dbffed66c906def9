import Foundation
import Tensors

extension TensorArchive {
    /// The stored dtype of `name` (nil when absent or not a dtype we load).
    func dtype(of name: String) -> DType? { tensors[name]?.dtype }

    /// An F8_E4M3 weight `name` (N, K) with its scale tensor `scaleName`, as a `HostTensor` with
    /// one f32 scale per output row. Accepted scales: per tensor (shape () or (1)) or per output
    /// row ((N) or (N, 1)), stored F32 (used in place when aligned) or BF16/F16 (widened to an
    /// owned copy); a per-tensor scale is repeated for every row. Anything else (block-wise or
    /// per-group scales) is refused.
    func fp8Tensor(named name: String, scaleName: String) throws -> HostTensor {
        guard let t = tensors[name], t.dtype == .e4m3, t.shape.count == 2 else {
            throw CheckpointError(.unsupportedDType, file: fileName(of: name), tensor: name,
                                  "an F8_E4M3 weight must be 2-D (norm weights cannot be FP8)")
        }
        guard let s = tensors[scaleName] else {
            throw CheckpointError(.missingTensor, file: fileName(of: name), tensor: scaleName,
                                  "the F8_E4M3 weight '\(name)' needs its scale tensor beside it")
        }
        let rows = t.shape[0]
        let count = checkedElementCount(s.shape) ?? -1
        let perTensor = s.shape.isEmpty || s.shape == [1]
        guard perTensor || s.shape == [rows] || s.shape == [rows, 1] else {
            throw CheckpointError(.wrongShape, file: s.file.name, tensor: scaleName,
                                  "scale shape \(s.shape) is neither per tensor nor per output row (\(rows)); block-wise FP8 scales are not supported")
        }
        guard let scaleType = s.dtype, scaleType != .e4m3, scaleType != .i32 else {
            throw CheckpointError(.unsupportedDType, file: s.file.name, tensor: scaleName, "scales must be F32, BF16 or F16, got \(s.dtypeName)")
        }
        let codes = t.file.slice(offset: t.offset, length: t.byteCount)
        let raw = s.file.slice(offset: s.offset, length: s.byteCount)
        if scaleType == .f32, !perTensor, s.offset % 4 == 0, let base = raw.baseAddress {
            let scales = UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: rows)
            return HostTensor(dtype: .e4m3, shape: t.shape, data: codes, rowScales: scales, owner: KeepAlive([t.file, s.file]))
        }
        // Widen (and for a per-tensor scale, repeat) into an owned copy: 4 bytes a row.
        let owned = OwnedBytes(count: rows * 4)
        let scales = owned.pointer.bindMemory(to: Float.self, capacity: rows)
        for r in 0..<rows {
            let i = perTensor ? 0 : r
            guard i < count else { break }
            switch scaleType {
            case .f32: scales[r] = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
            case .bf16: scales[r] = BFloat16.toFloat(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            case .f16: scales[r] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            case .i32, .e4m3: break
            }
        }
        return HostTensor(dtype: .e4m3, shape: t.shape, data: codes, rowScales: UnsafeBufferPointer(start: scales, count: rows),
                          owner: KeepAlive([t.file, s.file, owned]))
    }
}
