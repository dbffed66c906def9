/// A syntax check for Python `re` patterns, for the `format: regex` assertion that
/// `jsonschema.Draft7Validator.check_schema` makes on `pattern` values and `patternProperties`
/// keys (mistral-common rejects a tool whose schema has a pattern `re.compile` refuses).
///
/// Conservative by design: it reports only errors Python's parser certainly raises (unbalanced
/// parentheses, unterminated sets, nothing to repeat, multiple repeat, bad escapes, unknown group
/// extensions, incomplete hex escapes, reversed ranges of plain characters, references to groups
/// that are not closed yet). Anything subtler is accepted, so a valid pattern is never refused.
enum PythonRegexSyntax {
    static func isValid(_ pattern: String) -> Bool {
        var parser = Parser(Array(pattern.unicodeScalars))
        return parser.run()
    }

    private struct Parser {
        let s: [Unicode.Scalar]
        var i = 0
        var depth = 0
        var openGroups: [Bool] = []  // per open paren: does it capture?
        var closedGroups = 0
        var openedGroups = 0
        /// A preceding item exists that a quantifier may apply to.
        var canRepeat = false
        /// 0: last item was not a quantifier; 1: it was; 2: quantifier plus its `?`/`+` modifier.
        var repeatState = 0

        init(_ s: [Unicode.Scalar]) { self.s = s }

        static let classEscapes: Set<Unicode.Scalar> = ["a", "b", "f", "n", "r", "t", "v", "x", "u", "U", "N", "d", "D", "s", "S", "w", "W"]
        static let topEscapes: Set<Unicode.Scalar> = classEscapes.union(["A", "B", "Z"])

        mutating func run() -> Bool {
            while i < s.count {
                let c = s[i]
                switch c {
                case "\\":
                    guard escape(inClass: false) else { return false }
                    item()
                case "[":
                    guard characterClass() else { return false }
                    item()
                case "(":
                    guard group() else { return false }
                case ")":
                    guard depth > 0 else { return false }
                    depth -= 1
                    if openGroups.removeLast() { closedGroups += 1 }
                    i += 1
                    item()
                case "|":
                    i += 1
                    canRepeat = false
                    repeatState = 0
                case "*", "+", "?":
                    guard quantifier(isModifier: c == "?" || c == "+") else { return false }
                    i += 1
                case "{":
                    if let end = braceQuantifierEnd() {
                        guard quantifier(isModifier: false) else { return false }
                        i = end
                    } else {
                        i += 1
                        item()
                    }
                case "^", "$":
                    i += 1
                    canRepeat = false
                    repeatState = 0
                default:
                    i += 1
                    item()
                }
            }
            return depth == 0
        }

        mutating func item() {
            canRepeat = true
            repeatState = 0
        }

        mutating func quantifier(isModifier: Bool) -> Bool {
            if repeatState == 1, isModifier {
                repeatState = 2
                return true
            }
            if repeatState != 0 { return false }  // multiple repeat
            guard canRepeat else { return false }  // nothing to repeat
            repeatState = 1
            return true
        }

        /// `{m}`, `{m,}`, `{,n}`, `{m,n}` with m ≤ n: the index after `}`; nil when the brace is a literal.
        func braceQuantifierEnd() -> Int? {
            var j = i + 1
            var low = "", high = "", comma = false
            while j < s.count, s[j] != "}" {
                let u = s[j]
                if u == ",", !comma {
                    comma = true
                } else if ("0"..."9").contains(u) {
                    if comma { high.unicodeScalars.append(u) } else { low.unicodeScalars.append(u) }
                } else {
                    return nil
                }
                j += 1
            }
            guard j < s.count, !(low.isEmpty && high.isEmpty) else { return nil }
            if let l = Int(low), let h = Int(high), l > h { return nil }  // Python errors too; stay conservative
            return j + 1
        }

        mutating func group() -> Bool {
            i += 1  // (
            canRepeat = false
            repeatState = 0
            var captures = true
            if i < s.count, s[i] == "?" {
                i += 1
                guard i < s.count else { return false }
                captures = false
                switch s[i] {
                case ":", "=", "!", ">":
                    i += 1
                case "#":
                    while i < s.count, s[i] != ")" { i += 1 }
                    guard i < s.count else { return false }
                    i += 1
                    item()
                    return true
                case "<":
                    guard i + 1 < s.count, s[i + 1] == "=" || s[i + 1] == "!" else { return false }
                    i += 2
                case "P":
                    guard i + 1 < s.count else { return false }
                    if s[i + 1] == "<" {
                        captures = true
                        i += 2
                        while i < s.count, s[i] != ">" { i += 1 }
                        guard i < s.count else { return false }
                        i += 1
                    } else if s[i + 1] == "=" {
                        i += 2
                        while i < s.count, s[i] != ")" { i += 1 }
                        guard i < s.count else { return false }
                        i += 1
                        item()
                        return true
                    } else {
                        return false
                    }
                case "(":
                    i += 1  // conditional group: accept without further checks of its condition
                default:
                    // Inline flags such as (?i) or (?i:...). Verbose mode changes what the rest
                    // means; stop checking rather than risk a false error.
                    var j = i
                    while j < s.count, "aiLmsux-".unicodeScalars.contains(s[j]) {
                        if s[j] == "x" { i = s.count; depth = 0; return true }
                        j += 1
                    }
                    guard j > i, j < s.count, s[j] == ")" || s[j] == ":" else { return false }
                    i = j
                    if s[j] == ")" {
                        i += 1
                        return true
                    }
                    i += 1
                }
            }
            depth += 1
            openGroups.append(captures)
            if captures { openedGroups += 1 }
            return true
        }

        /// At `\`. Moves past the escape; false for an escape Python rejects.
        mutating func escape(inClass: Bool) -> Bool {
            i += 1
            guard i < s.count else { return false }  // bad escape (end of pattern)
            let c = s[i]
            i += 1
            if ("1"..."9").contains(c), !inClass {
                // Octal if three octal digits, else a group reference (one or two digits).
                if i + 1 < s.count, ("0"..."7").contains(c), ("0"..."7").contains(s[i]), ("0"..."7").contains(s[i + 1]) {
                    i += 2
                    return true
                }
                var number = Int(c.value - 48)
                if i < s.count, ("0"..."9").contains(s[i]) {
                    number = number * 10 + Int(s[i].value - 48)
                    i += 1
                }
                return number <= closedGroups
            }
            guard c.isASCII, c.properties.isAlphabetic else { return true }
            let allowed = inClass ? Self.classEscapes : Self.topEscapes
            guard allowed.contains(c) else { return false }
            let hexCount: Int
            switch c {
            case "x": hexCount = 2
            case "u": hexCount = 4
            case "U": hexCount = 8
            case "N":
                guard i < s.count, s[i] == "{" else { return false }
                while i < s.count, s[i] != "}" { i += 1 }
                guard i < s.count else { return false }
                i += 1
                return true
            default: return true
            }
            var value: UInt32 = 0
            for _ in 0..<hexCount {
                guard i < s.count, let d = hexValue(s[i]) else {
                    return false
                }
                value = value &* 16 &+ d
                i += 1
            }
            return c != "U" || value <= 0x10FFFF
        }

        func hexValue(_ u: Unicode.Scalar) -> UInt32? {
            switch u {
            case "0"..."9": return u.value - 48
            case "a"..."f": return u.value - 97 + 10
            case "A"..."F": return u.value - 65 + 10
            default: return nil
            }
        }

        /// At `[`. Moves past the closing `]`; false if unterminated or a plain range is reversed.
        mutating func characterClass() -> Bool {
            i += 1
            if i < s.count, s[i] == "^" { i += 1 }
            var first = true
            var previousLiteral: Unicode.Scalar?
            var pendingRangeStart: Unicode.Scalar?
            while i < s.count {
                let c = s[i]
                if c == "]", !first { i += 1; return true }
                first = false
                var literal: Unicode.Scalar?
                if c == "\\" {
                    guard escape(inClass: true) else { return false }
                } else if c == "-", let start = previousLiteral, i + 1 < s.count, s[i + 1] != "]", s[i + 1] != "\\" {
                    pendingRangeStart = start
                    i += 1
                    continue
                } else {
                    literal = c
                    i += 1
                }
                if let start = pendingRangeStart {
                    if let end = literal, end.value < start.value { return false }
                    pendingRangeStart = nil
                    previousLiteral = nil  // a `-` right after a range is a literal
                } else {
                    previousLiteral = literal
                }
            }
            return false  // unterminated character set
        }
    }
}
