/// The CUDA driver API (libcuda.so.1) as a typed function table.
///
/// Symbols are looked up by their *versioned* names (`cuMemAlloc_v2`, `cuMemGetInfo_v2`, …):
/// the unversioned names exported by libcuda are the legacy 32-bit-size ABI, and calling them
/// with 64-bit sizes corrupts arguments.
public typealias CUresult = Int32
public typealias CUdevice = Int32
public typealias CUdeviceptr = UInt64
public typealias CUhandle = OpaquePointer   // CUcontext, CUstream, CUmodule, CUfunction, CUevent, CUgraph…

public struct DriverAPI: @unchecked Sendable {
    // @unchecked: a table of C function pointers, immutable after loading; the driver API itself
    // is thread-safe.
    public typealias InitFn = @convention(c) (UInt32) -> CUresult
    public typealias IntOutFn = @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    public typealias DeviceGetFn = @convention(c) (UnsafeMutablePointer<CUdevice>, Int32) -> CUresult
    public typealias DeviceGetNameFn = @convention(c) (UnsafeMutablePointer<CChar>, Int32, CUdevice) -> CUresult
    public typealias DeviceGetAttributeFn = @convention(c) (UnsafeMutablePointer<Int32>, Int32, CUdevice) -> CUresult
    public typealias DeviceTotalMemFn = @convention(c) (UnsafeMutablePointer<Int>, CUdevice) -> CUresult
    public typealias PrimaryCtxRetainFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, CUdevice) -> CUresult
    public typealias PrimaryCtxReleaseFn = @convention(c) (CUdevice) -> CUresult
    public typealias HandleFn = @convention(c) (CUhandle?) -> CUresult
    public typealias VoidFn = @convention(c) () -> CUresult
    public typealias MemAllocFn = @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int) -> CUresult
    public typealias MemFreeFn = @convention(c) (CUdeviceptr) -> CUresult
    public typealias MemGetInfoFn = @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> CUresult
    public typealias MemHostAllocFn = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int, UInt32) -> CUresult
    public typealias MemFreeHostFn = @convention(c) (UnsafeMutableRawPointer?) -> CUresult
    public typealias MemcpyHtoDAsyncFn = @convention(c) (CUdeviceptr, UnsafeRawPointer?, Int, CUhandle?) -> CUresult
    public typealias MemcpyDtoHAsyncFn = @convention(c) (UnsafeMutableRawPointer?, CUdeviceptr, Int, CUhandle?) -> CUresult
    public typealias MemcpyDtoDAsyncFn = @convention(c) (CUdeviceptr, CUdeviceptr, Int, CUhandle?) -> CUresult
    public typealias MemsetD32AsyncFn = @convention(c) (CUdeviceptr, UInt32, Int, CUhandle?) -> CUresult
    public typealias StreamCreateFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, UInt32) -> CUresult
    public typealias StreamWaitEventFn = @convention(c) (CUhandle?, CUhandle?, UInt32) -> CUresult
    public typealias ModuleLoadDataFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, UnsafeRawPointer) -> CUresult
    public typealias ModuleGetFunctionFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, CUhandle?, UnsafePointer<CChar>) -> CUresult
    public typealias FuncSetAttributeFn = @convention(c) (CUhandle?, Int32, Int32) -> CUresult
    public typealias LaunchKernelFn = @convention(c) (
        CUhandle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, CUhandle?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CUresult
    public typealias EventCreateFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, UInt32) -> CUresult
    public typealias EventRecordFn = @convention(c) (CUhandle?, CUhandle?) -> CUresult
    public typealias EventElapsedFn = @convention(c) (UnsafeMutablePointer<Float>, CUhandle?, CUhandle?) -> CUresult
    public typealias GetErrorFn = @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    public typealias StreamBeginCaptureFn = @convention(c) (CUhandle?, Int32) -> CUresult
    public typealias StreamEndCaptureFn = @convention(c) (CUhandle?, UnsafeMutablePointer<CUhandle?>) -> CUresult
    public typealias GraphInstantiateFn = @convention(c) (UnsafeMutablePointer<CUhandle?>, CUhandle?, UInt64) -> CUresult
    public typealias GraphLaunchFn = @convention(c) (CUhandle?, CUhandle?) -> CUresult
    /// cuLaunchKernelEx(const CUlaunchConfig*, CUfunction, void** params, void** extra).
    public typealias LaunchKernelExFn = @convention(c) (
        UnsafeRawPointer, CUhandle?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CUresult

    public let library: DynamicLibrary
    public let cuInit: InitFn
    public let cuDriverGetVersion: IntOutFn
    public let cuDeviceGetCount: IntOutFn
    public let cuDeviceGet: DeviceGetFn
    public let cuDeviceGetName: DeviceGetNameFn
    public let cuDeviceGetAttribute: DeviceGetAttributeFn
    public let cuDeviceTotalMem: DeviceTotalMemFn
    public let cuDevicePrimaryCtxRetain: PrimaryCtxRetainFn
    public let cuDevicePrimaryCtxRelease: PrimaryCtxReleaseFn
    public let cuCtxSetCurrent: HandleFn
    public let cuCtxSynchronize: VoidFn
    public let cuMemAlloc: MemAllocFn
    public let cuMemFree: MemFreeFn
    public let cuMemGetInfo: MemGetInfoFn
    public let cuMemHostAlloc: MemHostAllocFn
    public let cuMemFreeHost: MemFreeHostFn
    public let cuMemcpyHtoDAsync: MemcpyHtoDAsyncFn
    public let cuMemcpyDtoHAsync: MemcpyDtoHAsyncFn
    public let cuMemcpyDtoDAsync: MemcpyDtoDAsyncFn
    public let cuMemsetD32Async: MemsetD32AsyncFn
    public let cuStreamCreate: StreamCreateFn
    public let cuStreamDestroy: HandleFn
    public let cuStreamSynchronize: HandleFn
    public let cuStreamWaitEvent: StreamWaitEventFn
    public let cuModuleLoadData: ModuleLoadDataFn
    public let cuModuleUnload: HandleFn
    public let cuModuleGetFunction: ModuleGetFunctionFn
    public let cuFuncSetAttribute: FuncSetAttributeFn
    public let cuLaunchKernel: LaunchKernelFn
    public let cuEventCreate: EventCreateFn
    public let cuEventRecord: EventRecordFn
    public let cuEventSynchronize: HandleFn
    public let cuEventElapsedTime: EventElapsedFn
    public let cuEventDestroy: HandleFn
    public let cuGetErrorName: GetErrorFn
    public let cuGetErrorString: GetErrorFn
    /// CUDA graphs (decode steps); optional so an old driver still runs without them.
    public let cuStreamBeginCapture: StreamBeginCaptureFn?
    public let cuStreamEndCapture: StreamEndCaptureFn?
    public let cuGraphInstantiateWithFlags: GraphInstantiateFn?
    public let cuGraphLaunch: GraphLaunchFn?
    public let cuGraphExecDestroy: HandleFn?
    public let cuGraphDestroy: HandleFn?
    /// Launches with attributes (programmatic dependent launch on sm_90); optional.
    public let cuLaunchKernelEx: LaunchKernelExFn?

    /// Loads libcuda and resolves every symbol; throws `libraryNotFound` on a machine without
    /// the NVIDIA driver.
    public static func load(environment: [String: String]? = nil) throws -> DriverAPI {
        let env = environment ?? processEnvironment()
        let lib = try DynamicLibrary(
            candidates: LibrarySearch.candidates(environmentVariable: "MIXTRAL_LIBCUDA", names: LibrarySearch.driverNames, environment: env),
            libraryName: "libcuda.so.1 (NVIDIA driver)")
        return try DriverAPI(library: lib)
    }

    public init(library lib: DynamicLibrary) throws {
        library = lib
        cuInit = try lib.function("cuInit", as: InitFn.self)
        cuDriverGetVersion = try lib.function("cuDriverGetVersion", as: IntOutFn.self)
        cuDeviceGetCount = try lib.function("cuDeviceGetCount", as: IntOutFn.self)
        cuDeviceGet = try lib.function("cuDeviceGet", as: DeviceGetFn.self)
        cuDeviceGetName = try lib.function("cuDeviceGetName", as: DeviceGetNameFn.self)
        cuDeviceGetAttribute = try lib.function("cuDeviceGetAttribute", as: DeviceGetAttributeFn.self)
        cuDeviceTotalMem = try lib.function("cuDeviceTotalMem_v2", as: DeviceTotalMemFn.self)
        cuDevicePrimaryCtxRetain = try lib.function("cuDevicePrimaryCtxRetain", as: PrimaryCtxRetainFn.self)
        cuDevicePrimaryCtxRelease = try lib.function("cuDevicePrimaryCtxRelease_v2", as: PrimaryCtxReleaseFn.self)
        cuCtxSetCurrent = try lib.function("cuCtxSetCurrent", as: HandleFn.self)
        cuCtxSynchronize = try lib.function("cuCtxSynchronize", as: VoidFn.self)
        cuMemAlloc = try lib.function("cuMemAlloc_v2", as: MemAllocFn.self)
        cuMemFree = try lib.function("cuMemFree_v2", as: MemFreeFn.self)
        cuMemGetInfo = try lib.function("cuMemGetInfo_v2", as: MemGetInfoFn.self)
        cuMemHostAlloc = try lib.function("cuMemHostAlloc", as: MemHostAllocFn.self)
        cuMemFreeHost = try lib.function("cuMemFreeHost", as: MemFreeHostFn.self)
        cuMemcpyHtoDAsync = try lib.function("cuMemcpyHtoDAsync_v2", as: MemcpyHtoDAsyncFn.self)
        cuMemcpyDtoHAsync = try lib.function("cuMemcpyDtoHAsync_v2", as: MemcpyDtoHAsyncFn.self)
        cuMemcpyDtoDAsync = try lib.function("cuMemcpyDtoDAsync_v2", as: MemcpyDtoDAsyncFn.self)
        cuMemsetD32Async = try lib.function("cuMemsetD32Async", as: MemsetD32AsyncFn.self)
        cuStreamCreate = try lib.function("cuStreamCreate", as: StreamCreateFn.self)
        cuStreamDestroy = try lib.function("cuStreamDestroy_v2", as: HandleFn.self)
        cuStreamSynchronize = try lib.function("cuStreamSynchronize", as: HandleFn.self)
        cuStreamWaitEvent = try lib.function("cuStreamWaitEvent", as: StreamWaitEventFn.self)
        cuModuleLoadData = try lib.function("cuModuleLoadData", as: ModuleLoadDataFn.self)
        cuModuleUnload = try lib.function("cuModuleUnload", as: HandleFn.self)
        cuModuleGetFunction = try lib.function("cuModuleGetFunction", as: ModuleGetFunctionFn.self)
        cuFuncSetAttribute = try lib.function("cuFuncSetAttribute", as: FuncSetAttributeFn.self)
        cuLaunchKernel = try lib.function("cuLaunchKernel", as: LaunchKernelFn.self)
        cuEventCreate = try lib.function("cuEventCreate", as: EventCreateFn.self)
        cuEventRecord = try lib.function("cuEventRecord", as: EventRecordFn.self)
        cuEventSynchronize = try lib.function("cuEventSynchronize", as: HandleFn.self)
        cuEventElapsedTime = try lib.function("cuEventElapsedTime", as: EventElapsedFn.self)
        cuEventDestroy = try lib.function("cuEventDestroy_v2", as: HandleFn.self)
        cuGetErrorName = try lib.function("cuGetErrorName", as: GetErrorFn.self)
        cuGetErrorString = try lib.function("cuGetErrorString", as: GetErrorFn.self)
        cuStreamBeginCapture = lib.optionalFunction("cuStreamBeginCapture_v2", as: StreamBeginCaptureFn.self)
        cuStreamEndCapture = lib.optionalFunction("cuStreamEndCapture", as: StreamEndCaptureFn.self)
        cuGraphInstantiateWithFlags = lib.optionalFunction("cuGraphInstantiateWithFlags", as: GraphInstantiateFn.self)
        cuGraphLaunch = lib.optionalFunction("cuGraphLaunch", as: GraphLaunchFn.self)
        cuGraphExecDestroy = lib.optionalFunction("cuGraphExecDestroy", as: HandleFn.self)
        cuGraphDestroy = lib.optionalFunction("cuGraphDestroy", as: HandleFn.self)
        cuLaunchKernelEx = lib.optionalFunction("cuLaunchKernelEx", as: LaunchKernelExFn.self)
    }

    /// Throws a `CUDADriverError.driver` naming `function` and the driver's error name unless
    /// `result` is CUDA_SUCCESS.
    @inline(__always)
    public func check(_ result: CUresult, _ function: @autoclosure () -> String) throws {
        if result != 0 { throw error(result, function: function()) }
    }

    public func error(_ result: CUresult, function: String) -> CUDADriverError {
        var namePtr: UnsafePointer<CChar>?
        var msgPtr: UnsafePointer<CChar>?
        _ = cuGetErrorName(result, &namePtr)
        _ = cuGetErrorString(result, &msgPtr)
        return CUDADriverError.driver(
            function: function, code: result,
            name: namePtr.map { String(cString: $0) } ?? DriverErrorNames.name(for: result),
            message: msgPtr.map { String(cString: $0) } ?? "")
    }
}

/// Names of common driver error codes, for formatting errors when the driver cannot be asked
/// (and so error formatting is testable without a GPU).
public enum DriverErrorNames {
    public static func name(for code: CUresult) -> String {
        switch code {
        case 0: return "CUDA_SUCCESS"
        case 1: return "CUDA_ERROR_INVALID_VALUE"
        case 2: return "CUDA_ERROR_OUT_OF_MEMORY"
        case 3: return "CUDA_ERROR_NOT_INITIALIZED"
        case 100: return "CUDA_ERROR_NO_DEVICE"
        case 101: return "CUDA_ERROR_INVALID_DEVICE"
        case 200: return "CUDA_ERROR_INVALID_IMAGE"
        case 209: return "CUDA_ERROR_NO_BINARY_FOR_GPU"
        case 218: return "CUDA_ERROR_INVALID_PTX"
        case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"
        case 500: return "CUDA_ERROR_NOT_FOUND"
        case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS"
        case 701: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"
        case 702: return "CUDA_ERROR_LAUNCH_TIMEOUT"
        case 719: return "CUDA_ERROR_LAUNCH_FAILED"
        case 999: return "CUDA_ERROR_UNKNOWN"
        default: return "CUDA_ERROR_\(code)"
        }
    }
}
