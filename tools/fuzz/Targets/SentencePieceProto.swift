/// libFuzzer target: the SentencePiece `ModelProto` reader behind `SentencePieceTokenizer(modelData:)`.
/// When a model parses, it is also used once (encode + decode), since building the tokenizer's
/// tables from fuzzed pieces is part of what a bad tokenizer.model could break.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSentencePieceProto(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    if let tokenizer = try? SentencePieceTokenizer(modelData: bytes) {
        let ids = tokenizer.encode("Hello wörld 123 ▁ \u{1F600}\n\t")
        _ = tokenizer.decode(ids)
    }
    return 0
}
