"""Shared pieces of the soak tools: the demo model's held-out prompts with PyTorch's greedy answers,
a resident-memory sampler for a process, and the tally that a soak prints and checks.

Not used by CI: a soak runs for many minutes (see tools/soak/README.md)."""
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = os.environ.get("MIXTRAL_CHAT_BIN", str(ROOT / ".build/release/mixtral-chat"))


def heldout_prompts() -> list[dict]:
    """The demo model's held-out requests (tools/demo-model/heldout.jsonl), each with PyTorch's
    greedy answer (models/chloe-tiny/eval/torch_greedy.jsonl): the independent reference a greedy
    answer given under load must equal, token for token, so a lost or repeated token shows."""
    greedy = {}
    for line in (ROOT / "models/chloe-tiny/eval/torch_greedy.jsonl").read_text().splitlines():
        row = json.loads(line)
        greedy[row["id"]] = row
    out = []
    for line in (ROOT / "tools/demo-model/heldout.jsonl").read_text().splitlines():
        row = json.loads(line)
        ref = greedy[row["id"]]
        out.append({"id": row["id"], "skill": row["skill"], "request": row["request"],
                    "greedy_text": ref["text"], "greedy_tokens": len(ref["output_tokens"]),
                    "greedy_tool_call": ref["tool_call"], "prompt_tokens": len(row["prompt_tokens"])})
    return out


def vm_rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB, from /proc/PID/status (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RSSSampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds; `report` applies the soak's rule: after
    the warm-up, every sample within `tolerance` of the first sample after the warm-up."""

    def __init__(self, pid: int, interval: float = 10.0):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (seconds since start, kB)
        self.start_time = time.time()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            rss = vm_rss_kb(self.pid)
            if rss is not None:
                self.samples.append((time.time() - self.start_time, rss))
            self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.join()

    def report(self, warmup_s: float, tolerance: float = 0.05) -> tuple[bool, list[str]]:
        lines = []
        if not self.samples:
            return False, ["no RSS samples"]
        after = [s for s in self.samples if s[0] >= warmup_s]
        mb = lambda kb: f"{kb / 1024:.1f} MB"
        lines.append(f"RSS start {mb(self.samples[0][1])}, peak {mb(max(s[1] for s in self.samples))}")
        if len(after) < 2:
            return False, lines + [f"too few samples after the {warmup_s:.0f} s warm-up to judge"]
        base = after[0][1]
        lo, hi = min(s[1] for s in after), max(s[1] for s in after)
        drift = max(hi - base, base - lo) / base
        lines.append(f"RSS after warm-up ({after[0][0]:.0f} s) {mb(base)}, end {mb(after[-1][1])}, "
                     f"min/max after warm-up {mb(lo)}/{mb(hi)}: max deviation {drift * 100:.2f}% "
                     f"(limit {tolerance * 100:.0f}%)")
        # One line per ~tenth of the run, to show the curve.
        step = max(1, len(self.samples) // 10)
        lines.append("RSS over time: " + ", ".join(f"{t / 60:.1f} min {kb / 1024:.1f}" for t, kb in self.samples[::step]))
        return drift <= tolerance, lines


class Tally:
    """Thread-safe counters plus a list of failures (each a violated soak rule, with detail)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.failures: list[str] = []

    def add(self, key: str, n: int = 1):
        with self.lock:
            self.counts[key] += n

    def fail(self, message: str):
        with self.lock:
            self.counts["FAIL"] += 1
            if len(self.failures) < 200:
                self.failures.append(message)

    def lines(self, prefix: str = "") -> list[str]:
        with self.lock:
            return [f"{prefix}{k}: {v}" for k, v in sorted(self.counts.items())]

    def verdict(self, name: str, rss_lines: list[str]) -> int:
        """Prints the counters, the memory lines, the first failures and PASS/FAIL; the exit status."""
        print("\n".join(self.lines("  ")))
        print("\n".join(rss_lines))
        for f in self.failures[:50]:
            print("FAIL:", f)
        print(f"{name}:", "PASS" if not self.failures else f"FAIL ({self.counts['FAIL']} violations)")
        return 0 if not self.failures else 1
