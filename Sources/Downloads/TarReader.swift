/// A streaming (push) reader of tar archives: bytes go in as they arrive from the network, entries
/// and their data come out, nothing is buffered beyond one 512-byte block.
///
/// Formats: POSIX ustar (the `prefix` field joins `name`), GNU long names (type `L`), pax extended
/// headers (type `x`: its `path` record; type `g`, global, is read and ignored) and old v7 headers.
/// Regular files (`0`, `\0`, `7`) and directories (`5`) are extracted; links, devices and FIFOs
/// are refused (a link is how a tarball writes outside its folder), as are unsafe paths (see
/// `SafePath`). Every header's checksum is verified, so a corrupt or non-tar stream fails at its
/// first bad block.
///
/// Layout of the stream (each box a 512-byte block):
///
///     [header][data…][pad]  [header L][long name…][header][data…]  …  [zeros][zeros]
///
/// The reader classifies every byte it consumes as metadata (headers, long names, pax records,
/// padding, the end marker) or file data (`Event.data`), which is what lets a resumed download
/// rebuild the stream from the extracted files plus a small log of the metadata bytes
/// (`ExtractionJournal`).
public struct TarReader: Sendable {
    public enum Event: Equatable, Sendable {
        /// A directory to create (path relative to the archive root, no trailing "/").
        case directory(path: String)
        /// A regular file begins; `size` bytes of `.data` follow (possibly none).
        case fileStart(path: String, size: Int64)
        /// The next bytes of the current file.
        case data([UInt8])
        /// The current file is complete.
        case fileEnd
        /// The end-of-archive marker (two zero blocks) was read.
        case end
    }

    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public enum Kind: Sendable, Equatable { case corrupt, unsafePath, unsupportedEntry, trailingData }
        public let kind: Kind
        public let message: String
        public var description: String { message }
    }

    private enum State: Sendable, Equatable {
        case header
        /// Inside a regular file's data (`remaining` bytes left, then `padding`).
        case fileData(remaining: Int64, padding: Int)
        /// Inside the data of a metadata entry (GNU long name, pax header) being collected.
        case metaData(kind: UInt8, remaining: Int, padding: Int)
        /// Skipping padding after a file or metadata entry.
        case padding(remaining: Int)
        /// After the first zero block.
        case oneZeroBlock
        case finished
    }

    private var state: State = .header
    private var block: [UInt8] = []
    private var collected: [UInt8] = []
    /// Path overrides for the next entry, from GNU `L` or pax `path`.
    private var longName: String?
    private var paxPath: String?
    /// Total bytes consumed, for messages.
    public private(set) var offset: Int64 = 0

    public init() {}

    public var isFinished: Bool { state == .finished }

    /// True while the next bytes are file content (`.data`); false while they are metadata.
    public var expectsFileData: Bool {
        if case .fileData(let remaining, _) = state { return remaining > 0 }
        return false
    }

    /// How many bytes may be pushed before the reader switches between metadata and file data:
    /// the rest of the current file's data, or of the current metadata run. A resumed download
    /// pushes exactly this many bytes from the matching source (extracted file or metadata log).
    public var bytesUntilSwitch: Int64 {
        switch state {
        case .header, .oneZeroBlock: return Int64(512 - block.count)
        case .fileData(let remaining, let padding): return remaining > 0 ? remaining : Int64(padding)
        case .metaData(_, let remaining, let padding): return Int64(remaining + padding)
        case .padding(let remaining): return Int64(remaining)
        case .finished: return Int64.max
        }
    }

    /// Consumes `bytes`, appending what they complete to `events`. Bytes after the end marker
    /// must be zeros (tar pads archives to a record size); anything else is `.trailingData`.
    public mutating func push(_ bytes: UnsafeRawBufferPointer, into events: inout [Event]) throws(Failure) {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .header, .oneZeroBlock:
                let take = min(512 - block.count, n - i)
                block.append(contentsOf: bytes[i..<(i + take)])
                i += take
                offset += Int64(take)
                if block.count == 512 {
                    let header = block
                    block.removeAll(keepingCapacity: true)
                    try handleHeaderBlock(header, into: &events)
                }
            case .fileData(let remaining, let padding):
                if remaining > 0 {
                    let take = Int(min(remaining, Int64(n - i)))
                    events.append(.data(Array(bytes[i..<(i + take)])))
                    i += take
                    offset += Int64(take)
                    let left = remaining - Int64(take)
                    if left == 0 {
                        events.append(.fileEnd)
                        state = padding > 0 ? .padding(remaining: padding) : .header
                    } else {
                        state = .fileData(remaining: left, padding: padding)
                    }
                } else {
                    state = padding > 0 ? .padding(remaining: padding) : .header
                }
            case .metaData(let kind, let remaining, let padding):
                let take = min(remaining, n - i)
                collected.append(contentsOf: bytes[i..<(i + take)])
                i += take
                offset += Int64(take)
                if remaining - take == 0 {
                    try finishMetadata(kind)
                    state = padding > 0 ? .padding(remaining: padding) : .header
                } else {
                    state = .metaData(kind: kind, remaining: remaining - take, padding: padding)
                }
            case .padding(let remaining):
                let take = min(remaining, n - i)
                i += take
                offset += Int64(take)
                state = remaining - take == 0 ? .header : .padding(remaining: remaining - take)
            case .finished:
                for j in i..<n where bytes[j] != 0 {
                    throw Failure(kind: .trailingData, message: "non-zero data after the end-of-archive marker at byte \(offset + Int64(j - i))")
                }
                offset += Int64(n - i)
                i = n
            }
        }
    }

    /// Convenience for tests and small inputs.
    public mutating func push(_ bytes: [UInt8]) throws(Failure) -> [Event] {
        var events: [Event] = []
        // withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        let result = bytes.withUnsafeBytes { raw in Result { () throws(Failure) in try push(raw, into: &events) } }
        try result.get()
        return events
    }

    // MARK: headers

    private mutating func handleHeaderBlock(_ h: [UInt8], into events: inout [Event]) throws(Failure) {
        let headerOffset = offset - 512
        if h.allSatisfy({ $0 == 0 }) {
            if state == .oneZeroBlock {
                state = .finished
                events.append(.end)
            } else {
                state = .oneZeroBlock
            }
            return
        }
        if state == .oneZeroBlock {
            throw Failure(kind: .corrupt, message: "a lone zero block before the header at byte \(headerOffset)")
        }
        try verifyChecksum(h, at: headerOffset)
        let size = try octal(h, 124, 12, field: "size", at: headerOffset)
        let type = h[156]
        let padding = Int((512 - size % 512) % 512)
        switch type {
        case UInt8(ascii: "L"), UInt8(ascii: "x"), UInt8(ascii: "g"):
            // Metadata entries are small; a huge one is a corrupt or hostile header.
            guard size <= 1 << 20 else {
                throw Failure(kind: .corrupt, message: "metadata entry of \(size) bytes at byte \(headerOffset)")
            }
            collected.removeAll(keepingCapacity: true)
            if size == 0 {
                try finishMetadata(type)
                state = .header
            } else {
                state = .metaData(kind: type, remaining: Int(size), padding: padding)
            }
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "5"):
            let path = try SafePath.validate(takePath(h), at: headerOffset)
            let isDirectory = type == UInt8(ascii: "5") || (type == 0 && path.raw.hasSuffix("/"))
            if isDirectory {
                if !path.components.isEmpty { events.append(.directory(path: path.relative)) }
                // A directory's size field is ignored by tar; skip whatever it claims.
                state = size > 0 ? .padding(remaining: Int(size) + padding) : .header
            } else {
                guard !path.components.isEmpty else {
                    throw Failure(kind: .unsafePath, message: "a file entry with an empty name at byte \(headerOffset)")
                }
                events.append(.fileStart(path: path.relative, size: size))
                if size == 0 {
                    events.append(.fileEnd)
                    state = .header
                } else {
                    state = .fileData(remaining: size, padding: padding)
                }
            }
        default:
            let name = (try? takePath(h)) ?? "?"
            let what: String
            switch type {
            case UInt8(ascii: "1"): what = "a hard link"
            case UInt8(ascii: "2"): what = "a symbolic link"
            case UInt8(ascii: "K"): what = "a GNU long link name"
            case UInt8(ascii: "3"), UInt8(ascii: "4"): what = "a device node"
            case UInt8(ascii: "6"): what = "a FIFO"
            default: what = "an entry of type '\(String(UnicodeScalar(type)))'"
            }
            throw Failure(kind: .unsupportedEntry,
                          message: "the archive contains \(what) ('\(name)') at byte \(headerOffset); only files and folders are extracted, links could point outside the folder")
        }
    }

    /// The entry's path: a pax `path` record wins, then a GNU long name, then ustar prefix/name.
    private mutating func takePath(_ h: [UInt8]) throws(Failure) -> String {
        defer { longName = nil; paxPath = nil }
        if let paxPath { return paxPath }
        if let longName { return longName }
        let name = cString(h, 0, 100)
        let isUstar = h[257..<262].elementsEqual("ustar".utf8)
        let prefix = isUstar ? cString(h, 345, 155) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    private mutating func finishMetadata(_ kind: UInt8) throws(Failure) {
        let bytes = collected
        collected.removeAll(keepingCapacity: true)
        switch kind {
        case UInt8(ascii: "L"):
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            longName = String(decoding: bytes[..<end], as: UTF8.self)
        case UInt8(ascii: "x"):
            if let path = try Self.paxRecords(bytes, at: offset)["path"] { paxPath = path }
        default:
            break   // 'g': global pax records, nothing we use
        }
    }

    /// pax records: "<length> <key>=<value>\n", length counting the whole record.
    static func paxRecords(_ bytes: [UInt8], at offset: Int64) throws(Failure) -> [String: String] {
        var records: [String: String] = [:]
        var i = 0
        while i < bytes.count {
            guard let space = bytes[i...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: bytes[i..<space], as: UTF8.self)), length > 0,
                  i + length <= bytes.count, bytes[i + length - 1] == UInt8(ascii: "\n") else {
                throw Failure(kind: .corrupt, message: "malformed pax header record near byte \(offset)")
            }
            let record = bytes[(space + 1)..<(i + length - 1)]
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                records[String(decoding: record[..<eq], as: UTF8.self)] = String(decoding: record[(eq + 1)...], as: UTF8.self)
            }
            i += length
        }
        return records
    }

    private func verifyChecksum(_ h: [UInt8], at headerOffset: Int64) throws(Failure) {
        let stored = try octal(h, 148, 8, field: "checksum", at: headerOffset)
        var unsigned: Int64 = 0, signed: Int64 = 0
        for (i, b) in h.enumerated() {
            let v = (148..<156).contains(i) ? UInt8(ascii: " ") : b
            unsigned += Int64(v)
            signed += Int64(Int8(bitPattern: v))
        }
        // Some old tars summed signed bytes; both are accepted, as GNU tar does.
        guard stored == unsigned || stored == signed else {
            throw Failure(kind: .corrupt, message: "header checksum mismatch at byte \(headerOffset) (not a tar archive, or a corrupt one)")
        }
    }

    /// An octal numeric field (NUL/space terminated), or GNU base-256 when the top bit is set.
    private func octal(_ h: [UInt8], _ start: Int, _ length: Int, field: String, at headerOffset: Int64) throws(Failure) -> Int64 {
        let bytes = h[start..<(start + length)]
        if let first = bytes.first, first & 0x80 != 0 {
            guard first == 0x80 else {
                throw Failure(kind: .corrupt, message: "negative base-256 \(field) field at byte \(headerOffset)")
            }
            var v: Int64 = 0
            for b in bytes.dropFirst() {
                guard v < Int64.max >> 8 else { throw Failure(kind: .corrupt, message: "\(field) field overflows at byte \(headerOffset)") }
                v = v << 8 | Int64(b)
            }
            return v
        }
        var v: Int64 = 0
        var seenDigit = false
        for b in bytes {
            if b == 0 || b == UInt8(ascii: " ") {
                if seenDigit { break } else { continue }
            }
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(b), v < Int64.max >> 3 else {
                throw Failure(kind: .corrupt, message: "invalid \(field) field at byte \(headerOffset) (not a tar archive, or a corrupt one)")
            }
            v = v << 3 | Int64(b - UInt8(ascii: "0"))
            seenDigit = true
        }
        return v
    }

    private func cString(_ h: [UInt8], _ start: Int, _ length: Int) -> String {
        let field = h[start..<(start + length)]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[..<end], as: UTF8.self)
    }
}
