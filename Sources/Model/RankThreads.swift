import Foundation

/// One thread per rank after the first, kept for the life of a split model: each step runs rank
/// 0's part on the calling thread and every other rank's on its own thread, all at once, since
/// their collectives wait for each other. (Not Swift concurrency or a shared pool: a rank blocks
/// in its collectives, and a pool with fewer threads than ranks would deadlock.)
final class RankThreads: Sendable {
    let count: Int
    private let slots: Slots

    /// What the caller and the rank threads hand each other. The threads hold it (not the
    /// `RankThreads`), so they can be told to stop when the model goes away.
    private final class Slots: @unchecked Sendable {
        // @unchecked: slot r is written before its `start` signal and read after its `done`
        // wait, so the semaphores order every access.
        var work: [(@Sendable (Int) throws -> Void)?]
        var errors: [(any Error)?]
        var stopping = false
        let start: [DispatchSemaphore]
        let done: [DispatchSemaphore]

        init(_ n: Int) {
            work = Array(repeating: nil, count: n)
            errors = Array(repeating: nil, count: n)
            start = (0..<n).map { _ in DispatchSemaphore(value: 0) }
            done = (0..<n).map { _ in DispatchSemaphore(value: 0) }
        }

        func serve(rank r: Int) {
            while true {
                start[r].wait()
                if stopping { return }
                do { try work[r]?(r) } catch { errors[r] = error }
                done[r].signal()
            }
        }
    }

    init(ranks: Int) {
        count = max(ranks, 1)
        let slots = Slots(count)
        self.slots = slots
        for r in 1..<count {
            let thread = Thread { slots.serve(rank: r) }
            thread.name = "tensor-parallel rank \(r)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    deinit {
        slots.stopping = true
        for r in 1..<count { slots.start[r].signal() }
    }

    /// Runs `body(r)` for every rank at once; returns when all have returned. `failed` is called
    /// as soon as a rank throws (to release the others from their collectives), and the first
    /// error (lowest rank) is rethrown once every rank is back.
    func run(_ body: @escaping @Sendable (Int) throws -> Void, failed: @escaping @Sendable (String) -> Void) throws {
        let guarded: @Sendable (Int) throws -> Void = { r in
            do { try body(r) } catch { failed("rank \(r): \(error)"); throw error }
        }
        for r in 1..<count {
            slots.work[r] = guarded
            slots.errors[r] = nil
            slots.start[r].signal()
        }
        var first: (any Error)?
        do { try guarded(0) } catch { first = error }
        for r in 1..<count {
            slots.done[r].wait()
            slots.work[r] = nil
            if first == nil, let e = slots.errors[r] { first = e }
        }
        if let first { throw first }
    }
}
