#!/usr/bin/env python3
"""Writes the `chat` fuzz target's seeds into tools/fuzz/corpus/chat/: the request JSON of every
distinct case in Tests/ChatTests/Fixtures/chat_v3.jsonl (tools, tool calls, multi-turn, prefix)
plus a few tool-call outputs in the shapes the parser accepts (a list, one object, trailing text)."""
import hashlib, json, os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus", "chat")

TOOL_CALLS = [
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    '{"name": "f", "arguments": {}, "id": "abc123XYZ"}',
    '[{"name": "a", "arguments": {"x": [1, 2.5, null, true]}}, {"name": "b", "arguments": "{}"}] trailing',
]

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    seeds = set(TOOL_CALLS)
    with open(os.path.join(ROOT, "Tests", "ChatTests", "Fixtures", "chat_v3.jsonl")) as f:
        for line in f:
            seeds.add(json.loads(line)["request"])
    for s in sorted(seeds):
        b = s.encode()
        with open(os.path.join(OUT, hashlib.sha1(b).hexdigest()[:16] + ".json"), "wb") as out:
            out.write(b)
