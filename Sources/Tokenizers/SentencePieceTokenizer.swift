import Foundation

/// A SentencePiece BPE tokenizer read straight from a `.model` file, equal to the Python
/// `sentencepiece.SentencePieceProcessor` on every input: `encode` == `.encode(text)` and
/// `decode` == `.decode(ids)`. Mistral's v1/v2/v3 tokenizers are BPE with byte fallback and an
/// identity normalizer that adds the `▁` dummy prefix; precompiled normalizers (nmt_nfkc, custom
/// rule tables) work too. Not supported: unigram models and denormalizer rules.
///
/// Immutable after `init`, hence `Sendable`: share one instance between threads.
public final class SentencePieceTokenizer: Sendable {
    let vocabulary: Vocabulary
    let normalizer: SentencePieceModel.NormalizerSpec
    /// The normalizer's precompiled rules (nmt_nfkc etc.); nil for identity normalization.
    let charsMap: CharsMap?
    let treatWhitespaceAsSuffix: Bool
    let byteFallback: Bool
    let unkSurface: [UInt8]

    /// Number of pieces (= the model's vocabulary size, the embedding table's row count).
    public var vocabularySize: Int { vocabulary.pieces.count }
    /// The id of the beginning-of-sequence control piece, or -1 if the model has none
    /// (sentencepiece's `bos_id()`).
    public let bosID: Int
    /// The id of the end-of-sequence control piece, or -1 if the model has none.
    public let eosID: Int
    /// The id of `<unk>`.
    public var unkID: Int { vocabulary.unkID }

    /// Reads a SentencePiece `.model` file. Throws `TokenizerError` naming the file when it
    /// cannot be read, is not a valid model, or needs a feature not implemented here.
    public convenience init(contentsOf url: URL) throws(TokenizerError) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError(.unreadable, file: url.path, "cannot read the file: \(error.localizedDescription)")
        }
        try self.init(modelData: [UInt8](data), file: url.path)
    }

    /// Parses a serialized SentencePiece `ModelProto`.
    public convenience init(modelData: [UInt8]) throws(TokenizerError) {
        try self.init(modelData: modelData, file: "<memory>")
    }

    init(modelData: [UInt8], file: String) throws(TokenizerError) {
        let model: SentencePieceModel
        do {
            model = try SentencePieceModel(parsing: modelData[...])
        } catch {
            throw TokenizerError(.corrupt, file: file, "not a SentencePiece model: \(error.message)")
        }
        guard !model.pieces.isEmpty else {
            throw TokenizerError(.corrupt, file: file, "not a SentencePiece model: it holds no pieces")
        }
        guard model.trainer.modelType == 2 else {
            let names = [1: "UNIGRAM", 3: "WORD", 4: "CHAR"]
            throw TokenizerError(
                .unsupported, file: file,
                "trainer_spec.model_type is \(names[model.trainer.modelType] ?? String(model.trainer.modelType)); only BPE is supported")
        }
        if let denormalizer = model.denormalizer, !denormalizer.precompiledCharsmap.isEmpty {
            throw TokenizerError(
                .unsupported, file: file, "denormalizer_spec has a precompiled_charsmap; this is not supported")
        }
        do {
            vocabulary = try Vocabulary(model: model)
        } catch {
            throw TokenizerError(.corrupt, file: file, error.message)
        }
        normalizer = model.normalizer
        if model.normalizer.precompiledCharsmap.isEmpty {
            charsMap = nil
        } else {
            do {
                charsMap = try CharsMap(blob: model.normalizer.precompiledCharsmap)
            } catch {
                throw TokenizerError(.corrupt, file: file, "normalizer_spec: \(error.message)")
            }
        }
        treatWhitespaceAsSuffix = model.trainer.treatWhitespaceAsSuffix
        byteFallback = model.trainer.byteFallback
        unkSurface = model.trainer.unkSurface
        // `ModelInterface::bos_piece()` etc.: an empty string in the spec means the default.
        let bosPiece = model.trainer.bosPiece.isEmpty ? Array("<s>".utf8) : model.trainer.bosPiece
        let eosPiece = model.trainer.eosPiece.isEmpty ? Array("</s>".utf8) : model.trainer.eosPiece
        let vocabulary = self.vocabulary
        func controlID(_ piece: [UInt8]) -> Int {
            guard let id = piece.withUnsafeBufferPointer({ vocabulary.pieceToID($0) }),
                vocabulary.types[id] == .control
            else { return -1 }
            return id
        }
        bosID = controlID(bosPiece)
        eosID = controlID(eosPiece)
    }

    // MARK: - Pieces

    /// The id of a piece spelled exactly as in the vocabulary (e.g. `"[INST]"`, `"▁the"`,
    /// `"<0x0A>"`), or nil if there is no such piece.
    public func id(forPiece piece: String) -> Int? {
        var bytes = Array(piece.utf8)
        return bytes.withUnsafeMutableBufferPointer { vocabulary.pieceToID(UnsafeBufferPointer($0)) }
    }

    /// The piece's spelling (`"▁the"`, `"<0x0A>"`, `"[INST]"`); "" for an id outside the vocabulary.
    public func piece(forID id: Int) -> String {
        guard vocabulary.pieces.indices.contains(id) else { return "" }
        return String(decoding: vocabulary.pieces[id], as: UTF8.self)
    }

    /// Whether `id` is a CONTROL piece (`<s>`, `</s>`, `[INST]`, …): emitted only by id, never
    /// produced by `encode`, and decoded to "".
    public func isControl(_ id: Int) -> Bool { pieceType(id) == .control }
    /// Whether `id` is a byte-fallback piece `<0xXX>`.
    public func isByte(_ id: Int) -> Bool { pieceType(id) == .byte }
    /// Whether `id` is `<unk>`.
    public func isUnknown(_ id: Int) -> Bool { pieceType(id) == .unknown }
    /// The piece's score in the model (the BPE merge priority).
    public func score(forID id: Int) -> Float {
        vocabulary.scores.indices.contains(id) ? vocabulary.scores[id] : 0
    }

    func pieceType(_ id: Int) -> SentencePieceModel.PieceType? {
        vocabulary.types.indices.contains(id) ? vocabulary.types[id] : nil
    }
}
