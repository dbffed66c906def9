/// Why a tokenizer file could not be used. Every error names the file (or `<memory>` for
/// `init(modelData:)`) and, where it applies, the protobuf field, so a user who points the
/// engine at the wrong file sees which file and what is wrong with it.
public struct TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The file could not be read (missing, permissions, a directory, …).
        case unreadable
        /// The bytes are not a valid SentencePiece ModelProto (truncated, garbage, bad fields).
        case corrupt
        /// A valid model that uses a feature this implementation does not reproduce exactly
        /// (e.g. a unigram model or a precompiled normalisation table).
        case unsupported
    }

    public let kind: Kind
    /// The file the model came from; `<memory>` when it was given as bytes.
    public let file: String
    public let message: String

    public init(_ kind: Kind, file: String, _ message: String) {
        self.kind = kind
        self.file = file
        self.message = message
    }

    public var description: String {
        "tokenizer \(file): \(kind.rawValue): \(message)"
    }
}
