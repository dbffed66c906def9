import Foundation
import CUDADriver
import Tensors

/// Kernel launches and the argument checks every op makes before one.
extension CUDABackend {
    func launch(_ kernel: Kernel, grid: (Int, Int, Int), block: (Int, Int, Int) = (256, 1, 1),
                sharedBytes: Int = 0, programmatic: Bool = false, _ arguments: [KernelArgument]) throws {
        let f = try kernels.function(kernel)
        try device.launch(f, grid: grid, block: block, sharedBytes: sharedBytes, stream: stream,
                          arguments: arguments, label: kernel.symbol, programmatic: programmatic && programmaticLaunch)
    }

    /// Blocks for a grid-stride loop over `n` elements.
    func gridFor(_ n: Int, threads: Int = 256) -> (Int, Int, Int) {
        (max(1, min((n + threads - 1) / threads, device.multiprocessors * 16)), 1, 1)
    }

    /// Throws unless `t` holds at least `elements` of `dtype` (guards every kernel against
    /// writing past a buffer when the caller's counts and the buffer disagree).
    func require(_ t: CUDATensor, _ elements: Int, _ dtypes: Set<DType>, _ what: String) throws {
        guard dtypes.contains(t.dtype) else {
            throw BackendError.shapeMismatch("\(what) is \(t.dtype.rawValue), expected \(dtypes.map(\.rawValue).sorted().joined(separator: "/"))")
        }
        guard elements >= 0, t.elementCount >= elements else {
            throw BackendError.shapeMismatch("\(what) \(t.shape) holds \(t.elementCount) elements, op needs \(elements)")
        }
    }
}

/// Weight dtypes the templated kernels are built for (constants: no Set built per op call).
let weightDTypes: Set<DType> = [.bf16, .f16, .f32]
/// Weight dtypes of the matrix ops (normedMatmul, matmulAdd, the MoE experts): the FP8 scheme's
/// e4m3 with row scales besides (norms, embeddings and the router stay `weightDTypes`).
let matrixDTypes: Set<DType> = [.bf16, .f16, .f32, .e4m3]
let f32Only: Set<DType> = [.f32]
let i32Only: Set<DType> = [.i32]
