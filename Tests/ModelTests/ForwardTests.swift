import CPUBackend
import Checkpoints
import Model
import ModelChecks
import Testing

/// The forward pass against the numpy float64 reference, and its invariances (batched ==
/// sequential, cached decode == full recompute, chunked prefill == whole prefill): the checks of
/// ModelChecks.ForwardInvariants, which `cuda-check --models` runs on the GPU.
@Suite struct ForwardTests {
    /// f32 on the CPU: the reference within 1e-4 (it is float64), the backend against itself
    /// within 1e-6 batched (same kernels, other row partitions) and 1e-5 cached (other sums).
    static var invariants: ForwardInvariants<CPUBackend> {
        ForwardInvariants(tolerances: .init(reference: 1e-4, batched: 1e-6, cached: 1e-5)) { CPUBackend() }
    }

    @Test(arguments: TinyModelFixture.names)
    func forwardInvariantsHold(_ name: String) throws {
        let results = Self.invariants.check(try TinyModelFixture(name, in: TinyModels.directory))
        // 3 prompts × (reference logits, greedy) + batched + cached + chunked.
        #expect(results.count == 9, "\(results)")
        for r in results { #expect(r.passed, "\(r)") }
    }

    @Test func rejectsBatchesItCannotRun() throws {
        let model = try TinyModels.model(try TinyModels.checkpoint("dense"), maxTokens: 8)
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: Array(repeating: 1, count: 9), startPosition: 0, blockTable: [0, 1, 2])]))
        }
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: [1, 2, 3, 4, 5], startPosition: 0, blockTable: [0])]))
        }
        #expect(throws: ModelError.self) {
            try model.forward(PackedBatch(sequences: [.init(tokens: [100_000], startPosition: 0, blockTable: [0])]))
        }
    }
}
