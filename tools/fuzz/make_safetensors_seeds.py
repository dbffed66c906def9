#!/usr/bin/env python3
"""Writes small, valid safetensors seed files for the `safetensors` fuzz target into
tools/fuzz/corpus/safetensors/. The repository's checkpoint fixtures are ~90 KB, mostly tensor
bytes the header parser never reads; these seeds keep the header shapes (several dtypes, empty
tensors, __metadata__, an unsupported dtype) with a few bytes of data so libFuzzer mutates the
part that matters. Format: 8-byte little-endian header length, JSON header, data."""
import json, os, struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")


def safetensors(entries, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, size in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += bytes(range(size % 256)) + b"\0" * (size - size % 256)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


SEEDS = {
    "bf16_pair": safetensors([("a.weight", "BF16", [2, 3], 12), ("b", "BF16", [3], 6)]),
    "f32_f16_meta": safetensors([("x", "F32", [2], 8), ("y", "F16", [1, 2], 4)], {"format": "pt"}),
    "empty_and_scalar": safetensors([("e", "F32", [0, 4], 0), ("s", "BF16", [], 2)]),
    "unsupported_dtype": safetensors([("q", "F8_E4M3", [4], 4), ("i", "I64", [1], 8)]),
    "empty_header": safetensors([]),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, blob in SEEDS.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
