#!/usr/bin/env python3
"""PyTorch decoder baseline for `mixtral-chat bench` (gpt-fast style).

Same preset shapes and the same kind of weights as the Swift bench: seeded random
bf16 weights generated on the device (never zeros), static KV cache, greedy decode.
On CUDA the decode step is torch.compile(mode="reduce-overhead", fullgraph=True),
so each step replays one CUDA graph; prefill runs eagerly (cuBLAS GEMMs + flash
attention). The code path on CPU is identical apart from device and compile.

    python3 tools/bench/torch_baseline.py --device cuda --preset mistral-7b --batch 1,8,32,64 --json
    python3 tools/bench/torch_baseline.py --device cpu --preset tiny --batch 1,4 --prompt-len 16 --gen-len 8 --json

See tools/bench/README.md for what the fields mean.
"""
import argparse
import gc
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Shapes from Mistral's params.json files.
PRESETS = {
    "mistral-7b": dict(dim=4096, n_layers=32, head_dim=128, hidden_dim=14336, n_heads=32,
                       n_kv_heads=8, vocab_size=32768, num_experts=0, top_k=0),
    "mixtral-8x7b": dict(dim=4096, n_layers=32, head_dim=128, hidden_dim=14336, n_heads=32,
                         n_kv_heads=8, vocab_size=32000, num_experts=8, top_k=2),
    "mixtral-8x22b": dict(dim=6144, n_layers=56, head_dim=128, hidden_dim=16384, n_heads=48,
                          n_kv_heads=8, vocab_size=32768, num_experts=8, top_k=2),
    "codestral-22b": dict(dim=6144, n_layers=56, head_dim=128, hidden_dim=16384, n_heads=48,
                          n_kv_heads=8, vocab_size=32768, num_experts=0, top_k=0),
    "tiny": dict(dim=256, n_layers=4, head_dim=32, hidden_dim=768, n_heads=8,
                 n_kv_heads=2, vocab_size=4096, num_experts=4, top_k=2),
}
ROPE_THETA = 1e6
NORM_EPS = 1e-5
DTYPE = torch.bfloat16
BYTES = 2  # bf16
MOE_GATHER = "einsum"  # --moe-gather


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- weights

def rand_weight(shape, fan_in, dev):
    """Seeded random bf16 weight, generated on the device, scaled 1/sqrt(fan_in)."""
    w = torch.randn(*shape, device=dev, dtype=DTYPE)
    w.mul_(1.0 / math.sqrt(fan_in))
    return nn.Parameter(w, requires_grad=False)


def norm_weight(dim, dev):
    w = torch.randn(dim, device=dev, dtype=DTYPE)
    w.mul_(0.02).add_(1.0)  # ≈ 1, never zero
    return nn.Parameter(w, requires_grad=False)


# ----------------------------------------------------------------------------- model

class RMSNorm(nn.Module):
    def __init__(self, dim, dev):
        super().__init__()
        self.weight = norm_weight(dim, dev)

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + NORM_EPS)
        return xf.to(x.dtype) * self.weight


def precompute_freqs(max_len, head_dim, dev):
    """(max_len, head_dim/2, 2) cos/sin table for interleaved (complex-pair) RoPE."""
    freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, device=dev, dtype=torch.float32) / head_dim))
    t = torch.arange(max_len, device=dev, dtype=torch.float32)
    ang = torch.outer(t, freqs)
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)


def apply_rope(x, freqs):
    # x: (B, T, H, hd); freqs: (T, hd/2, 2); pairs (x[2i], x[2i+1]) rotate as complex numbers
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    f = freqs.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack([xs[..., 0] * f[..., 0] - xs[..., 1] * f[..., 1],
                       xs[..., 1] * f[..., 0] + xs[..., 0] * f[..., 1]], dim=-1)
    return out.flatten(3).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c, dev):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        d = c["dim"]
        # fused q/k/v projection as in gpt-fast (one GEMV instead of three)
        self.wqkv = rand_weight(((self.n_heads + 2 * self.n_kv) * self.hd, d), d, dev)
        self.wo = rand_weight((d, self.n_heads * self.hd), self.n_heads * self.hd, dev)
        # registered buffers, so torch.compile / CUDA graphs treat them as static (mutated in place)
        self.register_buffer("k_cache", None, persistent=False)
        self.register_buffer("v_cache", None, persistent=False)

    def forward(self, x, freqs, input_pos, mask, mode):
        B, T, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv, self.hd
        q, k, v = F.linear(x, self.wqkv).split([H * hd, KV * hd, KV * hd], dim=-1)
        q = apply_rope(q.view(B, T, H, hd), freqs)
        k = apply_rope(k.view(B, T, KV, hd), freqs)
        v = v.view(B, T, KV, hd)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, KV, T, hd)
        # static cache (B, KV, max_len, hd): write this step's keys/values in place
        self.k_cache.index_copy_(2, input_pos, k)
        self.v_cache.index_copy_(2, input_pos, v)
        if mode == "prefill":
            # the prompt starts at position 0: causal attention over its own k/v
            g = H // KV
            q = q.transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                               is_causal=True)
            y = y.transpose(1, 2).reshape(B, T, H * hd)
        else:
            # decode (T == 1): the G query heads that share a KV head act as G "queries"
            # of that head, so GQA reads the cache once and copies nothing.
            q = q.view(B, KV, H // KV, hd)
            y = F.scaled_dot_product_attention(q, self.k_cache, self.v_cache, attn_mask=mask)
            y = y.reshape(B, 1, H * hd)
        return F.linear(y, self.wo)


class FeedForward(nn.Module):
    def __init__(self, c, dev):
        super().__init__()
        d, f = c["dim"], c["hidden_dim"]
        self.w1 = rand_weight((f, d), d, dev)
        self.w3 = rand_weight((f, d), d, dev)
        self.w2 = rand_weight((d, f), f, dev)

    def forward(self, x, mode):
        return F.linear(F.silu(F.linear(x, self.w1)) * F.linear(x, self.w3), self.w2)


class MoEFeedForward(nn.Module):
    """Mixtral MoE as gpt-fast's mixtral-moe: top-k of the gate logits, softmax over the chosen k.

    Decode, B*K < E (batch 1 for Mixtral): gpt-fast's ConditionalFeedForward - index the
      stacked expert weights (E, F, D) with expert_indices, so only the chosen experts are read.
    Decode, larger batches: every expert on every token with the routing weights (zero for the
      experts not chosen) - reads each expert once, no data-dependent shapes, CUDA-graph safe;
      at these batch sizes nearly all experts are touched anyway.
    Prefill (eager): tokens grouped by expert, one GEMM chain per expert.
    """

    def __init__(self, c, dev):
        super().__init__()
        d, f, e = c["dim"], c["hidden_dim"], c["num_experts"]
        self.E, self.K = e, c["top_k"]
        self.gate = rand_weight((e, d), d, dev)
        self.w1 = rand_weight((e, f, d), d, dev)
        self.w3 = rand_weight((e, f, d), d, dev)
        self.w2 = rand_weight((e, d, f), f, dev)

    @staticmethod
    def decode_path(n_tokens, E, K):
        return "gather" if n_tokens * K < E else "dense"

    def forward(self, x, mode):
        B, T, D = x.shape
        x = x.view(-1, D)
        N = x.size(0)
        logits = F.linear(x, self.gate)
        w, idx = torch.topk(logits, self.K, dim=-1)
        w = F.softmax(w.float(), dim=-1).to(x.dtype)  # (N, K)
        if mode == "decode" and self.decode_path(N, self.E, self.K) == "gather" and MOE_GATHER == "reduce":
            # The same products written as multiply + sum: Inductor fuses the gather into one
            # reduction kernel per product that reads only the chosen experts' rows, where the
            # einsum form materialises w[idx] (a copy of the chosen experts) before a bmm.
            x1 = F.silu((x[:, None, None, :] * self.w1[idx]).sum(-1, dtype=torch.float32)).to(x.dtype)
            x3 = (x[:, None, None, :] * self.w3[idx]).sum(-1, dtype=torch.float32).to(x.dtype)
            x2 = ((x1 * x3)[:, :, None, :] * self.w2[idx]).sum(-1, dtype=torch.float32).to(x.dtype)
            out = torch.einsum("nkd,nk->nd", x2, w)
        elif mode == "decode" and self.decode_path(N, self.E, self.K) == "gather":
            x1 = F.silu(torch.einsum("nd,nkfd->nkf", x, self.w1[idx]))
            x3 = torch.einsum("nd,nkfd->nkf", x, self.w3[idx])
            x2 = torch.einsum("nkf,nkdf->nkd", x1 * x3, self.w2[idx])
            out = torch.einsum("nkd,nk->nd", x2, w)
        elif mode == "decode":
            r = torch.zeros(N, self.E, device=x.device, dtype=x.dtype).scatter(1, idx, w)  # (N, E)
            xe = x.unsqueeze(0)  # (1, N, D)
            h = F.silu(torch.matmul(xe, self.w1.transpose(1, 2))) * torch.matmul(xe, self.w3.transpose(1, 2))
            y = torch.matmul(h, self.w2.transpose(1, 2))  # (E, N, D)
            out = torch.einsum("end,ne->nd", y, r)
        else:
            out = torch.zeros_like(x)
            flat = idx.reshape(-1)
            tok = torch.arange(N, device=x.device).repeat_interleave(self.K)
            wf = w.reshape(-1)
            for e in range(self.E):
                sel = (flat == e).nonzero().squeeze(1)
                if sel.numel() == 0:
                    continue
                t = tok[sel]
                xe = x[t]
                ye = F.linear(F.silu(F.linear(xe, self.w1[e])) * F.linear(xe, self.w3[e]), self.w2[e])
                out.index_add_(0, t, ye * wf[sel, None])
        return out.view(B, T, D)


class Block(nn.Module):
    def __init__(self, c, dev):
        super().__init__()
        self.attention_norm = RMSNorm(c["dim"], dev)
        self.attention = Attention(c, dev)
        self.ffn_norm = RMSNorm(c["dim"], dev)
        self.feed_forward = MoEFeedForward(c, dev) if c["num_experts"] else FeedForward(c, dev)

    def forward(self, x, freqs, input_pos, mask, mode):
        h = x + self.attention(self.attention_norm(x), freqs, input_pos, mask, mode)
        return h + self.feed_forward(self.ffn_norm(h), mode)


class Transformer(nn.Module):
    def __init__(self, c, dev):
        super().__init__()
        self.c = c
        d = c["dim"]
        self.tok_embeddings = rand_weight((c["vocab_size"], d), d, dev)
        self.layers = nn.ModuleList([Block(c, dev) for _ in range(c["n_layers"])])
        self.norm = RMSNorm(d, dev)
        self.output = rand_weight((c["vocab_size"], d), d, dev)
        self.max_len = 0

    def setup_caches(self, batch, max_len):
        dev = self.output.device
        self.free_caches()
        shape = (batch, self.c["n_kv_heads"], max_len, self.c["head_dim"])
        for l in self.layers:
            l.attention.k_cache = torch.zeros(shape, device=dev, dtype=DTYPE)
            l.attention.v_cache = torch.zeros(shape, device=dev, dtype=DTYPE)
        self.register_buffer("freqs", precompute_freqs(max_len, self.c["head_dim"], dev), persistent=False)
        self.register_buffer("positions", torch.arange(max_len, device=dev), persistent=False)
        self.max_len = max_len

    def free_caches(self):
        for l in self.layers:
            l.attention.k_cache = None
            l.attention.v_cache = None

    def forward(self, tokens, input_pos, mode):
        x = F.embedding(tokens, self.tok_embeddings)
        freqs = self.freqs[input_pos]
        mask = None
        if mode == "decode":
            mask = (self.positions <= input_pos).view(1, 1, 1, -1)
        for layer in self.layers:
            x = layer(x, freqs, input_pos, mask, mode)
        if mode == "prefill":
            x = x[:, -1:]  # only the last position's logits are needed to start decoding
        return F.linear(self.norm(x), self.output)


def prefill(model, tokens, input_pos):
    logits = model(tokens, input_pos, "prefill")
    return torch.argmax(logits[:, -1], dim=-1, keepdim=True)


def decode_one_token(model, cur, input_pos):
    logits = model(cur, input_pos, "decode")
    return torch.argmax(logits[:, -1], dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- accounting

def weight_bytes(c):
    d, f, hd = c["dim"], c["hidden_dim"], c["head_dim"]
    attn = (c["n_heads"] + 2 * c["n_kv_heads"]) * hd * d + d * c["n_heads"] * hd
    expert = 3 * d * f
    return dict(attn_per_layer=attn * BYTES, norms_per_layer=2 * d * BYTES, expert=expert * BYTES,
                gate_per_layer=c["num_experts"] * d * BYTES, output=c["vocab_size"] * d * BYTES,
                final_norm=d * BYTES, embedding=c["vocab_size"] * d * BYTES)


def expected_experts(E, K, B):
    return E * (1.0 - (1.0 - K / E) ** B)


def step_bytes(c, batch, context, experts_read_per_layer=None):
    """Bytes one decode step must read: weights touched + KV cache of `context` positions."""
    wb = weight_bytes(c)
    L = c["n_layers"]
    per_layer = wb["attn_per_layer"] + wb["norms_per_layer"]
    if c["num_experts"]:
        n_exp = experts_read_per_layer if experts_read_per_layer is not None else \
            expected_experts(c["num_experts"], c["top_k"], batch)
        per_layer += wb["gate_per_layer"] + n_exp * wb["expert"]
    else:
        per_layer += wb["expert"]
    w = L * per_layer + wb["output"] + wb["final_norm"] + batch * c["dim"] * BYTES  # + embedding rows
    kv = batch * context * 2 * L * c["n_kv_heads"] * c["head_dim"] * BYTES
    return w + kv


def total_weight_bytes(c):
    wb = weight_bytes(c)
    ffn = wb["expert"] * max(1, c["num_experts"]) + wb["gate_per_layer"]
    return c["n_layers"] * (wb["attn_per_layer"] + wb["norms_per_layer"] + ffn) + \
        wb["output"] + wb["final_norm"] + wb["embedding"]


# ----------------------------------------------------------------------------- timing

class Clock:
    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def mark(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def elapsed_s(self, a, b):
        self.sync()
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


def measure_copy_bandwidth(dev, clock):
    """Device-to-device copy: bytes read + written per second, median of 10 after warm-up."""
    n = (1 << 30) if dev.type == "cuda" else (256 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=dev)
    src.fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    clock.sync()
    times = []
    for _ in range(10):
        a = clock.mark()
        dst.copy_(src)
        b = clock.mark()
        times.append(clock.elapsed_s(a, b))
    del src, dst
    return 2 * n / statistics.median(times) / 1e9


# ----------------------------------------------------------------------------- main

def is_oom(ex):
    """Out of memory, also when torch.compile wraps it or cuBLAS reports a failed allocation."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        seen.add(id(ex))
        if isinstance(ex, torch.OutOfMemoryError):
            return True
        m = str(ex).lower()
        if "out of memory" in m or "alloc_failed" in m:
            return True
        ex = ex.__cause__ or ex.__context__
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mistral-7b", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=None, help="use fewer layers than the preset")
    p.add_argument("--batch", default="1,8,32,64", help="comma-separated batch sizes")
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--gen-len", type=int, default=128, help="timed decode steps")
    p.add_argument("--warmup", type=int, default=4, help="untimed decode steps first (compile, graph capture)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the decode step (mode=reduce-overhead, CUDA graphs); default: on for cuda")
    p.add_argument("--tune", action="store_true",
                   help="inductor coordinate-descent tuning as gpt-fast does (longer compile)")
    p.add_argument("--moe-gather", default="einsum", choices=["einsum", "reduce"],
                   help="batch-1 MoE decode: gpt-fast's einsum over w[idx], or multiply + sum "
                        "(Inductor fuses the gather into the reduction)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", action="store_true", help="one JSON object per batch size on stdout "
                                                       "(the human-readable lines go to stderr)")
    a = p.parse_args()
    global MOE_GATHER
    MOE_GATHER = a.moe_gather

    out_h = (lambda s: log(s)) if a.json else (lambda s: print(s, flush=True))
    out_j = (lambda o: print(json.dumps(o), flush=True)) if a.json else (lambda o: None)

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available to this torch (%s)" % torch.__version__)
    dev = torch.device(a.device)
    use_compile = (a.device == "cuda") if a.compile is None else a.compile
    c = dict(PRESETS[a.preset])
    if a.layers:
        c["n_layers"] = a.layers
    batches = [int(b) for b in a.batch.split(",") if b.strip()]
    clock = Clock(dev)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
        dev_name = torch.cuda.get_device_name(dev)
    else:
        dev_name = "cpu (%d threads)" % torch.get_num_threads()

    torch.manual_seed(a.seed)
    bw = measure_copy_bandwidth(dev, clock)
    out_h("torch %s on %s | preset %s, %d layers | copy bandwidth %.1f GB/s (read+write) | compile %s"
          % (torch.__version__, dev_name, a.preset, c["n_layers"], bw, "on" if use_compile else "off"))

    t0 = time.perf_counter()
    with torch.no_grad():
        model = Transformer(c, dev).eval()
    clock.sync()
    out_h("weights: %.2f GB generated on the device in %.1f s" % (total_weight_bytes(c) / 1e9, time.perf_counter() - t0))

    decode_fn = decode_one_token
    compiled = False
    if use_compile:
        import torch._dynamo.config as dc
        import torch._inductor.config as ic
        dc.cache_size_limit = max(64, dc.cache_size_limit)
        ic.triton.unique_kernel_names = True
        if hasattr(ic, "fx_graph_cache"):
            ic.fx_graph_cache = True
        if a.tune:
            ic.coordinate_descent_tuning = True
        # static shapes: one specialised graph (and one CUDA graph) per batch size
        decode_fn = torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True, dynamic=False)
        compiled = True

    max_len = a.prompt_len + a.warmup + a.gen_len
    max_len = (max_len + 15) // 16 * 16
    E, K = c["num_experts"], c["top_k"]

    for B in batches:
        rec = dict(impl="torch", device=dev_name, preset=a.preset, layers=c["n_layers"], batch=B,
                   prompt_len=a.prompt_len, gen_len=a.gen_len, torch_version=torch.__version__,
                   measured_bandwidth_gb_per_s=round(bw, 1))
        try:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                model.setup_caches(B, max_len)
                prompt = torch.randint(0, c["vocab_size"], (B, a.prompt_len), device=dev)
                ppos = torch.arange(a.prompt_len, device=dev)
                prefill(model, prompt, ppos)  # warm-up (cuBLAS heuristics, allocator)
                clock.sync()
                t_a = clock.mark()
                tok = prefill(model, prompt, ppos)
                t_b = clock.mark()
                prefill_s = clock.elapsed_s(t_a, t_b)

                pos = a.prompt_len
                cur = tok.clone()

                all_pos = torch.arange(max_len, device=dev)

                def step(cur, pos):
                    ip = all_pos[pos:pos + 1]  # device-side position, no host-to-device copy
                    if compiled:
                        torch.compiler.cudagraph_mark_step_begin()
                    return decode_fn(model, cur, ip).clone()  # clone: graph outputs are reused

                tc = time.perf_counter()
                for i in range(a.warmup):
                    try:
                        cur = step(cur, pos)
                    except Exception as ex:  # compile failed: note it, fall back to eager
                        if not compiled or is_oom(ex):
                            raise
                        out_h("note: torch.compile failed (%s: %s); falling back to eager decode"
                              % (type(ex).__name__, str(ex).splitlines()[0][:300] if str(ex) else ""))
                        decode_fn, compiled = decode_one_token, False
                        cur = step(cur, pos)
                    pos += 1
                clock.sync()
                warm_s = time.perf_counter() - tc
                ctx_start = pos

                marks = [clock.mark()]
                for i in range(a.gen_len):
                    cur = step(cur, pos)
                    pos += 1
                    marks.append(clock.mark())
                clock.sync()
                steps = [clock.elapsed_s(marks[i], marks[i + 1]) for i in range(a.gen_len)]
            step_s = statistics.median(steps)
            mean_ctx = ctx_start + (a.gen_len - 1) / 2.0  # positions attended, averaged (+1 for the new token)
            mean_ctx += 1
            nbytes = step_bytes(c, B, mean_ctx)
            rec.update(
                prefill_tokens_per_s=round(B * a.prompt_len / prefill_s, 1),
                decode_step_ms=round(step_s * 1e3, 4),
                decode_step_ms_mean=round(statistics.fmean(steps) * 1e3, 4),
                decode_tokens_per_s_per_seq=round(1.0 / step_s, 2),
                decode_tokens_per_s_total=round(B / step_s, 2),
                bytes_per_step=int(nbytes),
                achieved_gb_per_s=round(nbytes / step_s / 1e9, 1),
                fraction_of_bandwidth=round(nbytes / step_s / 1e9 / bw, 4),
                compiled=compiled,
                max_memory_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if dev.type == "cuda" else None,
                warmup_s=round(warm_s, 1),
                mean_context=mean_ctx,
            )
            if E:
                path = MoEFeedForward.decode_path(B, E, K)
                rec.update(
                    experts_counting="expectation E*(1-(1-K/E)^B) per layer",
                    experts_touched_per_layer=round(expected_experts(E, K, B), 3),
                    moe_decode_path=path + ("/" + MOE_GATHER if path == "gather" else ""),
                    # what this implementation actually streams: the dense path reads all E experts
                    bytes_per_step_read_by_impl=int(step_bytes(c, B, max_len, E if path == "dense" else None)),
                )
            else:
                rec["bytes_per_step_read_by_impl"] = int(step_bytes(c, B, max_len))
            out_h("torch B=%-3d prefill %9.0f tok/s | decode %8.3f ms/step %9.1f tok/s/seq %10.1f tok/s total"
                  " | %7.3f GB/step %7.1f GB/s = %5.1f%% of copy bw | mem %s GB | %s"
                  % (B, rec["prefill_tokens_per_s"], rec["decode_step_ms"], rec["decode_tokens_per_s_per_seq"],
                     rec["decode_tokens_per_s_total"], nbytes / 1e9, rec["achieved_gb_per_s"],
                     100 * rec["fraction_of_bandwidth"], rec["max_memory_gb"],
                     "compiled" if compiled else "eager"))
        except Exception as ex:
            if not is_oom(ex):
                raise
            rec.update(error="out of memory", compiled=compiled,
                       max_memory_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if dev.type == "cuda" else None)
            out_h("torch B=%-3d out of memory: %s" % (B, str(ex).splitlines()[0][:200]))
        finally:
            model.free_caches()
            if compiled:
                # drop this batch size's compiled graph and CUDA-graph pool (they hold the old
                # caches); the next batch size compiles its own static-shape graph anyway
                import torch._dynamo as dynamo
                dynamo.reset()
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        out_j(rec)


if __name__ == "__main__":
    main()
