#!/usr/bin/env python3
"""Load benchmark for `mixtral-chat serve`: many concurrent streaming clients.

Each request is a streaming POST /v1/completions with a prompt of random token ids, generating
exactly --gen-len tokens (ignore_eos), the same workload as `mixtral-chat bench --serve`
(random-token prompts of --prompt-len, --gen-len tokens each, the same sampling), so the two
numbers can be put side by side. The client is asyncio on raw HTTP/1.1 sockets (no HTTP library
in the measured path); it parses the chunked SSE stream and timestamps every token event.

Reports per concurrency level: requests/s, output tokens/s (end to end, and steady state while
every slot is streaming, as bench --serve defines it), time to first token and inter-token
latency p50/p99, and errors (non-200 statuses, broken streams, wrong token counts).

  python3 tools/bench/http_load.py --url http://127.0.0.1:8000 --concurrency 1,16,64 --requests 128 \
      --prompt-len 64 --gen-len 64 [--api-key KEY] [--json]
"""
import argparse
import asyncio
import json
import random
import sys
import time
import urllib.parse
import urllib.request


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


async def one_request(host, port, path, headers, body, gen_len, t0):
    """Returns (submitted, [token times], error or None), times in seconds from t0."""
    submitted = time.perf_counter() - t0
    times = []
    try:
        reader, writer = await asyncio.open_connection(host, port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if status != 200:
            writer.close()
            return submitted, times, f"status {status}"
        buffer = b""
        done = False
        while not done:
            if chunked:
                size_line = await reader.readline()
                if not size_line:
                    break
                size = int(size_line.strip().split(b";")[0], 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)
                buffer += data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                payload = event[6:]
                if payload == b"[DONE]":
                    done = True
                    break
                now = time.perf_counter() - t0
                obj = json.loads(payload)
                if "error" in obj:
                    writer.close()
                    return submitted, times, obj["error"].get("message", "error event")
                for choice in obj.get("choices", []):
                    if choice.get("finish_reason") is None:
                        times.append(now)
        writer.close()
        if not done:
            return submitted, times, "stream ended without [DONE]"
        # Each token is one chunk unless its text was held back (incomplete UTF-8 or a possible
        # stop string); count from usage would be exact, but chunks are what a client sees.
        if len(times) > gen_len:
            return submitted, times, f"{len(times)} token events for {gen_len} tokens"
        return submitted, times, None
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        return submitted, times, f"{type(e).__name__}: {e}"


async def level(args, concurrency):
    url = urllib.parse.urlparse(args.url)
    host, port = url.hostname, url.port or 80
    headers = f"Authorization: Bearer {args.api_key}\r\n" if args.api_key else ""
    rng = random.Random(args.seed)
    bodies = []
    for _ in range(args.requests):
        prompt = [3 + rng.randrange(args.vocab_size - 3) for _ in range(args.prompt_len)]
        bodies.append(json.dumps({
            "model": args.model, "prompt": prompt, "max_tokens": args.gen_len, "stream": True,
            "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "ignore_eos": True,
        }).encode())
    t0 = time.perf_counter()
    results = []
    queue = list(enumerate(bodies))

    async def worker():
        while queue:
            _, body = queue.pop(0)
            results.append(await one_request(host, port, "/v1/completions", headers, body, args.gen_len, t0))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, args.requests))))
    wall = time.perf_counter() - t0
    errors = [r[2] for r in results if r[2]]
    ok = [r for r in results if not r[2]]
    ttft = [(r[1][0] - r[0]) * 1e3 for r in ok if r[1]]
    itl = [(b - a) * 1e3 for r in ok for a, b in zip(r[1], r[1][1:])]
    tokens = sum(len(r[1]) for r in results)
    # Steady state: from the moment the first `concurrency` requests all stream to the first finish.
    firsts = sorted(r[1][0] for r in results[:concurrency] if r[1])
    lasts = sorted(r[1][-1] for r in results if r[1])
    steady = None
    if len(firsts) == min(concurrency, args.requests) and lasts and lasts[0] > firsts[-1]:
        lo, hi = firsts[-1], lasts[0]
        n = sum(1 for r in results for t in r[1] if lo < t <= hi)
        steady = n / (hi - lo)
    return {
        "concurrency": concurrency, "requests": args.requests, "errors": len(errors),
        "error_samples": errors[:3], "wall_s": wall, "requests_per_s": len(ok) / wall,
        "output_tokens": tokens, "output_tokens_per_s": tokens / wall, "steady_tokens_per_s": steady,
        "ttft_p50_ms": percentile(ttft, 50), "ttft_p99_ms": percentile(ttft, 99),
        "itl_p50_ms": percentile(itl, 50), "itl_p99_ms": percentile(itl, 99),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key")
    p.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--requests", type=int, default=None, help="per level (default: 2 × concurrency)")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=None, help="token ids are drawn from 3..<V (default: the model's)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    req = urllib.request.Request(args.url + "/v1/models",
                                 headers={"Authorization": f"Bearer {args.api_key}"} if args.api_key else {})
    with urllib.request.urlopen(req) as r:
        models = json.load(r)["data"]
    args.model = args.model or models[0]["id"]
    if args.vocab_size is None:
        args.vocab_size = 2560 if args.model == "chloe-tiny" else 32000
    per_level = args.requests
    for c in [int(x) for x in args.concurrency.split(",")]:
        args.requests = per_level or 2 * c
        r = asyncio.run(level(args, c))
        if args.json:
            print(json.dumps(r))
        else:
            print(f"http  {r['requests']} requests, {c} at a time, prompt {args.prompt_len}, {args.gen_len} tokens each | "
                  f"{r['errors']} errors {r['error_samples'] or ''}")
            steady = r["steady_tokens_per_s"]
            print(f"      {r['requests_per_s']:.2f} req/s, {r['output_tokens_per_s']:.1f} tok/s end to end, "
                  f"{steady if steady is None else round(steady, 1)} tok/s steady | TTFT p50 {r['ttft_p50_ms']:.1f} ms "
                  f"p99 {r['ttft_p99_ms']:.1f} ms | ITL p50 {r['itl_p50_ms']:.2f} ms p99 {r['itl_p99_ms']:.2f} ms")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
