"""Encode training dialogues and the held-out set with mistral-common (v3 instruct format).

The GPU machine has no mistral-common, so every token the model is trained or evaluated on is
produced here, by mistral-common itself, and shipped as compact files:

  OUT/train.npz   tokens: uint16[N] — all dialogues back to back; bit 15 set = loss target
                  (vocab < 32768, so the id is `t & 0x7fff`); offsets: int64[D+1] dialogue starts.
  tools/demo-model/heldout.jsonl  (with --heldout-jsonl) the held-out records, one JSON a line:
      {"id", "skill", "request": {messages, tools?} (OpenAI shape), "expected", "prompt_tokens"}
  --arith-jsonl FILE  every held-out add/subtract problem (same record shape), model card only.

Loss mask: a training dialogue is encoded whole (ValidationMode.finetuning). For each assistant
turn i the prompt mistral-common builds at inference, encode(messages[:i]), is computed too; the
turn's tokens (through its `</s>`) are trained on only where that prompt is a prefix of the whole
encoding — i.e. exactly the context the model sees when it has to produce that turn. (v3 places
[AVAILABLE_TOOLS] before the *last* user message, so earlier turns of a tool dialogue see a
different context at inference; those turns are skipped rather than taught a wrong context.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dialogues import Generator, arithmetic_generalisation_records, heldout_records  # noqa: E402

_TOK = {}


def _tokenizers(path: str):
    if path not in _TOK:
        from mistral_common.protocol.instruct.validator import ValidationMode
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
        _TOK[path] = (MistralTokenizer.from_file(path, mode=ValidationMode.test),
                      MistralTokenizer.from_file(path, mode=ValidationMode.finetuning))
    return _TOK[path]


def encode_prompt(tok_path: str, messages: list[dict], tools) -> list[int]:
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    test, _ = _tokenizers(tok_path)
    return test.encode_chat_completion(ChatCompletionRequest.from_openai(messages, tools=tools)).tokens


def encode_dialogue(tok_path: str, d: dict, verify: bool = False) -> tuple[list[int], list[int]]:
    """Whole-dialogue tokens and loss mask (1 = train on this token).

    The mask is read off the token stream: an assistant turn is what follows `[/INST]` or
    `[/TOOL_RESULTS]` up to and including its `</s>`, and with tools only turns after
    `[AVAILABLE_TOOLS]` count. `verify=True` recomputes it the slow way described in the
    module doc (one mistral-common prompt encoding per assistant turn) and asserts equality.
    """
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    _, ft = _tokenizers(tok_path)
    msgs, tools = d["messages"], d["tools"]
    full = ft.encode_chat_completion(ChatCompletionRequest.from_openai(msgs, tools=tools)).tokens
    sp = ft.instruct_tokenizer.tokenizer
    eos = sp.eos_id
    end_inst, end_res = sp.get_special_token("[/INST]"), sp.get_special_token("[/TOOL_RESULTS]")
    start = full.index(sp.get_special_token("[AVAILABLE_TOOLS]")) if tools else 0
    mask = [0] * len(full)
    inside = False
    for j, t in enumerate(full):
        if inside:
            mask[j] = 1
            inside = t != eos
        elif t in (end_inst, end_res) and j > start:
            inside = True
    assert mask[-1] == 1, "the final assistant turn must always be trained on"
    if verify:
        ref = [0] * len(full)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            p = encode_prompt(tok_path, msgs[:i], tools)
            if full[:len(p)] != p:
                continue
            j = len(p)
            while full[j] != eos:
                ref[j] = 1
                j += 1
            ref[j] = 1  # the </s> that ends the turn
        assert ref == mask, f"structural mask differs from mistral-common prompts: {msgs}"
    return full, mask


def _work(args):
    tok_path, seed, n, n_verify = args
    g = Generator(seed)
    toks, offs = [], [0]
    for k in range(n):
        t, m = encode_dialogue(tok_path, g.dialogue(), verify=k < n_verify)
        toks.extend(x | (0x8000 if f else 0) for x, f in zip(t, m))
        offs.append(len(toks))
    return toks, offs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer", help="path ending in .model.v3")
    ap.add_argument("out_dir")
    ap.add_argument("--dialogues", type=int, default=120000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--verify", type=int, default=4000, help="dialogues whose mask is re-derived slowly")
    ap.add_argument("--heldout-seed", type=int, default=777)
    ap.add_argument("--heldout-jsonl", default=None)
    ap.add_argument("--arith-jsonl", default=None, help="also write every held-out add/subtract problem")
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)

    if a.arith_jsonl:
        with open(a.arith_jsonl, "w") as f:
            for r in arithmetic_generalisation_records(a.heldout_seed):
                r["prompt_tokens"] = encode_prompt(a.tokenizer, r["request"]["messages"], None)
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if not a.skip_train:
        encode_train(a)
    write_heldout(a)


def encode_train(a) -> None:
    per = a.dialogues // a.shards
    jobs = [(a.tokenizer, a.seed * 1000 + s, per, a.verify // a.shards) for s in range(a.shards)]
    with Pool(a.workers) as pool:
        parts = pool.map(_work, jobs)
    tokens, offsets = [], [0]
    for t, o in parts:
        base = len(tokens)
        tokens.extend(t)
        offsets.extend(base + x for x in o[1:])
    tokens = np.asarray(tokens, dtype=np.uint16)
    offsets = np.asarray(offsets, dtype=np.int64)
    np.savez_compressed(os.path.join(a.out_dir, "train.npz"), tokens=tokens, offsets=offsets)
    lens = np.diff(offsets)
    print(f"train: {len(lens)} dialogues, {len(tokens)} tokens, "
          f"{int((tokens >> 15).sum())} loss tokens, len mean {lens.mean():.0f} max {lens.max()}")



def write_heldout(a) -> None:
    per_skill = {"greeting": 15, "arithmetic": 45, "capital": 30, "recall": 30,
                 "tool_call": 25, "tool_answer": 20, "refusal": 15}
    recs = heldout_records(a.heldout_seed, per_skill)
    for r in recs:
        r["prompt_tokens"] = encode_prompt(a.tokenizer, r["request"]["messages"], r["request"].get("tools"))
    if a.heldout_jsonl:
        with open(a.heldout_jsonl, "w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"heldout: {len(recs)} prompts, max prompt len {max(len(r['prompt_tokens']) for r in recs)}")


if __name__ == "__main__":
    main()
