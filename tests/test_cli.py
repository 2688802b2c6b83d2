"""The command line as a user meets it: --project in either place, --version, tables that fit
a 100-column terminal, JSON that keeps slashes, and no library noise on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jammi import __version__
from jammi.terminal import render_json, render_table
from tests.conftest import PRODUCT_COLUMNS, REPO, invoke_cli, write_project


def small_project(tmp_path, products_csv):
    return write_project(tmp_path, {"products": {"kind": "csv", "path": str(products_csv), "key": "id",
                                                 "columns": PRODUCT_COLUMNS}},
                         {"products": {"source": "products", "text_columns": ["title", "body"]}})


@pytest.mark.slow
def test_project_option_before_or_after_the_command(tmp_path, products_csv):
    project = small_project(tmp_path, products_csv)
    before = invoke_cli(["--project", str(project.path), "tables", "list"])
    after = invoke_cli(["tables", "list", "--project", str(project.path)])
    assert before.exit_code == 0 and after.exit_code == 0, (before.output, after.output)
    assert before.output == after.output == "(no rows)\n"
    missing = invoke_cli(["status", "--project", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "nope.yaml: project file not found" in missing.output


@pytest.mark.slow
def test_version():
    result = invoke_cli(["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"jammi, version {__version__}"


def test_table_fits_100_columns_and_reads_left_to_right():
    frame = pd.DataFrame({
        "title": ["A very long product description " * 10, "Short"],
        "price": [1999.5, 0.00012],
        "vector": [np.arange(384, dtype=np.float32) / 1000, np.zeros(384, dtype=np.float32)],
        "similarity": [0.91234567, 0.5],
    })
    lines = render_table(frame, width=100).splitlines()
    assert all(len(line) <= 100 for line in lines), [len(line) for line in lines]
    assert lines[0].startswith("title ")
    assert lines[1].startswith("A very long product description") and "…" in lines[1]
    assert lines[2].startswith("Short ")
    assert "[0, 0.001, 0.002, …] (384)" in lines[1]
    assert "e-" not in "\n".join(lines) and "0.0001" in lines[2] and "1999.5" in lines[1]
    assert lines[1].rstrip().endswith("0.9123")  # numbers right-aligned in their column


def test_json_keeps_slashes_and_whole_vectors():
    frame = pd.DataFrame({"url": ["https://example.com/a/b"], "vector": [np.ones(384, dtype=np.float32)],
                          "when": [pd.Timestamp("2026-11-03 10:00")], "missing": [np.nan]})
    text = render_json(frame)
    assert "https://example.com/a/b" in text and "\\/" not in text
    record = json.loads(text)[0]
    assert len(record["vector"]) == 384 and record["when"] == "2026-11-03T10:00:00"
    assert record["missing"] is None


@pytest.mark.slow
def test_loading_a_model_prints_nothing_on_stderr():
    code = ("from jammi.embedding.model import load_encoder; "
            "print(load_encoder('sentence-transformers/all-MiniLM-L6-v2', 'cpu').dimensions)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0 and run.stdout.strip() == "384"
    assert "Loading weights" not in run.stderr and "%|" not in run.stderr, run.stderr


@pytest.mark.slow
def test_materialize_without_dagster_home_shows_no_telemetry_banner(tmp_path, products_csv):
    project = small_project(tmp_path, products_csv)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    run = subprocess.run([sys.executable, "-m", "jammi_assets.cli", "materialize", "--project",
                          str(project.path), "--select", "raw_products"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "raw_products" in run.stdout
    assert "Welcome to Dagster" not in run.stdout + run.stderr
    assert "telemetry" not in (run.stdout + run.stderr).lower()
