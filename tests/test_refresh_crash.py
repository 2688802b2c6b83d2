"""A refresh killed part-way (SIGKILL, a real `jammi materialize` process) leaves the previous
version serving; the next run finishes the work; expiry clears what the dead run left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jammi.app.verify import verify
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current
from tests.conftest import REPO, materialize, write_project

ROWS = 400


def write_rows(path, edit: int = 0) -> set[str]:
    """ROWS products; the first `edit` rows get new text, 20 rows go and 20 come when editing."""
    keys = range(20 if edit else 0, ROWS + (20 if edit else 0))
    lines = [f'{k},"Item {k} {"revised edition" if k < edit else "first edition"}",'
             f'"A long description of item {k} with enough words to take a moment to embed"\n' for k in keys]
    path.write_text("id,title,body\n" + "".join(lines), encoding="utf-8")
    return {str(k) for k in keys}


def served(project) -> set[str]:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="items")
    return set(read_current(rec.tables_dir, catalog.current_version(rec), []).column("_row_id").to_pylist())


@pytest.mark.slow
def test_sigkill_during_refresh_keeps_the_previous_version_serving(tmp_path):
    data = tmp_path / "items.csv"
    old = write_rows(data)
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                                 "columns": {"id": "int", "title": "str", "body": "str"}}},
                            {"items": {"source": "items", "text_columns": ["title", "body"]}})
    assert materialize(project).success
    table = Catalog(project.artifact_dir).active(pipeline="items").table_name
    new = write_rows(data, edit=300)
    assert materialize(project, selection=["raw_items", "validated_items", "quarantine_items"]).success
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "jammi_assets.cli", "materialize", "--project",
                             str(project.path), "--select", "items_embeddings"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tables_dir = project.artifact_dir / "jammi_db"
    deadline = time.monotonic() + 240
    while not any(tables_dir.glob(f"*{table}.v*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # as soon as the refresh starts writing its version
    proc.wait()
    catalog = Catalog(project.artifact_dir)
    version = catalog.current_version(catalog.active(pipeline="items")).version
    assert served(project) == (old if version == 0 else new)  # the old version or the new, never a mix
    result = materialize(project, selection=["items_embeddings", "items_ann_index"])
    assert result.success
    assert served(project) == new
    assert verify(project)[0].clean
    from jammi.app.facade import Jammi

    Jammi(project, recover_on_open=False).expire("items", keep=1)
    current = catalog.current_version(catalog.active(pipeline="items"))
    named = {r.file for r in (*current.segments, *current.deletes)}
    left = {p.name for p in tables_dir.glob(f"*{table}.v*") if p.suffix == ".parquet"}
    assert left <= named  # nothing the killed run wrote survives expiry
