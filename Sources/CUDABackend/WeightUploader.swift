import Foundation
import CUDADriver

/// Progress of weight uploads, reported after every staged chunk.
public struct UploadProgress: Sendable {
    public var bytesUploaded: Int
    /// What the caller announced with `expectUpload(totalBytes:)`, if anything.
    public var totalBytes: Int?
    public var seconds: Double
    public var gigabytesPerSecond: Double { seconds > 0 ? Double(bytesUploaded) / seconds / 1e9 : 0 }
    /// Estimated seconds left, when the total is known.
    public var secondsLeft: Double? {
        guard let totalBytes, bytesUploaded > 0 else { return nil }
        return seconds * Double(totalBytes - bytesUploaded) / Double(bytesUploaded)
    }
}

/// Streams host bytes (usually a memory-mapped checkpoint) to the GPU through two pinned staging
/// buffers: while the DMA engine copies chunk n from one buffer, the CPU reads chunk n+1 from the
/// file into the other, so disk reads and PCIe copies overlap. Copies run on their own stream;
/// the compute stream is made to wait for them (an event), never the host.
final class WeightUploader: @unchecked Sendable {
    // @unchecked: all mutable state is touched only under `lock` (uploads are serialised).
    static let chunkBytes = 32 << 20

    let device: CUDADevice
    let copyStream: CUhandle
    let computeStream: CUhandle
    private let lock = NSLock()
    private var staging: [UnsafeMutableRawPointer] = []
    private var chunkDone: [CUhandle] = []
    private var next = 0
    private var bytesUploaded = 0
    private var totalBytes: Int?
    private var started: Double?
    private var handler: (@Sendable (UploadProgress) -> Void)?

    init(device: CUDADevice, computeStream: CUhandle) throws {
        self.device = device
        self.computeStream = computeStream
        copyStream = try device.createStream()
    }

    deinit {
        _ = device.api.cuStreamSynchronize(copyStream)
        for p in staging { device.freeHost(p) }
        for e in chunkDone { _ = device.api.cuEventDestroy(e) }
        _ = device.api.cuStreamDestroy(copyStream)
    }

    func setProgress(totalBytes: Int?, handler: (@Sendable (UploadProgress) -> Void)?) {
        lock.withLock {
            self.totalBytes = totalBytes
            self.handler = handler
            bytesUploaded = 0
            started = nil
        }
    }

    /// Copies `source` to device address `destination`; returns once `source` is no longer
    /// needed (every byte is in a staging buffer or on the device), not when the copy finishes.
    func copy(_ source: UnsafeRawBufferPointer, to destination: CUdeviceptr) throws {
        try lock.withLock {
            try device.makeCurrent()
            let api = device.api
            if staging.isEmpty {
                for _ in 0..<2 {
                    staging.append(try device.allocateHost(Self.chunkBytes))
                    chunkDone.append(try device.createEvent())
                }
            }
            if started == nil { started = now() }
            var offset = 0
            while offset < source.count {
                let n = min(Self.chunkBytes, source.count - offset)
                let i = next
                next = (next + 1) % staging.count
                // Wait until the DMA that last used this buffer is done, then refill it.
                try api.check(api.cuEventSynchronize(chunkDone[i]), "cuEventSynchronize (staging buffer)")
                staging[i].copyMemory(from: source.baseAddress! + offset, byteCount: n)
                try api.check(api.cuMemcpyHtoDAsync(destination + CUdeviceptr(offset), staging[i], n, copyStream),
                              "cuMemcpyHtoDAsync_v2 (weight upload, \(n) bytes)")
                try api.check(api.cuEventRecord(chunkDone[i], copyStream), "cuEventRecord")
                offset += n
                bytesUploaded += n
                if let handler, let started {
                    handler(UploadProgress(bytesUploaded: bytesUploaded, totalBytes: totalBytes, seconds: now() - started))
                }
            }
            // Kernels queued after this upload see the weights: the compute stream waits on the
            // copy stream's last event (a device-side dependency; the host does not block).
            let last = chunkDone[(next + staging.count - 1) % staging.count]
            try api.check(api.cuStreamWaitEvent(computeStream, last, 0), "cuStreamWaitEvent")
        }
    }

    /// Waits for every queued upload (timing the real end of a model load).
    func finish() throws -> UploadProgress {
        try lock.withLock {
            try device.makeCurrent()
            try device.api.check(device.api.cuStreamSynchronize(copyStream), "cuStreamSynchronize (uploads)")
            return UploadProgress(bytesUploaded: bytesUploaded, totalBytes: totalBytes, seconds: started.map { now() - $0 } ?? 0)
        }
    }

    private func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

extension CUDABackend {
    /// Announces the bytes about to be uploaded (for the ETA) and a handler called after every
    /// 32 MiB chunk with bytes done and GB/s. Resets the counters.
    public func setUploadProgress(totalBytes: Int?, _ handler: (@Sendable (UploadProgress) -> Void)?) {
        uploader.setProgress(totalBytes: totalBytes, handler: handler)
    }

    /// Waits until every upload has reached the device; returns the totals (bytes, seconds, GB/s).
    public func finishUploads() throws -> UploadProgress { try uploader.finish() }
}
