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
    let device: CUDADevice
    /// False for a view of a backend scratch buffer, which the backend frees itself.
    let ownsMemory: Bool

    init(pointer: CUdeviceptr, byteCount: Int, dtype: DType, shape: [Int], device: CUDADevice, ownsMemory: Bool = true) {
        self.pointer = pointer
        self.byteCount = byteCount
        self.dtype = dtype
        self.shape = shape
        self.device = device
        self.ownsMemory = ownsMemory
    }

    public var elementCount: Int { byteCount / dtype.byteSize }

    deinit { if ownsMemory { device.free(pointer) } }
}
