import CUDADriver
import Tensors

/// e4m3 weights' row scales on upload: a device f32 buffer beside the codes, laid out as the rows
/// are (CUDATensor.rowScales), filled part after part through the same staged uploader.
extension CUDABackend {
    /// The parts' row scales (e4m3), one part after another, into `t.rowScales`.
    func copyRowScales(_ parts: [HostTensor], to t: CUDATensor) throws {
        guard t.dtype.hasRowScales else { return }
        var offset = 0
        for p in parts {
            guard let scales = p.rowScales, offset + scales.count <= t.scaleCount else {
                throw BackendError.shapeMismatch("e4m3 weight \(p.shape) without one row scale per row")
            }
            try uploader.copy(UnsafeRawBufferPointer(scales), to: t.rowScales + CUdeviceptr(offset * 4))
            offset += scales.count
        }
    }

    /// How many row scales the parts carry together (0 unless e4m3).
    func scaleRows(_ parts: [HostTensor]) -> Int {
        parts.reduce(0) { $0 + ($1.dtype.hasRowScales ? $1.rowScales?.count ?? 0 : 0) }
    }
}
