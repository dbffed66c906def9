"""Re-check torch_greedy.jsonl from the committed checkpoint files and add per-step margins.

Usage: python3 verify_greedy.py MODEL_DIR GREEDY_JSONL
Loads MODEL_DIR/params.json and consolidated.safetensors (bf16, widened to f32) — the files as
committed, not the trainer's in-memory model — runs `reference_logits` teacher-forced over
prompt + greedy output on the CPU, and checks that every output token is the argmax wherever
the top-1/top-2 gap exceeds 1e-3 (below that, CPU and GPU f32 may legitimately disagree).
It also checks the recorded per-step "margins" against its own (CPU vs GPU f32: within 1e-2).
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Params, reference_logits  # noqa: E402


def main() -> None:
    model_dir, path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(model_dir, "params.json")))
    moe = cfg.pop("moe")
    p = Params(**cfg, num_experts=moe["num_experts"], num_experts_per_tok=moe["num_experts_per_tok"])
    w = {k: v.float() for k, v in load_file(os.path.join(model_dir, "consolidated.safetensors")).items()}
    recs = [json.loads(line) for line in open(path)]
    torch.set_num_threads(2)
    checked = disagree = 0
    with torch.no_grad():
        for r in recs:
            seq = r["prompt_tokens"] + r["output_tokens"]
            logits = reference_logits(w, p, torch.tensor([seq[:-1]]), None)[0]  # [T-1, V]
            n = len(r["prompt_tokens"])
            step_logits = logits[n - 1:]                                         # one per output token
            top2 = torch.topk(step_logits, 2, dim=-1)
            margins = (top2.values[:, 0] - top2.values[:, 1]).tolist()
            for tok, arg, m in zip(r["output_tokens"], top2.indices[:, 0].tolist(), margins):
                if m > 1e-3:
                    checked += 1
                    if tok != arg:
                        disagree += 1
                        print(f"id {r['id']}: output token {tok} but CPU argmax {arg} (margin {m:.4f})")
            worst = max(abs(a - b) for a, b in zip(margins, r["margins"]))
            if worst > 1e-2:
                disagree += 1
                print(f"id {r['id']}: margins differ by {worst:.4f}")
    print(f"{checked} output tokens with margin > 1e-3 checked, {disagree} disagreements")
    sys.exit(1 if disagree else 0)


if __name__ == "__main__":
    main()
