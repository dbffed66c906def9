import Foundation
import Testing
import BackendConformance
import CPUBackend
import CUDABackend
import CUDADriver
import Tensors

/// Whether this machine can run CUDA; printed once so a skipped GPU test says why.
let cudaAvailability: CUDAAvailability = {
    let a = CUDAProbe.probe()
    if !a.isAvailable { print("CUDABackendTests: GPU tests skipped: \(a)") }
    return a
}()

@Suite struct CUDABackendWithoutGPUTests {
    @Test func openingTheBackendWithoutAGPUIsATypedError() throws {
        guard !cudaAvailability.isAvailable else {
            print("GPU present: the no-GPU path is not reachable here")
            return
        }
        do {
            _ = try CUDABackend(ordinal: 0)
            Issue.record("CUDABackend opened without a GPU")
        } catch let error as CUDADriverError {
            switch error {
            case .libraryNotFound, .noDevice:
                #expect(error.description.hasPrefix("no GPU"))
            default:
                Issue.record("unexpected error \(error)")
            }
        }
    }

    @Test func e4m3GemvLaunchesCoverEveryTileWithTheSmallestSplit() {
        // H200 (132 SMs), dense target 4 blocks an SM: Mistral-7B's qkv (6144 rows) and wo (4096)
        // split K over 16 warps (one 512-thread block a tile), the gated pair (14336) over 8.
        let target = 4 * 132
        for (outputs, blocks, threads, split) in [(6144, 384, 512, 16), (4096, 256, 512, 16), (14336, 896, 256, 8)] {
            let launch = CUDABackend.e4m3GemvLaunch(outputs: outputs, slots: 1, targetBlocks: target, maxSplit: 16)
            #expect(launch.grid.0 == blocks && launch.block == threads && launch.split == split, "\(outputs) rows: \(launch)")
        }
        for (outputs, slots) in [(6144, 1), (4096, 1), (14336, 1), (14336, 2), (4096, 8), (96, 1), (200, 3), (17, 1), (16384, 16)] {
            for maxSplit in [8, 16] {
                let (grid, block, split) = CUDABackend.e4m3GemvLaunch(outputs: outputs, slots: slots, targetBlocks: target,
                                                                      maxSplit: maxSplit)
                let tiles = (outputs + 15) / 16, warps = block / 32
                #expect([1, 2, 4, 8, 16].contains(split) && split <= maxSplit)
                #expect((block == 512) == (split == 16) && warps % split == 0)
                #expect(grid.0 * (warps / split) >= tiles && (grid.0 - 1) * (warps / split) < tiles, "\(outputs) rows: every tile, no empty block")
                #expect(grid.1 == slots && grid.2 == 1)
                // Smallest: half the split would fall short of the target.
                #expect(split == 1 || (tiles * split / 2 + 7) / 8 * slots < target)
            }
        }
    }

    @Test func e4m3GemvSplitsTheGatedProductFinerFromTwoActivationRows() {
        // H200 (132 SMs), the default targets: Mistral-7B's gated pair (14336 rows) splits K over
        // 8 warps at batch 1 and over 16 from batch 2 (gpu-notes "Session 9": batch 4 13% faster,
        // batch 1 7% slower at 16); qkv (6144) and wo (4096) split over 16 at every batch.
        let targets = CUDABackend.E4M3GemvBlocksPerSM.defaults
        let split = { (outputs: Int, rows: Int) in
            CUDABackend.e4m3GemvLaunch(outputs: outputs, slots: 1, targetBlocks: targets.dense(rows: rows) * 132, maxSplit: 16).split
        }
        #expect(split(14336, 1) == 8)
        for rows in 2...4 { #expect(split(14336, rows) == 16) }
        for rows in 1...4 { #expect(split(6144, rows) == 16 && split(4096, rows) == 16) }
    }

    @Test func kvBytesPerBlockCountsKAndVInBF16() {
        // Mistral 7B: 32 layers × (K+V) × 16 tokens × 8 KV heads × 128 × 2 bytes = 2 MiB.
        #expect(CUDABackend.kvBytesPerBlock(layers: 32, blockSize: 16, kvHeads: 8, headDim: 128) == 2 << 20)
    }

    @Test func conformanceHelpersMeasureWhatTheySay() {
        #expect(normalisedError([1, 2, 3], [1, 2, 3]) == 0)
        #expect(abs(normalisedError([1.1, 2, 3], [1, 2, 3]) - 0.1 / 14.0.squareRoot()) < 1e-7)
        #expect(normalisedError([.nan, 2], [1, 2]).isNaN)
        #expect(normalisedError([1], [1, 2]).isNaN)
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42)
        #expect(a.floats(5) == b.floats(5))
        #expect(!a.floats(100).contains(0))
    }

    /// The conformance suite itself, run CPU against CPU: must pass with zero error, which checks
    /// that every case runs, poisons and compares without a GPU.
    @Test func conformanceSuiteRunsCPUAgainstItself() {
        let cpu = CPUBackend(threads: 2)
        var suite = BackendConformance(test: cpu, reference: CPUBackend(threads: 1), seed: 7)
        let results = suite.runAll()
        #expect(results.count >= 20)
        for r in results { #expect(r.passed, "\(r)") }
        // The sample family (SamplingCases.swift) at every vocabulary size.
        for v in [32000, 32768, 131072] { #expect(results.contains { $0.name.hasPrefix("sample V \(v) ") }) }
    }
}

/// NVRTC alone (no GPU): compile every embedded kernel for sm_90 through the program's own code
/// path. Runs where libnvrtc can be found (the GPU machines, or MIXTRAL_LIBNVRTC pointing at the
/// pip wheel's libnvrtc.so.13); skips with the reason elsewhere.
@Suite struct KernelCompileTests {
    @Test func everyEmbeddedKernelCompilesForHopper() throws {
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.load() } catch {
            print("KernelCompileTests skipped: \(error)")
            return
        }
        let results = try CUDABackend.compileKernels(nvrtc: nvrtc, arch: "sm_90")
        // Every .cu file of Kernels/ is embedded and compiled (a file without a `KernelFile` case
        // would be missing here).
        let kernels = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/CUDABackend/Kernels").standardizedFileURL
        let files = try FileManager.default.contentsOfDirectory(atPath: kernels.path).filter { $0.hasSuffix(".cu") }
        #expect(files.count >= 11)
        #expect(Set(results.map { $0.file + ".cu" }) == Set(files))
        for r in results { #expect(r.cubinBytes > 1000, "\(r.file): \(r.cubinBytes) bytes") }
    }

    /// Every kernel name the backend launches is declared `extern "C"` in some .cu file, either
    /// literally or through the weight-type / row-count / MoE-MMA macros.
    @Test func everyLaunchedKernelIsDefinedInTheSources() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/CUDABackend/Kernels").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".cu") }
        let text = try files.map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) }.joined()
        for symbol in CUDABackend.kernelSymbols {
            let direct = text.contains("void \(symbol)(") || ["32", "256", "512", "SAMPLE_THREADS"].contains { text.contains("void __launch_bounds__(\($0)) \(symbol)(") }
                || ["E4M3_TC_BOUNDS", "E4M3_TC_MOE_BOUNDS"].contains { text.contains("void \($0) \(symbol)(") }   // gemv_e4m3.cu: __launch_bounds__(512[, min blocks])
            // Macro-generated: name_##S with S in bf16/f16/f32, gemv_bf16_r##R with R 1...4, or
            // attention_prefill_d##DH.
            let parts = symbol.split(separator: "_")
            let stem = parts.dropLast().joined(separator: "_")
            let viaWeightMacro = ["bf16", "f16", "f32"].contains(String(parts.last ?? "")) && text.contains("\(stem)_##S(")
            let viaRowMacro = ["gemv_bf16_r", "gemv_add_bf16_r", "gemv_norm_bf16_r", "gemv_norm_swiglu_bf16_r", "gemv_norm_emit_bf16_r",
                               "gemv_e4m3_r", "gemv_add_e4m3_r", "gemv_norm_e4m3_r", "gemv_norm_swiglu_e4m3_r",
                               "gemv_tc_e4m3_r", "gemv_tc_add_e4m3_r", "gemv_tc_norm_e4m3_r", "gemv_tc_norm_swiglu_e4m3_r"].contains { prefix in
                symbol.hasPrefix(prefix) && text.contains("\(prefix)##R(")
            }
            // Tensor-core MoE: MOE_MMA_GATE_UP(m32_bf16, …) defines moe_mma_gate_up_m32_bf16.
            let viaMMAMacro = [("moe_mma_gate_up_", "MOE_MMA_GATE_UP("), ("moe_mma_down_", "MOE_MMA_DOWN(")].contains { prefix, macro in
                symbol.hasPrefix(prefix) && text.contains("\(macro)\(symbol.dropFirst(prefix.count)),")
            }
            // attention_prefill_d##DH with DH 64 / 128 (ATTN_PREFILL(DH, ...) instantiations).
            let viaHeadDimMacro = symbol.hasPrefix("attention_prefill_d") && text.contains("attention_prefill_d##DH(")
                && text.contains("ATTN_PREFILL(\(symbol.dropFirst("attention_prefill_d".count)),")
            // attention_decode_d##DH##_q##QM (ATTN_DECODE(DH, QM) instantiations, e.g. d128_q4).
            let decodeTail = symbol.hasPrefix("attention_decode_d") ? symbol.dropFirst("attention_decode_d".count) : ""
            let decodeArgs = String(decodeTail).components(separatedBy: "_q")
            let viaDecodeMacro = decodeArgs.count == 2 && text.contains("attention_decode_d##DH##_q##QM(")
                && text.contains("ATTN_DECODE(\(decodeArgs[0]), \(decodeArgs[1]))")
            #expect(direct || viaWeightMacro || viaRowMacro || viaMMAMacro || viaHeadDimMacro || viaDecodeMacro, "kernel \(symbol) not found in Kernels/*.cu")
        }
    }
}

@Suite(.enabled(if: cudaAvailability.isAvailable, "needs an NVIDIA GPU with driver, NVRTC and cuBLASLt"))
struct CUDABackendConformanceTests {
    /// cuBLASLt with the decode kernels (GEMV, MoE GEMV, split-KV attention), and the general
    /// SIMT/tile kernels without them: every kernel runs in one of the two.
    @Test(arguments: [(CUDABackend.MatmulPath.cublasLt, true), (.simt, false)])
    func everyOpMatchesTheCPU(path: CUDABackend.MatmulPath, decodeKernels: Bool) throws {
        let cuda = try CUDABackend(ordinal: 0)
        cuda.matmulPath = path
        cuda.decodeKernels = decodeKernels
        let seed = UInt64.random(in: 1...UInt64.max)
        var suite = BackendConformance(test: cuda, reference: CPUBackend(), seed: seed)
        let results = suite.runAll { print("  \($0)") }
        for r in results { #expect(r.passed, "\(r) [seed \(seed)]") }
    }
}
