#!/usr/bin/env python3
"""Writes the `detokenizer` fuzz target's seeds into tools/fuzz/corpus/detokenizer/: the id lists
of the v3 cases of Tests/TokenizersTests/Fixtures/decode.jsonl (ids from the reference tokenizers, including
byte-fallback runs that spell emoji), each as 2-byte little-endian ids, the target's input format."""
import hashlib, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus", "detokenizer")

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    seen = set()
    with open(os.path.join(ROOT, "Tests", "TokenizersTests", "Fixtures", "decode.jsonl")) as f:
        for line in f:
            case = json.loads(line)
            if case.get("tok") != "v3":   # the tokenizer the target loads
                continue
            ids = case.get("ids")
            if not ids or any(i >= 65536 for i in ids):
                continue
            blob = b"".join(struct.pack("<H", i) for i in ids)
            if blob in seen:
                continue
            seen.add(blob)
            with open(os.path.join(OUT, hashlib.sha1(blob).hexdigest()[:16] + ".ids"), "wb") as out:
                out.write(blob)
