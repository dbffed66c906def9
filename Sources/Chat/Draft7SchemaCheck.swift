/// The structural part of `jsonschema.Draft7Validator.check_schema`, which mistral-common runs on
/// every tool's `parameters`: a schema must be an object or a boolean, and each Draft-7 keyword
/// must have the type the meta-schema gives it (`type` names a simple type or a non-empty list of
/// distinct ones, `properties` maps names to schemas, `required` is a list of distinct strings, …).
/// Messages follow jsonschema's wording for a single error (`'foo' is not valid under any of the
/// given schemas`). Of the `format` assertions, `regex` is checked (`PythonRegexSyntax`, for
/// `pattern` and `patternProperties` keys); `uri`/`uri-reference` need the optional `rfc3987`
/// package in jsonschema and are not checked there either unless it is installed.
enum Draft7SchemaCheck {
    static func firstProblem(in schema: JSONValue) -> String? {
        check(schema, depth: 0)
    }

    private static let simpleTypes: Set<String> = ["array", "boolean", "integer", "null", "number", "object", "string"]
    private static let stringKeywords = [
        "$id", "$schema", "$ref", "$comment", "title", "description", "pattern", "format", "contentMediaType",
        "contentEncoding",
    ]
    private static let numberKeywords = ["maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"]
    private static let countKeywords = ["maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"]
    private static let schemaKeywords = ["additionalItems", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not"]
    private static let schemaMapKeywords = ["definitions", "properties", "patternProperties"]
    private static let schemaArrayKeywords = ["allOf", "anyOf", "oneOf"]

    private static func check(_ schema: JSONValue, depth: Int) -> String? {
        if depth > 256 { return "schema nesting is too deep" }
        let object: JSONObject
        switch schema {
        case .bool: return nil
        case .object(let o): object = o
        default: return "\(pythonRepr(schema)) is not of type 'object', 'boolean'"
        }
        for entry in object.entries {
            let (key, value) = (entry.key, entry.value)
            if stringKeywords.contains(key) {
                guard let text = value.stringValue else { return notOfType(value, "string") }
                if key == "pattern", !PythonRegexSyntax.isValid(text) { return "\(pythonRepr(value)) is not a 'regex'" }
            } else if numberKeywords.contains(key) {
                if !isNumber(value) { return notOfType(value, "number") }
            } else if countKeywords.contains(key) {
                if let problem = checkNonNegativeInteger(value) { return problem }
            } else if schemaKeywords.contains(key) {
                if let problem = check(value, depth: depth + 1) { return problem }
            } else if schemaMapKeywords.contains(key) {
                guard case .object(let map) = value else { return notOfType(value, "object") }
                for sub in map.entries {
                    if key == "patternProperties", !PythonRegexSyntax.isValid(sub.key) {
                        return "\(pythonStringRepr(sub.key)) is not a 'regex'"
                    }
                    if let problem = check(sub.value, depth: depth + 1) { return problem }
                }
            } else if schemaArrayKeywords.contains(key) {
                guard case .array(let items) = value else { return notOfType(value, "array") }
                if items.isEmpty { return "[] should be non-empty" }
                for item in items {
                    if let problem = check(item, depth: depth + 1) { return problem }
                }
            } else {
                switch key {
                case "multipleOf":
                    guard isNumber(value) else { return notOfType(value, "number") }
                    if let v = numericValue(value), v <= 0 {
                        return "\(pythonRepr(value)) is less than or equal to the minimum of 0"
                    }
                case "readOnly", "uniqueItems":
                    if case .bool = value {} else { return notOfType(value, "boolean") }
                case "examples", "enum":
                    if case .array = value {} else { return notOfType(value, "array") }
                case "required":
                    if let problem = checkStringArray(value) { return problem }
                case "items":
                    switch value {
                    case .object, .bool:
                        if let problem = check(value, depth: depth + 1) { return problem }
                    case .array(let items) where !items.isEmpty:
                        for item in items {
                            if let problem = check(item, depth: depth + 1) { return problem }
                        }
                    default:
                        return notUnderAny(value)
                    }
                case "dependencies":
                    guard case .object(let map) = value else { return notOfType(value, "object") }
                    for dep in map.entries {
                        switch dep.value {
                        case .object, .bool:
                            if check(dep.value, depth: depth + 1) != nil { return notUnderAny(dep.value) }
                        default:
                            if checkStringArray(dep.value) != nil { return notUnderAny(dep.value) }
                        }
                    }
                case "type":
                    switch value {
                    case .string(let s):
                        if !simpleTypes.contains(s) { return notUnderAny(value) }
                    case .array(let items):
                        let names = items.compactMap(\.stringValue)
                        let valid = !items.isEmpty && names.count == items.count && names.allSatisfy(simpleTypes.contains)
                            && Set(names).count == names.count
                        if !valid { return notUnderAny(value) }
                    default:
                        return notUnderAny(value)
                    }
                default:
                    break  // `default`, `const` and unknown keywords accept anything
                }
            }
        }
        return nil
    }

    private static func checkNonNegativeInteger(_ value: JSONValue) -> String? {
        guard isInteger(value) else { return notOfType(value, "integer") }
        if let v = numericValue(value), v < 0 { return "\(pythonRepr(value)) is less than the minimum of 0" }
        return nil
    }

    private static func checkStringArray(_ value: JSONValue) -> String? {
        guard case .array(let items) = value else { return notOfType(value, "array") }
        for item in items where item.stringValue == nil { return notOfType(item, "string") }
        let strings = items.compactMap(\.stringValue)
        if Set(strings.map { Array($0.unicodeScalars).map(\.value) }).count != strings.count {
            return "\(pythonRepr(value)) has non-unique elements"
        }
        return nil
    }

    private static func notOfType(_ value: JSONValue, _ type: String) -> String {
        "\(pythonRepr(value)) is not of type '\(type)'"
    }

    private static func notUnderAny(_ value: JSONValue) -> String {
        "\(pythonRepr(value)) is not valid under any of the given schemas"
    }

    /// jsonschema: numbers are int or float, never bool.
    private static func isNumber(_ value: JSONValue) -> Bool {
        if case .number = value { return true }
        return false
    }

    /// jsonschema: an int, or a float with an integral value (1.0 counts).
    private static func isInteger(_ value: JSONValue) -> Bool {
        switch value {
        case .number(.integer): return true
        case .number(.float(let d)): return d.isFinite && d.rounded() == d
        default: return false
        }
    }

    private static func numericValue(_ value: JSONValue) -> Double? {
        switch value {
        case .number(.integer(let digits)): return Double(digits)
        case .number(.float(let d)): return d
        default: return nil
        }
    }

    /// Python's `repr` of the value `json.loads` would give (used by jsonschema's messages).
    static func pythonRepr(_ value: JSONValue) -> String {
        switch value {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .number(.integer(let digits)): return digits
        case .number(.float(let d)):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d < 0 ? "-inf" : "inf" }
            return PythonFloat.repr(d)
        case .string(let s): return pythonStringRepr(s)
        case .array(let items): return "[" + items.map(pythonRepr).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.entries.map { pythonStringRepr($0.key) + ": " + pythonRepr($0.value) }.joined(separator: ", ") + "}"
        }
    }

    /// Python's `repr(str)` for printable text: single quotes unless the text has a single quote
    /// and no double quote; backslash, quote and control characters escaped.
    static func pythonStringRepr(_ s: String) -> String {
        let useDouble = s.unicodeScalars.contains("'") && !s.unicodeScalars.contains("\"")
        let quote: Unicode.Scalar = useDouble ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            case quote: out.append("\\"); out.append(u)
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    out.append(contentsOf: ("\\x" + (hex.count < 2 ? "0" : "") + hex).unicodeScalars)
                } else {
                    out.append(u)
                }
            }
        }
        out.append(quote)
        return String(out)
    }
}
