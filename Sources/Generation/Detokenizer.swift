import Tokenizers

/// The engine streams text through SentencePiece's incremental decoder, which never emits half
/// a UTF-8 character and handles the leading `▁` across token boundaries.
extension StreamingDetokenizer: IncrementalDecoder {}
