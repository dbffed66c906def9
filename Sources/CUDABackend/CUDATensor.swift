import CUDADriver
import Tensors

/// A buffer in GPU memory: weights (their stored dtype), activations (f32), indices (i32) or a
/// KV pool (bf16). Freed when the last reference goes.
public final class CUDATensor: @unchecked Sendable {
    // @unchecked: every stored property is immutable; the memory it names is only written by
    // work queued on the backend's stream.
    public let pointer: CUdeviceptr
    public let byteCount: Int
    public let dtype: DType
    public let shape: [Int]
    /// e4m3 weights: their f32 row scales on the device, one per output row, laid out as the rows
    /// are — (N) for a matrix, (E, N) for a stack of E matrices, ΣN for matrices joined by rows
    /// (the CPU backend's parts, in the same order). 0 for every other tensor.
    public let rowScales: CUdeviceptr
    /// How many f32 scales `rowScales` holds (0 without).
    public let scaleCount: Int
    let device: CUDADevice
    /// False for a view of a backend scratch buffer, which the backend frees itself.
    let ownsMemory: Bool

    init(pointer: CUdeviceptr, byteCount: Int, dtype: DType, shape: [Int], device: CUDADevice, ownsMemory: Bool = true,
         rowScales: CUdeviceptr = 0, scaleCount: Int = 0) {
        self.pointer = pointer
        self.byteCount = byteCount
        self.dtype = dtype
        self.shape = shape
        self.device = device
        self.ownsMemory = ownsMemory
        self.rowScales = rowScales
        self.scaleCount = scaleCount
    }

    public var elementCount: Int { byteCount / dtype.byteSize }

    deinit {
        if ownsMemory {
            device.free(pointer)
            if rowScales != 0 { device.free(rowScales) }
        }
    }
}
