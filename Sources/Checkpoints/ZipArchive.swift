/// The part of the zip format `torch.save` writes: stored (uncompressed) entries, a central
/// directory at the end, zip64 records once the file or an entry passes 4 GiB. We read only the
/// central directory and each entry's local header (to find where its bytes start); entries are
/// byte ranges of the mapped file, never copied.
struct ZipArchive {
    struct Entry {
        let name: String
        let method: UInt16        // 0 = stored
        let dataOffset: Int       // first byte of the entry's data in the file
        let size: Int             // compressed size (== uncompressed size when stored)
        let uncompressedSize: Int
    }

    let file: MappedFile
    let entries: [String: Entry]

    init(_ file: MappedFile) throws {
        self.file = file
        let name = file.name
        func bad(_ msg: String) -> CheckpointError { CheckpointError(.badHeader, file: name, "zip: \(msg)") }
        let count = file.count
        // End of central directory: 22 bytes + a comment of up to 65535 bytes, at the very end.
        guard count >= 22 else { throw CheckpointError(.truncated, file: name, "zip: file is only \(count) bytes") }
        guard file.load(0, as: UInt32.self) == 0x0403_4b50 else {
            // torch.save before PyTorch 1.6 wrote a bare pickle stream (starts with PROTO 0x80).
            let legacy = file.bytes[0] == 0x80 ? " (looks like the legacy pre-1.6 torch.save format; re-save with a current PyTorch)" : ""
            throw CheckpointError(.badHeader, file: name, "not a zip file\(legacy)")
        }
        var eocd = -1
        var p = count - 22
        let lowest = max(0, count - 22 - 65535)
        while p >= lowest {
            if file.load(p, as: UInt32.self) == 0x0605_4b50 { eocd = p; break }
            p -= 1
        }
        guard eocd >= 0 else {
            throw CheckpointError(.truncated, file: name, "zip: no end-of-central-directory record (truncated or not a zip file)")
        }
        var entryCount = Int(file.load(eocd + 10, as: UInt16.self))
        var cdSize = Int(file.load(eocd + 12, as: UInt32.self))
        var cdOffset = Int(file.load(eocd + 16, as: UInt32.self))
        if entryCount == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            // zip64: a 20-byte locator right before the EOCD points at the zip64 EOCD record.
            let loc = eocd - 20
            guard loc >= 0, file.load(loc, as: UInt32.self) == 0x0706_4b50 else { throw bad("zip64 locator missing") }
            let rec64 = file.load(loc + 8, as: UInt64.self)
            // The record is 56 bytes; a file shorter than that cannot hold it (and count - 56 would
            // be negative: found by the pth fuzz target).
            guard count >= 56, rec64 <= UInt64(count - 56) else { throw bad("zip64 record offset \(rec64) outside the file") }
            let r = Int(rec64)
            guard file.load(r, as: UInt32.self) == 0x0606_4b50 else { throw bad("zip64 end-of-central-directory record missing") }
            let n64 = file.load(r + 32, as: UInt64.self)
            let size64 = file.load(r + 40, as: UInt64.self)
            let off64 = file.load(r + 48, as: UInt64.self)
            guard n64 < 1 << 32, size64 <= UInt64(count), off64 <= UInt64(count) else { throw bad("zip64 record out of range") }
            entryCount = Int(n64); cdSize = Int(size64); cdOffset = Int(off64)
        }
        guard cdOffset + cdSize <= count else {
            throw CheckpointError(.truncated, file: name, "zip: central directory at \(cdOffset)+\(cdSize) runs past the end of the \(count)-byte file")
        }
        var entries: [String: Entry] = [:]
        var q = cdOffset
        for _ in 0..<entryCount {
            guard q + 46 <= cdOffset + cdSize, file.load(q, as: UInt32.self) == 0x0201_4b50 else {
                throw bad("bad central directory entry at byte \(q)")
            }
            let method = file.load(q + 10, as: UInt16.self)
            var csize = UInt64(file.load(q + 20, as: UInt32.self))
            var usize = UInt64(file.load(q + 24, as: UInt32.self))
            let nameLen = Int(file.load(q + 28, as: UInt16.self))
            let extraLen = Int(file.load(q + 30, as: UInt16.self))
            let commentLen = Int(file.load(q + 32, as: UInt16.self))
            var local = UInt64(file.load(q + 42, as: UInt32.self))
            let next = q + 46 + nameLen + extraLen + commentLen
            guard next <= cdOffset + cdSize else { throw bad("central directory entry at byte \(q) overruns the directory") }
            let entryName = String(decoding: file.slice(offset: q + 46, length: nameLen), as: UTF8.self)
            // zip64 extended information (id 1): the 8-byte values whose 32-bit fields are 0xFFFFFFFF, in order.
            var e = q + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = file.load(e, as: UInt16.self)
                let len = Int(file.load(e + 2, as: UInt16.self))
                guard e + 4 + len <= extraEnd else { throw bad("extra field of '\(entryName)' overruns its entry") }
                if id == 1 {
                    var f = e + 4
                    func take() throws -> UInt64 {
                        guard f + 8 <= e + 4 + len else { throw bad("short zip64 field in '\(entryName)'") }
                        defer { f += 8 }
                        return file.load(f, as: UInt64.self)
                    }
                    if usize == 0xFFFF_FFFF { usize = try take() }
                    if csize == 0xFFFF_FFFF { csize = try take() }
                    if local == 0xFFFF_FFFF { local = try take() }
                }
                e += 4 + len
            }
            guard local <= UInt64(count - 30), csize <= UInt64(count), usize <= UInt64(count) || method != 0 else {
                throw CheckpointError(.truncated, file: name, "zip entry '\(entryName)' lies outside the \(count)-byte file")
            }
            let l = Int(local)
            guard file.load(l, as: UInt32.self) == 0x0403_4b50 else { throw bad("no local header for '\(entryName)' at byte \(l)") }
            let dataOffset = l + 30 + Int(file.load(l + 26, as: UInt16.self)) + Int(file.load(l + 28, as: UInt16.self))
            guard dataOffset + Int(csize) <= count else {
                throw CheckpointError(.truncated, file: name,
                                      "zip entry '\(entryName)' data \(dataOffset)+\(csize) runs past the end of the \(count)-byte file")
            }
            entries[entryName] = Entry(name: entryName, method: method, dataOffset: dataOffset, size: Int(csize),
                                       uncompressedSize: Int(min(usize, UInt64(Int.max))))
            q = next
        }
        self.entries = entries
    }

    /// The bytes of a stored entry, or `.compressed` if it was deflated.
    func storedBytes(_ entry: Entry) throws -> (offset: Int, count: Int) {
        guard entry.method == 0, entry.size == entry.uncompressedSize else {
            throw CheckpointError(.compressed, file: file.name,
                                  "zip entry '\(entry.name)' is compressed (method \(entry.method)); torch.save writes stored entries — re-save without compression")
        }
        return (entry.dataOffset, entry.size)
    }
}
