"""Self-checks for model.py (CPU, seconds): run before spending GPU time.

1. `apply_rope` equals mistral-inference's complex formulation
   (`torch.view_as_complex(x.reshape(..., -1, 2)) * freqs_cis`, `torch.polar(ones, t * freqs)`).
2. The training forward (dense experts) equals `reference_logits` (sparse routing, f32) on
   bf16-representable weights, at every row's last position, with right padding present.
3. The native state has exactly Mixtral's key names and shapes.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Params, Transformer, apply_rope, reference_logits, rope_cos_sin  # noqa: E402


def mistral_inference_rope(x: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    T = x.shape[1]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    t = torch.arange(T, dtype=torch.float)
    freqs_cis = torch.polar(torch.ones(T, head_dim // 2), torch.outer(t, freqs))
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 16)
    cos, sin = rope_cos_sin(16, torch.arange(7), 10000.0)
    err = (apply_rope(x, cos, sin) - mistral_inference_rope(x, 16, 10000.0)).abs().max().item()
    assert err < 1e-5, err
    print(f"rope vs complex formulation: max err {err:.2e}")

    p = Params(dim=64, n_layers=2, head_dim=16, hidden_dim=48, n_heads=4, n_kv_heads=2,
               vocab_size=300, num_experts=4, num_experts_per_tok=2)
    m = Transformer(p)
    with torch.no_grad():
        for q in m.parameters():
            q.mul_(3.0)  # larger weights: routing and attention far from uniform
            q.copy_(q.to(torch.bfloat16).float())  # make weights bf16-representable
    lens = torch.tensor([9, 5, 7])
    tok = torch.randint(0, p.vocab_size, (3, 9))
    keep = (torch.arange(9)[None, :] < lens[:, None]).reshape(-1)
    with torch.no_grad():
        full, _ = m(tok, keep)
        train_last = full[torch.arange(3), lens - 1]
        w = {k: v.float() for k, v in m.native_state().items()}
        ref = reference_logits(w, p, tok, lens)
    err = ((train_last - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-4, err
    print(f"training forward vs reference (sparse f32) forward: max rel err {err:.2e}")

    sd = m.native_state()
    assert all(v.dtype == torch.bfloat16 for v in sd.values())
    assert sd["layers.1.feed_forward.experts.3.w2.weight"].shape == (p.dim, p.hidden_dim)
    assert sd["layers.0.attention.wk.weight"].shape == (p.n_kv_heads * p.head_dim, p.dim)
    assert sd["layers.0.feed_forward.gate.weight"].shape == (p.num_experts, p.dim)
    assert len(sd) == 3 + p.n_layers * (7 + 3 * p.num_experts)
    print(f"native state: {len(sd)} tensors, all bf16")


if __name__ == "__main__":
    main()
