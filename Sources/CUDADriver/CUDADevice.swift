/// One GPU with its primary context: the handle every higher layer works through.
///
/// The primary context (not `cuCtxCreate`) is used so that cuBLASLt and any other library in the
/// process share it. Every entry point calls `makeCurrent()` first because Swift concurrency may
/// run successive calls on different threads, and a CUDA context is current per thread.
public final class CUDADevice: @unchecked Sendable {
    // @unchecked: all stored properties are immutable after init; the driver API is thread-safe.
    public let api: DriverAPI
    public let ordinal: Int
    public let device: CUdevice
    public let context: CUhandle
    public let name: String
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessors: Int
    public let totalMemory: Int
    public let driverVersion: Int

    /// The NVRTC architecture string for this device, e.g. "sm_90".
    public var arch: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }

    /// Opens GPU `ordinal`. Throws `libraryNotFound` without a driver, `noDevice` without a GPU.
    public init(ordinal: Int = 0, api: DriverAPI? = nil) throws {
        let api = try api ?? DriverAPI.load()
        self.api = api
        self.ordinal = ordinal
        let initResult = api.cuInit(0)
        if initResult == 100 { throw CUDADriverError.noDevice("cuInit: CUDA_ERROR_NO_DEVICE (driver loaded, no GPU visible)") }
        try api.check(initResult, "cuInit")
        var version: Int32 = 0
        try api.check(api.cuDriverGetVersion(&version), "cuDriverGetVersion")
        driverVersion = Int(version)
        var count: Int32 = 0
        try api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard ordinal >= 0, ordinal < Int(count) else {
            throw CUDADriverError.noDevice("GPU \(ordinal) requested, \(count) visible")
        }
        var dev: CUdevice = 0
        try api.check(api.cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        device = dev
        var chars = [CChar](repeating: 0, count: 256)
        try api.check(api.cuDeviceGetName(&chars, 255, dev), "cuDeviceGetName")
        name = stringFromCChars(chars)
        func attribute(_ a: Int32) throws -> Int {
            var v: Int32 = 0
            try api.check(api.cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute(\(a))")
            return Int(v)
        }
        computeCapability = (try attribute(75), try attribute(76))  // COMPUTE_CAPABILITY_MAJOR/MINOR
        multiprocessors = try attribute(16)                          // MULTIPROCESSOR_COUNT
        var total = 0
        try api.check(api.cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem_v2")
        totalMemory = total
        var ctx: CUhandle?
        try api.check(api.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw CUDADriverError.noDevice("cuDevicePrimaryCtxRetain returned no context") }
        context = ctx
        try api.check(api.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    }

    deinit { _ = api.cuDevicePrimaryCtxRelease(device) }

    @inline(__always)
    public func makeCurrent() throws {
        try api.check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// (free, total) bytes of device memory right now.
    public func memoryInfo() throws -> (free: Int, total: Int) {
        try makeCurrent()
        var free = 0, total = 0
        try api.check(api.cuMemGetInfo(&free, &total), "cuMemGetInfo_v2")
        return (free, total)
    }

    /// Device memory; a failure to allocate is `CUDADriverError.driver` with
    /// CUDA_ERROR_OUT_OF_MEMORY (`isOutOfMemory`).
    public func allocate(_ bytes: Int) throws -> CUdeviceptr {
        try makeCurrent()
        var p: CUdeviceptr = 0
        try api.check(api.cuMemAlloc(&p, max(bytes, 1)), "cuMemAlloc_v2(\(bytes) bytes)")
        return p
    }

    public func free(_ p: CUdeviceptr) {
        _ = api.cuCtxSetCurrent(context)
        _ = api.cuMemFree(p)
    }

    /// Page-locked host memory (for overlapping copies with host work).
    public func allocateHost(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        try makeCurrent()
        var p: UnsafeMutableRawPointer?
        try api.check(api.cuMemHostAlloc(&p, bytes, 0), "cuMemHostAlloc(\(bytes) bytes)")
        guard let p else { throw CUDADriverError.driver(function: "cuMemHostAlloc", code: 2, name: "CUDA_ERROR_OUT_OF_MEMORY", message: "null pointer") }
        return p
    }

    public func freeHost(_ p: UnsafeMutableRawPointer) {
        _ = api.cuCtxSetCurrent(context)
        _ = api.cuMemFreeHost(p)
    }

    public func createStream() throws -> CUhandle {
        try makeCurrent()
        var s: CUhandle?
        try api.check(api.cuStreamCreate(&s, 1), "cuStreamCreate")  // CU_STREAM_NON_BLOCKING
        guard let s else { throw CUDADriverError.noDevice("cuStreamCreate returned no stream") }
        return s
    }

    public func createEvent(timing: Bool = false) throws -> CUhandle {
        try makeCurrent()
        var e: CUhandle?
        try api.check(api.cuEventCreate(&e, timing ? 0 : 2), "cuEventCreate")  // 2 = CU_EVENT_DISABLE_TIMING
        guard let e else { throw CUDADriverError.noDevice("cuEventCreate returned no event") }
        return e
    }

    public func loadModule(cubin: [UInt8]) throws -> CUhandle {
        try makeCurrent()
        var m: CUhandle?
        try cubin.withUnsafeBytes { raw in
            try api.check(api.cuModuleLoadData(&m, raw.baseAddress!), "cuModuleLoadData")
        }
        guard let m else { throw CUDADriverError.noDevice("cuModuleLoadData returned no module") }
        return m
    }

    public func function(_ module: CUhandle, name: String) throws -> CUhandle {
        var f: CUhandle?
        try api.check(api.cuModuleGetFunction(&f, module, name), "cuModuleGetFunction(\(name))")
        guard let f else { throw CUDADriverError.symbolNotFound(library: "kernel module", symbol: name) }
        return f
    }

    /// Launches `function` with `arguments` (each passed by value as the kernel declares it).
    /// Queues a kernel. `programmatic`: launched with PROGRAMMATIC_STREAM_SERIALIZATION, so it may
    /// start while the previous kernel on the stream finishes; the kernel must execute
    /// `griddepcontrol.wait` before it touches anything that kernel writes (sm_90 and
    /// cuLaunchKernelEx; otherwise an ordinary launch).
    public func launch(_ function: CUhandle, grid: (Int, Int, Int), block: (Int, Int, Int),
                       sharedBytes: Int = 0, stream: CUhandle?, arguments: [KernelArgument], label: String,
                       programmatic: Bool = false) throws {
        let count = arguments.count
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: max(count, 1)) { storage in
            try withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: max(count, 1)) { pointers in
                for (i, a) in arguments.enumerated() {
                    let slot = storage.baseAddress! + i
                    switch a {
                    case .pointer(let p): slot.pointee = p
                    case .int32(let v):
                        UnsafeMutableRawPointer(slot).storeBytes(of: v, as: Int32.self)
                    case .float(let v):
                        UnsafeMutableRawPointer(slot).storeBytes(of: v, as: Float.self)
                    case .int64(let v): slot.pointee = UInt64(bitPattern: v)
                    }
                    pointers[i] = UnsafeMutableRawPointer(slot)
                }
                if programmatic, let launchEx = api.cuLaunchKernelEx {
                    // CUlaunchConfig (56 bytes) and one CUlaunchAttribute (72 bytes), laid out as cuda.h:
                    // 7 × u32 dims/smem, pad, hStream @32, attrs @40, numAttrs @48; attribute id @0,
                    // value union @8 (programmaticStreamSerializationAllowed: int).
                    try withUnsafeTemporaryAllocation(byteCount: 56 + 72, alignment: 8) { raw in
                        let base = raw.baseAddress!
                        base.initializeMemory(as: UInt8.self, repeating: 0, count: 56 + 72)
                        let dims = [grid.0, grid.1, grid.2, block.0, block.1, block.2, sharedBytes]
                        for (i, d) in dims.enumerated() { base.storeBytes(of: UInt32(d), toByteOffset: 4 * i, as: UInt32.self) }
                        base.storeBytes(of: stream.map { UnsafeRawPointer($0) }, toByteOffset: 32, as: UnsafeRawPointer?.self)
                        let attribute = base + 56
                        base.storeBytes(of: UnsafeRawPointer(attribute), toByteOffset: 40, as: UnsafeRawPointer.self)
                        base.storeBytes(of: UInt32(1), toByteOffset: 48, as: UInt32.self)
                        attribute.storeBytes(of: Int32(6), toByteOffset: 0, as: Int32.self)   // PROGRAMMATIC_STREAM_SERIALIZATION
                        attribute.storeBytes(of: Int32(1), toByteOffset: 8, as: Int32.self)
                        try api.check(launchEx(UnsafeRawPointer(base), function, pointers.baseAddress, nil),
                                      "cuLaunchKernelEx(\(label), grid \(grid), block \(block), smem \(sharedBytes), programmatic)")
                    }
                } else {
                    try api.check(api.cuLaunchKernel(function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2),
                                                     UInt32(block.0), UInt32(block.1), UInt32(block.2),
                                                     UInt32(sharedBytes), stream, pointers.baseAddress, nil),
                                  "cuLaunchKernel(\(label), grid \(grid), block \(block), smem \(sharedBytes))")
                }
            }
        }
    }
}

/// One kernel parameter, passed by value.
public enum KernelArgument: Sendable {
    case pointer(CUdeviceptr)
    case int32(Int32)
    case int64(Int64)      // `long long` (element counts past 2^31)
    case float(Float)
}

/// What `probe` found: a usable GPU stack, or why not.
public enum CUDAAvailability: Sendable, CustomStringConvertible {
    case available(devices: [String], driverVersion: Int)
    case unavailable(reason: String)

    public var isAvailable: Bool { if case .available = self { return true } else { return false } }

    public var description: String {
        switch self {
        case .available(let devices, let v):
            return "CUDA driver \(v / 1000).\(v % 1000 / 10): " + devices.enumerated().map { "cuda:\($0.offset) \($0.element)" }.joined(separator: ", ")
        case .unavailable(let reason): return reason
        }
    }
}

public enum CUDAProbe {
    /// Loads the driver and lists the GPUs, without ever failing: the answer on a machine
    /// without CUDA is `.unavailable` with the reason (library not found, no device, …).
    public static func probe(environment: [String: String]? = nil) -> CUDAAvailability {
        do {
            let api = try DriverAPI.load(environment: environment)
            let r = api.cuInit(0)
            if r != 0 { return .unavailable(reason: "no GPU: " + api.error(r, function: "cuInit").description) }
            var count: Int32 = 0
            try api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount")
            if count == 0 { return .unavailable(reason: "no GPU: the CUDA driver reports 0 devices") }
            var version: Int32 = 0
            try api.check(api.cuDriverGetVersion(&version), "cuDriverGetVersion")
            var names: [String] = []
            for i in 0..<count {
                var dev: CUdevice = 0
                try api.check(api.cuDeviceGet(&dev, i), "cuDeviceGet")
                var chars = [CChar](repeating: 0, count: 256)
                try api.check(api.cuDeviceGetName(&chars, 255, dev), "cuDeviceGetName")
                names.append(stringFromCChars(chars))
            }
            return .available(devices: names, driverVersion: Int(version))
        } catch {
            return .unavailable(reason: "\(error)")
        }
    }
}
