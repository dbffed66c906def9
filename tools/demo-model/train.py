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
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import greedy_eval, load_heldout  # noqa: E402
from model import Params, Transformer  # noqa: E402


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

    prompts, expected = load_heldout(a.heldout, a.limit_eval)
    t1 = time.time()
    w = {k: v.to(dev).float() for k, v in model.native_state().items()}  # bf16-rounded, widened
    results = greedy_eval(w, p, prompts, expected, sp, dev, a.max_new, lambda *x: log(f, *x))
    log(f, f"greedy eval took {time.time() - t1:.1f}s")
    with open(os.path.join(a.out, "torch_greedy.jsonl"), "w") as g:
        for r in results:
            g.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
