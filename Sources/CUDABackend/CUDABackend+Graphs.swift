import Foundation
import CUDADriver
import Tensors

/// Step graphs: pure decode steps recorded once and replayed with one launch.
extension CUDABackend {
    /// A recording depends on the step's shape and on the settings that choose kernels.
    struct GraphKey: Hashable {
        let shape: StepShape
        let decodeKernels: Bool
        let matmul: MatmulPath
        let moe: MoEPath
    }

    /// True while a replayable step's ops are queued or recorded: ops then size their work from
    /// the step's shape and the buffers' capacities only (never from host-side contents such as
    /// the current context lengths), so the recording stays valid for later steps.
    var recordingStep: Bool { lock.withLock { recording } }

    /// Pure decode steps (tokens == sequences) are recorded on the second step of a shape (the
    /// first runs normally: it compiles kernels, makes cuBLASLt plans and grows scratch buffers)
    /// and replayed from then on with one launch. Other steps run `body` as is.
    public func replayable(_ shape: StepShape, _ body: () throws -> Void) throws {
        let key = GraphKey(shape: shape, decodeKernels: decodeKernels, matmul: matmulPath, moe: moePath)
        let (enabled, graph, seen): (Bool, CUhandle?, Bool) = lock.withLock {
            (graphsEnabled && shape.tokens == shape.sequences, graphs[key], seenShapes.contains(key))
        }
        guard enabled else { return try body() }
        let api = device.api
        try device.makeCurrent()
        if let graph, let launch = api.cuGraphLaunch {
            try api.check(launch(graph, stream), "cuGraphLaunch")
            return
        }
        setRecording(true, capture: false)
        defer { setRecording(false, capture: false) }
        guard seen, let begin = api.cuStreamBeginCapture, let end = api.cuStreamEndCapture,
              let instantiate = api.cuGraphInstantiateWithFlags, let launch = api.cuGraphLaunch else {
            try body()
            _ = lock.withLock { seenShapes.insert(key) }
            return
        }
        setRecording(true, capture: true)
        try api.check(begin(stream, 2), "cuStreamBeginCapture (relaxed)")   // 2 = CU_STREAM_CAPTURE_MODE_RELAXED
        var captured: CUhandle?
        do {
            try body()
        } catch {
            // Nothing was executed: end the capture, drop it, and run the step for real.
            _ = end(stream, &captured)
            if let captured { _ = api.cuGraphDestroy?(captured) }
            setRecording(true, capture: false)
            try body()
            return
        }
        try api.check(end(stream, &captured), "cuStreamEndCapture")
        defer { if let captured { _ = api.cuGraphDestroy?(captured) } }
        var exec: CUhandle?
        try api.check(instantiate(&exec, captured, 0), "cuGraphInstantiateWithFlags")
        guard let exec else { throw BackendError.device("cuGraphInstantiateWithFlags returned no graph") }
        lock.withLock { graphs[key] = exec }
        try api.check(launch(exec, stream), "cuGraphLaunch")
    }

    private func setRecording(_ on: Bool, capture: Bool) {
        lock.withLock {
            recording = on
            capturing = capture
        }
    }

    /// Destroys every recording (after the queued work that may use them is done): they hold the
    /// addresses of scratch buffers, which are about to change, or they are no longer wanted.
    func dropGraphs() {
        let old: [CUhandle] = lock.withLock {
            let g = Array(graphs.values)
            graphs.removeAll()
            seenShapes.removeAll()
            return g
        }
        guard !old.isEmpty else { return }
        try? device.makeCurrent()
        _ = device.api.cuStreamSynchronize(stream)
        for g in old { _ = device.api.cuGraphExecDestroy?(g) }
    }
}
