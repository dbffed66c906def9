"""The OpenAI API of `mixtral-chat serve`, through the official `openai` client (and raw HTTP
where the client hides what is checked). The demo model's answers are known exactly (see
models/chloe-tiny/README.md), so greedy outputs are asserted as text."""
import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import API_KEY, MODEL, Server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city."}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city."}},
                   "required": ["city"]}}}


def ask(text):
    return [{"role": "user", "content": text}]


# ---- basics -------------------------------------------------------------------------------

def test_health_and_models(server):
    status, body, _ = server.request("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, _ = server.request("GET", "/v1/models")
    models = json.loads(body)
    assert status == 200 and [m["id"] for m in models["data"]] == [MODEL]


def test_models_via_client(client):
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("What is 47 plus 35?"), temperature=0)
    assert r.object == "chat.completion" and r.model == MODEL
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "47 + 35 = 82."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_system_prompt_and_list_content(client):
    messages = [{"role": "system", "content": "You are Chloe."},
                {"role": "user", "content": [{"type": "text", "text": "Capital of Peru?"}]}]
    r = client.chat.completions.create(model=MODEL, messages=messages, temperature=0)
    assert r.choices[0].message.content == "The capital of Peru is Lima."


def test_streaming_with_usage(client):
    full = client.chat.completions.create(model=MODEL, messages=ask("What is your name?"), temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask("What is your name?"), temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content == "My name is Chloe."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_wire_format(server):
    """The raw stream: `data: {...}` events separated by blank lines, ending with `data: [DONE]`."""
    status, body, headers = server.request("POST", "/v1/chat/completions", {
        "model": MODEL, "messages": ask("Hello!"), "temperature": 0, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = body.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for e in events[:-2]:
        assert e.startswith("data: ")
        assert json.loads(e[6:])["object"] == "chat.completion.chunk"


# ---- tools --------------------------------------------------------------------------------

def test_tool_call(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("What is the weather in Oslo?"), tools=[WEATHER, TIME],
                                       temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert len(call.id) == 9 and call.id.isalnum()


def test_tool_call_streamed_equals_non_streamed(client):
    kwargs = dict(model=MODEL, messages=ask("What time is it in Tokyo?"), tools=[WEATHER, TIME], temperature=0)
    full = client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    calls: dict[int, dict] = {}
    for c in chunks:
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            if d.id:
                entry["id"] = d.id
            if d.function and d.function.name:
                entry["name"] += d.function.name
            if d.function and d.function.arguments:
                entry["arguments"] += d.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert len(calls) == len(full) == 1
    assert calls[0]["name"] == full[0].function.name == "get_time"
    assert json.loads(calls[0]["arguments"]) == json.loads(full[0].function.arguments) == {"city": "Tokyo"}
    # The first delta of a call carries id, type and name; the arguments follow.
    first = next(d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or []))
    assert first.id and first.type == "function" and first.function.name == "get_time"


def test_tool_result_turn_with_openai_style_ids(client):
    """A client id that is not Mistral's 9 alphanumerics is mapped for the prompt (vLLM #9019)."""
    messages = ask("What is the weather in Oslo?") + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_8f2a1c9e4b7d", "type": "function",
                                                                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_8f2a1c9e4b7d", "name": "get_weather",
         "content": '{"temperature": 21, "condition": "sunny"}'},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], temperature=0)
    assert r.choices[0].message.content == "It is 21 degrees and sunny in Oslo."
    assert r.choices[0].finish_reason == "stop"


def test_tool_choice_none_and_named(client):
    none = client.chat.completions.create(model=MODEL, messages=ask("What is the weather in Oslo?"), tools=[WEATHER],
                                          tool_choice="none", temperature=0)
    assert not none.choices[0].message.tool_calls
    named = client.chat.completions.create(model=MODEL, messages=ask("What is the weather in Oslo?"), tools=[WEATHER, TIME],
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0)
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"


# ---- sampling -----------------------------------------------------------------------------

def test_stop(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("What is 47 plus 35?"), temperature=0, stop=["="])
    assert r.choices[0].message.content == "47 + 35 "
    assert r.choices[0].finish_reason == "stop"


def test_max_tokens_length(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("Hello!"), temperature=0, max_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2


def test_seed_reproducibility(client):
    kwargs = dict(model=MODEL, messages=ask("Tell me something."), temperature=1.0, max_tokens=24, seed=1234,
                  extra_body={"ignore_eos": True})
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b
    outs = {client.chat.completions.create(**{**kwargs, "seed": s}).choices[0].message.content for s in range(4)}
    assert len(outs) > 1, "different seeds should give different samples"


def test_n(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("Tell me something."), temperature=1.0, max_tokens=16,
                                       n=4, seed=7, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert len({c.message.content for c in r.choices}) > 1
    assert r.usage.completion_tokens == 4 * 16
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask("Hello!"), temperature=0, n=3, stream=True))
    texts = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i) for i in range(3)]
    assert texts[0] == texts[1] == texts[2] == "Hello! I am Chloe. How can I help you today?"


def test_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=ask("What is 47 plus 35?"), temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
    assert "".join(e.token for e in content).strip().startswith("47")
    streamed = [lp for c in client.chat.completions.create(model=MODEL, messages=ask("What is 47 plus 35?"), temperature=0,
                                                           logprobs=True, top_logprobs=3, stream=True)
                if c.choices and c.choices[0].logprobs for lp in c.choices[0].logprobs.content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-6)


# ---- /v1/completions ----------------------------------------------------------------------

def test_completions_with_token_ids(client):
    chat_ids = [1, 3]  # <s> [INST]
    # The prompt mistral-common makes for "What is your name?" is BOS [INST] text [/INST]; the
    # same ids through /v1/completions answer like the chat route.
    chat = client.chat.completions.create(model=MODEL, messages=ask("What is your name?"), temperature=0)
    from conftest import ROOT
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=str(ROOT / "models/chloe-tiny/tokenizer.model"))
    ids = chat_ids + sp.encode("What is your name?") + [4]
    r = client.completions.create(model=MODEL, prompt=ids, temperature=0, max_tokens=32)
    assert r.object == "text_completion"
    assert r.choices[0].text == chat.choices[0].message.content
    assert r.usage.prompt_tokens == len(ids) == chat.usage.prompt_tokens


def test_completions_text_stream_and_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="Hello", temperature=0, max_tokens=5, logprobs=2)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    assert len(r.choices[0].logprobs.tokens) == 5 and all(len(t) <= 2 for t in r.choices[0].logprobs.top_logprobs)
    text = "".join(c.choices[0].text for c in client.completions.create(model=MODEL, prompt="Hello", temperature=0,
                                                                        max_tokens=5, stream=True) if c.choices)
    assert text == r.choices[0].text


# ---- errors -------------------------------------------------------------------------------

def error_of(server, method, path, body=None, key="default"):
    status, raw, _ = server.request(method, path, body, key=key)
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return status, err


def test_401_on_every_route(server):
    for method, path in [("GET", "/health"), ("GET", "/v1/models"), ("GET", "/metrics"),
                         ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/nope")]:
        assert error_of(server, method, path, {}, key=None)[0] == 401
        assert error_of(server, method, path, {}, key="wrong")[0] == 401
    bad = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_404_route_and_model(server, client):
    status, err = error_of(server, "GET", "/v1/nothing")
    assert status == 404
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=ask("hi"))
    assert e.value.body["code"] == "model_not_found"


def test_400s(server, client):
    status, err = error_of(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and err["code"] == "invalid_json"
    for bad in [{"temperature": -1}, {"top_p": 2}, {"n": 9}, {"top_logprobs": 21, "logprobs": True},
                {"max_tokens": 0}, {"messages": [{"role": "wizard", "content": "x"}]}, {"messages": []},
                {"max_tokens": 100000}, {"tool_choice": "required"}]:
        body = {"model": MODEL, "messages": ask("hi"), **bad}
        status, err = error_of(server, "POST", "/v1/chat/completions", body)
        assert status == 400, bad
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ask("word " * 600))
    assert e.value.body["code"] == "context_length_exceeded"
    status, err = error_of(server, "POST", "/v1/completions", {"model": MODEL, "prompt": "a", "suffix": "b"})
    assert status == 400 and err["param"] == "suffix"
    status, err = error_of(server, "POST", "/v1/completions", {"model": MODEL, "prompt": [99999]})
    assert status == 400 and err["param"] == "prompt"


def test_413(server):
    status, err = error_of(server, "POST", "/v1/chat/completions", b'{"messages": "' + b"x" * 70000 + b'"}')
    assert status == 413 and err["code"] == "request_too_large"


def test_429_when_the_queue_is_full():
    s = Server("--max-batch-size", "1", "--max-queued", "1", "--max-seq-len", "4096")
    try:
        import openai as o
        c = o.OpenAI(base_url=s.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        # Long enough that the first two are still generating when the third arrives (the demo
        # model decodes thousands of tokens a second in a release build).
        long = dict(model=MODEL, messages=ask("Hello!"), max_tokens=3000, extra_body={"ignore_eos": True})
        running = c.chat.completions.create(stream=True, **long)
        next(iter(running))                      # admitted and generating
        waiting = c.chat.completions.create(stream=True, **long)
        time.sleep(0.3)                          # queued (nothing is admitted while the first runs)
        with pytest.raises(o.RateLimitError) as e:
            c.chat.completions.create(**long)
        assert e.value.body["code"] == "queue_full"
        running.close()
        waiting.close()
    finally:
        assert s.stop() == 0


def test_504_past_the_request_timeout():
    s = Server("--request-timeout", "0.3", "--max-seq-len", "4096")
    try:
        import openai as o
        c = o.OpenAI(base_url=s.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        quick = c.chat.completions.create(model=MODEL, messages=ask("Capital of Peru?"), temperature=0, max_tokens=8)
        assert quick.choices[0].finish_reason in ("stop", "length")
        with pytest.raises(o.InternalServerError) as e:
            c.chat.completions.create(model=MODEL, messages=ask("Hello!"), max_tokens=3500, extra_body={"ignore_eos": True})
        assert e.value.status_code == 504
        assert e.value.body["code"] == "request_timeout"
        # The engine is free again: the next request is served.
        again = c.chat.completions.create(model=MODEL, messages=ask("Capital of Peru?"), temperature=0, max_tokens=8)
        assert again.choices[0].message.content == quick.choices[0].message.content
    finally:
        assert s.stop() == 0


def test_bad_requests_do_not_affect_others(server, client):
    def good(_):
        return client.chat.completions.create(model=MODEL, messages=ask("Capital of Peru?"), temperature=0).choices[0].message.content

    def bad(_):
        return server.request("POST", "/v1/chat/completions", b'{"messages": [{"role": 3}]}')[0]

    with ThreadPoolExecutor(8) as pool:
        goods = list(pool.map(good, range(4)))
        bads = list(pool.map(bad, range(8)))
    assert goods == ["The capital of Peru is Lima."] * 4 and bads == [400] * 8
    assert server.request("GET", "/health")[0] == 200


# ---- load, cancellation, lifecycle --------------------------------------------------------

def test_32_concurrent_streams(client):
    def run(i):
        chunks = list(client.chat.completions.create(model=MODEL, messages=ask(f"What is {i} plus {i}?"), temperature=0,
                                                     stream=True))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(run, range(32)))
    assert answers == [f"{i} + {i} = {2 * i}." for i in range(32)]


def test_disconnect_cancels_the_sequence(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"model": MODEL, "messages": ask("Hello!"), "max_tokens": 480, "stream": True,
                       "extra": 1, "ignore_eos": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    # The headers may arrive in a packet of their own: read until the first event.
    sock.settimeout(30)
    received = b""
    while b"data: " not in received:
        part = sock.recv(4096)
        assert part, f"the server closed the stream before its first event: {received!r}"
        received += part
    sock.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        m = server.metrics()
        if m.get("mixtral_sequences_running") == 0 and m.get("mixtral_kv_blocks_used") == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the sequence kept running after the client went away: {m}")


def test_disconnect_cancels_a_non_streamed_request(server):
    """A client that gives up on a non-streamed request (timeout, killed) stops its generation:
    the answer nobody reads is counted as 499, and the sequence frees its slot and KV blocks."""
    cut = 'mixtral_http_requests_total{route="/v1/chat/completions",status="499"}'
    before = server.metrics().get(cut, 0)
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"model": MODEL, "messages": ask("Hello!"), "max_tokens": 480, "ignore_eos": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        m = server.metrics()
        if m.get(cut, 0) == before + 1 and m.get("mixtral_sequences_running") == 0 and m.get("mixtral_kv_blocks_used") == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the non-streamed request was not cut when its client went away: {m}")
    # A request whose client stays gets its answer as before (and the connection is not reused).
    status, raw, headers = server.request("POST", "/v1/chat/completions", {"model": MODEL, "messages": ask("Hello!"),
                                                                          "temperature": 0})
    assert status == 200 and json.loads(raw)["choices"][0]["finish_reason"] == "stop"
    assert headers.get("Connection", headers.get("connection")) == "close"


def test_metrics(server, client):
    client.chat.completions.create(model=MODEL, messages=ask("Hello!"), temperature=0)
    m = server.metrics()
    assert m['mixtral_http_requests_total{route="/v1/chat/completions",status="200"}'] >= 1
    assert m["mixtral_prompt_tokens_total"] > 0 and m["mixtral_generation_tokens_total"] > 0
    assert m["mixtral_time_to_first_token_seconds_count"] >= 1 and m["mixtral_inter_token_latency_seconds_count"] >= 1
    assert m["mixtral_kv_blocks_total"] > 0
    for name in ["mixtral_sequences_running", "mixtral_sequences_waiting", "mixtral_kv_blocks_used", "mixtral_kv_cache_usage_ratio"]:
        assert name in m
    # A prompt of several KV blocks, twice: the second time its full blocks come from the cache.
    long = ask("Tell me about the weather in Paris and in Oslo, please, in a few words. " * 4)
    client.chat.completions.create(model=MODEL, messages=long, temperature=0, max_tokens=4)
    before = server.metrics()["mixtral_prefix_cache_hits_tokens"]
    client.chat.completions.create(model=MODEL, messages=long, temperature=0, max_tokens=4)
    m = server.metrics()
    assert m["mixtral_prefix_cache_hits_tokens"] > before
    assert 0 < m["mixtral_prefix_cache_hit_ratio"] <= 1


def test_sigterm_finishes_running_requests():
    s = Server("--max-batch-size", "4")
    c = openai.OpenAI(base_url=s.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    stream = c.chat.completions.create(model=MODEL, messages=ask("Hello!"), max_tokens=200, stream=True,
                                       stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    it = iter(stream)
    next(it)
    s.proc.send_signal(signal.SIGTERM)
    rest = list(it)
    assert [ch.choices[0].finish_reason for ch in rest if ch.choices and ch.choices[0].finish_reason] == ["length"]
    assert rest[-1].usage.completion_tokens == 200
    assert s.proc.wait(60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2)


def test_readme_example(client):
    """The README's `serve` example, as written there."""
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    r = client.chat.completions.create(model="chloe-tiny", messages=messages, tools=[weather], temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    messages += [r.choices[0].message, {"role": "tool", "tool_call_id": call.id, "name": call.function.name,
                                        "content": '{"temperature": 21, "condition": "sunny"}'}]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model="chloe-tiny", messages=messages, tools=[weather], temperature=0, stream=True) if chunk.choices)
    assert text == "It is 21 degrees and sunny in Oslo."


def test_tensor_parallel_server_answers_as_one_rank(client):
    """`serve --tp 2` (the demo model split over two CPU ranks) gives the greedy answers, tool call
    and logprobs of the one-rank session server."""
    s = Server("--tp", "2", "--max-batch-size", "4")
    try:
        split = openai.OpenAI(base_url=s.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        weather = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
        for messages, tools in [(ask("Who are you?"), None), (ask("What is 3 plus 4?"), None),
                                ([{"role": "user", "content": "What is the weather in Oslo?"}], [weather])]:
            extra = {"tools": tools} if tools else {}
            a = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=40,
                                               logprobs=True, top_logprobs=2, **extra)
            b = split.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=40,
                                              logprobs=True, top_logprobs=2, **extra)
            assert b.choices[0].message.content == a.choices[0].message.content
            assert [(t.function.name, t.function.arguments) for t in b.choices[0].message.tool_calls or []] == \
                   [(t.function.name, t.function.arguments) for t in a.choices[0].message.tool_calls or []]
            if a.choices[0].logprobs and a.choices[0].logprobs.content:
                for x, y in zip(a.choices[0].logprobs.content, b.choices[0].logprobs.content):
                    assert x.token == y.token and abs(x.logprob - y.logprob) < 1e-3
    finally:
        assert s.stop() == 0
