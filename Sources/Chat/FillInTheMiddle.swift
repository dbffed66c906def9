import Tokenizers

extension InstructEncoder {
    /// Codestral's fill-in-the-middle prompt, exactly as mistral-common 1.13.1's
    /// `encode_fim(FIMRequest(prompt: prefix, suffix: suffix)).tokens` (`InstructTokenizerV2`,
    /// which v3 inherits):
    ///
    ///     [BOS] [SUFFIX] suffix… [PREFIX] prefix…
    ///
    /// The suffix comes first, so the model's continuation after the prefix is the middle; the
    /// completion ends with EOS. Both texts are tokenized on their own and the markers are placed
    /// by id, so code that spells `[PREFIX]` stays text. An empty or nil suffix gives no suffix
    /// tokens (Python's `if request.suffix`).
    ///
    /// Throws `.tokenizer` for v1 ("FIM not available for v1", mistral-common's message) and
    /// `.tokenizerVocabulary` for a vocabulary without `[PREFIX]`/`[SUFFIX]` control pieces
    /// (the v2 file and the demo model's): mistral-common emits `<unk>` (id 0) for both markers
    /// there, a prompt no model was trained on, so refusing is the honest answer.
    public func encodeFIM(prefix: String, suffix: String?) throws(ChatError) -> [Int] {
        guard version != .v1 else { throw ChatError(.tokenizer, "FIM not available for v1") }
        guard let prefixID = controls.fimPrefix, let suffixID = controls.fimSuffix else {
            throw ChatError(
                .tokenizerVocabulary,
                "fill-in-the-middle needs the control tokens [PREFIX] and [SUFFIX], which this tokenizer does not have (Codestral's tokenizer.model.v3 has them)")
        }
        var tokens = [controls.bos, suffixID]
        if let suffix, !suffix.isEmpty { tokens += encodeInfilling(suffix) }
        tokens.append(prefixID)
        tokens += tokenizer.encode(prefix)
        return tokens
    }

    /// mistral-common `_encode_infilling`: `encode("☺" + text)[2:]`. SentencePiece prepends a
    /// dummy "▁" to every text, which would turn the suffix's first word into "▁word" (a space the
    /// user never typed); encoding behind a "☺" and dropping the "▁" and "☺" pieces keeps the
    /// suffix's own leading whitespace. Written as the same slice, not as "strip the dummy
    /// prefix", so that it agrees with Python even where "☺" merges with what follows.
    private func encodeInfilling(_ text: String) -> [Int] {
        Array(tokenizer.encode("☺" + text).dropFirst(2))
    }
}
