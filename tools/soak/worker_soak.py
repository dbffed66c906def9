#!/usr/bin/env python3
"""Soak test of `mixtral-chat worker` (issue 18, point 5): the worker on the demo model
(Chloe-tiny, CPU) against an AIME protocol server (tools/soak/aime_protocol_server.py) that N
simulated clients keep busy for --minutes.

Each client submits one job at a time and waits for it: mostly chats from the demo model's
held-out set with random sampling (temperature, top_k, top_p, max_gen_tokens; chat_context with
or without prompt_input), a share of bad jobs the worker must answer with an `error` result
(chat_context not a list, unknown role, content not text, top_k/top_p/temperature/max_gen_tokens
out of range, a prompt longer than the context), and a share it cancels while it runs (the
server answers its next progress with `canceled: true`, or with `{}` as for a lapsed job).

Checked, and the run fails if any is violated:
- every job gets exactly one result, except a job whose cancel reached the worker, which gets
  none; no progress after a job's result; no job outstanding at the end;
- a good job's result has no error, `num_generated_tokens` ≤ `max_gen_tokens`, and its last
  progress text is a prefix of the result's text;
- a greedy job on a held-out prompt answers exactly PyTorch's greedy text
  (models/chloe-tiny/eval/torch_greedy.jsonl);
- every bad job's result carries an `error`;
- the server never hands out more jobs than `--max-batch-size` at once;
- the worker's VmRSS stays within 5% after the warm-up; SIGTERM exits 0.

Usage: tools/soak/worker_soak.py [--minutes 30] [--clients 32] [--max-batch-size 16]
"""
import argparse
import random
import signal
import subprocess
import sys
import threading
import time

from aime_protocol_server import AIMEProtocolServer
from soaklib import DEFAULT_BIN, ROOT, RSSSampler, Tally, heldout_prompts

MAX_SEQ_LEN = 1024


def bad_jobs() -> list[tuple[str, dict]]:
    user = [{"role": "user", "content": "Hello"}]
    return [
        ("context_object", {"chat_context": {"role": "user", "content": "hi"}, "prompt_input": "Hello"}),
        ("context_number", {"chat_context": 42, "prompt_input": "Hello"}),
        ("unknown_role", {"chat_context": [{"role": "wizard", "content": "x"}], "prompt_input": "Hello"}),
        ("content_not_text", {"chat_context": [{"role": "user", "content": 5}], "prompt_input": ""}),
        ("top_k_too_large", {"chat_context": user, "top_k": 5000}),
        ("top_p_zero", {"chat_context": user, "top_p": 0}),
        ("temperature_too_high", {"chat_context": user, "temperature": 3}),
        ("max_gen_tokens_zero", {"chat_context": user, "max_gen_tokens": 0}),
        ("prompt_too_long", {"chat_context": None, "prompt_input": "word " * (MAX_SEQ_LEN + 100)}),
        ("no_messages", {"chat_context": None, "prompt_input": ""}),
    ]


class WorkerSoak:
    def __init__(self, args):
        self.args = args
        self.tally = Tally()
        self.prompts = [p for p in heldout_prompts() if "tools" not in p["request"]]
        self.bad = bad_jobs()
        self.records: list[tuple[str, object, dict]] = []  # (kind, job, details)
        self.records_lock = threading.Lock()

    def job_fields(self, rng: random.Random) -> tuple[str, dict, dict]:
        """(kind, job fields, what to check)."""
        roll = rng.random()
        if roll < self.args.bad_share:
            name, fields = rng.choice(self.bad)
            return "bad", dict(fields), {"name": name}
        p = rng.choice(self.prompts)
        messages = p["request"]["messages"]
        if rng.random() < 0.7 and messages[-1]["role"] == "user":
            fields = {"chat_context": messages[:-1] or None, "prompt_input": messages[-1]["content"]}
        else:
            fields = {"chat_context": messages, "prompt_input": ""}
        greedy = rng.random() < 0.4
        fields["temperature"] = 0 if greedy else rng.choice([0.3, 0.8, 1.2, 2.0])
        fields["top_k"] = rng.choice([1, 10, 40, 1000])
        fields["top_p"] = rng.choice([0.5, 0.9, 1.0])
        fields["max_gen_tokens"] = rng.choice([1, 8, 32, 128, 400])
        check = {"prompt": p, "greedy": greedy}
        return "good", fields, check

    def client_loop(self, index: int):
        rng = random.Random(self.args.seed * 1000 + index)
        while time.time() < self.deadline:
            kind, fields, check = self.job_fields(rng)
            cancel = kind == "good" and rng.random() < self.args.cancel_share
            if cancel:
                # Long, so that most cancels land while the job runs (Chloe's greedy answers are short).
                fields.update(temperature=2.0, top_k=1000, top_p=1.0, max_gen_tokens=400)
                check["greedy"] = False
            job = self.server.submit(fields)
            if cancel:
                mode = rng.choice(["canceled", "lapse"])
                threading.Timer(rng.uniform(0.0, 0.4), self.server.cancel, (job, mode)).start()
                check["cancel"] = mode
            with self.records_lock:
                self.records.append((kind, job, check))
            if not job.finished.wait(self.args.job_timeout):
                self.tally.fail(f"job {job.id} ({kind}) had no result after {self.args.job_timeout} s: lost")

    def check_job(self, kind: str, job, check: dict):
        results = len(job.results)
        if job.late_progress:
            self.tally.fail(f"job {job.id}: {job.late_progress} progress items after its result")
        if job.results_after_cancel:
            self.tally.fail(f"job {job.id}: result after the worker was told it was cancelled ({check.get('cancel')})")
        if job.cancel_delivered:
            self.tally.add("cancelled_while_queued" if job.cancelled_queued else f"cancelled_running_{check['cancel']}")
            if results:
                self.tally.fail(f"job {job.id}: cancelled and delivered, yet {results} results")
            return
        if results != 1:
            self.tally.fail(f"job {job.id} ({kind}): {results} results, want exactly 1 "
                            f"({'duplicated' if results > 1 else 'lost'})")
            return
        result = job.results[0]
        if check.get("cancel"):
            self.tally.add("cancel_raced_completion")
        if kind == "bad":
            if not result.get("error"):
                self.tally.fail(f"bad job {check['name']}: result without error: {str(result)[:200]}")
            else:
                self.tally.add(f"bad_{check['name']}_error")
            return
        if result.get("error"):
            self.tally.fail(f"good job {job.id}: error {result['error'][:200]}")
            return
        text = result.get("text", "")
        self.tally.add("good_ok")
        self.tally.add("generated_tokens", result.get("num_generated_tokens", 0))
        if result.get("num_generated_tokens", 0) > job.data["max_gen_tokens"]:
            self.tally.fail(f"job {job.id}: {result['num_generated_tokens']} tokens over max_gen_tokens {job.data['max_gen_tokens']}")
        if job.progress and not text.startswith(job.progress[-1].get("text", "")):
            self.tally.fail(f"job {job.id}: last progress text {job.progress[-1].get('text')!r} not a prefix of {text!r}")
        p = check["prompt"]
        if check["greedy"] and not p["greedy_tool_call"]:
            if job.data["max_gen_tokens"] >= p["greedy_tokens"]:
                if text != p["greedy_text"]:
                    self.tally.fail(f"greedy job on prompt {p['id']}: {text!r}, PyTorch {p['greedy_text']!r}")
                else:
                    self.tally.add("greedy_checked_equal_to_pytorch")
            elif not p["greedy_text"].startswith(text):
                self.tally.fail(f"greedy job on prompt {p['id']} cut at {job.data['max_gen_tokens']}: {text!r} "
                                f"not a prefix of {p['greedy_text']!r}")

    def run(self) -> int:
        self.server = AIMEProtocolServer(poll_seconds=10)
        httpd = self.server.serve()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        cmd = [self.args.bin, "worker", "--api-server", url, "--device", "cpu", "--max-batch-size",
               str(self.args.max_batch_size), "--max-seq-len", str(MAX_SEQ_LEN), "--worker-name", "soak-worker",
               "--no-status", "--log-level", "warning"]
        if self.args.kv_cache_tokens:
            cmd += ["--kv-cache-tokens", str(self.args.kv_cache_tokens)]
        print("worker:", " ".join(cmd), flush=True)
        log = open(self.args.log, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        rss = RSSSampler(proc.pid, interval=self.args.rss_interval)
        rss.start()
        started = time.time()
        self.deadline = started + self.args.minutes * 60
        threads = [threading.Thread(target=self.client_loop, args=(i,), daemon=True) for i in range(self.args.clients)]
        for t in threads:
            t.start()
        next_print = started + 60
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if proc.poll() is not None:
                self.tally.fail(f"the worker exited {proc.returncode} during the soak")
                break
            if time.time() >= next_print:
                next_print += 60
                with self.records_lock:
                    submitted = len(self.records)
                print(f"[{(time.time() - started) / 60:5.1f} min] jobs {submitted}, in flight {self.server.in_flight()}, "
                      f"RSS {rss.samples[-1][1] / 1024 if rss.samples else 0:.1f} MB, failures {self.tally.counts['FAIL']}",
                      flush=True)
        elapsed = time.time() - started
        time.sleep(2 * self.args.rss_interval)  # samples at rest
        rss.stop()
        if self.server.in_flight():
            self.tally.fail(f"{self.server.in_flight()} jobs still queued or running at the end")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed after 120 s"
        if code != 0:
            self.tally.fail(f"worker exited {code} after SIGTERM")
        time.sleep(1)  # late messages, if any, before the final check
        for kind, job, check in self.records:
            self.check_job(kind, job, check)
        if self.server.max_handed_out > self.args.max_batch_size:
            self.tally.fail(f"server handed out {self.server.max_handed_out} jobs at once, over --max-batch-size")
        # The default warm-up (a sixth of the run, at most 5 minutes) ends before the worker's
        # memory of the last 10,000 job ids is full (≈ 22 minutes at this load); --warmup-minutes
        # lets a run judge the memory after that fill.
        warmup = self.args.warmup_minutes * 60 if self.args.warmup_minutes is not None else min(300.0, elapsed / 6)
        rss_ok, rss_lines = rss.report(warmup)
        if not rss_ok:
            self.tally.fail("RSS not flat within 5% after warm-up")
        jobs = len(self.records)
        print(f"\n== worker soak: {self.args.clients} clients, max batch {self.args.max_batch_size}, "
              f"{elapsed / 60:.1f} min, seed {self.args.seed}")
        print(f"jobs {jobs} ({jobs / elapsed:.2f}/s), generated tokens {self.tally.counts['generated_tokens']} "
              f"({self.tally.counts['generated_tokens'] / elapsed:.0f}/s), server requests {self.server.requests}")
        return self.tally.verdict("worker soak", rss_lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bad-share", type=float, default=0.12)
    ap.add_argument("--cancel-share", type=float, default=0.12)
    ap.add_argument("--job-timeout", type=float, default=600)
    ap.add_argument("--rss-interval", type=float, default=10)
    ap.add_argument("--kv-cache-tokens", type=int, default=None,
                    help="the worker's KV pool size (default: the worker's own, max batch × max seq len)")
    ap.add_argument("--warmup-minutes", type=float, default=None,
                    help="judge RSS from this point on (default: a sixth of the run, at most 5 minutes)")
    ap.add_argument("--log", default=str(ROOT / ".build/worker-soak.log"))
    sys.exit(WorkerSoak(ap.parse_args()).run())


if __name__ == "__main__":
    main()
