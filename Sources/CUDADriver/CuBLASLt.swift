/// cuBLASLt as a typed function table, with the few enum values we use (from cublasLt.h,
/// cublas_api.h and library_types.h of CUDA 13.0).
public struct CuBLASLt: @unchecked Sendable {
    // @unchecked: immutable table of C function pointers; cuBLASLt handles are thread-safe for
    // use with distinct descriptors.
    public typealias Handle = OpaquePointer
    public typealias CreateFn = @convention(c) (UnsafeMutablePointer<Handle?>) -> Int32
    public typealias DestroyFn = @convention(c) (Handle?) -> Int32
    public typealias DescCreateFn = @convention(c) (UnsafeMutablePointer<Handle?>, Int32, Int32) -> Int32
    public typealias SetAttributeFn = @convention(c) (Handle?, Int32, UnsafeRawPointer, Int) -> Int32
    public typealias LayoutCreateFn = @convention(c) (UnsafeMutablePointer<Handle?>, Int32, UInt64, UInt64, Int64) -> Int32
    public typealias PreferenceCreateFn = @convention(c) (UnsafeMutablePointer<Handle?>) -> Int32
    public typealias HeuristicFn = @convention(c) (
        Handle?, Handle?, Handle?, Handle?, Handle?, Handle?, Handle?, Int32,
        UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Int32
    public typealias MatmulFn = @convention(c) (
        Handle?, Handle?, UnsafeRawPointer, CUdeviceptr, Handle?, CUdeviceptr, Handle?, UnsafeRawPointer,
        CUdeviceptr, Handle?, CUdeviceptr, Handle?, UnsafeRawPointer?, CUdeviceptr, Int, CUhandle?) -> Int32
    public typealias StatusNameFn = @convention(c) (Int32) -> UnsafePointer<CChar>?

    // cudaDataType_t
    public static let dataTypeF32: Int32 = 0
    public static let dataTypeF16: Int32 = 2
    public static let dataTypeBF16: Int32 = 14
    /// CUDA_R_8F_E4M3.
    public static let dataTypeE4M3: Int32 = 28
    // cublasComputeType_t
    public static let computeF32: Int32 = 68
    // cublasLtMatmulDescAttributes_t
    public static let descTransA: Int32 = 3
    public static let descTransB: Int32 = 4
    // cublasLtMatrixLayoutAttribute_t
    public static let layoutBatchCount: Int32 = 5            // int32
    public static let layoutStridedBatchOffset: Int32 = 6    // int64, in elements
    // cublasOperation_t
    public static let opN: Int32 = 0
    public static let opT: Int32 = 1
    // cublasLtMatmulPreferenceAttributes_t
    public static let prefMaxWorkspaceBytes: Int32 = 1
    /// sizeof(cublasLtMatmulHeuristicResult_t): algo (8 × u64) + size_t + status + float + int[4].
    public static let heuristicResultSize = 96
    /// Offset of `state` (cublasStatus_t) inside that struct.
    public static let heuristicStateOffset = 72

    public let library: DynamicLibrary
    public let cublasLtCreate: CreateFn
    public let cublasLtDestroy: DestroyFn
    public let cublasLtMatmulDescCreate: DescCreateFn
    public let cublasLtMatmulDescDestroy: DestroyFn
    public let cublasLtMatmulDescSetAttribute: SetAttributeFn
    public let cublasLtMatrixLayoutCreate: LayoutCreateFn
    public let cublasLtMatrixLayoutDestroy: DestroyFn
    public let cublasLtMatrixLayoutSetAttribute: SetAttributeFn
    public let cublasLtMatmulPreferenceCreate: PreferenceCreateFn
    public let cublasLtMatmulPreferenceDestroy: DestroyFn
    public let cublasLtMatmulPreferenceSetAttribute: SetAttributeFn
    public let cublasLtMatmulAlgoGetHeuristic: HeuristicFn
    public let cublasLtMatmul: MatmulFn
    public let cublasLtGetStatusName: StatusNameFn?

    public static func load(environment: [String: String]? = nil) throws -> CuBLASLt {
        let env = environment ?? processEnvironment()
        let lib = try DynamicLibrary(
            candidates: LibrarySearch.candidates(environmentVariable: "MIXTRAL_LIBCUBLASLT", names: LibrarySearch.cublasLtNames, environment: env),
            libraryName: "libcublasLt")
        return try CuBLASLt(library: lib)
    }

    public init(library lib: DynamicLibrary) throws {
        library = lib
        cublasLtCreate = try lib.function("cublasLtCreate", as: CreateFn.self)
        cublasLtDestroy = try lib.function("cublasLtDestroy", as: DestroyFn.self)
        cublasLtMatmulDescCreate = try lib.function("cublasLtMatmulDescCreate", as: DescCreateFn.self)
        cublasLtMatmulDescDestroy = try lib.function("cublasLtMatmulDescDestroy", as: DestroyFn.self)
        cublasLtMatmulDescSetAttribute = try lib.function("cublasLtMatmulDescSetAttribute", as: SetAttributeFn.self)
        cublasLtMatrixLayoutCreate = try lib.function("cublasLtMatrixLayoutCreate", as: LayoutCreateFn.self)
        cublasLtMatrixLayoutDestroy = try lib.function("cublasLtMatrixLayoutDestroy", as: DestroyFn.self)
        cublasLtMatrixLayoutSetAttribute = try lib.function("cublasLtMatrixLayoutSetAttribute", as: SetAttributeFn.self)
        cublasLtMatmulPreferenceCreate = try lib.function("cublasLtMatmulPreferenceCreate", as: PreferenceCreateFn.self)
        cublasLtMatmulPreferenceDestroy = try lib.function("cublasLtMatmulPreferenceDestroy", as: DestroyFn.self)
        cublasLtMatmulPreferenceSetAttribute = try lib.function("cublasLtMatmulPreferenceSetAttribute", as: SetAttributeFn.self)
        cublasLtMatmulAlgoGetHeuristic = try lib.function("cublasLtMatmulAlgoGetHeuristic", as: HeuristicFn.self)
        cublasLtMatmul = try lib.function("cublasLtMatmul", as: MatmulFn.self)
        cublasLtGetStatusName = lib.optionalFunction("cublasLtGetStatusName", as: StatusNameFn.self)
    }

    public func check(_ status: Int32, _ function: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw CUDADriverError.cublas(function: function(), code: status, name: statusName(status))
    }

    public func statusName(_ status: Int32) -> String {
        if let f = cublasLtGetStatusName, let p = f(status) { return String(cString: p) }
        return CuBLASLt.fallbackStatusName(status)
    }

    /// cublasStatus_t names, for when the library cannot be asked.
    public static func fallbackStatusName(_ status: Int32) -> String {
        switch status {
        case 0: return "CUBLAS_STATUS_SUCCESS"
        case 1: return "CUBLAS_STATUS_NOT_INITIALIZED"
        case 3: return "CUBLAS_STATUS_ALLOC_FAILED"
        case 7: return "CUBLAS_STATUS_INVALID_VALUE"
        case 8: return "CUBLAS_STATUS_ARCH_MISMATCH"
        case 11: return "CUBLAS_STATUS_MAPPING_ERROR"
        case 13: return "CUBLAS_STATUS_EXECUTION_FAILED"
        case 14: return "CUBLAS_STATUS_INTERNAL_ERROR"
        case 15: return "CUBLAS_STATUS_NOT_SUPPORTED"
        default: return "CUBLAS_STATUS_\(status)"
        }
    }
}
