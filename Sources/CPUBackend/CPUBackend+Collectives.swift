import Tensors

/// The tensor-parallel collectives of a CPU rank (see `CPUParallelGroup`). A backend made
/// without a group is a group of one: reductions and gathers are copies.
extension CPUBackend {
    public func zero(_ tensor: CPUTensor, count: Int) throws {
        try check(tensor, .f32, atLeast: count, "zero")
        locked { tensor.floats.update(repeating: 0, count: count) }
    }

    public func allReduceSum(_ send: CPUTensor, into receive: CPUTensor, count: Int) throws {
        try check(send, .f32, atLeast: count, "allReduceSum send")
        try check(receive, .f32, atLeast: count, "allReduceSum receive")
        guard let parallel else {
            if send !== receive { receive.floats.update(from: send.floats, count: count) }
            return
        }
        try parallel.group.allReduceSum(rank: parallel.rank, send: send.floats, receive: receive.floats, count: count)
    }

    public func allGatherColumns(_ shard: CPUTensor, into full: CPUTensor, rows: Int, columns: Int) throws {
        let ranks = parallel?.group.size ?? 1
        try check(shard, .f32, atLeast: rows * columns, "allGatherColumns shard")
        try check(full, .f32, atLeast: rows * columns * ranks, "allGatherColumns full")
        guard let parallel else {
            full.floats.update(from: shard.floats, count: rows * columns)
            return
        }
        try parallel.group.allGatherColumns(rank: parallel.rank, shard: shard.floats, full: full.floats, rows: rows, columns: columns)
    }
}
