#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A shared library opened with `dlopen` at run time.
///
/// Why at run time: the build machines and CI have no CUDA, and one binary must run everywhere —
/// on a machine without a GPU it reports "library not found" instead of failing to start.
public final class DynamicLibrary: @unchecked Sendable {
    // @unchecked: `handle` is written once in init and only read (dlsym is thread-safe) after.
    public let path: String
    private let handle: UnsafeMutableRawPointer

    /// Opens the first name in `candidates` that `dlopen` accepts (names are searched on the
    /// loader path; absolute paths are opened as given).
    public init(candidates: [String], libraryName: String) throws {
        var reasons: [String] = []
        for name in candidates {
            if let h = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
                self.handle = h
                self.path = name
                return
            }
            if let err = dlerror() { reasons.append(String(cString: err)) } else { reasons.append("\(name): not found") }
        }
        throw CUDADriverError.libraryNotFound(library: libraryName, tried: candidates, reasons: reasons)
    }

    /// The address of `name`, or a `symbolNotFound` error naming the library and symbol.
    public func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
        _ = dlerror()
        guard let p = dlsym(handle, name) else {
            throw CUDADriverError.symbolNotFound(library: path, symbol: name)
        }
        return p
    }

    /// The address of `name`, or nil (for functions newer drivers add and we can do without).
    public func optionalSymbol(_ name: String) -> UnsafeMutableRawPointer? {
        dlsym(handle, name)
    }

    /// `symbol(name)` cast to the C function type `T`.
    public func function<T>(_ name: String, as type: T.Type) throws -> T {
        unsafeBitCast(try symbol(name), to: type)
    }

    public func optionalFunction<T>(_ name: String, as type: T.Type) -> T? {
        optionalSymbol(name).map { unsafeBitCast($0, to: type) }
    }
}

/// Where the CUDA libraries are looked for. An environment variable can name an exact file
/// (`MIXTRAL_LIBCUDA`, `MIXTRAL_LIBNVRTC`, `MIXTRAL_LIBCUBLASLT`, `MIXTRAL_LIBNCCL`), which is tried first.
public enum LibrarySearch {
    public static func candidates(environmentVariable: String, names: [String],
                                  environment: [String: String]) -> [String] {
        var list: [String] = []
        if let override = environment[environmentVariable], !override.isEmpty { list.append(override) }
        list.append(contentsOf: names)
        return list
    }

    /// libcuda: the driver API, installed by the NVIDIA driver (always versioned .so.1).
    public static let driverNames = ["libcuda.so.1", "libcuda.so"]
    /// NVRTC: CUDA 13 first (matches the GPU machines' driver), then 12, then unversioned.
    public static let nvrtcNames = [
        "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
        "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
        "/usr/local/cuda/lib64/libnvrtc.so",
        "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13",
    ]
    /// NCCL 2 (system, CUDA toolkit, or the `nvidia-nccl-cu13` wheel that PyTorch installs).
    public static let ncclNames = [
        "libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2", "/usr/lib/x86_64-linux-gnu/libnccl.so.2",
        "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2",
    ]
    public static let cublasLtNames = [
        "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
        "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.12",
        "/usr/local/cuda/lib64/libcublasLt.so",
        "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublasLt.so.13",
    ]
}

/// The process environment as a dictionary (without Foundation).
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            result[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        p += 1
    }
    return result
}
