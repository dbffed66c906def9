import CUDADriver
import Foundation
import Tensors

/// The GPUs of one tensor-parallel group in this process: one NCCL communicator per GPU, made
/// together by `ncclCommInitAll`. Each rank's backend issues its collectives on its own stream
/// from its own thread, so they are recorded into that rank's step graphs like its kernels.
///
/// NVLink multicast (NVLS) is turned off before NCCL starts unless `NCCL_NVLS_ENABLE` is set:
/// the lent machines must keep it off, and the small all-reduces of decode do not need it.
public final class NCCLGroup: CollectiveGroup, @unchecked Sendable {
    // @unchecked: `comms` is fixed at creation; `failure` is guarded by `lock`.
    public let size: Int
    public let ordinals: [Int]
    public let nccl: NCCL
    let comms: [NCCL.Comm]
    private let lock = NSLock()
    private var failure: String?

    /// A communicator over GPUs `ordinals` (rank r on `ordinals[r]`).
    public init(ordinals: [Int], environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard !ordinals.isEmpty, Set(ordinals).count == ordinals.count, ordinals.allSatisfy({ $0 >= 0 }) else {
            throw BackendError.unsupported("GPU list \(ordinals) for tensor parallelism: give distinct ordinals")
        }
        if environment["NCCL_NVLS_ENABLE"] == nil { setenv("NCCL_NVLS_ENABLE", "0", 1) }
        let api = try NCCL.load(environment: environment)
        var handles = [NCCL.Comm?](repeating: nil, count: ordinals.count)
        let devices = ordinals.map(Int32.init)
        try api.check(devices.withUnsafeBufferPointer { api.ncclCommInitAll(&handles, Int32(devices.count), $0.baseAddress!) },
                      "ncclCommInitAll(\(ordinals))")
        nccl = api
        comms = handles.map { $0! }
        size = ordinals.count
        self.ordinals = ordinals
    }

    deinit { for c in comms { _ = nccl.ncclCommDestroy(c) } }

    /// NCCL cannot cancel collectives already queued on the GPUs: the communicators are aborted
    /// and the group stays unusable (a restart is needed), which every later collective says.
    public func abort(_ reason: String) {
        lock.withLock {
            guard failure == nil else { return }
            failure = reason
            for c in comms { _ = nccl.ncclCommAbort(c) }
        }
    }

    public func reset() {}

    func comm(rank: Int) throws -> NCCL.Comm {
        if let failure = lock.withLock({ failure }) {
            throw BackendError.device("the GPUs' NCCL group was aborted after a failed step (\(failure)); restart the process")
        }
        return comms[rank]
    }
}
