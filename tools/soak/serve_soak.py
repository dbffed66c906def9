#!/usr/bin/env python3
"""Soak test of `mixtral-chat serve` (issue 18, point 5): the demo model (Chloe-tiny, CPU) under
N concurrent clients of the official `openai` package for --minutes.

Each client loops, picking at random: chat non-streaming or streaming, completions, a tool
request, a stream it abandons after a few chunks, a non-streaming request it abandons (client
timeout), or a bad request (malformed JSON, out-of-range fields, a prompt longer than the
context, unknown model, wrong key, oversized body, ...). Sampling parameters are random
(temperature, top_p, top_k, min_p, penalties, seed, max_tokens, n, logprobs, stop).

Checked, and the run fails if any is violated:
- every request gets exactly one answer: a complete response (n choices, each with one
  finish_reason; a stream with no content after a choice's finish and every choice finished),
  or an error status; no request times out or loses its connection unless the client cut it;
- a greedy request on a held-out prompt answers exactly PyTorch's greedy text
  (models/chloe-tiny/eval/torch_greedy.jsonl), streamed or not, cut by stop / max_tokens as asked:
  a token lost or sent twice under load changes the text;
- every bad request gets its 4xx status with OpenAI's error body;
- the server's own count of answers (`mixtral_http_requests_total`) equals the requests sent;
- after the load, no sequence is running and no KV block is held;
- the server's VmRSS stays within 5% after the warm-up; SIGTERM exits 0.

Usage: tools/soak/serve_soak.py [--minutes 30] [--clients 64] [--bin .build/release/mixtral-chat]
"""
import argparse
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai

from soaklib import DEFAULT_BIN, ROOT, RSSSampler, Tally, heldout_prompts

API_KEY = "soak-key"
MODEL = "chloe-tiny"
MAX_SEQ_LEN = 1024
MAX_BODY = 65536
FINISH_REASONS = {"stop", "length", "tool_calls"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw(base: str, method: str, path: str, body: bytes | None, key: str | None = API_KEY,
        timeout: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, data=body, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics(base: str) -> dict[str, float]:
    _, body = raw(base, "GET", "/metrics", None)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


# ---- bad requests: (name, route, body bytes or dict, key, expected status) ---------------------

def bad_requests() -> list[tuple[str, str, object, str | None, int]]:
    ask = [{"role": "user", "content": "What is 2 plus 3?"}]
    chat = "/v1/chat/completions"
    base = {"model": MODEL, "messages": ask}
    return [
        ("malformed_json", chat, b'{"model": "chloe-tiny", "messages": [', API_KEY, 400),
        ("body_not_object", chat, b"[1, 2, 3]", API_KEY, 400),
        ("messages_wrong_type", chat, {"model": MODEL, "messages": "hello"}, API_KEY, 400),
        ("messages_empty", chat, {**base, "messages": []}, API_KEY, 400),
        ("unknown_role", chat, {**base, "messages": [{"role": "wizard", "content": "x"}]}, API_KEY, 400),
        ("temperature_negative", chat, {**base, "temperature": -1}, API_KEY, 400),
        ("top_p_over_1", chat, {**base, "top_p": 2}, API_KEY, 400),
        ("n_too_large", chat, {**base, "n": 9}, API_KEY, 400),
        ("top_logprobs_too_large", chat, {**base, "logprobs": True, "top_logprobs": 21}, API_KEY, 400),
        ("max_tokens_zero", chat, {**base, "max_tokens": 0}, API_KEY, 400),
        ("max_tokens_over_context", chat, {**base, "max_tokens": 100000}, API_KEY, 400),
        ("too_many_stops", chat, {**base, "stop": [f"s{i}" for i in range(17)]}, API_KEY, 400),
        ("response_format_json", chat, {**base, "response_format": {"type": "json_object"}}, API_KEY, 400),
        ("prompt_too_long", chat, {**base, "messages": [{"role": "user", "content": "word " * (MAX_SEQ_LEN + 200)}]},
         API_KEY, 400),
        ("unknown_model", chat, {**base, "model": "gpt-4"}, API_KEY, 404),
        ("wrong_api_key", chat, base, "wrong-key", 401),
        ("body_too_large", chat, b'{"messages": "' + b"x" * (MAX_BODY + 1000) + b'"}', API_KEY, 413),
        ("completion_bad_token_id", "/v1/completions", {"model": MODEL, "prompt": [1, 99999]}, API_KEY, 400),
        ("completion_suffix", "/v1/completions", {"model": MODEL, "prompt": "a", "suffix": "b"}, API_KEY, 400),
        ("completion_prompt_too_long", "/v1/completions", {"model": MODEL, "prompt": list(range(10, 10 + MAX_SEQ_LEN + 5))},
         API_KEY, 400),
    ]


class Soak:
    def __init__(self, args):
        self.args = args
        self.tally = Tally()
        self.prompts = heldout_prompts()
        self.bad = bad_requests()
        self.deadline = 0.0
        self.sent = {"/v1/chat/completions": 0, "/v1/completions": 0}
        self.sent_lock = threading.Lock()
        self.seeded: dict[str, str] = {}
        self.seeded_lock = threading.Lock()

    # ---- server ---------------------------------------------------------------------------
    def start_server(self):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [self.args.bin, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
               "--max-seq-len", str(MAX_SEQ_LEN), "--max-batch-size", str(self.args.max_batch_size),
               "--max-queued", str(self.args.max_queued), "--max-body-bytes", str(MAX_BODY),
               "--api-key", API_KEY, "--log-level", "warning"]
        print("server:", " ".join(cmd), flush=True)
        self.log = open(self.args.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"serve exited with {self.proc.returncode} before it was ready (log {self.args.log})")
            try:
                if raw(self.base, "GET", "/health", None, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("serve was not ready in 300 s")

    def count_sent(self, route: str):
        with self.sent_lock:
            self.sent[route] += 1

    # ---- one client -----------------------------------------------------------------------
    def client_loop(self, index: int):
        rng = random.Random(self.args.seed * 1000 + index)
        client = openai.OpenAI(base_url=self.base + "/v1", api_key=API_KEY, max_retries=0, timeout=600)
        kinds = [("chat", 26), ("chat_stream", 26), ("completion", 8), ("tools", 10), ("abandon_stream", 10),
                 ("abandon_request", 4), ("bad", 16)]
        names, weights = zip(*kinds)
        while time.time() < self.deadline:
            kind = rng.choices(names, weights)[0]
            try:
                getattr(self, "do_" + kind)(rng, client)
            except openai.RateLimitError as e:
                # --max-queued reached: a clear refusal is one answer, not a loss.
                self.tally.add("answered_429_queue_full")
                if (e.body or {}).get("code") != "queue_full":
                    self.tally.fail(f"{kind}: 429 without code queue_full: {e.body}")
            except Exception as e:  # noqa: BLE001 — any other exception is a lost answer
                self.tally.fail(f"{kind}: {type(e).__name__}: {e}")

    def sampling(self, rng: random.Random, greedy: bool) -> dict:
        """Random sampling fields; greedy requests keep only those that leave the argmax alone."""
        out: dict = {}
        extra: dict = {}
        if greedy:
            out["temperature"] = 0
        elif rng.random() < 0.3:
            # A small set of seeded requests, so that the same one recurs and must answer the same.
            out.update(temperature=rng.choice([0.7, 1.0]), top_p=rng.choice([0.9, 1.0]), seed=rng.randrange(4),
                       n=rng.choice([1, 2]), max_tokens=32)
            return out
        else:
            out["temperature"] = rng.choice([0.3, 0.7, 1.0, 1.5])
            if rng.random() < 0.5:
                out["top_p"] = rng.choice([0.5, 0.9, 1.0])
            if rng.random() < 0.5:
                extra["top_k"] = rng.choice([-1, 1, 5, 40])
            if rng.random() < 0.2:
                extra["min_p"] = rng.choice([0.05, 0.2])
            if rng.random() < 0.2:
                out["presence_penalty"] = rng.choice([-0.5, 0.5, 1.5])
            if rng.random() < 0.2:
                out["frequency_penalty"] = rng.choice([0.5, 1.0])
            if rng.random() < 0.1:
                extra["repetition_penalty"] = 1.2
            if rng.random() < 0.6:
                out["seed"] = rng.randrange(1 << 31)
            out["n"] = rng.choice([1, 1, 1, 2, 3])
        if rng.random() < 0.3:
            out["logprobs"] = True
            out["top_logprobs"] = rng.choice([0, 1, 5])
        if extra:
            out["extra_body"] = extra
        return out

    def pick_prompt(self, rng: random.Random, tools: bool | None = None) -> dict:
        while True:
            p = rng.choice(self.prompts)
            if tools is None or ("tools" in p["request"]) == tools:
                return p

    def expected_greedy(self, p: dict, max_tokens: int | None, stop: list[str] | None) -> tuple[str, str] | None:
        """(text, finish_reason) greedy decoding must give, or None when it cannot be told exactly."""
        if p["greedy_tool_call"]:
            return None
        text = p["greedy_text"]
        if max_tokens is not None and max_tokens < p["greedy_tokens"]:
            return None  # a token prefix: checked only as a string prefix
        cuts = [text.find(s) for s in (stop or []) if s in text]
        if cuts:
            return text[:min(cuts)], "stop"
        return text, "stop"

    def check_greedy(self, kind: str, p: dict, texts: list[str], finishes: list[str], max_tokens, stop):
        want = self.expected_greedy(p, max_tokens, stop)
        if want is None:
            if not p["greedy_tool_call"] and max_tokens is not None:
                for t in texts:
                    if not p["greedy_text"].startswith(t):
                        self.tally.fail(f"{kind}: greedy prompt {p['id']} cut at {max_tokens} tokens gave {t!r}, "
                                        f"not a prefix of {p['greedy_text']!r}")
            return
        for t, f in zip(texts, finishes):
            if (t, f) != want:
                self.tally.fail(f"{kind}: greedy prompt {p['id']} (stop {stop}) gave {(t, f)!r}, PyTorch {want!r}")
                return
        self.tally.add("greedy_checked_equal_to_pytorch")

    def check_seeded(self, key: str, texts: list[str]):
        """Same request and seed twice must give the same choices (doc: `seed` reproducibility)."""
        with self.seeded_lock:
            joined = json.dumps(texts)
            if key in self.seeded:
                self.tally.add("seeded_repeats")
                if self.seeded[key] != joined:
                    self.tally.fail(f"seeded request repeated with a different answer: {key[:200]}")
            elif len(self.seeded) < 5000:
                self.seeded[key] = joined

    def request_fields(self, rng: random.Random, p: dict) -> tuple[dict, bool, dict]:
        """(fields, greedy, prompt): the prompt is p, or for a seeded template one of three."""
        greedy = rng.random() < 0.4
        fields = self.sampling(rng, greedy)
        if "max_tokens" in fields:
            # A seeded template, kept as it is, on one of three prompts (so that repeats happen).
            return fields, greedy, self.prompts[[0, 3, 30][rng.randrange(3)]]
        if rng.random() < 0.6:
            fields["max_tokens"] = rng.choice([1, 4, 16, 64, 200])
        if rng.random() < 0.2:
            fields["stop"] = rng.sample([".", "is", " the", "\n", "Chloe", "!"], rng.choice([1, 2]))
        return fields, greedy, p

    def seeded_key(self, route, p, fields) -> str | None:
        if "seed" not in fields:
            return None
        return json.dumps([route, p["id"], fields], sort_keys=True, default=str)

    def validate_message_choices(self, kind: str, r, n: int, max_tokens, logprobs: bool) -> tuple[list[str], list[str]]:
        indices = sorted(c.index for c in r.choices)
        if indices != list(range(n)):
            self.tally.fail(f"{kind}: choice indices {indices}, want 0..{n - 1}")
        texts, finishes = [], []
        for c in sorted(r.choices, key=lambda c: c.index):
            if c.finish_reason not in FINISH_REASONS:
                self.tally.fail(f"{kind}: finish_reason {c.finish_reason!r}")
            if logprobs and (c.logprobs is None or c.logprobs.content is None):
                self.tally.fail(f"{kind}: logprobs asked for, none in the answer")
            texts.append(c.message.content or "")
            finishes.append(c.finish_reason)
        if max_tokens is not None and r.usage.completion_tokens > max_tokens * n:
            self.tally.fail(f"{kind}: {r.usage.completion_tokens} completion tokens over max_tokens {max_tokens} x n {n}")
        return texts, finishes

    # ---- request kinds --------------------------------------------------------------------
    def do_chat(self, rng, client):
        p = self.pick_prompt(rng, tools=False)
        fields, greedy, p = self.request_fields(rng, p)
        self.count_sent("/v1/chat/completions")
        r = client.chat.completions.create(model=MODEL, messages=p["request"]["messages"], **fields)
        n = fields.get("n", 1)
        texts, finishes = self.validate_message_choices("chat", r, n, fields.get("max_tokens"), fields.get("logprobs", False))
        self.tally.add("chat_ok")
        if greedy:
            self.check_greedy("chat", p, texts, finishes, fields.get("max_tokens"), fields.get("stop"))
        elif key := self.seeded_key("chat", p, fields):
            self.check_seeded(key, texts)

    def read_stream(self, kind: str, stream, n: int, usage: bool) -> tuple[list[str], list[str]]:
        texts = [""] * n
        finishes: list[str | None] = [None] * n
        saw_role = [False] * n
        usage_chunks = 0
        for chunk in stream:
            if not chunk.choices:
                usage_chunks += 1
                continue
            for c in chunk.choices:
                if not 0 <= c.index < n:
                    self.tally.fail(f"{kind}: chunk for choice {c.index} of n={n}")
                    continue
                if finishes[c.index] is not None:
                    self.tally.fail(f"{kind}: chunk for choice {c.index} after its finish_reason (duplicate)")
                if c.delta.role == "assistant":
                    saw_role[c.index] = True
                texts[c.index] += c.delta.content or ""
                for call in c.delta.tool_calls or []:
                    texts[c.index] += f"<call {call.function.name if call.function else None}>"
                if c.finish_reason is not None:
                    finishes[c.index] = c.finish_reason
        for i in range(n):
            if finishes[i] not in FINISH_REASONS:
                self.tally.fail(f"{kind}: choice {i} ended without a finish_reason ({finishes[i]!r}): lost")
            if not saw_role[i] and kind.startswith("chat"):
                self.tally.fail(f"{kind}: choice {i} had no role chunk")
        if usage and usage_chunks != 1:
            self.tally.fail(f"{kind}: {usage_chunks} usage chunks, want 1")
        return texts, finishes

    def do_chat_stream(self, rng, client):
        p = self.pick_prompt(rng, tools=False)
        fields, greedy, p = self.request_fields(rng, p)
        n = fields.get("n", 1)
        usage = rng.random() < 0.5
        if usage:
            fields["stream_options"] = {"include_usage": True}
        self.count_sent("/v1/chat/completions")
        stream = client.chat.completions.create(model=MODEL, messages=p["request"]["messages"], stream=True, **fields)
        texts, finishes = self.read_stream("chat_stream", stream, n, usage)
        self.tally.add("chat_stream_ok")
        if greedy:
            self.check_greedy("chat_stream", p, texts, finishes, fields.get("max_tokens"), fields.get("stop"))
        elif key := self.seeded_key("chat", p, {k: v for k, v in fields.items() if k != "stream_options"}):
            # A stream and a non-streamed request with the same seed must agree too.
            self.check_seeded(key, texts)

    def do_completion(self, rng, client):
        p = self.pick_prompt(rng)
        fields, _, p = self.request_fields(rng, p)
        fields.pop("top_logprobs", None)
        if fields.pop("logprobs", False):
            fields["logprobs"] = rng.choice([0, 1, 5])
        fields.setdefault("max_tokens", 32)
        prompt = rng.choice([p["request"]["messages"][-1]["content"] or "Hello",
                             [1, 3] + [rng.randrange(10, 2560) for _ in range(rng.randrange(1, 40))] + [4]])
        stream = rng.random() < 0.5
        n = fields.get("n", 1)
        self.count_sent("/v1/completions")
        if stream:
            chunks = list(client.completions.create(model=MODEL, prompt=prompt, stream=True, **fields))
            finishes: list = [None] * n
            for ch in chunks:
                for c in ch.choices:
                    if finishes[c.index] is not None:
                        self.tally.fail("completion_stream: chunk after finish_reason")
                    if c.finish_reason:
                        finishes[c.index] = c.finish_reason
            if any(f not in FINISH_REASONS for f in finishes):
                self.tally.fail(f"completion_stream: unfinished choices {finishes}")
        else:
            r = client.completions.create(model=MODEL, prompt=prompt, **fields)
            if sorted(c.index for c in r.choices) != list(range(n)) or any(c.finish_reason not in FINISH_REASONS for c in r.choices):
                self.tally.fail(f"completion: bad choices {[(c.index, c.finish_reason) for c in r.choices]}")
        self.tally.add("completion_ok")

    def do_tools(self, rng, client):
        p = self.pick_prompt(rng, tools=True)
        req = p["request"]
        greedy = rng.random() < 0.5
        fields = self.sampling(rng, greedy)
        fields.pop("n", None)
        stream = rng.random() < 0.5
        self.count_sent("/v1/chat/completions")
        if stream:
            chunks = list(client.chat.completions.create(model=MODEL, messages=req["messages"], tools=req["tools"],
                                                         stream=True, **fields))
            calls: dict[int, dict] = {}
            finish = None
            for ch in chunks:
                for c in ch.choices:
                    if finish is not None:
                        self.tally.fail("tools_stream: chunk after finish_reason")
                    for d in c.delta.tool_calls or []:
                        call = calls.setdefault(d.index, {"name": None, "arguments": ""})
                        if d.function and d.function.name:
                            if call["name"] is not None:
                                self.tally.fail("tools_stream: a call's name sent twice")
                            call["name"] = d.function.name
                        if d.function and d.function.arguments:
                            call["arguments"] += d.function.arguments
                    finish = c.finish_reason or finish
            arguments = [c["arguments"] for c in calls.values()]
        else:
            r = client.chat.completions.create(model=MODEL, messages=req["messages"], tools=req["tools"], **fields)
            finish = r.choices[0].finish_reason
            arguments = [c.function.arguments for c in r.choices[0].message.tool_calls or []]
        if finish not in FINISH_REASONS:
            self.tally.fail(f"tools: finish_reason {finish!r}")
        if finish == "tool_calls" and not arguments:
            self.tally.fail("tools: finish_reason tool_calls without calls")
        for a in arguments:
            try:
                json.loads(a)
            except ValueError:
                self.tally.fail(f"tools: call arguments not JSON: {a!r}")
        if greedy and p["greedy_tool_call"] and finish != "tool_calls":
            self.tally.fail(f"tools: greedy prompt {p['id']} should call a tool (PyTorch does), finish {finish}")
        self.tally.add("tools_ok" + ("_called" if arguments else "_answered"))

    def do_abandon_stream(self, rng, client):
        """Reads a few chunks of a long stream, then closes the connection mid-stream."""
        p = self.pick_prompt(rng, tools=False)
        self.count_sent("/v1/chat/completions")
        stream = client.chat.completions.create(model=MODEL, messages=p["request"]["messages"], stream=True,
                                                max_tokens=rng.choice([200, 500]), n=rng.choice([1, 2]),
                                                temperature=rng.choice([0, 1.0]), extra_body={"ignore_eos": True})
        keep = rng.randrange(1, 8)
        for i, _ in enumerate(stream):
            if i + 1 >= keep:
                break
        stream.close()
        self.tally.add("cancelled_streams")

    def do_abandon_request(self, rng, client):
        """A non-streaming request whose client gives up (times out) while it generates."""
        p = self.pick_prompt(rng, tools=False)
        self.count_sent("/v1/chat/completions")
        try:
            client.with_options(timeout=rng.choice([0.05, 0.2, 0.5])).chat.completions.create(
                model=MODEL, messages=p["request"]["messages"], max_tokens=800, extra_body={"ignore_eos": True})
            self.tally.add("cancelled_requests_finished_first")
        except openai.APITimeoutError:
            self.tally.add("cancelled_requests")

    def do_bad(self, rng, client):
        name, route, body, key, want = rng.choice(self.bad)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if route in self.sent:
            self.count_sent(route)
        status, reply = raw(self.base, "POST", route, data, key=key)
        self.tally.add(f"bad_{name}_{status}")
        if status != want:
            self.tally.fail(f"bad request {name}: status {status}, want {want}: {reply[:200]!r}")
            return
        try:
            err = json.loads(reply)["error"]
            assert set(err) == {"message", "type", "param", "code"}
        except Exception:  # noqa: BLE001
            self.tally.fail(f"bad request {name}: error body not OpenAI's shape: {reply[:200]!r}")

    # ---- the run --------------------------------------------------------------------------
    def run(self) -> int:
        self.start_server()
        rss = RSSSampler(self.proc.pid, interval=self.args.rss_interval)
        rss.start()
        started = time.time()
        self.deadline = started + self.args.minutes * 60
        threads = [threading.Thread(target=self.client_loop, args=(i,), daemon=True) for i in range(self.args.clients)]
        for t in threads:
            t.start()
        next_print = started + 60
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if time.time() >= next_print:
                next_print += 60
                m = metrics(self.base)
                answers = sum(v for k, v in m.items() if k.startswith("mixtral_http_requests_total"))
                rss_mb = rss.samples[-1][1] / 1024 if rss.samples else 0
                print(f"[{(time.time() - started) / 60:5.1f} min] answers {answers:.0f}, "
                      f"tokens {m.get('mixtral_generation_tokens_total', 0):.0f}, running {m.get('mixtral_sequences_running')}, "
                      f"waiting {m.get('mixtral_sequences_waiting')}, preemptions {m.get('mixtral_preemptions')}, "
                      f"RSS {rss_mb:.1f} MB, failures {self.tally.counts['FAIL']}", flush=True)
        elapsed = time.time() - started
        # Quiesce: abandoned sequences must be gone and their KV blocks free.
        deadline = time.time() + 60
        while True:
            m = metrics(self.base)
            if m.get("mixtral_sequences_running") == 0 and m.get("mixtral_sequences_waiting") == 0 \
                    and m.get("mixtral_kv_blocks_used") == 0:
                break
            if time.time() > deadline:
                self.tally.fail(f"after the load: running {m.get('mixtral_sequences_running')}, "
                                f"waiting {m.get('mixtral_sequences_waiting')}, KV blocks {m.get('mixtral_kv_blocks_used')}")
                break
            time.sleep(0.5)
        time.sleep(1.5 * self.args.rss_interval)  # one more RSS sample at rest
        rss.stop()
        statuses = {k.split("{", 1)[1].rstrip("}"): int(v) for k, v in m.items() if k.startswith("mixtral_http_requests_total{")}
        print("server's answers by route and status:", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        for route, sent in self.sent.items():
            answered = sum(v for k, v in m.items() if k.startswith("mixtral_http_requests_total") and f'route="{route}"' in k)
            print(f"{route}: sent {sent}, server answered {answered:.0f}")
            if answered != sent:
                self.tally.fail(f"{route}: the server counted {answered:.0f} answers for {sent} requests")
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        if code != 0:
            self.tally.fail(f"serve exited {code} after SIGTERM")
        warmup = min(300.0, elapsed / 6)
        rss_ok, rss_lines = rss.report(warmup)
        if not rss_ok:
            self.tally.fail("RSS not flat within 5% after warm-up")
        total = sum(self.sent.values())  # every request goes to one of the two generation routes
        print(f"\n== serve soak: {self.args.clients} clients, {elapsed / 60:.1f} min, seed {self.args.seed}")
        print(f"requests {total} ({total / elapsed:.1f}/s), generated tokens {m.get('mixtral_generation_tokens_total', 0):.0f} "
              f"({m.get('mixtral_generation_tokens_total', 0) / elapsed:.0f}/s), preemptions {m.get('mixtral_preemptions')}, "
              f"engine steps {m.get('mixtral_engine_steps')}, failed steps {m.get('mixtral_failed_steps')}")
        return self.tally.verdict("serve soak", rss_lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--max-queued", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rss-interval", type=float, default=10)
    ap.add_argument("--log", default=str(ROOT / ".build/serve-soak.log"))
    sys.exit(Soak(ap.parse_args()).run())


if __name__ == "__main__":
    main()
