import Foundation

/// 128-bit FNV-1a (two independent 64-bit lanes) over bytes.
///
/// Why not SHA-256: Foundation on Linux has no CryptoKit and this only names cache files of our
/// own kernels (no adversary); 128 bits make accidental collisions irrelevant.
public struct SourceHash: Hashable, Sendable, CustomStringConvertible {
    public private(set) var lo: UInt64 = 0xcbf2_9ce4_8422_2325
    public private(set) var hi: UInt64 = 0x6c62_272e_07bb_0142

    public init() {}

    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        for b in bytes {
            lo = (lo ^ UInt64(b)) &* 0x0000_0100_0000_01b3
            hi = (hi ^ UInt64(b ^ 0x5a)) &* 0x0000_0100_0000_01b3
        }
    }

    public mutating func update(_ string: String) {
        update(string.utf8)
        update(CollectionOfOne(UInt8(0)))   // separator: ("ab","c") and ("a","bc") differ
    }

    public var description: String { hex(hi) + hex(lo) }

    private func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

/// What a compiled kernel module depends on: its source, the target architecture, the compiler
/// version and the options. Any change gives a new key, so a stale CUBIN is never loaded.
public struct KernelCacheKey: Hashable, Sendable {
    public let name: String
    public let digest: SourceHash

    public init(name: String, source: String, arch: String, nvrtcVersion: (major: Int, minor: Int), options: [String]) {
        self.name = name
        var h = SourceHash()
        h.update(source)
        h.update(arch)
        h.update("nvrtc \(nvrtcVersion.major).\(nvrtcVersion.minor)")
        for o in options { h.update(o) }
        digest = h
    }

    /// e.g. "rmsnorm-1f0c…e2.cubin".
    public var fileName: String { "\(name)-\(digest).cubin" }
}

/// CUBINs on disk, one file per key, written atomically (temp file + rename) so concurrent
/// processes never read a half-written file.
public struct KernelDiskCache: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// `$MIXTRAL_KERNEL_CACHE`, else `$XDG_CACHE_HOME/mixtral-chat/kernels`, else
    /// `~/.cache/mixtral-chat/kernels`.
    public static func defaultDirectory(environment: [String: String]) -> URL {
        if let d = environment["MIXTRAL_KERNEL_CACHE"], !d.isEmpty { return URL(fileURLWithPath: d) }
        if let x = environment["XDG_CACHE_HOME"], !x.isEmpty {
            return URL(fileURLWithPath: x).appendingPathComponent("mixtral-chat/kernels")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSTemporaryDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/mixtral-chat/kernels")
    }

    /// The cached CUBIN for `key`, or nil when absent or not an ELF file.
    public func load(_ key: KernelCacheKey) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(key.fileName).path),
              data.count > 4, Array(data.prefix(4)) == [0x7f, 0x45, 0x4c, 0x46] else { return nil }
        return [UInt8](data)
    }

    /// Stores `cubin`; failures (read-only home, full disk) are returned, not thrown: the cache
    /// is an optimisation and the caller carries on with the compiled bytes.
    @discardableResult
    public func store(_ cubin: [UInt8], for key: KernelCacheKey) -> Bool {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let tmp = directory.appendingPathComponent(".\(key.fileName).\(getpid()).tmp")
            try Data(cubin).write(to: tmp)
            let dest = directory.appendingPathComponent(key.fileName)
            if rename(tmp.path, dest.path) != 0 {
                try? FileManager.default.removeItem(at: tmp)
                return false
            }
            return true
        } catch {
            return false
        }
    }
}

/// Compiles kernel sources with NVRTC, going through the disk cache.
public struct KernelCompiler: Sendable {
    public let nvrtc: NVRTC
    public let cache: KernelDiskCache?
    public let nvrtcVersion: (major: Int, minor: Int)

    public init(nvrtc: NVRTC, cache: KernelDiskCache?) throws {
        self.nvrtc = nvrtc
        self.cache = cache
        self.nvrtcVersion = try nvrtc.version()
    }

    /// The CUBIN for `source` on `arch`; `fromCache` says whether compilation was skipped.
    /// `headers` take part in the key too: editing a shared header recompiles its users.
    public func cubin(name: String, source: String, arch: String, options: [String] = [],
                      headers: [(name: String, source: String)] = []) throws -> (bytes: [UInt8], fromCache: Bool) {
        let keyText = headers.reduce(source) { $0 + "\0" + $1.name + "\0" + $1.source }
        let key = KernelCacheKey(name: name, source: keyText, arch: arch, nvrtcVersion: nvrtcVersion, options: options)
        if let cached = cache?.load(key) { return (cached, true) }
        let (bytes, _) = try nvrtc.compile(source: source, name: "\(name).cu", arch: arch, options: options, headers: headers)
        cache?.store(bytes, for: key)
        return (bytes, false)
    }
}
