"""Run by tests/test_full_disk.py inside `unshare -rm` (a user and mount namespace, no root
needed): mount an 8 MiB tmpfs at argv[1] (a publish writes Jammi's private file and the
clients' copy), build a small source's frames and an index sidecar on it, fill it, then try
the same writes again; print what happened as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jammi.app.sources import store_raw, validate_source
from jammi.shared import frame_path
from jammi.spec.project import IndexSpec
from jammi.tables.index import build_index
from tests.conftest import write_project

COLUMNS = {"id": "int", "title": "str", "body": "str", "price": "float"}


def fill(directory: Path, leave: int = 0) -> Path:
    """A file taking every free byte of `directory`'s file system but `leave`."""
    filler = directory / f"filler-{leave}"
    st = os.statvfs(directory)
    with open(filler, "wb") as fh:
        try:
            todo = st.f_bavail * st.f_frsize - leave
            while todo > 0:
                todo -= fh.write(b"\0" * min(65536, todo))
        except OSError:
            pass
    return filler


def attempt(step) -> str:
    try:
        step()
        return "ok"
    except Exception as err:  # reported to the test as text
        return f"{type(err).__name__}: {err}"


def main(mnt: Path, src: Path) -> dict:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "none", str(mnt)], check=True)
    rows = "".join(f"{i},title {i},body of row {i},{i}.5\n" for i in range(1, 200))
    (src / "p.csv").write_text("id,title,body,price\n" + rows, encoding="utf-8")
    project = write_project(mnt / "proj", {"p": {"kind": "csv", "path": str(src / "p.csv"), "key": "id",
                                                 "columns": COLUMNS}})
    store_raw(project, "p")
    validate_source(project, "p")

    def digest(asset: str) -> str:
        return hashlib.sha256(frame_path(project.artifact_dir, asset).read_bytes()).hexdigest()

    before = {a: digest(a) for a in ("raw_p", "validated_p", "quarantine_p")}
    out: dict = {}
    filler = fill(mnt)
    (src / "p.csv").write_text("id,title,body,price\n" + rows.replace("title", "a longer title " * 20),
                               encoding="utf-8")
    out["raw"] = attempt(lambda: store_raw(project, "p"))
    out["validate"] = attempt(lambda: validate_source(project, "p"))
    out["unchanged"] = {a: digest(a) == before[a] for a in before}
    filler.unlink()

    base = mnt / "tables" / "t"
    base.parent.mkdir()
    vectors = np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32)
    pq.write_table(pa.table({"_row_id": [str(i) for i in range(3000)],
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 64),
                             "_content_hash": [str(i) for i in range(3000)]}), f"{base}.parquet")
    fill(mnt, leave=200_000)  # room for the Parquet reads, not for the sidecar
    out["index"] = attempt(lambda: build_index(base, 64, IndexSpec()))
    out["files"] = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*") if p.is_file()
                          and not p.name.startswith("filler"))
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
