"""Summarise a greedy run: per-skill accuracy and readable transcripts (for the model card).

Usage: python3 transcripts.py heldout.jsonl torch_greedy.jsonl [--ids 3,50,...]
Re-scores torch_greedy.jsonl with the same rules as train.py (the ones the Swift eval uses)
and checks that each record's prompt_tokens are the held-out prompt's.
"""

from __future__ import annotations

import argparse
import json


def render(req: dict, reply: dict) -> str:
    lines = []
    if req.get("tools"):
        names = ", ".join(t["function"]["name"] for t in req["tools"])
        lines.append(f"(tools offered: {names})")
    for m in req["messages"]:
        if m["role"] == "user":
            lines.append(f"user:      {m['content']}")
        elif m["role"] == "assistant" and m.get("tool_calls"):
            c = m["tool_calls"][0]
            lines.append(f"assistant: [TOOL_CALLS] {c['function']['name']}({c['function']['arguments']}) id={c['id']}")
        elif m["role"] == "assistant":
            lines.append(f"assistant: {m['content']}")
        elif m["role"] == "tool":
            lines.append(f"tool:      {m['content']}")
    prefix = "[TOOL_CALLS] " if reply["tool_call"] else ""
    lines.append(f"Chloe:     {prefix}{reply['text']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("heldout")
    ap.add_argument("greedy")
    ap.add_argument("--ids", default="")
    a = ap.parse_args()
    held = {r["id"]: r for r in map(json.loads, open(a.heldout))}
    greedy = [json.loads(line) for line in open(a.greedy)]
    per: dict[str, list[int]] = {}
    for g in greedy:
        h = held[g["id"]]
        assert g["prompt_tokens"] == h["prompt_tokens"], g["id"]
        per.setdefault(g["skill"], []).append(int(g["correct"]))
    print("| skill | correct | accuracy |\n| --- | --- | --- |")
    for k, v in per.items():
        print(f"| {k} | {sum(v)}/{len(v)} | {100.0 * sum(v) / len(v):.1f}% |")
    tot = [x for v in per.values() for x in v]
    print(f"| all | {sum(tot)}/{len(tot)} | {100.0 * sum(tot) / len(tot):.1f}% |")
    print(f"\nsmallest top-1/top-2 logit gap: {min(g['min_margin'] for g in greedy)}")
    wrong = [g for g in greedy if not g["correct"]]
    for g in wrong:
        print(f"\nWRONG id {g['id']} ({g['skill']}): expected {held[g['id']]['expected']}\n"
              + render(held[g["id"]]["request"], g))
    ids = [int(x) for x in a.ids.split(",") if x]
    for g in greedy:
        if g["id"] in ids:
            print("\n```\n" + render(held[g["id"]]["request"], g) + "\n```")


if __name__ == "__main__":
    main()
