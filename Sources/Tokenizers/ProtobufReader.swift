/// A minimal reader for the protobuf wire format — just enough to walk a SentencePiece
/// `ModelProto` without generated code. Every malformed input (truncated varint, length past
/// the end, unknown wire type) becomes a `ProtobufError` instead of a crash.
struct ProtobufError: Error {
    let message: String
}

/// One field as it appears on the wire.
enum ProtobufValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes(ArraySlice<UInt8>)
    case fixed32(UInt32)
}

struct ProtobufReader {
    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var isAtEnd: Bool { position >= bytes.endIndex }

    /// Reads the next (field number, value) pair; nil at the end of the message.
    mutating func next() throws(ProtobufError) -> (field: Int, value: ProtobufValue)? {
        if isAtEnd { return nil }
        let start = position
        let key = try readVarint()
        let field = key >> 3
        guard field > 0, field < (1 << 29) else {
            throw ProtobufError(message: "invalid field number \(field) at byte \(start)")
        }
        switch key & 7 {
        case 0:
            return (Int(field), .varint(try readVarint()))
        case 1:
            return (Int(field), .fixed64(try readFixed(count: 8)))
        case 2:
            let length = try readVarint()
            guard length <= UInt64(bytes.endIndex - position) else {
                throw ProtobufError(
                    message: "field \(field) at byte \(start) claims \(length) bytes, "
                        + "only \(bytes.endIndex - position) remain (truncated file?)")
            }
            let end = position + Int(length)
            defer { position = end }
            return (Int(field), .bytes(bytes[position..<end]))
        case 5:
            return (Int(field), .fixed32(UInt32(truncatingIfNeeded: try readFixed(count: 4))))
        default:
            throw ProtobufError(message: "unsupported wire type \(key & 7) for field \(field) at byte \(start)")
        }
    }

    private mutating func readVarint() throws(ProtobufError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.endIndex else {
                throw ProtobufError(message: "varint runs past the end of the data (truncated file?)")
            }
            let byte = bytes[position]
            position += 1
            guard shift < 64 else { throw ProtobufError(message: "varint longer than 10 bytes") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func readFixed(count: Int) throws(ProtobufError) -> UInt64 {
        guard bytes.endIndex - position >= count else {
            throw ProtobufError(message: "fixed\(count * 8) field runs past the end of the data (truncated file?)")
        }
        var result: UInt64 = 0
        for i in 0..<count {
            result |= UInt64(bytes[position + i]) << (8 * UInt64(i))
        }
        position += count
        return result
    }
}

extension ProtobufValue {
    func asBool(_ name: String) throws(ProtobufError) -> Bool {
        guard case .varint(let v) = self else { throw ProtobufError(message: "\(name): expected a varint") }
        return v != 0
    }

    /// proto `int32` (negative values are sign-extended to 10-byte varints on the wire).
    func asInt32(_ name: String) throws(ProtobufError) -> Int {
        guard case .varint(let v) = self else { throw ProtobufError(message: "\(name): expected a varint") }
        return Int(Int32(truncatingIfNeeded: v))
    }

    func asFloat(_ name: String) throws(ProtobufError) -> Float {
        guard case .fixed32(let v) = self else { throw ProtobufError(message: "\(name): expected a fixed32 float") }
        return Float(bitPattern: v)
    }

    func asBytes(_ name: String) throws(ProtobufError) -> ArraySlice<UInt8> {
        guard case .bytes(let b) = self else { throw ProtobufError(message: "\(name): expected length-delimited bytes") }
        return b
    }
}
