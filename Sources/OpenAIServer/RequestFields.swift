import Chat

/// Typed reads of a request body's top-level fields. A field that is absent or `null` reads as
/// nil (OpenAI's clients send `null` for "not set"); a field of the wrong type or out of range
/// is a 400 naming the field. Fields the server does not know are ignored, as OpenAI does.
public struct RequestFields {
    let object: JSONObject

    /// Parses a body; anything but a JSON object is a 400.
    public init(body: [UInt8]) throws(APIError) {
        guard let text = String(validating: body, as: UTF8.self) else {
            throw .badRequest("the request body is not valid UTF-8", code: "invalid_json")
        }
        let value: JSONValue
        do { value = try JSONParser.parse(text) } catch {
            throw .badRequest("the request body is not valid JSON: \(error)", code: "invalid_json")
        }
        guard let object = value.objectValue else {
            throw .badRequest("the request body must be a JSON object")
        }
        self.object = object
    }

    init(object: JSONObject) { self.object = object }

    subscript(key: String) -> JSONValue? {
        switch object[key] {
        case nil, .null?: return nil
        case let value?: return value
        }
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let b) = value else { throw Self.typeError(key, "a boolean") }
        return b
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let s) = value else { throw Self.typeError(key, "a string") }
        return s
    }

    /// A number; integers and floats both read (`1` and `1.0`).
    func double(_ key: String) throws(APIError) -> Double? {
        guard let value = self[key] else { return nil }
        guard case .number(let n) = value, let d = Self.double(n), d.isFinite else { throw Self.typeError(key, "a number") }
        return d
    }

    func float(_ key: String, in range: ClosedRange<Double>? = nil) throws(APIError) -> Float? {
        guard let d = try double(key) else { return nil }
        if let range, !range.contains(d) {
            throw .badRequest("'\(key)' must be in \(range.lowerBound)...\(range.upperBound) (got \(d))", param: key)
        }
        return Float(d)
    }

    /// An integer; a float with no fractional part (`2.0`) reads too.
    func int(_ key: String, in range: ClosedRange<Int>? = nil) throws(APIError) -> Int? {
        guard let value = self[key] else { return nil }
        guard case .number(let n) = value, let i = Self.int(n) else { throw Self.typeError(key, "an integer") }
        if let range, !range.contains(i) {
            throw .badRequest("'\(key)' must be in \(range.lowerBound)...\(range.upperBound) (got \(i))", param: key)
        }
        return i
    }

    /// A string or a list of strings (`stop`).
    func strings(_ key: String) throws(APIError) -> [String]? {
        guard let value = self[key] else { return nil }
        switch value {
        case .string(let s): return [s]
        case .array(let items):
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw Self.typeError(key, "a string or a list of strings") }
                out.append(s)
            }
            return out
        default: throw Self.typeError(key, "a string or a list of strings")
        }
    }

    static func typeError(_ key: String, _ expected: String) -> APIError {
        .badRequest("'\(key)' must be \(expected)", param: key)
    }

    static func double(_ n: JSONNumber) -> Double? {
        switch n {
        case .integer(let digits): return Double(digits)
        case .float(let d): return d
        }
    }

    static func int(_ n: JSONNumber) -> Int? {
        switch n {
        case .integer(let digits): return Int(digits)
        case .float(let d): return d.rounded() == d && abs(d) < 1e15 ? Int(d) : nil
        }
    }
}
