"""Chloe-tiny: a small Mixtral (sparse MoE) transformer with mistral-inference's numerics.

Two forward passes over the same weights:
  * `Transformer` — the training module (bf16 autocast on the GPU). Experts are stored stacked
    ([E, F, D]) and run densely with zero weight for unselected experts: the same function as
    Mixtral's sparse routing, simpler and faster at this size.
  * `reference_forward` — evaluation: bf16 weights widened to f32, every operation in f32, and
    sparse routing token by token exactly as mistral-inference's `MoeLayer` (top-k of the gate
    logits, softmax over the k chosen, weighted sum of the chosen experts). This is the
    arithmetic the Swift engine implements, so its greedy tokens are the Swift engine's fixture.

Numerics (mistral-inference `mistral_inference/transformer.py`, `rope.py`, `moe.py`):
  RMSNorm  x * rsqrt(mean(x^2) + eps) * w, in f32.
  RoPE     interleaved complex pairs: (x[2i], x[2i+1]) rotated by pos * theta^(-2i/head_dim).
  Attn     causal, scale 1/sqrt(head_dim); GQA: query head h reads KV head h // (H / G).
  FFN      expert(x) = w2(silu(w1 x) * w3 x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Params:
    dim: int = 256
    n_layers: int = 4
    head_dim: int = 32
    hidden_dim: int = 192
    n_heads: int = 8
    n_kv_heads: int = 2
    norm_eps: float = 1e-5
    vocab_size: int = 2560
    rope_theta: float = 10000.0
    num_experts: int = 8
    num_experts_per_tok: int = 2

    def to_json(self) -> dict:
        """Mistral's native params.json layout (as Mixtral 8x7B's)."""
        return {
            "dim": self.dim, "n_layers": self.n_layers, "head_dim": self.head_dim,
            "hidden_dim": self.hidden_dim, "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads,
            "norm_eps": self.norm_eps, "vocab_size": self.vocab_size, "rope_theta": self.rope_theta,
            "moe": {"num_experts": self.num_experts, "num_experts_per_tok": self.num_experts_per_tok},
        }


def rope_cos_sin(head_dim: int, positions: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [T, head_dim/2] for mistral-inference's `precompute_freqs_cis` (f32)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device)[: head_dim // 2].float() / head_dim))
    ang = torch.outer(positions.float(), freqs)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, Dh]: interleaved pairs (x[2i], x[2i+1]) as complex numbers times e^(i*ang)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
    return out.type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, p: Params):
        super().__init__()
        self.p = p
        self.wq = nn.Linear(p.dim, p.n_heads * p.head_dim, bias=False)
        self.wk = nn.Linear(p.dim, p.n_kv_heads * p.head_dim, bias=False)
        self.wv = nn.Linear(p.dim, p.n_kv_heads * p.head_dim, bias=False)
        self.wo = nn.Linear(p.n_heads * p.head_dim, p.dim, bias=False)

    def forward(self, x, cos, sin):  # x [B, T, D]
        p = self.p
        B, T, _ = x.shape
        q = apply_rope(self.wq(x).view(B, T, p.n_heads, p.head_dim), cos, sin)
        k = apply_rope(self.wk(x).view(B, T, p.n_kv_heads, p.head_dim), cos, sin)
        v = self.wv(x).view(B, T, p.n_kv_heads, p.head_dim)
        rep = p.n_heads // p.n_kv_heads
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.wo(o.transpose(1, 2).reshape(B, T, p.n_heads * p.head_dim))


class MoE(nn.Module):
    def __init__(self, p: Params):
        super().__init__()
        self.p = p
        E, Fh, D = p.num_experts, p.hidden_dim, p.dim
        self.gate = nn.Linear(D, E, bias=False)
        self.w1 = nn.Parameter(torch.randn(E, Fh, D) / math.sqrt(D))   # [E, F, D]
        self.w3 = nn.Parameter(torch.randn(E, Fh, D) / math.sqrt(D))   # [E, F, D]
        self.w2 = nn.Parameter(torch.randn(E, D, Fh) / math.sqrt(Fh) / math.sqrt(2 * p.n_layers))  # [E, D, F]

    def forward(self, x):  # x [N, D] -> ([N, D], aux loss)
        p = self.p
        logits = self.gate(x).float()                               # [N, E]
        top, idx = torch.topk(logits, p.num_experts_per_tok, dim=-1)
        w = torch.softmax(top, dim=-1)                              # [N, K]
        dense = torch.zeros_like(logits).scatter(1, idx, w)         # [N, E], zero where unselected
        h = F.silu(torch.einsum("nd,efd->enf", x, self.w1)) * torch.einsum("nd,efd->enf", x, self.w3)
        y = torch.einsum("enf,edf->end", h, self.w2)                # [E, N, D]
        out = torch.einsum("end,ne->nd", y.float(), dense).type_as(x)
        # Switch-style load balancing: fraction routed to e times mean router probability of e.
        frac = torch.zeros_like(logits).scatter(1, idx, 1.0).mean(0) / p.num_experts_per_tok
        prob = torch.softmax(logits, dim=-1).mean(0)
        aux = p.num_experts * (frac * prob).sum()
        return out, aux


class Block(nn.Module):
    def __init__(self, p: Params):
        super().__init__()
        self.attention = Attention(p)
        self.feed_forward = MoE(p)
        self.attention_norm = RMSNorm(p.dim, p.norm_eps)
        self.ffn_norm = RMSNorm(p.dim, p.norm_eps)

    def forward(self, x, cos, sin, keep):
        h = x + self.attention(self.attention_norm(x), cos, sin)
        B, T, D = h.shape
        flat = self.ffn_norm(h).reshape(B * T, D)
        y = torch.zeros_like(flat)
        out, aux = self.feed_forward(flat[keep])  # route real tokens only (no padding)
        y[keep] = out
        return h + y.view(B, T, D), aux


class Transformer(nn.Module):
    def __init__(self, p: Params):
        super().__init__()
        self.p = p
        self.tok_embeddings = nn.Embedding(p.vocab_size, p.dim)
        self.layers = nn.ModuleList([Block(p) for _ in range(p.n_layers)])
        self.norm = RMSNorm(p.dim, p.norm_eps)
        self.output = nn.Linear(p.dim, p.vocab_size, bias=False)
        nn.init.normal_(self.tok_embeddings.weight, std=0.02)
        for n, m in self.named_modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / math.sqrt(2 * p.n_layers) if n.endswith("wo") else 0.02
                nn.init.normal_(m.weight, std=std)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor):  # tokens [B, T]; keep [B*T] bool
        T = tokens.shape[1]
        cos, sin = rope_cos_sin(self.p.head_dim, torch.arange(T, device=tokens.device), self.p.rope_theta)
        x = self.tok_embeddings(tokens)
        aux = 0.0
        for layer in self.layers:
            x, a = layer(x, cos, sin, keep)
            aux = aux + a
        return self.output(self.norm(x)), aux / self.p.n_layers

    def native_state(self) -> dict[str, torch.Tensor]:
        """Weights under Mistral's native key names, bf16, experts split out (Mixtral layout)."""
        sd: dict[str, torch.Tensor] = {}
        bf = lambda t: t.detach().to(torch.bfloat16).contiguous().cpu()  # noqa: E731
        sd["tok_embeddings.weight"] = bf(self.tok_embeddings.weight)      # [V, D]
        for i, L in enumerate(self.layers):
            pre = f"layers.{i}."
            sd[pre + "attention.wq.weight"] = bf(L.attention.wq.weight)   # [H*Dh, D]
            sd[pre + "attention.wk.weight"] = bf(L.attention.wk.weight)   # [G*Dh, D]
            sd[pre + "attention.wv.weight"] = bf(L.attention.wv.weight)   # [G*Dh, D]
            sd[pre + "attention.wo.weight"] = bf(L.attention.wo.weight)   # [D, H*Dh]
            sd[pre + "attention_norm.weight"] = bf(L.attention_norm.weight)  # [D]
            sd[pre + "ffn_norm.weight"] = bf(L.ffn_norm.weight)           # [D]
            sd[pre + "feed_forward.gate.weight"] = bf(L.feed_forward.gate.weight)  # [E, D]
            for e in range(self.p.num_experts):
                ex = pre + f"feed_forward.experts.{e}."
                sd[ex + "w1.weight"] = bf(L.feed_forward.w1[e])           # [F, D]
                sd[ex + "w2.weight"] = bf(L.feed_forward.w2[e])           # [D, F]
                sd[ex + "w3.weight"] = bf(L.feed_forward.w3[e])           # [F, D]
        sd["norm.weight"] = bf(self.norm.weight)                          # [D]
        sd["output.weight"] = bf(self.output.weight)                      # [V, D]
        return sd


# ---- evaluation forward: bf16 weights, f32 compute, sparse routing (the Swift engine's maths) ----

def reference_logits(w: dict[str, torch.Tensor], p: Params, tokens: torch.Tensor,
                     lengths: torch.Tensor | None) -> torch.Tensor:
    """Logits [B, V] (f32) at position lengths[b]-1 of each right-padded row of tokens [B, T];
    with lengths None, logits [B, T, V] at every position (teacher forcing).

    `w` holds the native-layout weights already widened bf16 -> f32. Causal attention makes
    the padding after a row's end invisible to its real positions.
    """
    B, T = tokens.shape
    dev = tokens.device
    cos, sin = rope_cos_sin(p.head_dim, torch.arange(T, device=dev), p.rope_theta)
    x = w["tok_embeddings.weight"][tokens]                             # [B, T, D]

    def norm(v, g):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + p.norm_eps) * g

    rep = p.n_heads // p.n_kv_heads
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    for i in range(p.n_layers):
        pre = f"layers.{i}."
        h = norm(x, w[pre + "attention_norm.weight"])
        q = apply_rope((h @ w[pre + "attention.wq.weight"].T).view(B, T, p.n_heads, p.head_dim), cos, sin)
        k = apply_rope((h @ w[pre + "attention.wk.weight"].T).view(B, T, p.n_kv_heads, p.head_dim), cos, sin)
        v = (h @ w[pre + "attention.wv.weight"].T).view(B, T, p.n_kv_heads, p.head_dim)
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(p.head_dim)
        s = s.masked_fill(~causal, float("-inf"))
        o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, dim=-1), v).reshape(B, T, -1)
        x = x + o @ w[pre + "attention.wo.weight"].T
        h = norm(x, w[pre + "ffn_norm.weight"]).reshape(B * T, p.dim)
        logits = h @ w[pre + "feed_forward.gate.weight"].T              # [N, E]
        top, idx = torch.topk(logits, p.num_experts_per_tok, dim=-1)
        gw = torch.softmax(top, dim=-1)                                 # [N, K]
        y = torch.zeros_like(h)
        for e in range(p.num_experts):
            ex = pre + f"feed_forward.experts.{e}."
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            he = h[rows]
            out = (F.silu(he @ w[ex + "w1.weight"].T) * (he @ w[ex + "w3.weight"].T)) @ w[ex + "w2.weight"].T
            y.index_add_(0, rows, out * gw[rows, slot, None])
        x = x + y.view(B, T, p.dim)
    x = norm(x, w["norm.weight"])
    if lengths is None:
        return x @ w["output.weight"].T
    last = x[torch.arange(B, device=dev), lengths - 1]                  # [B, D]
    return last @ w["output.weight"].T
