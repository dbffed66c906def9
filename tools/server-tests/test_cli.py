"""The CLI's measuring commands as the README shows them, on the CPU with tiny shapes: `bench --tp`
(per-rank bytes and the all-reduce time) and `compare-quantization --preset` (random real-shape
layers). Run with the server suite (same binary, $MIXTRAL_CHAT_BIN)."""
import json
import subprocess

from conftest import BIN


def json_lines(*args: str) -> list[dict]:
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_bench_tp_reports_per_rank_bytes_and_the_all_reduce():
    common = ["bench", "--device", "cpu", "--preset", "tiny", "--batch", "1", "--prompt-len", "16", "--gen-len", "4", "--json"]
    whole = json_lines(*common)[-1]
    split = json_lines(*common, "--tp", "2")[-1]
    assert "ranks" not in whole or whole["ranks"] == 1
    assert whole.get("allreduce_us") is None
    assert split["ranks"] == 2
    assert split["allreduce_us"] > 0 and split["allreduce_ms_per_step"] > 0
    # Each rank reads its half of the split weights plus the replicated ones.
    assert whole["bytes_per_step"] / 2 < split["bytes_per_step"] < whole["bytes_per_step"]


def test_compare_quantization_on_random_real_shape_layers():
    r = json_lines("compare-quantization", "--device", "cpu", "--preset", "tiny", "--layers", "1",
                   "--prompts", "2", "--prompt-len", "8", "--tokens", "4")[-1]
    assert r["prompts"] == 2 and r["positions"] == 8
    assert 0 < r["meanKL"] < 0.1 and r["maxKL"] >= r["meanKL"]


def test_kv_cache_tokens_sizes_the_pool():
    rows = json_lines("bench", "--device", "cpu", "--preset", "tiny", "--batch", "2", "--prompt-len", "16",
                      "--gen-len", "4", "--kv-cache-tokens", "64", "--json")
    assert rows and rows[-1]["batch"] == 2
    # 2 sequences of 16 + 4 tokens do not fit 32 tokens: bench says so instead of running.
    p = subprocess.run([BIN, "bench", "--device", "cpu", "--preset", "tiny", "--batch", "2", "--prompt-len", "16",
                        "--gen-len", "4", "--kv-cache-tokens", "32", "--json"], capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "KV pool too small" in (p.stdout + p.stderr)
