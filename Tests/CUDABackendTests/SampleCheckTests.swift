import Foundation
import Testing
import BackendConformance
import CPUBackend
import Tensors

/// The `sample` family's row checker (`SampleCheck`) must fail what it should: a wrong token away
/// from any boundary, a wrong top id, a logprob off by more than 1e-4, an unwritten (NaN) output;
/// and let through only a token that differs where the draw sits on a boundary. Without this the
/// CPU-against-CPU run of the family could pass with a checker that accepts anything.
@Suite struct SampleCheckTests {
    /// One row through the CPU reference: out (2 + 2·N).
    func reference(_ z: [Float], _ columns: [Float], logprobs: Int) throws -> [Float] {
        let cpu = CPUBackend(threads: 1)
        let n = max(logprobs, 0)
        let logits = try cpu.makeActivation([1, z.count]); try cpu.write(z, to: logits)
        let parameters = try cpu.makeActivation([1, SamplingColumn.count]); try cpu.write(columns, to: parameters)
        let offsets = try cpu.makeIndices(2); try cpu.write([Int32(0), 0], to: offsets)
        let pairs = try cpu.makeIndices(1)
        let out = try cpu.makeActivation([1, 2 + 2 * n])
        try cpu.sample(logits: logits, parameters: parameters, penaltyOffsets: offsets, penalties: pairs, out: out,
                       rows: 1, vocabularySize: z.count, logprobs: logprobs)
        return try cpu.readFloats(out, count: 2 + 2 * n)
    }

    func columns(temperature: Float, topK: Float = 0, topP: Float = 1, uniform: Float) -> [Float] {
        var c = [Float](repeating: 0, count: SamplingColumn.count)
        c[SamplingColumn.temperature.rawValue] = temperature
        c[SamplingColumn.topK.rawValue] = topK
        c[SamplingColumn.topP.rawValue] = topP
        c[SamplingColumn.repetitionPenalty.rawValue] = 1
        c[SamplingColumn.uniform.rawValue] = uniform
        return c
    }

    @Test func aWrongTokenAwayFromABoundaryFails() throws {
        let z: [Float] = [0.5, 2, -1, 1.5, 0, 3, -2, 1]
        let c = columns(temperature: 1, uniform: 0.37)
        let r = try reference(z, c, logprobs: 3)
        var t = r
        t[0] = r[0] == 5 ? 1 : 5
        let margin = SampleCheck.margin(logits: z, parameters: c, penalties: [])
        #expect(margin > 1e-3)
        #expect(SampleCheck.compare(test: t[...], reference: r[...], topN: 3) { margin } != .match(logprobError: 0))
        if case .mismatch = SampleCheck.compare(test: t[...], reference: r[...], topN: 3, margin: { margin }) {} else {
            Issue.record("a wrong token 1e-3 from any boundary was not a mismatch")
        }
        #expect(SampleCheck.compare(test: r[...], reference: r[...], topN: 3) { margin } == .match(logprobError: 0))
    }

    @Test func aTokenOnTheDrawBoundaryIsCountedNotFailed() throws {
        // Four equal logits: masses 1 each; u = 0.5 puts u·total = 2 exactly on the cumulative
        // mass after token 1, so a backend adding in another order may pick token 1 or 2.
        let z: [Float] = [0, 0, 0, 0]
        let c = columns(temperature: 1, uniform: 0.5)
        let r = try reference(z, c, logprobs: 0)
        #expect(r[0] == 2)
        var t = r
        t[0] = 1
        let margin = SampleCheck.margin(logits: z, parameters: c, penalties: [])
        #expect(margin == 0)
        #expect(SampleCheck.compare(test: t[...], reference: r[...], topN: 0) { margin } == .boundary(margin: 0))
    }

    @Test func topIDsLogprobsAndUnwrittenOutputsAreChecked() throws {
        let z: [Float] = [0.5, 2, -1, 1.5, 0, 3, -2, 1]
        let c = columns(temperature: 0.8, topK: 4, topP: 0.9, uniform: 0.6)
        let r = try reference(z, c, logprobs: 3)
        #expect(Array(r[2..<5]) == [5, 1, 3])                        // the 3 largest raw logits
        func verdict(_ change: (inout [Float]) -> Void) -> SampleCheck.Verdict {
            var t = r
            change(&t)
            return SampleCheck.compare(test: t[...], reference: r[...], topN: 3) { .infinity }
        }
        func isMismatch(_ v: SampleCheck.Verdict) -> Bool { if case .mismatch = v { return true } else { return false } }
        #expect(isMismatch(verdict { $0[3] = 7 }))                      // a wrong top id
        #expect(isMismatch(verdict { $0[6] += 2e-4 }))                  // a top logprob off by 2e-4
        #expect(isMismatch(verdict { $0[1] += 2e-4 }))                  // the token's logprob
        #expect(isMismatch(verdict { $0[7] = .nan }))                   // a value never written
        #expect(isMismatch(verdict { $0[0] = .nan }))
        if case .match(let e) = verdict({ $0[6] += 5e-5 }) { #expect(e > 4e-5 && e < 6e-5) } else {
            Issue.record("a logprob within 1e-4 was not a match")
        }
    }

    /// sampling.cu reads a row's parameters by fixed column numbers: they must be `SamplingColumn`'s.
    @Test func theKernelsColumnNumbersAreSamplingColumns() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/CUDABackend/Kernels/sampling.cu").standardized
        let text = try String(contentsOf: url, encoding: .utf8)
        let expected: [(String, SamplingColumn)] = [
            ("TEMPERATURE", .temperature), ("TOP_K", .topK), ("TOP_P", .topP), ("MIN_P", .minP),
            ("REPETITION", .repetitionPenalty), ("PRESENCE", .presencePenalty), ("FREQUENCY", .frequencyPenalty),
            ("UNIFORM", .uniform),
        ]
        #expect(expected.count == SamplingColumn.count)
        for (name, column) in expected {
            #expect(text.contains("#define COL_\(name) \(column.rawValue)\n"), "COL_\(name) is not \(column.rawValue) in sampling.cu")
        }
    }
}
