#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A persistent pool of worker threads that runs one data-parallel job at a time.
///
/// Why not `DispatchQueue.concurrentPerform` or tasks: decode runs a few hundred small ops per
/// token, and each must start in microseconds without allocating. Here the threads are created
/// once; a job is a non-escaping closure published through a generation counter (no heap boxes),
/// workers spin briefly and then sleep on a condition variable (the machine may be shared, so
/// they must not burn a core forever), and the caller works on the job itself.
///
/// Tasks are handed out dynamically (an atomic counter), so uneven tasks balance out; callers
/// that want contiguous streaming per thread simply create `threadCount` tasks.
final class ThreadPool: @unchecked Sendable {
    // @unchecked: `job` and `taskCount` are written only by the caller while no job is running
    // (workers are parked between generations), and published to workers by the release/acquire
    // on `generation`; everything else is atomics or the pthread mutex/condvar.

    /// Threads taking part in a job, the caller included.
    let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let nextTask = Atomic<Int>(0)
    private let busyWorkers = Atomic<Int>(0)
    private let shuttingDown = Atomic<Bool>(false)
    private var taskCount = 0
    private var job: ((_ task: Int, _ thread: Int) -> Void)?
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var workerThreads: [pthread_t] = []
    /// Serialises jobs: the backend may be called from more than one thread.
    private let jobLock = Mutex<Void>(())

    /// Spin iterations before a worker sleeps (about 20–50 µs): long enough to bridge the gap
    /// between consecutive ops of one token, short enough not to starve other processes.
    private let spinLimit = 20_000

    init(threads: Int) {
        threadCount = max(1, threads)
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 1..<threadCount {
            let context = Unmanaged.passRetained(WorkerContext(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                let context = Unmanaged<WorkerContext>.fromOpaque(raw).takeRetainedValue()
                context.pool.workerLoop(index: context.index)
                return nil
            }, context)
            if rc == 0 { workerThreads.append(thread) } else {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
            }
        }
    }

    deinit {
        shuttingDown.store(true, ordering: .releasing)
        pthread_mutex_lock(mutex)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for thread in workerThreads { pthread_join(thread, nil) }
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Runs `body(task, thread)` for every task in 0..<tasks across the pool and returns when all
    /// are done. `thread` is in 0..<threadCount and identifies per-thread scratch space.
    func run(tasks: Int, _ body: (_ task: Int, _ thread: Int) -> Void) {
        guard tasks > 0 else { return }
        jobLock.withLock { _ in
            let workers = workerThreads.count
            if tasks == 1 || workers == 0 {
                for task in 0..<tasks { body(task, 0) }
                return
            }
            withoutActuallyEscaping(body) { escapable in
                job = escapable
                taskCount = tasks
                nextTask.store(0, ordering: .relaxed)
                busyWorkers.store(workers, ordering: .relaxed)
                pthread_mutex_lock(mutex)
                generation.add(1, ordering: .releasing)
                pthread_cond_broadcast(condition)
                pthread_mutex_unlock(mutex)
                drain(thread: 0)
                var spins = 0
                while busyWorkers.load(ordering: .acquiring) != 0 {
                    spins += 1
                    if spins > 1000 { sched_yield() }
                }
                job = nil
            }
        }
    }

    private func drain(thread: Int) {
        guard let job else { return }
        while true {
            let task = nextTask.wrappingAdd(1, ordering: .relaxed).oldValue
            if task >= taskCount { return }
            job(task, thread)
        }
    }

    fileprivate func workerLoop(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen && spins < spinLimit {
                spins += 1
                current = generation.load(ordering: .acquiring)
            }
            if current == seen {
                pthread_mutex_lock(mutex)
                current = generation.load(ordering: .acquiring)
                while current == seen {
                    pthread_cond_wait(condition, mutex)
                    current = generation.load(ordering: .acquiring)
                }
                pthread_mutex_unlock(mutex)
            }
            seen = current
            if shuttingDown.load(ordering: .acquiring) { return }
            drain(thread: index)
            busyWorkers.subtract(1, ordering: .releasing)
        }
    }
}

/// What a worker thread needs at start-up; passed through pthread's `void *` argument.
private final class WorkerContext {
    // Holds the pool unowned: the pool's deinit joins its threads, so it outlives them.
    unowned(unsafe) let pool: ThreadPool
    let index: Int
    init(pool: ThreadPool, index: Int) {
        self.pool = pool
        self.index = index
    }
}
