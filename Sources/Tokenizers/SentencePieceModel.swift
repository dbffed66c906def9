/// The parts of a SentencePiece `ModelProto` (sentencepiece_model.proto) that encoding and
/// decoding depend on, decoded field by field from the wire format. Field numbers are the
/// ones in sentencepiece_model.proto; defaults are that file's `[default = …]` values, because
/// proto2 leaves unset optionals at those defaults.
struct SentencePieceModel: Sendable {
    /// `ModelProto.SentencePiece.Type`.
    enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    struct Piece: Sendable {
        var bytes: [UInt8]
        var score: Float
        var type: PieceType
    }

    /// `TrainerSpec` fields that matter at inference time.
    struct TrainerSpec: Sendable {
        var modelType = 1  // UNIGRAM=1, BPE=2, WORD=3, CHAR=4
        var treatWhitespaceAsSuffix = false
        var byteFallback = false
        var unkPiece: [UInt8] = Array("<unk>".utf8)
        var bosPiece: [UInt8] = Array("<s>".utf8)
        var eosPiece: [UInt8] = Array("</s>".utf8)
        var padPiece: [UInt8] = Array("<pad>".utf8)
        /// What `decode` prints for `<unk>`; " ⁇ " unless the model says otherwise.
        var unkSurface: [UInt8] = Array(" \u{2047} ".utf8)
    }

    /// `NormalizerSpec` (also used for the denormalizer spec).
    struct NormalizerSpec: Sendable {
        var name = ""
        var precompiledCharsmap: [UInt8] = []
        var addDummyPrefix = true
        var removeExtraWhitespaces = true
        var escapeWhitespaces = true
    }

    var pieces: [Piece] = []
    var trainer = TrainerSpec()
    var normalizer = NormalizerSpec()
    var denormalizer: NormalizerSpec?

    /// Parses a serialized ModelProto. Unknown fields are skipped (forward compatibility).
    init(parsing data: ArraySlice<UInt8>) throws(ProtobufError) {
        var reader = ProtobufReader(data)
        while let (field, value) = try reader.next() {
            switch field {
            case 1: pieces.append(try Self.parsePiece(value.asBytes("pieces"), index: pieces.count))
            case 2: trainer = try Self.parseTrainer(value.asBytes("trainer_spec"))
            case 3: normalizer = try Self.parseNormalizer(value.asBytes("normalizer_spec"), name: "normalizer_spec")
            case 5: denormalizer = try Self.parseNormalizer(value.asBytes("denormalizer_spec"), name: "denormalizer_spec")
            default: continue
            }
        }
    }

    private static func parsePiece(_ data: ArraySlice<UInt8>, index: Int) throws(ProtobufError) -> Piece {
        var piece = Piece(bytes: [], score: 0, type: .normal)
        var reader = ProtobufReader(data)
        let name = "pieces[\(index)]"
        while let (field, value) = try reader.next() {
            switch field {
            case 1: piece.bytes = Array(try value.asBytes("\(name).piece"))
            case 2: piece.score = try value.asFloat("\(name).score")
            case 3:
                let raw = try value.asInt32("\(name).type")
                guard let type = PieceType(rawValue: raw) else {
                    throw ProtobufError(message: "\(name).type: unknown piece type \(raw)")
                }
                piece.type = type
            default: continue
            }
        }
        return piece
    }

    private static func parseTrainer(_ data: ArraySlice<UInt8>) throws(ProtobufError) -> TrainerSpec {
        var spec = TrainerSpec()
        var reader = ProtobufReader(data)
        while let (field, value) = try reader.next() {
            switch field {
            case 3: spec.modelType = try value.asInt32("trainer_spec.model_type")
            case 24: spec.treatWhitespaceAsSuffix = try value.asBool("trainer_spec.treat_whitespace_as_suffix")
            case 35: spec.byteFallback = try value.asBool("trainer_spec.byte_fallback")
            case 44: spec.unkSurface = Array(try value.asBytes("trainer_spec.unk_surface"))
            case 45: spec.unkPiece = Array(try value.asBytes("trainer_spec.unk_piece"))
            case 46: spec.bosPiece = Array(try value.asBytes("trainer_spec.bos_piece"))
            case 47: spec.eosPiece = Array(try value.asBytes("trainer_spec.eos_piece"))
            case 48: spec.padPiece = Array(try value.asBytes("trainer_spec.pad_piece"))
            default: continue
            }
        }
        return spec
    }

    private static func parseNormalizer(_ data: ArraySlice<UInt8>, name: String) throws(ProtobufError) -> NormalizerSpec {
        var spec = NormalizerSpec()
        var reader = ProtobufReader(data)
        while let (field, value) = try reader.next() {
            switch field {
            case 1: spec.name = String(decoding: try value.asBytes("\(name).name"), as: UTF8.self)
            case 2: spec.precompiledCharsmap = Array(try value.asBytes("\(name).precompiled_charsmap"))
            case 3: spec.addDummyPrefix = try value.asBool("\(name).add_dummy_prefix")
            case 4: spec.removeExtraWhitespaces = try value.asBool("\(name).remove_extra_whitespaces")
            case 5: spec.escapeWhitespaces = try value.asBool("\(name).escape_whitespaces")
            default: continue
            }
        }
        return spec
    }
}
