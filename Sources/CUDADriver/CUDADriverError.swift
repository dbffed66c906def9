/// Everything that can go wrong below the backend: a missing library or symbol, or a failing
/// call into the driver, NVRTC or cuBLASLt. Each case carries enough to act on without a
/// debugger: the library searched for, the function called, the CUDA error's own name.
public enum CUDADriverError: Error, CustomStringConvertible, Equatable {
    /// No GPU stack on this machine (or not on the loader path).
    case libraryNotFound(library: String, tried: [String], reasons: [String])
    /// The library is too old (or not the one we think) for a function we need.
    case symbolNotFound(library: String, symbol: String)
    /// A driver API call returned `code` (e.g. 2 = CUDA_ERROR_OUT_OF_MEMORY).
    case driver(function: String, code: Int32, name: String, message: String)
    /// The driver works but reports no device (or not the ordinal asked for).
    case noDevice(String)
    /// An NVRTC call failed; `log` is the compiler's log when there is one.
    case nvrtc(function: String, code: Int32, message: String, log: String)
    /// A cuBLASLt call returned a non-success status.
    case cublas(function: String, code: Int32, name: String)
    /// An NCCL call returned a non-success ncclResult_t.
    case nccl(function: String, code: Int32, message: String)

    /// CUDA_ERROR_OUT_OF_MEMORY.
    public static let outOfMemoryCode: Int32 = 2

    public var isOutOfMemory: Bool {
        if case .driver(_, let code, _, _) = self { return code == Self.outOfMemoryCode }
        if case .cublas(_, let code, _) = self { return code == 3 }  // CUBLAS_STATUS_ALLOC_FAILED
        return false
    }

    public var description: String {
        switch self {
        case .libraryNotFound(let lib, let tried, let reasons):
            let why = reasons.last.map { " (last error: \($0))" } ?? ""
            return "no GPU: \(lib) not found; tried \(tried.joined(separator: ", "))\(why)"
        case .symbolNotFound(let lib, let sym):
            return "\(lib) has no symbol \(sym) (driver or library too old?)"
        case .driver(let fn, let code, let name, let message):
            return "\(fn) failed: \(name) (\(code)): \(message)"
        case .noDevice(let what):
            return "no GPU: \(what)"
        case .nvrtc(let fn, let code, let message, let log):
            let trimmed = log.trimmingTrailingNewlines()
            return "\(fn) failed: \(message) (\(code))" + (trimmed.isEmpty ? "" : "\n\(trimmed)")
        case .cublas(let fn, let code, let name):
            return "\(fn) failed: \(name) (\(code))"
        case .nccl(let fn, let code, let message):
            return "\(fn) failed: \(message) (ncclResult \(code))"
        }
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" || last == "\0" || last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// A String from a NUL-terminated C character array (the buffer form of `String(cString:)`).
func stringFromCChars(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
