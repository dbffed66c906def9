/// sentencepiece's own UTF-8 rules (util.h / util.cc), reproduced byte for byte because they
/// decide how byte-fallback pieces become text: a structurally invalid byte becomes one
/// U+FFFD and decoding resumes at the next byte.
enum UTF8Rules {
    static let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// `string_util::OneCharLen`: the length a lead byte announces (1 for stray bytes).
    @inline(__always)
    static func oneCharLength(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// How many bytes `decodeUTF8` needs to see before its verdict on a character starting
    /// with `lead` can no longer change.
    @inline(__always)
    static func bytesNeeded(_ lead: UInt8) -> Int {
        if lead < 0x80 { return 1 }
        if lead & 0xE0 == 0xC0 { return 2 }
        if lead & 0xF0 == 0xE0 { return 3 }
        if lead & 0xF8 == 0xF0 { return 4 }
        return 1
    }

    @inline(__always)
    private static func isTrail(_ b: UInt8) -> Bool { b & 0xC0 == 0x80 }

    @inline(__always)
    private static func isValidCodepoint(_ c: UInt32) -> Bool {
        c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF)
    }

    /// `string_util::IsValidDecodeUTF8` on `bytes[offset...]`: whether a valid character
    /// starts there and how many bytes it (or the single invalid byte) takes.
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, at offset: Int) -> (valid: Bool, length: Int) {
        let len = bytes.count - offset
        let b0 = bytes[offset]
        if b0 < 0x80 { return (true, 1) }
        if len >= 2 && b0 & 0xE0 == 0xC0 {
            let cp = (UInt32(b0 & 0x1F) << 6) | UInt32(bytes[offset + 1] & 0x3F)
            if isTrail(bytes[offset + 1]) && cp >= 0x80 && isValidCodepoint(cp) { return (true, 2) }
        } else if len >= 3 && b0 & 0xF0 == 0xE0 {
            let cp = (UInt32(b0 & 0x0F) << 12) | (UInt32(bytes[offset + 1] & 0x3F) << 6)
                | UInt32(bytes[offset + 2] & 0x3F)
            if isTrail(bytes[offset + 1]) && isTrail(bytes[offset + 2]) && cp >= 0x800 && isValidCodepoint(cp) {
                return (true, 3)
            }
        } else if len >= 4 && b0 & 0xF8 == 0xF0 {
            let cp = (UInt32(b0 & 0x07) << 18) | (UInt32(bytes[offset + 1] & 0x3F) << 12)
                | (UInt32(bytes[offset + 2] & 0x3F) << 6) | UInt32(bytes[offset + 3] & 0x3F)
            if isTrail(bytes[offset + 1]) && isTrail(bytes[offset + 2]) && isTrail(bytes[offset + 3])
                && cp >= 0x10000 && isValidCodepoint(cp)
            {
                return (true, 4)
            }
        }
        return (false, 1)
    }

    /// Turns a run of byte-fallback bytes into text the way sentencepiece's
    /// `ProcessBytePieces` does. With `final == false` it stops before a character whose
    /// verdict could still change when more bytes arrive, and returns how many bytes it used
    /// (the streaming detokenizer keeps the rest). With `final == true` it uses everything.
    static func appendDecodedBytes(_ bytes: [UInt8], final: Bool, to out: inout [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { buf in
            var offset = 0
            while offset < buf.count {
                if !final && buf.count - offset < bytesNeeded(buf[offset]) { break }
                let (valid, length) = decode(buf, at: offset)
                if valid {
                    out.append(contentsOf: buf[offset..<offset + length])
                } else {
                    out.append(contentsOf: replacementCharacter)
                }
                offset += length
            }
            return offset
        }
    }
}
