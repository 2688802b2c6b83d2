"""What the tests' local servers (tests/s3_server.py, tests/gcs_server.py,
tests/provider_support.py) share: a free port, an object put through a pyarrow file system,
waiting until a started server answers, and stopping its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def put_object(fs, path: str, data: bytes) -> None:
    """Write `data` to `path` (`bucket/key`) of the pyarrow file system `fs`, making the bucket."""
    fs.create_dir(path.split("/", 1)[0])
    with fs.open_output_stream(path) as out:
        out.write(data)


def wait_until_ready(process: subprocess.Popen, probe: Callable[[], object], timeout_s: float,
                     interval_s: float, stop: Callable[[], None], log: Path, what: str) -> None:
    """Call `probe` until it stops raising OSError; if `process` exits or `timeout_s` passes
    first, `stop` it and skip the test with the last line of its `log`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            probe()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop()
                tail = log.read_bytes()[-600:].decode("utf-8", "replace")
                pytest.skip(f"{what} did not start: {tail.strip().splitlines()[-1:]}")
            time.sleep(interval_s)


def stop_group(process: subprocess.Popen, wait_s: float) -> None:
    """SIGTERM to the process group, then SIGKILL after `wait_s`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
