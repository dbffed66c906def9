/// The piece inventory of a SentencePiece model with the lookups sentencepiece's
/// `ModelInterface` builds in `InitializePieces` (model_interface.cc): NORMAL, USER_DEFINED and
/// UNUSED pieces are mergeable "pieces"; UNKNOWN, CONTROL and BYTE are "reserved" and are only
/// ever produced by id. The same validation errors are raised (duplicates, no `<unk>`, missing
/// byte pieces with byte fallback on).
struct Vocabulary: Sendable {
    typealias PieceType = SentencePieceModel.PieceType

    let pieces: [[UInt8]]
    let scores: [Float]
    let types: [PieceType]
    /// For BYTE pieces, the byte they stand for; -1 for every other piece.
    let byteValues: [Int16]
    /// The id of `<0xXX>` for every byte value (only meaningful with byte fallback).
    let byteIDs: [Int]
    let unkID: Int
    let normalPieces: PieceTable
    let reservedPieces: PieceTable
    /// USER_DEFINED pieces, matched atomically (longest first) before any merging.
    let userDefined: PieceTable
    /// Distinct byte lengths of the user-defined pieces, longest first.
    let userDefinedLengths: [Int]

    init(model: SentencePieceModel) throws(InvalidModel) {
        var normal = PieceTable(expectedCount: model.pieces.count)
        var reserved = PieceTable()
        var user = PieceTable()
        var userLengths = Set<Int>()
        var unk: Int?
        var byteIDs = Array(repeating: -1, count: 256)
        var byteValues = Array(repeating: Int16(-1), count: model.pieces.count)

        for (i, piece) in model.pieces.enumerated() {
            let name = String(decoding: piece.bytes, as: UTF8.self)
            guard !piece.bytes.isEmpty else { throw .init("pieces[\(i)] is empty") }
            let isNormal = piece.type == .normal || piece.type == .userDefined || piece.type == .unused
            let inserted = isNormal ? normal.insert(piece.bytes, value: i) : reserved.insert(piece.bytes, value: i)
            guard inserted else { throw .init("pieces[\(i)] \"\(name)\" is already defined") }
            switch piece.type {
            case .userDefined:
                _ = user.insert(piece.bytes, value: i)
                userLengths.insert(piece.bytes.count)
            case .unknown:
                guard unk == nil else { throw .init("pieces[\(i)]: <unk> is already defined") }
                unk = i
            case .byte:
                guard model.trainer.byteFallback else {
                    throw .init("byte piece \(name) found although trainer_spec.byte_fallback is false")
                }
                guard let value = Self.byteValue(of: piece.bytes) else {
                    throw .init("byte piece \(name) is invalid")
                }
                byteIDs[Int(value)] = i
                byteValues[i] = Int16(value)
            default:
                break
            }
        }
        guard let unk else { throw .init("no piece of type UNKNOWN (<unk> is not defined)") }
        if model.trainer.byteFallback, let missing = byteIDs.firstIndex(of: -1) {
            throw .init("byte_fallback is on but there is no byte piece for 0x\(String(missing, radix: 16))")
        }
        self.pieces = model.pieces.map(\.bytes)
        self.scores = model.pieces.map(\.score)
        self.types = model.pieces.map(\.type)
        self.byteValues = byteValues
        self.byteIDs = byteIDs
        self.unkID = unk
        self.normalPieces = normal
        self.reservedPieces = reserved
        self.userDefined = user
        self.userDefinedLengths = userLengths.sorted(by: >)
    }

    /// `PieceToByte`: the byte of `<0xXX>` (upper-case hex, exactly two digits), else nil.
    static func byteValue(of piece: [UInt8]) -> UInt8? {
        guard piece.count == 6, piece[0] == UInt8(ascii: "<"), piece[1] == UInt8(ascii: "0"),
            piece[2] == UInt8(ascii: "x"), piece[5] == UInt8(ascii: ">")
        else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        guard let hi = hex(piece[3]), let lo = hex(piece[4]) else { return nil }
        return hi << 4 | lo
    }

    /// `ModelInterface::PieceToId` without the fallback to `<unk>`: reserved pieces first.
    func pieceToID(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        reservedPieces.lookup(bytes) ?? normalPieces.lookup(bytes)
    }

    /// `PrefixMatcher::PrefixMatch`: the longest user-defined piece starting at `offset`
    /// (and `true`), else one UTF-8 character as announced by its lead byte (and `false`).
    func prefixMatch(_ text: UnsafeBufferPointer<UInt8>, at offset: Int) -> (length: Int, isUserDefined: Bool) {
        let remaining = text.count - offset
        for length in userDefinedLengths where length <= remaining {
            if userDefined.lookup(UnsafeBufferPointer(rebasing: text[offset..<offset + length])) != nil {
                return (length, true)
            }
        }
        return (min(remaining, UTF8Rules.oneCharLength(text[offset])), false)
    }
}

/// A problem with an otherwise well-formed model; the tokenizer's initialiser turns it into a
/// `TokenizerError` that names the file.
struct InvalidModel: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
