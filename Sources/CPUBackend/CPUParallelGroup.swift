import Foundation
import Tensors

/// The ranks of one tensor-parallel group as threads of one process: the CPU's collectives.
///
/// Each collective is two rendezvous: every rank publishes its buffers and waits for the others;
/// then rank r reduces (or copies) its 1/N of the elements for every rank and waits again, after
/// which all buffers are free to reuse. Sums run over the ranks in order 0..<N, so every rank ends
/// with the same bits. A rank that fails mid-step calls `abort`, and the others' waits throw
/// instead of hanging.
public final class CPUParallelGroup: CollectiveGroup, @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`.
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var failure: String?
    private var sends: [UnsafeMutableRawPointer?]
    private var receives: [UnsafeMutableRawPointer?]

    public init(size: Int) {
        precondition(size >= 1, "a parallel group has at least one rank")
        self.size = size
        sends = Array(repeating: nil, count: size)
        receives = Array(repeating: nil, count: size)
    }

    /// Fails every current and later wait of the group (a rank could not finish its step).
    public func abort(_ reason: String) {
        condition.lock()
        if failure == nil { failure = reason }
        condition.broadcast()
        condition.unlock()
    }

    /// Makes the group usable again after an abort: every rank has returned from the failed step.
    public func reset() {
        condition.lock()
        failure = nil
        arrived = 0
        generation += 1
        condition.unlock()
    }

    /// Publishes rank's buffers, then waits until every rank has arrived.
    private func rendezvous(rank: Int, send: UnsafeMutableRawPointer? = nil, receive: UnsafeMutableRawPointer? = nil) throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw BackendError.device("tensor-parallel group aborted: \(failure)") }
        if let send { sends[rank] = send }
        if let receive { receives[rank] = receive }
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
            return
        }
        while generation == mine {
            if let failure { throw BackendError.device("tensor-parallel group aborted: \(failure)") }
            condition.wait()
        }
    }

    /// This rank's share of `count` elements: an even split, the last ranks taking one less.
    private func share(rank: Int, of count: Int) -> Range<Int> {
        let base = count / size, extra = count % size
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    func allReduceSum(rank: Int, send: UnsafeMutablePointer<Float>, receive: UnsafeMutablePointer<Float>, count: Int) throws {
        try rendezvous(rank: rank, send: UnsafeMutableRawPointer(send), receive: UnsafeMutableRawPointer(receive))
        let s = sends.map { $0!.assumingMemoryBound(to: Float.self) }
        let r = receives.map { $0!.assumingMemoryBound(to: Float.self) }
        // Read every rank's element before writing any: a receive may be its rank's send.
        for i in share(rank: rank, of: count) {
            var sum: Float = 0
            for q in 0..<size { sum += s[q][i] }
            for q in 0..<size { r[q][i] = sum }
        }
        try rendezvous(rank: rank)
    }

    func allGatherColumns(rank: Int, shard: UnsafeMutablePointer<Float>, full: UnsafeMutablePointer<Float>,
                          rows: Int, columns: Int) throws {
        try rendezvous(rank: rank, receive: UnsafeMutableRawPointer(full))
        let width = size * columns
        for q in 0..<size {
            let destination = receives[q]!.assumingMemoryBound(to: Float.self)
            for row in 0..<rows {
                (destination + row * width + rank * columns).update(from: shard + row * columns, count: columns)
            }
        }
        try rendezvous(rank: rank)
    }
}
