"""A full disk (issue 28, reproduction 8): the temporary files of failed writes are removed on
the spot and by `jammi recover` for dead processes; out of space is one line naming the path;
a step that fails keeps its previous frames.

One test runs Jammi's writes on a real 8 MiB tmpfs that fills up (mounted in a user namespace
with `unshare -rm`, so no root is needed; skipped where the kernel forbids it); the others
inject ENOSPC at the writer."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import jammi.storage as storage
from jammi.app.sources import store_raw, validate_source
from jammi.errors import DiskFullError
from jammi.shared import frame_path
from jammi.storage import FrameWriter, leftovers, write_parquet_atomic
from jammi.tables.catalog import Catalog
from jammi.tables.recovery import LEFTOVER_REMOVED, recover
from tests.conftest import REPO, invoke_cli, write_project

COLUMNS = {"id": "int", "title": "str", "body": "str", "price": {"type": "float", "ge": 0}}


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def hidden(folder) -> list[str]:
    """Temporary files and part folders under `folder` (memos are hidden too, and stay)."""
    return sorted(p.name for p in folder.rglob(".*") if storage.TMP_NAME.match(p.name) or "tmp" in p.name)


def userns_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt 2>/dev/null"
                            " || mount -t tmpfs -o size=1m none /tmp"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not userns_tmpfs(), reason="cannot mount a tmpfs in a user namespace (unshare -rm) here")
def test_writes_on_a_real_full_file_system(tmp_path):
    mnt, src = tmp_path / "mnt", tmp_path / "src"
    mnt.mkdir()
    src.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-rm", sys.executable, "-m", "tests.full_disk_support", str(mnt),
                           str(src)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["raw"].startswith("DiskFullError: out of space writing ")
    assert "frames/raw_p.parquet" in out["raw"] and "\n" not in out["raw"]
    # the raw step failed, so validation re-read the old raw frame; the catalog's publish ran out
    assert out["validate"].startswith("DiskFullError: out of space writing ")
    assert "state/published/" in out["validate"]  # the private file a publish writes first
    assert out["unchanged"] == {"raw_p": True, "validated_p": True, "quarantine_p": True}
    assert out["index"].startswith("DiskFullError: out of space writing ") and "t.usearch" in out["index"]
    assert "Failed to serialize into stream" in out["index"]
    assert not [f for f in out["files"] if f.rsplit("/", 1)[-1].startswith(".") and "tmp" in f], out["files"]
    assert "tables/t.usearch" not in out["files"]


@pytest.fixture
def project(tmp_path):
    data = tmp_path / "p.csv"
    data.write_text("id,title,body,price\n1,a,b,1\n2,c,d,2\n3,e,f,-3\n", encoding="utf-8")
    project = write_project(tmp_path, {"p": {"kind": "csv", "path": str(data), "key": "id",
                                             "columns": COLUMNS}})
    store_raw(project, "p")
    validate_source(project, "p")
    return project


def digests(project) -> dict[str, str]:
    return {a: hashlib.sha256(frame_path(project.artifact_dir, a).read_bytes()).hexdigest()
            for a in ("raw_p", "validated_p", "quarantine_p")}


def test_a_validation_step_that_fails_after_writing_keeps_its_previous_frames(project, monkeypatch):
    """The frames used to be renamed into place before the catalog recorded them and the checks
    ran: a failure there (a full disk) left `validated_p` replaced by a step that failed."""
    before = digests(project)
    (project.root / "p.csv").write_text("id,title,body,price\n1,new,b,1\n4,g,h,-4\n", encoding="utf-8")
    store_raw(project, "p")
    before["raw_p"] = digests(project)["raw_p"]
    monkeypatch.setattr(Catalog, "record_checks", no_space)
    with pytest.raises(OSError):
        validate_source(project, "p")
    assert digests(project) == before
    assert hidden(project.artifact_dir / "frames") == []


def test_a_quarantine_frame_out_of_space_keeps_both_frames_and_names_the_file(project, monkeypatch):
    before = digests(project)
    (project.root / "p.csv").write_text("id,title,body,price\n1,new,b,1\n4,g,h,-4\n", encoding="utf-8")
    store_raw(project, "p")
    before["raw_p"] = digests(project)["raw_p"]
    real = FrameWriter.finish

    def finish(self):
        if self.path.name.startswith("quarantine_"):  # two parts to join, and no room to join them
            self.parts = [*self.files(), *self.files()]
            monkeypatch.setattr(storage, "_join_parts", no_space)
        return real(self)
    monkeypatch.setattr(FrameWriter, "finish", finish)
    with pytest.raises(DiskFullError, match=r"out of space writing .*frames/quarantine_p\.parquet"):
        validate_source(project, "p")
    assert digests(project) == before
    assert hidden(project.artifact_dir / "frames") == []


def test_atomic_write_out_of_space_removes_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "f.parquet"
    write_parquet_atomic(pd.DataFrame({"a": [1]}), target)

    def half_then_full(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 half a file")
        no_space()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_full)
    with pytest.raises(DiskFullError) as caught:
        write_parquet_atomic(pd.DataFrame({"a": [2]}), target)
    message = str(caught.value)
    assert message.startswith(f"out of space writing {target}: ") and "\n" not in message
    assert "No space left on device" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]
    assert pd.read_parquet(target)["a"].tolist() == [1]


def test_usearch_serialize_failure_is_named_out_of_space_only_when_space_is_short(tmp_path, monkeypatch):
    err = RuntimeError("Failed to serialize into stream")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 4096))
    full = storage.disk_full(err, tmp_path / "t.usearch")
    assert isinstance(full, DiskFullError) and "(4.0 KiB free)" in str(full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 1 << 30, 9 << 30))
    assert storage.disk_full(err, tmp_path / "t.usearch") is None
    assert storage.disk_full(ValueError("bad"), tmp_path / "x") is None


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_removes_dead_writers_leftovers_only(project):
    frames = project.artifact_dir / "frames"
    dead, alive = dead_pid(), os.getppid()
    made = {
        frames / f".validated_p.parquet.{dead}.tmp": True,
        frames / f".validated_p.parquet.parts-{dead}-0a1b2c3d": True,  # a frame writer's parts folder
        project.artifact_dir / f".jammi.duckdb.{dead}-140001.tmp": True,
        project.artifact_dir / f".jammi.duckdb.{dead}-140001.tmp.wal": True,
        frames / f".raw_p.parquet.{alive}.tmp": False,  # its writer may still be writing it
        frames / "raw_p.parquet": False,
    }
    for path in made:
        if "parts-" in path.name:
            path.mkdir()
            (path / "part-000000.parquet").write_bytes(b"x")
        elif not path.exists():
            path.write_bytes(b"x")
    assert sorted(leftovers(project.artifact_dir)) == sorted(p for p, gone in made.items() if gone)
    result = invoke_cli(["recover", "--project", str(project.root / "jammi.yaml"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    for path, gone in made.items():
        assert path.exists() != gone, path
        assert (str(path.relative_to(project.artifact_dir)) in result.output) == gone
    assert LEFTOVER_REMOVED in result.output
    assert recover(Catalog(project.artifact_dir)) == []  # nothing left
