/// NCCL as a typed function table (the few calls and enum values we use, from nccl.h of NCCL 2),
/// loaded with dlopen like the CUDA libraries, so the package builds and tests without it.
public struct NCCL: @unchecked Sendable {
    // @unchecked: an immutable table of C function pointers.
    public typealias Comm = OpaquePointer
    public typealias CommInitAllFn = @convention(c) (UnsafeMutablePointer<Comm?>, Int32, UnsafePointer<Int32>) -> Int32
    public typealias CommFn = @convention(c) (Comm?) -> Int32
    public typealias AllReduceFn = @convention(c) (CUdeviceptr, CUdeviceptr, Int, Int32, Int32, Comm?, CUhandle?) -> Int32
    public typealias AllGatherFn = @convention(c) (CUdeviceptr, CUdeviceptr, Int, Int32, Comm?, CUhandle?) -> Int32
    public typealias GroupFn = @convention(c) () -> Int32
    public typealias ErrorStringFn = @convention(c) (Int32) -> UnsafePointer<CChar>?
    public typealias VersionFn = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32

    // ncclDataType_t, ncclRedOp_t
    public static let float32: Int32 = 7
    public static let sum: Int32 = 0

    public let library: DynamicLibrary
    public let ncclCommInitAll: CommInitAllFn
    public let ncclCommDestroy: CommFn
    public let ncclCommAbort: CommFn
    public let ncclAllReduce: AllReduceFn
    public let ncclAllGather: AllGatherFn
    public let ncclGroupStart: GroupFn
    public let ncclGroupEnd: GroupFn
    public let ncclGetErrorString: ErrorStringFn?
    public let ncclGetVersion: VersionFn?

    public static func load(environment: [String: String]? = nil) throws -> NCCL {
        let env = environment ?? processEnvironment()
        let lib = try DynamicLibrary(
            candidates: LibrarySearch.candidates(environmentVariable: "MIXTRAL_LIBNCCL", names: LibrarySearch.ncclNames, environment: env),
            libraryName: "libnccl")
        return try NCCL(library: lib)
    }

    public init(library lib: DynamicLibrary) throws {
        library = lib
        ncclCommInitAll = try lib.function("ncclCommInitAll", as: CommInitAllFn.self)
        ncclCommDestroy = try lib.function("ncclCommDestroy", as: CommFn.self)
        ncclCommAbort = try lib.function("ncclCommAbort", as: CommFn.self)
        ncclAllReduce = try lib.function("ncclAllReduce", as: AllReduceFn.self)
        ncclAllGather = try lib.function("ncclAllGather", as: AllGatherFn.self)
        ncclGroupStart = try lib.function("ncclGroupStart", as: GroupFn.self)
        ncclGroupEnd = try lib.function("ncclGroupEnd", as: GroupFn.self)
        ncclGetErrorString = lib.optionalFunction("ncclGetErrorString", as: ErrorStringFn.self)
        ncclGetVersion = lib.optionalFunction("ncclGetVersion", as: VersionFn.self)
    }

    public func check(_ result: Int32, _ function: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        let message = ncclGetErrorString.flatMap { $0(result) }.map { String(cString: $0) } ?? "ncclResult \(result)"
        throw CUDADriverError.nccl(function: function(), code: result, message: message)
    }

    /// e.g. 22703 for NCCL 2.27.3.
    public var version: Int? {
        var v: Int32 = 0
        guard let f = ncclGetVersion, f(&v) == 0 else { return nil }
        return Int(v)
    }
}
