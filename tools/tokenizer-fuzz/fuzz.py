"""Randomised cross-check of the Swift tokenizer against sentencepiece (not part of `swift test`).

Build the harness, then run (argument = seed):
    swiftc -O -wmo -module-name Fuzz Sources/Tokenizers/*.swift tools/tokenizer-fuzz/main.swift -o tools/tokenizer-fuzz/fuzz
    python3 tools/tokenizer-fuzz/fuzz.py 1 [MODEL ...]   (default: the fixture models)
For each model: 23000 random texts (encode ids + decode) and 5000 random id sequences
(decode and streaming detokenizer) must equal sentencepiece; prints the mismatch count.
"""
import json, random, subprocess, sys
import sentencepiece as spm
import os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D = os.path.join(ROOT, "Tests", "TokenizersTests", "Fixtures") + "/"
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")
rng=random.Random(int(sys.argv[1]) if len(sys.argv)>1 else 0)
alphabet = list("abcdefghij  \t\n▁<>[]/0xAF") + ["é","e\u0301","東","😀","👨‍👩‍👧","\u200d","\x00","[INST]","</s>","<0x41>","[REF]"," [REF]","\ufffd","ก่","\U0010ffff","\u3000","  "]
texts=[]
for _ in range(20000):
    n=rng.randint(0,30)
    texts.append("".join(rng.choice(alphabet) for _ in range(n)))
for _ in range(3000):
    n=rng.randint(1,30)
    texts.append("".join(chr(rng.choice([rng.randint(0x20,0x7e), rng.randint(0xa0,0x2fff), rng.randint(0x3000,0xd7ff), rng.randint(0xe000,0x10ffff)])) for _ in range(n)))
MODELS = sys.argv[2:] or ["tokenizer.model.v1","mistral_instruct_tokenizer_240323.model.v3","mistral_instruct_tokenizer_241114.model.v7","synthetic/extra_ws_unk.model","synthetic/nodummy_unused.model", "synthetic/rules.model"]
for name in MODELS:
    path = name if os.path.isabs(name) else D + name
    sp=spm.SentencePieceProcessor(model_file=path)
    n=sp.get_piece_size()
    byte_ids=[i for i in range(n) if sp.is_byte(i)] or list(range(n))
    seqs=[[rng.choice(byte_ids) if rng.random()<0.6 else rng.randrange(n) for _ in range(rng.randint(1,12))] for _ in range(5000)]
    inp="".join(json.dumps({"text":t})+"\n" for t in texts)+"".join(json.dumps({"ids":s})+"\n" for s in seqs)
    res=subprocess.run([HARNESS, path],input=inp.encode(),capture_output=True)
    lines=res.stdout.decode().split("\n")
    bad=0
    for t,l in zip(texts,lines):
        r=json.loads(l); ids=sp.encode(t)
        if r["ids"]!=ids or r["decode"]!=sp.decode(ids):
            bad+=1
            if bad<4: print("MISMATCH", name, repr(t), r, ids, repr(sp.decode(ids)))
    for s,l in zip(seqs,lines[len(texts):]):
        r=json.loads(l); d=sp.decode(s)
        if r["decode"]!=d or r["stream"]!=d:
            bad+=1
            if bad<4: print("MISMATCH decode", name, s, r, repr(d))
    print(name, "texts", len(texts), "seqs", len(seqs), "mismatches", bad, res.stderr.decode()[:300])
