import Foundation

/// The v3 instruct tokenizer of the test fixtures: byte-fallback pieces, control tokens and
/// `▁`-prefixed pieces, i.e. every case the streaming detokenizer treats differently. Paths are
/// relative to the repository root, where run.sh starts the targets.
private let tokenizer: SentencePieceTokenizer = {
    let path = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER"]
        ?? "Tests/TokenizersTests/Fixtures/mistral_instruct_tokenizer_240323.model.v3"
    do { return try SentencePieceTokenizer(contentsOf: URL(fileURLWithPath: path)) } catch {
        fatalError("fuzz: cannot load the tokenizer \(path): \(error)")
    }
}()

/// libFuzzer target: `StreamingDetokenizer` fed the ids the input spells (2 bytes each, little
/// endian, taken modulo the vocabulary: the engine only produces ids in range). Besides crashes
/// it checks the type's documented contract: everything `append` and `finish` return,
/// concatenated, equals `tokenizer.decode(ids)`; a mismatch traps, so libFuzzer keeps the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStreamingDetokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let n = tokenizer.vocabularySize
    var ids: [Int] = []
    ids.reserveCapacity(size / 2)
    var i = 0
    while i + 1 < size {
        ids.append((Int(data[i]) | Int(data[i + 1]) << 8) % n)
        i += 2
    }
    var stream = StreamingDetokenizer(tokenizer: tokenizer)
    var streamed = ""
    for id in ids { streamed += stream.append(id) }
    streamed += stream.finish()
    let whole = tokenizer.decode(ids)
    if streamed != whole {
        fatalError("streamed \(Array(streamed.utf8)) != decode \(Array(whole.utf8)) for ids \(ids)")
    }
    return 0
}
