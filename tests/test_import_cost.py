"""What `jammi materialize` imports before any step runs: the code location and the CLI's runner
leave out the libraries only some steps or projects need (each costs a quarter second to a
second on every run): scipy (drift's KS test, fusion), datasketch (near-duplicates' LSH
parameters), nats (a stream source's consumer), matplotlib (the quality report's plot), torch
and sentence-transformers (only rows to encode load a model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PRODUCT_COLUMNS, REPO, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

HEAVY = ("scipy", "datasketch", "nats", "aiohttp", "matplotlib", "torch", "sentence_transformers",
         "transformers")


def _imported_by(code: str) -> list[str]:
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_materialize_path_imports_no_heavy_library(tmp_path, products_csv):
    project = write_project(
        tmp_path, {"products": {"kind": "csv", "path": "data/products.csv", "key": "id",
                                "columns": PRODUCT_COLUMNS}},
        {"products": {"source": "products", "text_columns": ["title", "body"]}})
    assert _imported_by(
        "import jammi.cli, jammi_assets.cli, jammi_assets.runner\n"
        "from jammi.spec.project import load_project\n"
        "from jammi_assets.definitions import build_definitions\n"
        f"build_definitions(load_project({str(project.path)!r}))") == []


def test_stream_modules_import_nats_only_to_connect():
    assert _imported_by("import jammi.ingest.nats_stream, jammi.app.stream.worker, "
                        "jammi_assets.assets.stream, sensors.stream") == []
