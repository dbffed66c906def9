import CUDADriver
import Tensors

/// The tensor-parallel collectives: NCCL on a rank of an `NCCLGroup`. A backend on its own GPU
/// without a group is a group of one: a reduction or a gather is a device copy (or nothing, in
/// place). All queue on the compute stream, so they are recorded into the step graphs like the
/// kernels around them.
extension CUDABackend {
    public func zero(_ tensor: CUDATensor, count: Int) throws {
        try require(tensor, count, f32Only, "zero")
        guard count > 0 else { return }
        try device.api.check(device.api.cuMemsetD32Async(tensor.pointer, 0, count, stream), "cuMemsetD32Async")
    }

    public func allReduceSum(_ send: CUDATensor, into receive: CUDATensor, count: Int) throws {
        try require(send, count, f32Only, "allReduceSum send")
        try require(receive, count, f32Only, "allReduceSum receive")
        guard count > 0 else { return }
        if let parallel {
            try device.makeCurrent()
            let nccl = parallel.group.nccl
            try nccl.check(nccl.ncclAllReduce(send.pointer, receive.pointer, count, NCCL.float32, NCCL.sum,
                                              try parallel.group.comm(rank: parallel.rank), stream), "ncclAllReduce(\(count))")
            return
        }
        guard send.pointer != receive.pointer else { return }
        try device.api.check(device.api.cuMemcpyDtoDAsync(receive.pointer, send.pointer, count * 4, stream), "cuMemcpyDtoDAsync_v2")
    }

    public func allGatherColumns(_ shard: CUDATensor, into full: CUDATensor, rows: Int, columns: Int) throws {
        try require(shard, rows * columns, f32Only, "allGatherColumns shard")
        try require(full, rows * columns * (parallel?.group.size ?? 1), f32Only, "allGatherColumns full")
        guard rows * columns > 0 else { return }
        if let parallel {
            // One gather per row, so rank r's columns land beside the others' in that row of
            // `full`; grouped, NCCL runs them as one operation.
            try device.makeCurrent()
            let nccl = parallel.group.nccl, comm = try parallel.group.comm(rank: parallel.rank)
            let width = columns * parallel.group.size
            try nccl.check(nccl.ncclGroupStart(), "ncclGroupStart")
            var status: Int32 = 0
            for row in 0..<rows where status == 0 {
                status = nccl.ncclAllGather(shard.pointer + UInt64(row * columns * 4), full.pointer + UInt64(row * width * 4),
                                            columns, NCCL.float32, comm, stream)
            }
            try nccl.check(nccl.ncclGroupEnd(), "ncclGroupEnd")
            try nccl.check(status, "ncclAllGather(\(rows) × \(columns))")
            return
        }
        try device.api.check(device.api.cuMemcpyDtoDAsync(full.pointer, shard.pointer, rows * columns * 4, stream), "cuMemcpyDtoDAsync_v2")
    }
}
