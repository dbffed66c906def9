"""Train Chloe-tiny's SentencePiece tokenizer with the layout of Mistral's v3 tokenizer.

Mistral's `tokenizer.model.v3` (mistral_common/data/mistral_instruct_tokenizer_240323.model.v3),
read with sentencepiece_model_pb2, is: BPE, byte_fallback, id 0 `<unk>` (UNKNOWN), 1 `<s>` and
2 `</s>` (CONTROL), then `[INST] [/INST] [TOOL_CALLS] [AVAILABLE_TOOLS] [/AVAILABLE_TOOLS]
[TOOL_RESULTS] [/TOOL_RESULTS]` as CONTROL pieces at ids 3..9 (then more controls it reserves),
then the 256 BYTE pieces `<0x00>`..`<0xFF>`, then the merged NORMAL pieces with score = -rank;
normalizer: name "identity", add_dummy_prefix true, remove_extra_whitespaces false; trainer:
split_digits true. We keep only the seven controls the v3 chat format uses, so the byte pieces
start at id 10 instead of 771; the ids of every control mistral-common looks up are Mistral's.

Usage: python3 train_tokenizer.py OUT_DIR [--vocab 3000] [--dialogues 60000]
Writes OUT_DIR/tokenizer.model and OUT_DIR/tokenizer.model.v3 (the same bytes: mistral-common
picks the instruct version from the `.v3` file-name suffix).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as mp

from dialogues import Generator

CONTROLS = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
            "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]


def corpus_lines(n: int, seed: int) -> list[str]:
    """The strings mistral-common will hand to `tokenizer.encode` for n training dialogues.

    Call ids are left out on purpose: they are random, and merges learnt from them would only
    waste vocabulary; they tokenise through short pieces and byte fallback instead.
    """
    g = Generator(seed)
    lines: set[str] = set()
    out: list[str] = []

    def add(s: str) -> None:
        if s not in lines:
            lines.add(s)
            out.append(s)

    for _ in range(n):
        d = g.dialogue()
        if d["tools"]:
            add(json.dumps(d["tools"], ensure_ascii=False))
        for m in d["messages"]:
            if m["role"] in ("user", "assistant") and m.get("content"):
                add(m["content"])
            if m.get("tool_calls"):
                calls = [{"name": c["function"]["name"],
                          "arguments": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]
                add(json.dumps(calls, ensure_ascii=False))
            if m["role"] == "tool":
                add(json.dumps({"content": json.loads(m["content"])}, ensure_ascii=False))
    return out


def train(out_dir: str, vocab: int, n_dialogues: int, seed: int = 1234) -> str:
    os.makedirs(out_dir, exist_ok=True)
    text = "\n".join(corpus_lines(n_dialogues, seed))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.split("\n")),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab,
        byte_fallback=True,
        character_coverage=1.0,
        control_symbols=CONTROLS,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        split_digits=True,
        split_by_whitespace=True,
        split_by_number=True,
        split_by_unicode_script=True,
        allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16,
        hard_vocab_limit=True,
        num_threads=2,
        minloglevel=2,
    )
    proto = mp.ModelProto()
    proto.ParseFromString(model.getvalue())
    check_layout(proto)
    path = os.path.join(out_dir, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    shutil.copyfile(path, path + ".v3")
    return path


def check_layout(proto: mp.ModelProto) -> None:
    """Fail loudly if the trained model does not have the Mistral v3 layout described above."""
    P = mp.ModelProto.SentencePiece
    p = proto.pieces
    assert (p[0].piece, p[0].type) == ("<unk>", P.UNKNOWN), p[0]
    assert (p[1].piece, p[1].type) == ("<s>", P.CONTROL), p[1]
    assert (p[2].piece, p[2].type) == ("</s>", P.CONTROL), p[2]
    for i, c in enumerate(CONTROLS):
        assert (p[3 + i].piece, p[3 + i].type) == (c, P.CONTROL), p[3 + i]
    base = 3 + len(CONTROLS)
    for b in range(256):
        assert (p[base + b].piece, p[base + b].type) == (f"<0x{b:02X}>", P.BYTE), p[base + b]
    assert all(x.type == P.NORMAL for x in p[base + 256:])
    assert proto.trainer_spec.model_type == mp.TrainerSpec.BPE
    assert proto.trainer_spec.byte_fallback
    n = proto.normalizer_spec
    assert n.name == "identity" and n.add_dummy_prefix and not n.remove_extra_whitespaces


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--vocab", type=int, default=2560)
    ap.add_argument("--dialogues", type=int, default=60000)
    a = ap.parse_args()
    path = train(a.out_dir, a.vocab, a.dialogues)
    sp = spm.SentencePieceProcessor(model_file=path)
    print(f"wrote {path}: {sp.get_piece_size()} pieces")
