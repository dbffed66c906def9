/// An open-addressing hash table from piece bytes to piece id that is probed with a pointer
/// into the text being encoded, so the BPE loop can ask "is this byte range a piece?" without
/// allocating a key per lookup (a 5k-character input makes ~10k such lookups).
struct PieceTable: Sendable {
    /// All keys' bytes, back to back; key `i` is `storage[offsets[i]..<offsets[i+1]]`.
    private var storage: [UInt8] = []
    private var offsets: [Int] = [0]
    /// The value stored for each key (a piece id).
    private var values: [Int32] = []
    /// Slots hold an index into `values`/`offsets`, or -1 when empty. Power-of-two size.
    /// Kept at most half full, so probing always reaches an empty slot.
    private var slots: [Int32]
    private var mask: Int

    init(expectedCount: Int = 8) {
        var size = 16
        while size < expectedCount * 2 { size <<= 1 }
        slots = Array(repeating: -1, count: size)
        mask = size - 1
    }

    /// FNV-1a; good enough spread for short UTF-8 keys.
    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key {
            h = (h ^ UInt64(b)) &* 0x100_0000_01b3
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// Inserts `key → value`; returns false (and changes nothing) if the key is already present,
    /// mirroring sentencepiece's `InsertIfNotPresent` duplicate check.
    mutating func insert(_ key: [UInt8], value: Int) -> Bool {
        let found = key.withUnsafeBufferPointer { lookup($0) }
        if found != nil { return false }
        let index = values.count
        storage.append(contentsOf: key)
        offsets.append(storage.count)
        values.append(Int32(value))
        if values.count * 2 > slots.count {
            slots = Array(repeating: -1, count: slots.count * 2)
            mask = slots.count - 1
            for i in 0..<values.count { place(i) }
        } else {
            place(index)
        }
        return true
    }

    private mutating func place(_ index: Int) {
        let hash = storage.withUnsafeBufferPointer {
            Self.hash(UnsafeBufferPointer(rebasing: $0[offsets[index]..<offsets[index + 1]]))
        }
        var slot = hash & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(index)
    }

    func lookup(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
        var slot = Self.hash(key) & mask
        return storage.withUnsafeBufferPointer { store -> Int? in
            while true {
                let index = Int(slots[slot])
                if index < 0 { return nil }
                let start = offsets[index]
                let end = offsets[index + 1]
                if end - start == key.count, Self.equal(store, from: start, key) {
                    return Int(values[index])
                }
                slot = (slot + 1) & mask
            }
        }
    }

    func lookup(_ key: [UInt8]) -> Int? {
        key.withUnsafeBufferPointer { lookup($0) }
    }

    @inline(__always)
    private static func equal(_ store: UnsafeBufferPointer<UInt8>, from start: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<key.count where store[start + i] != key[i] { return false }
        return true
    }
}
