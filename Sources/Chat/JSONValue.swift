/// A JSON value that keeps what mistral-common's output depends on and Foundation's JSON types lose:
/// the order of object keys and whether a number was written as an integer or as a float.
///
/// mistral-common serialises tool definitions, tool-call arguments and tool results with Python's
/// `json.dumps(..., ensure_ascii=False)` after `json.loads`, so the token ids depend on key order
/// (Python dicts keep insertion order), on `1` vs `1.0`, and on Python's float `repr`. This type
/// reproduces exactly that round trip; see `JSONParser` and `PythonJSONWriter`.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The value Python's `json.dumps(value, ensure_ascii=False)` would print.
    public var pythonJSON: String {
        var out = ""
        PythonJSONWriter.write(self, into: &out)
        return out
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Python's name for the type this value has after `json.loads` (used in error messages).
    var pythonTypeName: String {
        switch self {
        case .null: return "NoneType"
        case .bool: return "bool"
        case .number(let n): return n.isInteger ? "int" : "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        }
    }
}

/// A JSON number as Python's `json.loads` types it: an `int` (arbitrary precision, kept as its
/// decimal digits) or a `float` (an IEEE double).
public enum JSONNumber: Sendable, Equatable {
    /// Canonical decimal digits of a Python int, e.g. "-12" or "0" (for "-0").
    case integer(String)
    case float(Double)

    public var isInteger: Bool {
        if case .integer = self { return true }
        return false
    }

    /// `str(int)` / `repr(float)` as `json.dumps` writes them (`NaN`, `Infinity`, `-Infinity`).
    public var pythonLiteral: String {
        switch self {
        case .integer(let digits): return digits
        case .float(let d): return PythonFloat.jsonRepr(d)
        }
    }

    public static func == (a: JSONNumber, b: JSONNumber) -> Bool {
        switch (a, b) {
        case (.integer(let x), .integer(let y)): return x == y
        case (.float(let x), .float(let y)): return x == y || (x.isNaN && y.isNaN)
        default: return false
        }
    }
}

/// A JSON object with Python dict semantics: insertion order is kept, and a repeated key keeps
/// the position of its first occurrence and the value of its last (what `json.loads` does).
public struct JSONObject: Sendable, Equatable {
    public private(set) var entries: [(key: String, value: JSONValue)] = []

    public init() {}

    public init(_ pairs: [(String, JSONValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map(\.key) }

    /// Keys compare by Unicode scalars, as Python str keys do (not by canonical equivalence).
    private func index(of key: String) -> Int? {
        entries.firstIndex { $0.key.unicodeScalars.elementsEqual(key.unicodeScalars) }
    }

    public func contains(_ key: String) -> Bool { index(of: key) != nil }

    public subscript(key: String) -> JSONValue? {
        get { index(of: key).map { entries[$0].value } }
        set {
            if let i = index(of: key) {
                if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
            } else if let newValue {
                entries.append((key, newValue))
            }
        }
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy {
                $0.key.unicodeScalars.elementsEqual($1.key.unicodeScalars) && $0.value == $1.value
            }
    }
}

/// Python's `json.dumps(obj, ensure_ascii=False)` with the default separators `", "` and `": "`.
enum PythonJSONWriter {
    static func write(_ value: JSONValue, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.pythonLiteral
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                write(item, into: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            for (i, entry) in object.entries.enumerated() {
                if i > 0 { out += ", " }
                writeString(entry.key, into: &out)
                out += ": "
                write(entry.value, into: &out)
            }
            out += "}"
        }
    }

    /// `json.encoder.py_encode_basestring`: escapes `"`, `\`, and U+0000–U+001F only; everything
    /// else (all non-ASCII, U+007F, U+2028) is written as is.
    static func writeString(_ s: String, into out: inout String) {
        var scalars = String.UnicodeScalarView()
        scalars.append("\"")
        for u in s.unicodeScalars {
            switch u {
            case "\"": scalars.append(contentsOf: "\\\"".unicodeScalars)
            case "\\": scalars.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": scalars.append(contentsOf: "\\n".unicodeScalars)
            case "\r": scalars.append(contentsOf: "\\r".unicodeScalars)
            case "\t": scalars.append(contentsOf: "\\t".unicodeScalars)
            case "\u{08}": scalars.append(contentsOf: "\\b".unicodeScalars)
            case "\u{0C}": scalars.append(contentsOf: "\\f".unicodeScalars)
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    scalars.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).unicodeScalars)
                } else {
                    scalars.append(u)
                }
            }
        }
        scalars.append("\"")
        out += String(scalars)
    }
}

/// Python's float `repr` (the shortest digits that round-trip, exponent form when the decimal
/// exponent is < -4 or >= 16), which is how `json.dumps` writes floats.
enum PythonFloat {
    static func jsonRepr(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return repr(d)
    }

    static func repr(_ d: Double) -> String {
        let sign = d.sign == .minus ? "-" : ""
        if d == 0 { return sign + "0.0" }
        // Swift's description also prints the shortest round-tripping digits; only the layout
        // differs from Python's, so take the digits and the exponent and lay them out again.
        var text = Substring(abs(d).description)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        var digits = ""
        var pointPosition = 0
        var seenPoint = false
        for c in text {
            if c == "." { seenPoint = true; continue }
            digits.append(c)
            if !seenPoint { pointPosition += 1 }
        }
        // Value = 0.<digits> × 10^decpt.
        var decpt = pointPosition + exponent
        while digits.first == "0" { digits.removeFirst(); decpt -= 1 }
        while digits.last == "0" { digits.removeLast() }
        if digits.isEmpty { return sign + "0.0" }
        let n = digits.count
        if decpt > 16 || decpt < -3 {
            var mantissa = String(digits.prefix(1))
            if n > 1 { mantissa += "." + digits.dropFirst() }
            let e = decpt - 1
            let eDigits = String(abs(e))
            return sign + mantissa + "e" + (e < 0 ? "-" : "+") + (eDigits.count < 2 ? "0" : "") + eDigits
        }
        if decpt <= 0 {
            return sign + "0." + String(repeating: "0", count: -decpt) + digits
        }
        if decpt >= n {
            return sign + digits + String(repeating: "0", count: decpt - n) + ".0"
        }
        let cut = digits.index(digits.startIndex, offsetBy: decpt)
        return sign + digits[..<cut] + "." + digits[cut...]
    }
}
