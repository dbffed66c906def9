import CPUBackend
import Foundation
import Tensors
import Testing

/// The CPU's tensor-parallel collectives (`CPUParallelGroup`), ranks as threads.
@Suite struct ParallelGroupTests {
    /// Runs `body(rank, backend)` on one thread per rank and returns each rank's result or error.
    func onRanks<R: Sendable>(_ backends: [CPUBackend], _ body: @escaping @Sendable (Int, CPUBackend) throws -> R) -> [Result<R, any Error>] {
        let results = ResultSlots<R>(backends.count)
        let done = DispatchGroup()
        for (r, backend) in backends.enumerated() {
            done.enter()
            Thread {
                results.set(r, Result { try body(r, backend) })
                done.leave()
            }.start()
        }
        done.wait()
        return results.all
    }

    func ranks(_ n: Int) -> (CPUParallelGroup, [CPUBackend]) {
        let group = CPUParallelGroup(size: n)
        return (group, (0..<n).map { CPUBackend(threads: 1, parallel: (group, $0)) })
    }

    @Test(arguments: [1, 2, 3, 4])
    func allReduceSumsInRankOrderOnEveryRank(_ n: Int) throws {
        let (_, backends) = ranks(n)
        let count = 1000   // not a multiple of the ranks: uneven shares
        let values: @Sendable (Int) -> [Float] = { r in (0..<count).map { Float($0 % 17) * 0.25 + Float(r) * 1e-3 + 1 / Float(r + 3) } }
        let results = onRanks(backends) { r, be in
            let send = try be.makeActivation([count]), receive = try be.makeActivation([count])
            try be.write(values(r), to: send)
            try be.allReduceSum(send, into: receive, count: count)
            // In place, the way the forward pass reduces into the residual stream.
            try be.allReduceSum(send, into: send, count: count)
            return (try be.readFloats(receive, count: count), try be.readFloats(send, count: count))
        }
        var expected = [Float](repeating: 0, count: count)
        for r in 0..<n { for (i, v) in values(r).enumerated() { expected[i] += v } }
        for result in results {
            let (outOfPlace, inPlace) = try result.get()
            #expect(outOfPlace == expected)
            #expect(inPlace == expected)
        }
    }

    @Test(arguments: [1, 2, 4])
    func allGatherPutsEachShardInItsColumns(_ n: Int) throws {
        let (_, backends) = ranks(n)
        let rows = 3, columns = 5
        let results = onRanks(backends) { r, be in
            let shard = try be.makeActivation([rows, columns]), full = try be.makeActivation([rows, n * columns])
            try be.write((0..<(rows * columns)).map { Float(r * 100 + $0) }, to: shard)
            try be.allGatherColumns(shard, into: full, rows: rows, columns: columns)
            return try be.readFloats(full, count: rows * n * columns)
        }
        var expected: [Float] = []
        for row in 0..<rows { for r in 0..<n { for c in 0..<columns { expected.append(Float(r * 100 + row * columns + c)) } } }
        for result in results { #expect(try result.get() == expected) }
    }

    @Test func aFailedRankReleasesTheOthersAndTheGroupWorksAfterAReset() throws {
        let (group, backends) = ranks(3)
        let failed = onRanks(backends) { r, be in
            let x = try be.makeActivation([8])
            try be.write([Float](repeating: 1, count: 8), to: x)
            if r == 1 {
                group.abort("rank 1: injected failure")
                throw BackendError.device("injected failure")
            }
            try be.allReduceSum(x, into: x, count: 8)     // would wait forever for rank 1
        }
        for (r, result) in failed.enumerated() {
            #expect(throws: BackendError.self, "rank \(r)") { try result.get() }
        }
        group.reset()
        let results = onRanks(backends) { _, be in
            let x = try be.makeActivation([8])
            try be.write([Float](repeating: 1, count: 8), to: x)
            try be.allReduceSum(x, into: x, count: 8)
            return try be.readFloats(x, count: 8)
        }
        for result in results { #expect(try result.get() == [Float](repeating: 3, count: 8)) }
    }

    @Test func zeroClearsOnlyTheCount() throws {
        let be = CPUBackend(threads: 1)
        let x = try be.makeActivation([6])
        try be.write([1, 2, 3, 4, 5, 6] as [Float], to: x)
        try be.zero(x, count: 4)
        #expect(try be.readFloats(x, count: 6) == [0, 0, 0, 0, 5, 6])
    }
}

/// One result per rank, written by the rank threads.
final class ResultSlots<R: Sendable>: @unchecked Sendable {
    // @unchecked: each slot is written by one thread, and read after all have finished.
    private var slots: [Result<R, any Error>?]
    private let lock = NSLock()
    init(_ n: Int) { slots = Array(repeating: nil, count: n) }
    func set(_ i: Int, _ value: Result<R, any Error>) { lock.withLock { slots[i] = value } }
    var all: [Result<R, any Error>] { lock.withLock { slots.map { $0! } } }
}
