"""Train Chloe-tiny for a wall-clock budget, then evaluate greedily and write the native checkpoint.

Usage (GPU machine; data from encode_dataset.py, tokenizer from train_tokenizer.py):
  python3 train.py --data DIR --tokenizer tokenizer.model --out OUT [--budget 240]

Writes to OUT:
  params.json                 Mistral native params (Mixtral layout, with "moe")
  consolidated.safetensors    bf16 weights, native key names
  torch_greedy.jsonl          one line per held-out prompt: {"id", "skill", "prompt_tokens",
                              "output_tokens", "text", "tool_call", "correct", "min_margin"}
  train_log.txt               the loss curve and the evaluation summary
Greedy decoding uses `model.reference_logits` (bf16 weights, f32 compute, sparse routing), the
arithmetic the Swift engine implements. It stops after `</s>` (included in output_tokens) or
--max-new tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Params, Transformer, reference_logits  # noqa: E402

ID_RE = re.compile(r"^[A-Za-z0-9]{9}$")


def log(f, *a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    f.write(s + "\n")
    f.flush()


def batches(offsets: np.ndarray, bsz: int, rng: np.random.Generator):
    """Endless stream of index batches of similar length (less padding), shuffled."""
    lens = np.diff(offsets)
    n = len(lens)
    while True:
        perm = rng.permutation(n)
        chunk = bsz * 64
        out = []
        for s in range(0, n, chunk):
            part = perm[s:s + chunk]
            part = part[np.argsort(lens[part], kind="stable")]
            out += [part[i:i + bsz] for i in range(0, len(part) - bsz + 1, bsz)]
        for j in rng.permutation(len(out)):
            yield out[j]


def make_batch(tokens: np.ndarray, offsets: np.ndarray, idx: np.ndarray, dev):
    lens = offsets[idx + 1] - offsets[idx]
    T = int(lens.max())
    arr = np.zeros((len(idx), T), dtype=np.int64)
    msk = np.zeros((len(idx), T), dtype=bool)
    real = np.zeros((len(idx), T), dtype=bool)
    for r, i in enumerate(idx):
        seg = tokens[offsets[i]:offsets[i + 1]].astype(np.int64)
        arr[r, :len(seg)] = seg & 0x7FFF
        msk[r, :len(seg)] = (seg >> 15) == 1
        real[r, :len(seg)] = True
    t = torch.from_numpy(arr).to(dev, non_blocking=True)
    m = torch.from_numpy(msk).to(dev, non_blocking=True)
    k = torch.from_numpy(real).to(dev, non_blocking=True)
    return t, m, k


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
def greedy_eval(model: Transformer, p: Params, prompts: list[dict], expected: dict, sp, dev, max_new: int, f):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    w = {k: v.to(dev).float() for k, v in model.native_state().items()}  # bf16-rounded, widened
    eos = sp.eos_id()
    tool_calls_id = sp.piece_to_id("[TOOL_CALLS]")
    seqs = [list(r["prompt_tokens"]) for r in prompts]
    outs: list[list[int]] = [[] for _ in prompts]
    margins = [math.inf] * len(prompts)
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
            if nxt[r] != eos:
                still.append(i)
        live = still
    results = []
    per: dict[str, list[int]] = {}
    ids_ok = []
    for r, out, mg in zip(prompts, outs, margins):
        ok, text, is_call = score(r["skill"], expected[r["id"]], out, sp, tool_calls_id, eos)
        per.setdefault(r["skill"], []).append(int(ok))
        if is_call and ok:
            ids_ok.append(bool(ID_RE.match(str(json.loads(text)[0].get("id", "")))))
        results.append({"id": r["id"], "skill": r["skill"], "prompt_tokens": r["prompt_tokens"],
                        "output_tokens": out, "text": text, "tool_call": is_call, "correct": ok,
                        "min_margin": round(mg, 4)})
    total = sum(sum(v) for v in per.values())
    log(f, f"held-out accuracy: {total}/{len(prompts)}")
    for k, v in per.items():
        log(f, f"  {k:12s} {sum(v):3d}/{len(v):3d} = {100.0 * sum(v) / len(v):.1f}%")
    if ids_ok:
        log(f, f"  tool-call ids of 9 alphanumerics: {sum(ids_ok)}/{len(ids_ok)}")
    log(f, f"  smallest top-1/top-2 logit gap on any greedy path: {min(margins):.4f}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--heldout", required=True, help="heldout.jsonl (expected answers)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=240.0, help="training wall-clock seconds")
    ap.add_argument("--bsz", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--limit-dialogues", type=int, default=0, help="CPU smoke test: use only N")
    ap.add_argument("--limit-eval", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import sentencepiece as spm

    os.makedirs(a.out, exist_ok=True)
    f = open(os.path.join(a.out, "train_log.txt"), "w")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(a.seed)
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
    d = np.load(os.path.join(a.data, "train.npz"))
    tokens, offsets = d["tokens"], d["offsets"]
    if a.limit_dialogues:
        offsets = offsets[: a.limit_dialogues + 1]
    p = Params(vocab_size=sp.get_piece_size())
    model = Transformer(p).to(dev)
    n_params = sum(x.numel() for x in model.parameters())
    log(f, f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}), "
           f"params {n_params}, dialogues {len(offsets) - 1}, tokens {int(offsets[-1])}, {p.to_json()}")

    decay = [x for n, x in model.named_parameters() if x.dim() >= 2 and "tok_embeddings" not in n]
    other = [x for n, x in model.named_parameters() if not (x.dim() >= 2 and "tok_embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8, fused=dev.type == "cuda")
    rng = np.random.default_rng(a.seed)
    stream = batches(offsets, a.bsz, rng)
    t0 = time.time()
    step, warm = 0, 200
    ema = None
    while True:
        frac = (time.time() - t0) / a.budget
        if frac >= 1.0:
            break
        lr = a.lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        tok, msk, real = make_batch(tokens, offsets, next(stream), dev)
        inp, tgt, lm = tok[:, :-1], tok[:, 1:], msk[:, 1:]
        keep = real[:, :-1].reshape(-1)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits, aux = model(inp, keep)
        ce = F.cross_entropy(logits.float()[lm], tgt[lm])
        loss = ce + 0.01 * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1:
            c = ce.item()
            ema = c if ema is None else 0.9 * ema + 0.1 * c
            if step % 500 == 0 or step == 1:
                log(f, f"step {step:6d} t {time.time() - t0:6.1f}s lr {lr:.2e} ce {c:.4f} ema {ema:.4f} aux {aux.item():.3f}")
    log(f, f"trained {step} steps in {time.time() - t0:.1f}s, final ce ema {ema}")

    with open(os.path.join(a.out, "params.json"), "w") as pf:
        json.dump(p.to_json(), pf, indent=2)
    from safetensors.torch import save_file
    save_file(model.native_state(), os.path.join(a.out, "consolidated.safetensors"))

    recs = [json.loads(line) for line in open(a.heldout)]
    if a.limit_eval:
        recs = recs[:: max(1, len(recs) // a.limit_eval)]
    expected = {r["id"]: r["expected"] for r in recs}
    prompts = [{"id": r["id"], "skill": r["skill"], "prompt_tokens": r["prompt_tokens"]} for r in recs]
    t1 = time.time()
    results = greedy_eval(model, p, prompts, expected, sp, dev, a.max_new, f)
    log(f, f"greedy eval took {time.time() - t1:.1f}s")
    with open(os.path.join(a.out, "torch_greedy.jsonl"), "w") as g:
        for r in results:
            g.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
