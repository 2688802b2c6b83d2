"""A GCS JSON API server for the tests: the pure-Python `gcp-storage-emulator` (the dev extra),
started in memory on a free port and stopped afterwards. pyarrow's GcsFileSystem writes (resumable
uploads), reads (ranged), lists, deletes and creates buckets through it; Jammi reaches it the
way Google's client libraries do, through `STORAGE_EMULATOR_HOST`. Tests that need it skip,
saying why, when it cannot start."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.server_support import free_port, put_object, stop_group, wait_until_ready

PROJECT = "jammi-test"  # creating a bucket needs a project id; the emulator takes any
START_TIMEOUT_S = 20.0


@dataclass
class GcsServer:
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """The environment jammi.store reads the endpoint from (anonymous credentials then),
        with a short retry so a stopped emulator fails a test in seconds."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "JAMMI_GCS_RETRY_S": "5"}

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.GcsFileSystem(anonymous=True, endpoint_override=self.endpoint.removeprefix("http://"),
                                  scheme="http", project_id=PROJECT, retry_time_limit=timedelta(seconds=2))

    def put(self, url: str, data: bytes) -> None:
        """Write object `url` (gs://bucket/key), creating the bucket when missing."""
        put_object(self.filesystem(), url.removeprefix("gs://"), data)


def start(folder: Path) -> GcsServer:
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("no gcp_storage_emulator: install the dev extra (gcp-storage-emulator) to run the GCS "
                    "tests")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "gcs.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}",
         "--in-memory", "--quiet"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    server = GcsServer(f"http://127.0.0.1:{port}", proc)
    wait_until_ready(proc, lambda: server.put("gs://jammi-probe/ready", b"1"), START_TIMEOUT_S, 0.2,
                     lambda: stop(server), folder / "gcs.log", "the GCS emulator")
    return server


def stop(server: GcsServer) -> None:
    stop_group(server.process, 5.0)
