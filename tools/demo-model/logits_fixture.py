"""Write reference logits for a few held-out prompts: a numeric fixture for engine tests.

Usage: python3 logits_fixture.py MODEL_DIR HELDOUT_JSONL OUT_JSON [--ids 3,12,60,147]
OUT_JSON: {"note", "records": [{"id", "prompt_tokens", "last_logits": [V floats]}]} — the f32
logits (bf16 weights widened, f32 compute, sparse top-2 routing; `model.reference_logits`) after
the whole prompt, i.e. the distribution of the first generated token. An engine should match them
to a small normalised error (max |diff| / max |ref|), which localises numeric bugs that greedy
tokens alone would hide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import load_model  # noqa: E402
from model import reference_logits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("heldout")
    ap.add_argument("out")
    ap.add_argument("--ids", default="3,12,60,147")
    a = ap.parse_args()
    w, p = load_model(a.model_dir, torch.device("cpu"))
    ids = {int(x) for x in a.ids.split(",")}
    recs = [r for r in map(json.loads, open(a.heldout)) if r["id"] in ids]
    out = []
    with torch.no_grad():
        for r in recs:
            tok = torch.tensor([r["prompt_tokens"]])
            logits = reference_logits(w, p, tok, torch.tensor([tok.shape[1]]))[0]
            out.append({"id": r["id"], "prompt_tokens": r["prompt_tokens"],
                        "last_logits": [round(float(x), 5) for x in logits]})
    with open(a.out, "w") as f:
        json.dump({"note": "Chloe-tiny reference logits after each prompt (f32 compute, bf16 weights)",
                   "records": out}, f)
    print(f"wrote {len(out)} records to {a.out}")


if __name__ == "__main__":
    main()
