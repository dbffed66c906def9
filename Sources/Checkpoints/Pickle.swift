/// The subset of Python's pickle machine that `torch.save(state_dict)` emits (protocols 2–5),
/// evaluated without Python. Only the callables a state dict needs are allowed
/// (`_rebuild_tensor_v2`, `_rebuild_parameter`, `OrderedDict`); anything else is an error, so a
/// malicious pickle can name no code — there is no code to run.
///
/// Values are a small tree; dicts and lists are reference types because pickle mutates them
/// after they were memoized (SETITEMS after BINPUT).
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    case storage(PickleStorage)
    case tensor(PickleTensorRecord)
}

final class PickleDict {
    var items: [(key: PickleValue, value: PickleValue)] = []
}

final class PickleList {
    var items: [PickleValue] = []
}

/// A persistent id `('storage', torch.BFloat16Storage, key, location, numel)`: the raw bytes of
/// `<archive>/data/<key>` in the zip.
struct PickleStorage {
    let className: String     // "BFloat16Storage"
    let key: String
    let numel: Int
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)`.
struct PickleTensorRecord {
    let storage: PickleStorage
    let offset: Int           // in elements
    let shape: [Int]
    let stride: [Int]
}

struct PickleError: Error {
    let message: String
}

/// Evaluates `bytes` and returns the object STOP leaves on the stack.
func unpickle(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
    var machine = PickleMachine(bytes: bytes)
    return try machine.run()
}

private enum StackItem {
    case value(PickleValue)
    case mark
}

private struct PickleMachine {
    let bytes: UnsafeRawBufferPointer
    var pos = 0
    var stack: [StackItem] = []
    var memo: [Int: PickleValue] = [:]

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func fail(_ msg: String) -> PickleError { PickleError(message: "\(msg) (at byte \(pos))") }

    mutating func byte() throws -> UInt8 {
        guard pos < bytes.count else { throw fail("unexpected end of pickle data") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else { throw fail("unexpected end of pickle data (need \(n) bytes)") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }

    mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let b = try take(MemoryLayout<T>.size)
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    mutating func line() throws -> String {
        guard let nl = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("unterminated text line") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<nl]), as: UTF8.self)
        pos = nl + 1
        return s
    }

    mutating func utf8(_ n: Int) throws -> String {
        String(decoding: try take(n), as: UTF8.self)
    }

    mutating func push(_ v: PickleValue) { stack.append(.value(v)) }

    mutating func pop() throws -> PickleValue {
        guard let top = stack.popLast() else { throw fail("stack underflow") }
        guard case .value(let v) = top else { throw fail("unexpected MARK on the stack") }
        return v
    }

    mutating func top() throws -> PickleValue {
        guard case .value(let v)? = stack.last else { throw fail("stack underflow") }
        return v
    }

    /// Everything above the topmost MARK, which is removed.
    mutating func popToMark() throws -> [PickleValue] {
        guard let m = stack.lastIndex(where: { if case .mark = $0 { return true } else { return false } }) else {
            throw fail("no MARK on the stack")
        }
        var out: [PickleValue] = []
        for item in stack[(m + 1)...] {
            guard case .value(let v) = item else { throw fail("nested MARK") }
            out.append(v)
        }
        stack.removeSubrange(m...)
        return out
    }

    mutating func memoGet(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("memo key \(i) not defined") }
        return v
    }

    mutating func run() throws -> PickleValue {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO n
            case 0x95: _ = try le(UInt64.self)                          // FRAME length (we read the whole buffer anyway)
            case 0x2E: return try pop()                                 // STOP
            case 0x28: stack.append(.mark)                              // MARK
            case 0x7D: push(.dict(PickleDict()))                        // EMPTY_DICT
            case 0x5D: push(.list(PickleList()))                        // EMPTY_LIST
            case 0x29: push(.tuple([]))                                 // EMPTY_TUPLE
            case 0x4E: push(.none)                                      // NONE
            case 0x88: push(.bool(true))                                // NEWTRUE
            case 0x89: push(.bool(false))                               // NEWFALSE
            case 0x4B: push(.int(Int(try byte())))                      // BININT1
            case 0x4D: push(.int(Int(try le(UInt16.self))))             // BININT2
            case 0x4A: push(.int(Int(try le(Int32.self))))              // BININT
            case 0x8A:                                                  // LONG1: n-byte two's complement
                let n = Int(try byte())
                guard n <= 8 else { throw fail("LONG1 of \(n) bytes does not fit in 64 bits") }
                let b = try take(n)
                var v: UInt64 = 0
                for i in 0..<n { v |= UInt64(b[i]) << (8 * UInt64(i)) }
                if n > 0, n < 8, b[n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }   // sign-extend
                push(.int(Int(Int64(bitPattern: v))))
            case 0x47: push(.float(Double(bitPattern: UInt64(bigEndian: try le(UInt64.self).littleEndian))))  // BINFLOAT (big-endian)
            case 0x58: push(.string(try utf8(Int(try le(UInt32.self)))))           // BINUNICODE
            case 0x8C: push(.string(try utf8(Int(try byte()))))                    // SHORT_BINUNICODE
            case 0x8D:                                                             // BINUNICODE8
                let n = try le(UInt64.self)
                guard n <= UInt64(bytes.count) else { throw fail("BINUNICODE8 length \(n) too large") }
                push(.string(try utf8(Int(n))))
            case 0x54: push(.string(try utf8(Int(try le(Int32.self)))))            // BINSTRING
            case 0x55: push(.string(try utf8(Int(try byte()))))                    // SHORT_BINSTRING
            case 0x43: push(.bytes(Array(try take(Int(try byte())))))              // SHORT_BINBYTES
            case 0x42: push(.bytes(Array(try take(Int(try le(UInt32.self))))))     // BINBYTES
            case 0x74: push(.tuple(try popToMark()))                               // TUPLE
            case 0x85: push(.tuple([try pop()]))                                   // TUPLE1
            case 0x86: let b = try pop(); let a = try pop(); push(.tuple([a, b]))  // TUPLE2
            case 0x87: let c = try pop(); let b = try pop(); let a = try pop(); push(.tuple([a, b, c]))  // TUPLE3
            case 0x63:                                                             // GLOBAL "module\nname\n"
                let module = try line()
                let name = try line()
                push(.global(module: module, name: name))
            case 0x93:                                                             // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                push(.global(module: module, name: name))
            case 0x51: push(try persistentLoad(try pop()))                         // BINPERSID
            case 0x52:                                                             // REDUCE
                let args = try pop()
                let callable = try pop()
                push(try reduce(callable, args))
            case 0x81:                                                             // NEWOBJ cls(*args)
                let args = try pop()
                let cls = try pop()
                push(try reduce(cls, args))
            case 0x62: _ = try pop()                                               // BUILD: state ignored (OrderedDict._metadata)
            case 0x73:                                                             // SETITEM
                let v = try pop(); let k = try pop()
                guard case .dict(let d) = try top() else { throw fail("SETITEM on a non-dict") }
                d.items.append((k, v))
            case 0x75:                                                             // SETITEMS
                let kv = try popToMark()
                guard kv.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                guard case .dict(let d) = try top() else { throw fail("SETITEMS on a non-dict") }
                for i in stride(from: 0, to: kv.count, by: 2) { d.items.append((kv[i], kv[i + 1])) }
            case 0x61:                                                             // APPEND
                let v = try pop()
                guard case .list(let l) = try top() else { throw fail("APPEND on a non-list") }
                l.items.append(v)
            case 0x65:                                                             // APPENDS
                let vs = try popToMark()
                guard case .list(let l) = try top() else { throw fail("APPENDS on a non-list") }
                l.items += vs
            case 0x71: memo[Int(try byte())] = try top()                           // BINPUT
            case 0x72: memo[Int(try le(UInt32.self))] = try top()                  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                                // MEMOIZE
            case 0x68: push(try memoGet(Int(try byte())))                          // BINGET
            case 0x6A: push(try memoGet(Int(try le(UInt32.self))))                 // LONG_BINGET
            case 0x30: _ = try pop()                                               // POP
            case 0x32: push(try top())                                             // DUP
            default:
                pos -= 1
                throw fail("unsupported pickle opcode 0x" + String(op, radix: 16))
            }
        }
    }

    /// torch's persistent ids: `('storage', <StorageClass>, key, location, numel)`.
    func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, t.count >= 5, case .string("storage") = t[0],
              case .global(_, let cls) = t[1], case .string(let key) = t[2], case .int(let numel) = t[4], numel >= 0
        else { throw fail("persistent id is not ('storage', class, key, location, numel)") }
        return .storage(PickleStorage(className: cls, key: key, numel: numel))
    }

    func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let module, let name) = callable else { throw fail("REDUCE of a non-callable") }
        guard case .tuple(let a) = args else { throw fail("REDUCE arguments are not a tuple") }
        switch (module, name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"):
            guard a.isEmpty else { throw fail("\(module).\(name) with arguments is not supported") }
            return .dict(PickleDict())
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            guard a.count >= 4, case .storage(let s) = a[0], case .int(let offset) = a[1],
                  let shape = ints(a[2]), let stride = ints(a[3]), offset >= 0
            else { throw fail("\(name) arguments are not (storage, offset, size, stride, …)") }
            return .tensor(PickleTensorRecord(storage: s, offset: offset, shape: shape, stride: stride))
        case ("torch._utils", "_rebuild_parameter"):
            guard let first = a.first, case .tensor = first else { throw fail("_rebuild_parameter without a tensor") }
            return first
        default:
            throw fail("unsupported callable \(module).\(name) (only tensors in a state dict can be loaded)")
        }
    }

    func ints(_ v: PickleValue) -> [Int]? {
        guard case .tuple(let t) = v else { return nil }
        var out: [Int] = []
        for x in t {
            guard case .int(let i) = x else { return nil }
            out.append(i)
        }
        return out
    }
}
