import Foundation
import CUDADriver
import Tensors

/// The scratch arena: per-slot device buffers that grow to the largest step seen.
extension CUDABackend {
    /// Scratch buffers that grow to the largest step seen (no allocation per token after that).
    enum ScratchSlot: Hashable {
        case activationBF16, moeHidden, moeOut, moeOffsets, moeSorted, moeInputBF16, moeGate, moeUp, moeGathered, moeRowOf, blasWorkspace, attnMax, attnSum, attnAcc, productOut, normed
        case moeIDs, moeWeights, moeNormed, moeLogits
        /// FP8 tensor-core products: e4m3 activation rows and their scales, the unscaled product
        /// of an accumulating one; the MoE experts' e4m3 x and h rows and their scales.
        case activationE4M3, activationScales, fp8Product, moeInputE4M3, moeInputScales, moeHiddenE4M3, moeHiddenScales
        /// The `sample` op's penalised copy of the logits rows, (R, V) f32.
        case samplePenalised
    }

    func scratch(_ slot: ScratchSlot, bytes: Int) throws -> CUdeviceptr {
        let (fits, duringCapture, hasGraphs) = lock.withLock { (scratch[slot].map { $0.bytes >= bytes } ?? false, capturing, !graphs.isEmpty) }
        if !fits {
            // Nothing may be freed or allocated inside a recording (the caller then runs the step
            // for real), and a recording must not outlive the buffers it points at.
            if duringCapture { throw BackendError.device("scratch buffer \(slot) grew while recording a step") }
            if hasGraphs { dropGraphs() }
        }
        return try lock.withLock {
            if let s = scratch[slot], s.bytes >= bytes { return s.pointer }
            var grown = max(bytes, 1 << 16)
            if let old = scratch[slot] {
                // cuMemFree waits for queued work that may still use the old buffer. Growing by at
                // least half keeps the number of regrowths (each drops the step graphs) logarithmic
                // when steps grow a little at a time (prompts of rising lengths).
                grown = max(grown, old.bytes + old.bytes / 2)
                device.free(old.pointer)
                scratch[slot] = nil
            }
            let p: CUdeviceptr
            do { p = try device.allocate(grown) } catch let e as CUDADriverError where e.isOutOfMemory {
                throw BackendError.outOfMemory(requestedBytes: grown, detail: "scratch buffer \(slot) on \(device.name)")
            }
            scratch[slot] = (p, grown)
            return p
        }
    }
}
