/// A JSON parser that accepts exactly what Python's `json.loads` accepts (strict mode), because
/// mistral-common decides with `json.loads` whether tool-call arguments and tool results are JSON
/// (then re-serialised) or plain text (then quoted): a more lenient or stricter parser would give
/// different tokens. Differences from RFC 8259 that Python has: `NaN`, `Infinity` and `-Infinity`
/// literals; a repeated object key keeps its first position and its last value.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    /// Byte offset into the UTF-8 input.
    public let offset: Int
    public var description: String { "\(message) (at byte \(offset))" }
}

public enum JSONParser {
    /// Parses one JSON document; surrounding whitespace (space, tab, CR, LF) is allowed.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(utf8: Array(text.utf8))
    }

    public static func parse(utf8 bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var p = Cursor(bytes: bytes)
        p.skipWhitespace()
        let value = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.index != bytes.count { throw p.error("Extra data") }
        return value
    }

    /// Python's `json.JSONDecoder().raw_decode(text, idx)` after skipping leading whitespace: the
    /// first JSON value and the byte offset just past it; trailing text is allowed.
    public static func parsePrefix(utf8 bytes: [UInt8]) throws(JSONParseError) -> (value: JSONValue, end: Int) {
        var p = Cursor(bytes: bytes)
        p.skipWhitespace()
        let value = try p.parseValue(depth: 0)
        return (value, p.index)
    }

    /// `json.loads(text)` if it succeeds, else nil (mistral-common's `_parse_json_content` then
    /// keeps the text as a plain string).
    static func pythonLoads(_ text: String) -> JSONValue? {
        try? parse(text)
    }
}

private struct Cursor {
    let bytes: [UInt8]
    var index = 0
    /// Python's default recursion limit stops nesting near 1000; stay well below any stack limit.
    static let maxDepth = 512

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: index) }

    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipWhitespace() {
        while let b = current, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
    }

    mutating func consume(_ literal: String) -> Bool {
        let lit = Array(literal.utf8)
        guard index + lit.count <= bytes.count, Array(bytes[index..<index + lit.count]) == lit else { return false }
        index += lit.count
        return true
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < Self.maxDepth else { throw error("Nesting too deep") }
        guard let b = current else { throw error("Expecting value") }
        switch b {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "n"): if consume("null") { return .null }
        case UInt8(ascii: "t"): if consume("true") { return .bool(true) }
        case UInt8(ascii: "f"): if consume("false") { return .bool(false) }
        case UInt8(ascii: "N"): if consume("NaN") { return .number(.float(.nan)) }
        case UInt8(ascii: "I"): if consume("Infinity") { return .number(.float(.infinity)) }
        case UInt8(ascii: "-"):
            if consume("-Infinity") { return .number(.float(-.infinity)) }
            if let n = parseNumber() { return .number(n) }
        default:
            if let n = parseNumber() { return .number(n) }
        }
        throw error("Expecting value")
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if current == UInt8(ascii: "}") { index += 1; return .object(object) }
        while true {
            guard current == UInt8(ascii: "\"") else {
                throw error("Expecting property name enclosed in double quotes")
            }
            let key = try parseString()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("Expecting ':' delimiter") }
            index += 1
            skipWhitespace()
            object[key] = try parseValue(depth: depth + 1)
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                continue
            }
            if current == UInt8(ascii: "}") { index += 1; return .object(object) }
            throw error("Expecting ',' delimiter")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            if current == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                continue
            }
            if current == UInt8(ascii: "]") { index += 1; return .array(items) }
            throw error("Expecting ',' delimiter")
        }
    }

    /// Python's NUMBER_RE: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; an int unless it has a
    /// fraction or an exponent. Returns nil (without moving) when nothing matches.
    mutating func parseNumber() -> JSONNumber? {
        let start = index
        var i = index
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, isDigit(bytes[i]) else { return nil }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        let intEnd = i
        var isFloat = false
        if i + 1 < bytes.count, bytes[i] == UInt8(ascii: "."), isDigit(bytes[i + 1]) {
            i += 2
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            isFloat = true
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            var j = i + 1
            if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
            if j < bytes.count, isDigit(bytes[j]) {
                while j < bytes.count, isDigit(bytes[j]) { j += 1 }
                i = j
                isFloat = true
            }
        }
        index = i
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if isFloat {
            // Double(String) rounds correctly, like Python's float(); overflow gives ±inf in both.
            return .float(Double(text) ?? .nan)
        }
        var digits = String(decoding: bytes[start..<intEnd], as: UTF8.self)
        if digits == "-0" { digits = "0" }
        return .integer(digits)
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = index
        func flushRun(_ end: Int, into scalars: inout String.UnicodeScalarView) {
            if end > runStart {
                scalars.append(contentsOf: String(decoding: bytes[runStart..<end], as: UTF8.self).unicodeScalars)
            }
        }
        while true {
            guard let b = current else { throw error("Unterminated string starting") }
            if b == UInt8(ascii: "\"") {
                flushRun(index, into: &scalars)
                index += 1
                return String(scalars)
            }
            if b < 0x20 { throw error("Invalid control character") }
            if b != UInt8(ascii: "\\") { index += 1; continue }
            flushRun(index, into: &scalars)
            index += 1
            guard let e = current else { throw error("Unterminated string starting") }
            index += 1
            switch e {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                guard let high = readHex4() else { throw error("Invalid \\uXXXX escape") }
                var value = high
                if (0xD800..<0xDC00).contains(high), index + 1 < bytes.count,
                   bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                {
                    let save = index
                    index += 2
                    if let low = readHex4(), (0xDC00..<0xE000).contains(low) {
                        value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        index = save
                    }
                }
                // A lone surrogate is a valid Python str but cannot be a Swift String; it
                // becomes U+FFFD (the only place this parser differs from Python).
                scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            default:
                index -= 1
                throw error("Invalid \\escape")
            }
            runStart = index
        }
    }

    mutating func readHex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let b = bytes[index + k]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        index += 4
        return v
    }
}
