"""Starts `mixtral-chat serve` with the demo model (Chloe-tiny) on 127.0.0.1 for the tests.

The binary is $MIXTRAL_CHAT_BIN, by default .build/release/mixtral-chat (what `swift test -c
release` leaves behind). Each server gets a free port, is waited on until GET /health answers
200, and is stopped with SIGTERM at the end (its exit status is checked).
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("MIXTRAL_CHAT_BIN", str(ROOT / ".build/release/mixtral-chat"))
API_KEY = "test-key-123"
MODEL = "chloe-tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `serve` process: its base URL, raw HTTP helpers, and stop()."""

    def __init__(self, *extra: str, api_key: str | None = API_KEY):
        self.port = free_port()
        self.api_key = api_key
        args = [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
                "--max-seq-len", "512", "--log-level", "warning", *extra]
        if api_key:
            args += ["--api-key", api_key]
        self.log = open(ROOT / f".build/serve-test-{self.port}.log", "w") if (ROOT / ".build").is_dir() else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        self.wait_ready()

    def headers(self, key: str | None = "default") -> dict:
        key = self.api_key if key == "default" else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, body: bytes | dict | None = None, key: str | None = "default",
                timeout: float = 120) -> tuple[int, bytes, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers(key))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode} before it was ready")
            try:
                status, _, _ = self.request("GET", "/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve was not ready in time")

    def metrics(self) -> dict[str, float]:
        """Metric samples without labels or with their label text, as name{labels} → value."""
        _, body, _ = self.request("GET", "/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    s = Server("--max-batch-size", "32", "--max-body-bytes", "65536")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
