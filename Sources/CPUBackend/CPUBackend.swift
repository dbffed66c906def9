#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization
import Tensors

/// The CPU implementation of `ComputeBackend`: f32 activations and KV pools, weights read in
/// place in their stored dtype, all cores through a persistent thread pool, SIMD kernels.
///
/// It is also the numerical reference every other backend is checked against, so every op
/// accumulates in f32 and follows the protocol's doc comments literally. Ops run synchronously
/// on the calling thread plus the pool; `synchronize` has nothing to wait for.
///
/// Memory: nothing is allocated per op in steady state — activations, indices and pools are made
/// once by the caller, and the few temporaries live in grow-only scratch buffers.
public final class CPUBackend: ComputeBackend, @unchecked Sendable {
    // @unchecked: the mutable state (scratch buffers) is only touched inside `opLock`, which
    // every op holds for its whole duration, so ops never overlap.
    public typealias Tensor = CPUTensor

    public let name: String
    public var kvElementBytes: Int { 4 }
    public var gpuCount: Int { 0 }

    /// Every op reads every stored float dtype: bf16, f16, f32, and e4m3 with its row scales
    /// (the reference the GPU backends are checked against).
    public func supports(_ op: WeightOp, weights: DType) -> Bool {
        weights != .i32
    }
    /// Threads that take part in each op (the calling thread included).
    public var threadCount: Int { pool.threadCount }

    let pool: ThreadPool
    let scratch: ScratchSpace
    var threadBases: [UnsafeMutablePointer<Float>]
    /// One row sampler (with its grow-only scratch) per pool thread.
    let samplers: [RowSampler]
    let opLock = Mutex<Void>(())
    /// This backend's place in a tensor-parallel group (nil: a model on one rank).
    public let parallel: (group: CPUParallelGroup, rank: Int)?

    /// - Parameters:
    ///   - threads: pool size; defaults to every active processor.
    ///   - parallel: the group and rank when this backend is one rank of a split model.
    public init(threads: Int? = nil, parallel: (group: CPUParallelGroup, rank: Int)? = nil) {
        self.parallel = parallel
        let count = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        pool = ThreadPool(threads: count)
        scratch = ScratchSpace(threads: count, sharedBuffers: 6)
        threadBases = scratch.perThread.map { $0.pointer }
        samplers = (0..<count).map { _ in RowSampler() }
        name = "cpu (\(count) thread\(count == 1 ? "" : "s"))"
    }

    /// Runs an op body with the op lock held (ops must not overlap: they share scratch).
    @inline(__always)
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        try opLock.withLock { _ in try body() }
    }

    // MARK: memory

    public func upload(_ weight: HostTensor) throws -> CPUTensor {
        try CPUTensor(borrowing: [weight])
    }

    public func upload(stacking parts: [HostTensor]) throws -> CPUTensor {
        try CPUTensor(borrowing: parts)
    }

    public func upload(concatenatingRows parts: [HostTensor]) throws -> CPUTensor {
        try CPUTensor(borrowingRows: parts)
    }

    /// Runs `body`: there are no launches to save on the CPU.
    public func replayable(_ shape: StepShape, _ body: () throws -> Void) throws {
        try body()
    }

    public func makeActivation(_ shape: [Int]) throws -> CPUTensor {
        try CPUTensor(owning: .f32, shape: shape)
    }

    public func makeIndices(_ count: Int) throws -> CPUTensor {
        try CPUTensor(owning: .i32, shape: [count])
    }

    public func makeKVPool(blocks: Int, blockSize: Int, kvHeads: Int, headDim: Int) throws -> CPUTensor {
        guard blocks > 0, blockSize > 0, kvHeads > 0, headDim > 0 else {
            throw BackendError.shapeMismatch("KV pool needs positive sizes, got (\(blocks), \(blockSize), \(kvHeads), \(headDim))")
        }
        return try CPUTensor(owning: .f32, shape: [blocks, blockSize, kvHeads, headDim])
    }

    public func write(_ values: [Int32], to tensor: CPUTensor) throws {
        try check(tensor, .i32, atLeast: values.count, "write(_:[Int32]) destination")
        locked {
            values.withUnsafeBufferPointer { source in
                guard let base = source.baseAddress else { return }
                tensor.ints.update(from: base, count: source.count)
            }
        }
    }

    public func write(_ values: [Float], to tensor: CPUTensor) throws {
        try check(tensor, .f32, atLeast: values.count, "write(_:[Float]) destination")
        locked {
            values.withUnsafeBufferPointer { source in
                guard let base = source.baseAddress else { return }
                tensor.floats.update(from: base, count: source.count)
            }
        }
    }

    public func readFloats(_ tensor: CPUTensor, count: Int) throws -> [Float] {
        guard count >= 0, count <= tensor.count else {
            throw BackendError.shapeMismatch("readFloats(count: \(count)) of a tensor with \(tensor.count) elements")
        }
        return locked {
            let base = UnsafeRawPointer(tensor.base)
            switch tensor.dtype {
            case .f32: return Array(UnsafeBufferPointer(start: tensor.floats, count: count))
            case .i32: return (0..<count).map { Float(tensor.ints[$0]) }
            case .bf16: return (0..<count).map { BF16Element.load1(base, $0) }
            case .f16: return (0..<count).map { F16Element.load1(base, $0) }
            case .e4m3:
                let cols = max(1, tensor.shape.last ?? 1), scales = tensor.partScales![0]
                return (0..<count).map { E4M3Element.load1(base, $0) * scales[$0 / cols] }
            }
        }
    }

    public func synchronize() throws {}

    // MARK: validation

    /// Throws unless `tensor` is a writable-or-readable buffer of `dtype` with ≥ `count` elements.
    func check(_ tensor: CPUTensor, _ dtype: DType, atLeast count: Int, _ what: @autoclosure () -> String) throws {
        guard tensor.dtype == dtype else {
            throw BackendError.shapeMismatch("\(what()): expected \(dtype), got \(tensor.dtype)")
        }
        guard count >= 0, tensor.count >= count else {
            throw BackendError.shapeMismatch("\(what()): needs \(count) elements, tensor \(tensor.shape) has \(tensor.count)")
        }
        if dtype == .f32 || dtype == .i32, !tensor.isOwned {
            throw BackendError.shapeMismatch("\(what()): a weight cannot be used as an activation buffer")
        }
    }

    /// Throws unless `tensor` is a float weight (any stored float dtype) with exactly `count`
    /// elements per part and `parts` parts.
    func checkWeight(_ tensor: CPUTensor, elements count: Int, parts: Int = 1, _ what: @autoclosure () -> String) throws {
        guard tensor.dtype != .i32 else {
            throw BackendError.shapeMismatch("\(what()): weights must be bf16, f16, f32 or e4m3, got i32")
        }
        let uploaded = tensor.parts.count == parts && tensor.partCount == count
        // An owned f32 buffer may also serve as a single weight (e.g. a norm weight computed at run time).
        let ownedSingle = tensor.isOwned && parts == 1 && tensor.count >= count
        guard uploaded || ownedSingle else {
            throw BackendError.shapeMismatch(
                "\(what()): expected \(parts) part(s) of \(count) elements, got \(tensor.parts.count) of \(tensor.partCount) (shape \(tensor.shape))")
        }
    }

    /// `checkWeight` for a norm weight (D), which the FP8 scheme keeps as stored: an e4m3 one
    /// has no row scales to speak of and is refused.
    func checkNormWeight(_ tensor: CPUTensor, elements count: Int, _ what: @autoclosure () -> String) throws {
        guard tensor.dtype != .e4m3 else {
            throw BackendError.unsupported("\(what()): norm weights stay bf16/f16/f32, got e4m3")
        }
        try checkWeight(tensor, elements: count, what())
    }

    /// Reads `count` i32 values and checks each lies in 0..<limit.
    func checkIndices(_ tensor: CPUTensor, count: Int, below limit: Int, _ what: String) throws {
        try check(tensor, .i32, atLeast: count, what)
        let p = tensor.ints
        for i in 0..<count where p[i] < 0 || Int(p[i]) >= limit {
            throw BackendError.shapeMismatch("\(what)[\(i)] = \(p[i]) is outside 0..<\(limit)")
        }
    }
}
