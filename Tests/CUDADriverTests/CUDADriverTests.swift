import Foundation
import Testing
import CUDADriver

/// What needs no GPU: library search and its failure message, error formatting, the kernel
/// cache key and the disk cache.
@Suite struct LibraryLoadingTests {
    @Test func missingLibraryIsATypedErrorNamingEveryCandidate() {
        do {
            _ = try DynamicLibrary(candidates: ["libdefinitely-not-here.so.7", "/nonexistent/libx.so"], libraryName: "libx")
            Issue.record("opening a missing library succeeded")
        } catch let error as CUDADriverError {
            guard case .libraryNotFound(let lib, let tried, let reasons) = error else {
                Issue.record("wrong error \(error)"); return
            }
            #expect(lib == "libx")
            #expect(tried == ["libdefinitely-not-here.so.7", "/nonexistent/libx.so"])
            #expect(reasons.count == 2)
            #expect(error.description.hasPrefix("no GPU: libx not found; tried libdefinitely-not-here.so.7, /nonexistent/libx.so"))
        } catch {
            Issue.record("untyped error \(error)")
        }
    }

    @Test func driverLoadHonoursTheOverrideVariableFirst() {
        let env = ["MIXTRAL_LIBCUDA": "/nonexistent/libcuda-override.so"]
        let candidates = LibrarySearch.candidates(environmentVariable: "MIXTRAL_LIBCUDA", names: LibrarySearch.driverNames, environment: env)
        #expect(candidates.first == "/nonexistent/libcuda-override.so")
        #expect(candidates.contains("libcuda.so.1"))
    }

    @Test func probeNeverThrowsAndExplainsAbsence() {
        // Point every search at files that do not exist: the probe must say why, not crash.
        let availability = CUDAProbe.probe(environment: ["MIXTRAL_LIBCUDA": "/nonexistent/libcuda.so.1"])
        if case .unavailable(let reason) = availability {
            #expect(reason.contains("no GPU"))
        }
        // On a GPU machine the real driver is found by the fallback names: nothing to check then.
    }

    @Test func symbolLookupFailureNamesTheSymbol() throws {
        // libc is always present; use it to exercise symbol lookup without CUDA.
        let libc = try DynamicLibrary(candidates: ["libc.so.6"], libraryName: "libc")
        #expect(throws: CUDADriverError.symbolNotFound(library: "libc.so.6", symbol: "cuNoSuchFunction_v9")) {
            _ = try libc.symbol("cuNoSuchFunction_v9")
        }
        typealias StrlenFn = @convention(c) (UnsafePointer<CChar>) -> Int
        let strlen = try libc.function("strlen", as: StrlenFn.self)
        #expect(strlen("hello") == 5)
    }
}

@Suite struct ErrorFormattingTests {
    @Test func driverErrorCarriesTheCUDAName() {
        let e = CUDADriverError.driver(function: "cuMemAlloc_v2(1024 bytes)", code: 2,
                                       name: DriverErrorNames.name(for: 2), message: "out of memory")
        #expect(e.description == "cuMemAlloc_v2(1024 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory")
        #expect(e.isOutOfMemory)
        #expect(!CUDADriverError.driver(function: "f", code: 700, name: "x", message: "").isOutOfMemory)
    }

    @Test func knownAndUnknownDriverCodes() {
        #expect(DriverErrorNames.name(for: 700) == "CUDA_ERROR_ILLEGAL_ADDRESS")
        #expect(DriverErrorNames.name(for: 100) == "CUDA_ERROR_NO_DEVICE")
        #expect(DriverErrorNames.name(for: 4242) == "CUDA_ERROR_4242")
    }

    @Test func nvrtcErrorIncludesTheLogTrimmed() {
        let e = CUDADriverError.nvrtc(function: "nvrtcCompileProgram(a.cu, sm_90)", code: 6,
                                      message: "NVRTC_ERROR_COMPILATION", log: "a.cu(3): error: x\n\n\0")
        #expect(e.description == "nvrtcCompileProgram(a.cu, sm_90) failed: NVRTC_ERROR_COMPILATION (6)\na.cu(3): error: x")
    }

    @Test func cublasStatusNames() {
        #expect(CuBLASLt.fallbackStatusName(15) == "CUBLAS_STATUS_NOT_SUPPORTED")
        let e = CUDADriverError.cublas(function: "cublasLtMatmul", code: 3, name: CuBLASLt.fallbackStatusName(3))
        #expect(e.description == "cublasLtMatmul failed: CUBLAS_STATUS_ALLOC_FAILED (3)")
        #expect(e.isOutOfMemory)
    }
}

@Suite struct KernelCacheTests {
    /// Reference values: FNV-1a 64 of "" is the offset basis, of "a" is 0xaf63dc4c8601ec8c
    /// (published test vectors); the low lane is plain FNV-1a 64.
    @Test func lowLaneIsStandardFNV1a() {
        var h = SourceHash()
        #expect(h.lo == 0xcbf2_9ce4_8422_2325)
        h.update(Array("a".utf8))
        #expect(h.lo == 0xaf63_dc4c_8601_ec8c)
        var foobar = SourceHash()
        foobar.update(Array("foobar".utf8))
        #expect(foobar.lo == 0x8594_4171_f739_67e8)
        #expect(foobar.description.count == 32)
    }

    @Test func keyChangesWithEveryInput() {
        let base = KernelCacheKey(name: "k", source: "src", arch: "sm_90", nvrtcVersion: (13, 0), options: [])
        let variants = [
            KernelCacheKey(name: "k", source: "src ", arch: "sm_90", nvrtcVersion: (13, 0), options: []),
            KernelCacheKey(name: "k", source: "src", arch: "sm_80", nvrtcVersion: (13, 0), options: []),
            KernelCacheKey(name: "k", source: "src", arch: "sm_90", nvrtcVersion: (13, 1), options: []),
            KernelCacheKey(name: "k", source: "src", arch: "sm_90", nvrtcVersion: (13, 0), options: ["-G"]),
        ]
        for v in variants { #expect(v.digest != base.digest) }
        #expect(KernelCacheKey(name: "k", source: "src", arch: "sm_90", nvrtcVersion: (13, 0), options: []) == base)
        #expect(base.fileName.hasPrefix("k-") && base.fileName.hasSuffix(".cubin"))
        // Separators: moving a byte between fields changes the key.
        let a = KernelCacheKey(name: "k", source: "ab", arch: "c", nvrtcVersion: (13, 0), options: [])
        let b = KernelCacheKey(name: "k", source: "a", arch: "bc", nvrtcVersion: (13, 0), options: [])
        #expect(a.digest != b.digest)
    }

    @Test func diskCacheRoundTripsAndRejectsNonELF() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kcache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cache = KernelDiskCache(directory: dir)
        let key = KernelCacheKey(name: "rmsnorm", source: "x", arch: "sm_90", nvrtcVersion: (13, 0), options: [])
        #expect(cache.load(key) == nil)
        let elf: [UInt8] = [0x7f, 0x45, 0x4c, 0x46] + (0..<60).map { _ in UInt8.random(in: 0...255) }
        #expect(cache.store(elf, for: key))
        #expect(cache.load(key) == elf)
        let other = KernelCacheKey(name: "rmsnorm", source: "y", arch: "sm_90", nvrtcVersion: (13, 0), options: [])
        #expect(cache.store([1, 2, 3, 4, 5, 6], for: other))
        #expect(cache.load(other) == nil)   // not an ELF image: recompile instead of loading junk
    }

    @Test func defaultDirectoryFollowsEnvironment() {
        #expect(KernelDiskCache.defaultDirectory(environment: ["MIXTRAL_KERNEL_CACHE": "/x/k"]).path == "/x/k")
        #expect(KernelDiskCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "/c"]).path == "/c/mixtral-chat/kernels")
        #expect(KernelDiskCache.defaultDirectory(environment: ["HOME": "/h"]).path == "/h/.cache/mixtral-chat/kernels")
    }
}
