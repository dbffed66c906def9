import CUDADriver
import Tensors

extension CUDABackend {
    /// Bytes one KV block takes across all layers: K and V, bf16.
    public static func kvBytesPerBlock(layers: Int, blockSize: Int, kvHeads: Int, headDim: Int) -> Int {
        layers * 2 * blockSize * kvHeads * headDim * DType.bf16.byteSize
    }

    /// How many KV blocks fit once weights are loaded, keeping the process's device memory at or
    /// under `memoryFraction` of the card (`--gpu-memory-fraction`, default 0.9): the budget is
    /// fraction × total − (total − free), i.e. what is already in use counts against it.
    /// Throws `BackendError.outOfMemory` with the numbers when not even `minimumBlocks` fit.
    public func kvPoolBlocks(bytesPerBlock: Int, memoryFraction: Double = 0.9, minimumBlocks: Int = 1) throws -> Int {
        guard memoryFraction > 0, memoryFraction <= 1 else {
            throw BackendError.unsupported("--gpu-memory-fraction \(memoryFraction) is outside (0, 1]")
        }
        let (free, total) = try device.memoryInfo()
        // Leave room for the scratch buffers and cuBLASLt workspace that grow on first use.
        let reserve = 256 << 20
        let budget = Int(Double(total) * memoryFraction) - (total - free) - reserve
        let blocks = budget > 0 ? budget / max(bytesPerBlock, 1) : 0
        if blocks < minimumBlocks {
            throw BackendError.outOfMemory(
                requestedBytes: minimumBlocks * bytesPerBlock,
                detail: "KV cache on \(device.name): \(free >> 20) MiB free of \(total >> 20) MiB; " +
                        "--gpu-memory-fraction \(memoryFraction) leaves \(max(budget, 0) >> 20) MiB, " +
                        "need \((minimumBlocks * bytesPerBlock) >> 20) MiB for \(minimumBlocks) blocks " +
                        "(raise the fraction, use a smaller model, or more GPUs)")
        }
        return blocks
    }

    /// (free, total) device memory in bytes.
    public func memoryInfo() throws -> (free: Int, total: Int) { try device.memoryInfo() }
}
