import Foundation

/// NVRTC (the CUDA run-time compiler) as a typed function table, plus `compile`.
///
/// Kernels ship as CUDA C source inside the binary and are compiled here for the GPU actually
/// present, so one binary serves every architecture and the build needs no CUDA toolkit.
public struct NVRTC: @unchecked Sendable {
    // @unchecked: immutable table of C function pointers; NVRTC programs are not shared.
    public typealias Program = OpaquePointer
    public typealias VersionFn = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    public typealias CreateFn = @convention(c) (
        UnsafeMutablePointer<Program?>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32,
        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    public typealias CompileFn = @convention(c) (Program?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    public typealias SizeFn = @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    public typealias BytesFn = @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    public typealias DestroyFn = @convention(c) (UnsafeMutablePointer<Program?>) -> Int32
    public typealias ErrorStringFn = @convention(c) (Int32) -> UnsafePointer<CChar>?

    public let library: DynamicLibrary
    let nvrtcVersion: VersionFn
    let nvrtcCreateProgram: CreateFn
    let nvrtcCompileProgram: CompileFn
    let nvrtcGetProgramLogSize: SizeFn
    let nvrtcGetProgramLog: BytesFn
    let nvrtcGetCUBINSize: SizeFn
    let nvrtcGetCUBIN: BytesFn
    let nvrtcDestroyProgram: DestroyFn
    let nvrtcGetErrorString: ErrorStringFn

    public static func load(environment: [String: String]? = nil) throws -> NVRTC {
        let env = environment ?? processEnvironment()
        let lib = try DynamicLibrary(
            candidates: LibrarySearch.candidates(environmentVariable: "MIXTRAL_LIBNVRTC", names: LibrarySearch.nvrtcNames, environment: env),
            libraryName: "libnvrtc (CUDA run-time compiler)")
        preloadBuiltins(besides: lib.path)
        return try NVRTC(library: lib)
    }

    /// libnvrtc dlopens libnvrtc-builtins.so.X.Y by bare name when it compiles. When libnvrtc
    /// was opened by path from a folder that is not on the loader path (a pip wheel's lib/),
    /// open the builtins from that folder first, so the loader finds them already loaded.
    static func preloadBuiltins(besides path: String) {
        guard path.contains("/") else { return }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for name in names.sorted() where name.hasPrefix("libnvrtc-builtins.so") && !name.contains(".alt.") {
            _ = dlopen(dir.appendingPathComponent(name).path, RTLD_NOW | RTLD_GLOBAL)
        }
    }

    public init(library lib: DynamicLibrary) throws {
        library = lib
        nvrtcVersion = try lib.function("nvrtcVersion", as: VersionFn.self)
        nvrtcCreateProgram = try lib.function("nvrtcCreateProgram", as: CreateFn.self)
        nvrtcCompileProgram = try lib.function("nvrtcCompileProgram", as: CompileFn.self)
        nvrtcGetProgramLogSize = try lib.function("nvrtcGetProgramLogSize", as: SizeFn.self)
        nvrtcGetProgramLog = try lib.function("nvrtcGetProgramLog", as: BytesFn.self)
        nvrtcGetCUBINSize = try lib.function("nvrtcGetCUBINSize", as: SizeFn.self)
        nvrtcGetCUBIN = try lib.function("nvrtcGetCUBIN", as: BytesFn.self)
        nvrtcDestroyProgram = try lib.function("nvrtcDestroyProgram", as: DestroyFn.self)
        nvrtcGetErrorString = try lib.function("nvrtcGetErrorString", as: ErrorStringFn.self)
    }

    /// (major, minor), e.g. (13, 0). Part of the kernel cache key: a new compiler may generate
    /// different code.
    public func version() throws -> (major: Int, minor: Int) {
        var major: Int32 = 0, minor: Int32 = 0
        try check(nvrtcVersion(&major, &minor), "nvrtcVersion")
        return (Int(major), Int(minor))
    }

    /// Compiles `source` to a CUBIN for `arch` (e.g. "sm_90"). Returns the CUBIN bytes and the
    /// compiler log (warnings); a compile error throws `.nvrtc` with the log.
    /// `headers` are (include name, contents) pairs served to `#include "name"` without files.
    public func compile(source: String, name: String, arch: String, options extra: [String] = [],
                        headers: [(name: String, source: String)] = []) throws -> (cubin: [UInt8], log: String) {
        var program: Program?
        let headerNames = headers.map { strdupC($0.name) }
        let headerSources = headers.map { strdupC($0.source) }
        defer { (headerNames + headerSources).forEach { $0.deallocate() } }
        let names = headerNames.map { UnsafePointer<CChar>?(UnsafePointer($0)) }
        let sources = headerSources.map { UnsafePointer<CChar>?(UnsafePointer($0)) }
        let created = names.withUnsafeBufferPointer { n in
            sources.withUnsafeBufferPointer { s in
                nvrtcCreateProgram(&program, source, name, Int32(headers.count),
                                   headers.isEmpty ? nil : s.baseAddress, headers.isEmpty ? nil : n.baseAddress)
            }
        }
        try check(created, "nvrtcCreateProgram(\(name))")
        defer { _ = nvrtcDestroyProgram(&program) }
        let options = ["--gpu-architecture=\(arch)", "--std=c++17"] + extra
        let cStrings = options.map { strdupC($0) }
        defer { cStrings.forEach { $0.deallocate() } }
        let compileResult = cStrings.map { UnsafePointer<CChar>?(UnsafePointer($0)) }.withUnsafeBufferPointer { buf in
            nvrtcCompileProgram(program, Int32(options.count), buf.baseAddress)
        }
        let log = programLog(program)
        if compileResult != 0 {
            throw CUDADriverError.nvrtc(function: "nvrtcCompileProgram(\(name), \(arch))", code: compileResult,
                                        message: errorString(compileResult), log: log)
        }
        var size = 0
        try check(nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize(\(name))")
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBytes { raw in
            try check(nvrtcGetCUBIN(program, raw.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN(\(name))")
        }
        return (bytes, log)
    }

    private func programLog(_ program: Program?) -> String {
        var size = 0
        guard nvrtcGetProgramLogSize(program, &size) == 0, size > 1 else { return "" }
        var chars = [CChar](repeating: 0, count: size + 1)
        guard nvrtcGetProgramLog(program, &chars) == 0 else { return "" }
        return stringFromCChars(chars).trimmingTrailingNewlines()
    }

    private func errorString(_ code: Int32) -> String {
        nvrtcGetErrorString(code).map { String(cString: $0) } ?? "NVRTC error \(code)"
    }

    private func check(_ code: Int32, _ function: String) throws {
        if code != 0 {
            throw CUDADriverError.nvrtc(function: function, code: code, message: errorString(code), log: "")
        }
    }
}

/// A NUL-terminated heap copy of `s` (the caller deallocates).
func strdupC(_ s: String) -> UnsafeMutablePointer<CChar> {
    let utf8 = Array(s.utf8)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count + 1)
    for (i, b) in utf8.enumerated() { p[i] = CChar(bitPattern: b) }
    p[utf8.count] = 0
    return p
}
