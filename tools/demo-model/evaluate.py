"""Greedy evaluation of Chloe-tiny on the held-out set (bf16 weights, f32 compute).

Usage: python3 evaluate.py --model-dir models/chloe-tiny --heldout heldout.jsonl --out OUT.jsonl
(train.py calls `greedy_eval` right after training; this CLI re-runs it from committed files.)

Output records (torch_greedy.jsonl): {"id", "skill", "prompt_tokens", "output_tokens" (greedy,
ending with `</s>` unless --max-new ran out), "text", "tool_call", "correct", "min_margin",
"margins" (top-1 minus top-2 logit at each output step: only the random tool-call ids come
close to ties, so another engine's greedy tokens should match up to the first step whose margin
is below that engine's error bound)}.
`score` holds the scoring rules, which the Swift `eval-demo` applies too:
  content skills: the output ends with `</s>`, does not start with `[TOOL_CALLS]`, and the
                  sentencepiece decoding of the tokens before `</s>` equals expected.content;
  tool_call:      the output is `[TOOL_CALLS]` + tokens + `</s>`, the tokens decode to a JSON list
                  of as many objects as expected.tool_calls, with equal "name" and "arguments".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Params, reference_logits  # noqa: E402

ID_RE = re.compile(r"^[A-Za-z0-9]{9}$")


def load_heldout(path: str, limit: int = 0) -> tuple[list[dict], dict]:
    recs = [json.loads(line) for line in open(path)]
    if limit:
        recs = recs[:: max(1, len(recs) // limit)]
    expected = {r["id"]: r["expected"] for r in recs}
    prompts = [{"id": r["id"], "skill": r["skill"], "prompt_tokens": r["prompt_tokens"]} for r in recs]
    return prompts, expected


def load_model(model_dir: str, dev) -> tuple[dict, Params]:
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(model_dir, "params.json")))
    moe = cfg.pop("moe")
    p = Params(**cfg, num_experts=moe["num_experts"], num_experts_per_tok=moe["num_experts_per_tok"])
    w = {k: v.to(dev).float() for k, v in load_file(os.path.join(model_dir, "consolidated.safetensors")).items()}
    return w, p


def score(rec_skill: str, expected: dict, out: list[int], sp, tool_calls_id: int, eos: int) -> tuple[bool, str, bool]:
    """(correct, text, is_tool_call). The rules the Swift eval-demo applies too."""
    ended = len(out) > 0 and out[-1] == eos
    body = out[:-1] if ended else out
    is_call = len(body) > 0 and body[0] == tool_calls_id
    text = sp.decode(body[1:] if is_call else body)
    if "tool_calls" in expected:
        if not (ended and is_call):
            return False, text, is_call
        try:
            calls = json.loads(text)
        except json.JSONDecodeError:
            return False, text, is_call
        want = expected["tool_calls"]
        ok = isinstance(calls, list) and len(calls) == len(want) and all(
            isinstance(c, dict) and c.get("name") == w["name"] and c.get("arguments") == w["arguments"]
            for c, w in zip(calls, want))
        return ok, text, is_call
    return ended and not is_call and text == expected["content"], text, is_call


@torch.no_grad()
def greedy_eval(w: dict, p: Params, prompts: list[dict], expected: dict, sp, dev, max_new: int, log):
    """Batched greedy decoding of every prompt with `reference_logits`; returns result records."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    eos = sp.eos_id()
    tool_calls_id = sp.piece_to_id("[TOOL_CALLS]")
    seqs = [list(r["prompt_tokens"]) for r in prompts]
    outs: list[list[int]] = [[] for _ in prompts]
    margins = [math.inf] * len(prompts)
    steps: list[list[float]] = [[] for _ in prompts]
    live = list(range(len(prompts)))
    for _ in range(max_new):
        if not live:
            break
        lens = torch.tensor([len(seqs[i]) for i in live], device=dev)
        T = int(lens.max())
        tok = torch.zeros((len(live), T), dtype=torch.long, device=dev)
        for r, i in enumerate(live):
            tok[r, :len(seqs[i])] = torch.tensor(seqs[i], device=dev)
        logits = reference_logits(w, p, tok, lens)
        top2 = torch.topk(logits, 2, dim=-1)
        nxt = top2.indices[:, 0].tolist()
        gap = (top2.values[:, 0] - top2.values[:, 1]).tolist()
        still = []
        for r, i in enumerate(live):
            seqs[i].append(nxt[r])
            outs[i].append(nxt[r])
            margins[i] = min(margins[i], gap[r])
            steps[i].append(round(gap[r], 4))
            if nxt[r] != eos:
                still.append(i)
        live = still
    results = []
    per: dict[str, list[int]] = {}
    ids_ok = []
    for r, out, mg, st in zip(prompts, outs, margins, steps):
        ok, text, is_call = score(r["skill"], expected[r["id"]], out, sp, tool_calls_id, eos)
        per.setdefault(r["skill"], []).append(int(ok))
        if is_call and ok:
            ids_ok.append(bool(ID_RE.match(str(json.loads(text)[0].get("id", "")))))
        results.append({"id": r["id"], "skill": r["skill"], "prompt_tokens": r["prompt_tokens"],
                        "output_tokens": out, "text": text, "tool_call": is_call, "correct": ok,
                        "min_margin": round(mg, 4), "margins": st})
    total = sum(sum(v) for v in per.values())
    log(f"held-out accuracy: {total}/{len(prompts)}")
    for k, v in per.items():
        log(f"  {k:12s} {sum(v):3d}/{len(v):3d} = {100.0 * sum(v) / len(v):.1f}%")
    if ids_ok:
        log(f"  tool-call ids of 9 alphanumerics: {sum(ids_ok)}/{len(ids_ok)}")
    log(f"  smallest top-1/top-2 logit gap on any greedy path: {min(margins):.4f}")
    return results




def main() -> None:
    import sentencepiece as spm
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-new", type=int, default=64)
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    w, p = load_model(a.model_dir, dev)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
    prompts, expected = load_heldout(a.heldout)
    results = greedy_eval(w, p, prompts, expected, sp, dev, a.max_new, print)
    with open(a.out, "w") as g:
        for r in results:
            g.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
