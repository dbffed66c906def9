import Foundation
import Chat
import Generation
import Tokenizers

/// Log-probabilities as OpenAI writes them, with each token shown as its own text.
struct LogprobWriter {
    let tokenizer: SentencePieceTokenizer

    /// A token's text and exact bytes: the piece with SentencePiece's "▁" as a space; a byte piece
    /// (`<0xE2>`) is that one byte (its text is U+FFFD when the byte is not a whole character, as
    /// the UTF-8 of a multi-byte character is split over several tokens).
    func text(_ id: Int) -> (text: String, bytes: [UInt8]) {
        guard id >= 0, id < tokenizer.vocabularySize else { return ("", []) }
        let piece = tokenizer.piece(forID: id)
        if tokenizer.isByte(id), piece.hasPrefix("<0x"), piece.hasSuffix(">"),
           let byte = UInt8(piece.dropFirst(3).dropLast(), radix: 16) {
            return (String(decoding: [byte], as: UTF8.self), [byte])
        }
        let text = piece.replacingOccurrences(of: "\u{2581}", with: " ")
        return (text, Array(text.utf8))
    }

    /// One entry of a chat choice's `logprobs.content`.
    func chatEntry(_ entry: TokenLogprobs) -> JSONValue {
        let chosen = text(entry.chosen.id)
        return .obj([
            ("token", .string(chosen.text)), ("logprob", .float(entry.chosen.logprob)),
            ("bytes", .array(chosen.bytes.map { .int(Int($0)) })),
            ("top_logprobs", .array(entry.top.map { top in
                let t = text(top.id)
                return .obj([("token", .string(t.text)), ("logprob", .float(top.logprob)),
                             ("bytes", .array(t.bytes.map { .int(Int($0)) }))])
            })),
        ])
    }

    /// A chat choice's `logprobs` object.
    func chat(_ entries: [TokenLogprobs]) -> JSONValue {
        .obj([("content", .array(entries.map(chatEntry)))])
    }

    /// A text completion choice's `logprobs` (the legacy shape: parallel lists; `text_offset` is
    /// each token's character offset in the choice's text).
    func completion(_ entries: [TokenLogprobs], offsets: [Int]) -> JSONValue {
        .obj([
            ("tokens", .array(entries.map { .string(text($0.chosen.id).text) })),
            ("token_logprobs", .array(entries.map { .float($0.chosen.logprob) })),
            ("top_logprobs", .array(entries.map { entry in
                var top = JSONObject()
                for t in entry.top where top[text(t.id).text] == nil { top[text(t.id).text] = .float(t.logprob) }
                return .object(top)
            })),
            ("text_offset", .array(offsets.map { .int($0) })),
        ])
    }
}
