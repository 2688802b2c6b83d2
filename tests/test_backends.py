"""Inference backends: the exports (onnx, onnx-int8, openvino) are made once per model and backend
under the artifact directory and give the torch model's vectors; the backend is part of the
generation, so switching it builds a new table blue/green; each distinct text is encoded once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jammi.app.embeddings import embed_pipeline, index_pipeline
from jammi.embedding.backends import BACKENDS, cached_export, ensure_export, export_dir
from jammi.embedding.exported import EXPORT_META
from jammi.embedding.model import LazyEncoder, load_encoder
from jammi.embedding.query import load_query_encoder
from jammi.errors import ConfigError, ModelLoadError
from jammi.query.search import search
from jammi.shared import frame_path
from jammi.spec.project import DEFAULT_MODEL
from jammi.storage import write_parquet_atomic
from jammi.tables.catalog import Catalog
from jammi.tables.contract import read_manifest
from jammi.tables.generation import generation_fingerprint
from tests.conftest import write_project

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["a stainless steel kettle", "Wireless noise-cancelling headphones with a 30 hour battery",
         "lamp", "A folding camping chair, light and sturdy, for hikes and festivals " * 6]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One artifact directory holding the model's exports, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("exports")
    for backend in ("onnx", "onnx-int8"):
        ensure_export(DEFAULT_MODEL, backend, root)
    return root


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.slow
def test_exports_are_cached_by_model_and_backend(exports):
    onnx = cached_export(exports, DEFAULT_MODEL, "onnx")
    assert onnx == export_dir(exports, DEFAULT_MODEL, "onnx")
    assert onnx.parent.parent == exports / "models"
    assert (onnx / EXPORT_META).exists() and (onnx / "model.onnx").exists()
    stamp = (onnx / "model.onnx").stat().st_mtime_ns
    assert ensure_export(DEFAULT_MODEL, "onnx", exports) == onnx  # reused, not exported again
    assert (onnx / "model.onnx").stat().st_mtime_ns == stamp
    assert not [p for p in onnx.parent.iterdir() if p.name.startswith(".")]  # no half-written leftovers
    assert export_dir(exports, "/models/other/all-MiniLM-L6-v2", "onnx") != onnx  # keyed by the full id
    assert cached_export(exports, DEFAULT_MODEL, "torch") is None


@pytest.mark.slow
def test_exported_backends_give_the_torch_vectors(exports, encoder):
    reference = encoder.encode(TEXTS)
    onnx = load_encoder(DEFAULT_MODEL, "cpu", "onnx", exports)
    assert "torch" not in type(onnx).__module__
    assert cosines(onnx.encode(TEXTS), reference).min() >= 0.9999
    assert onnx.token_counts(TEXTS) == encoder.token_counts(TEXTS)
    assert (onnx.dimensions, onnx.max_seq_length) == (encoder.dimensions, encoder.max_seq_length)
    int8 = load_encoder(DEFAULT_MODEL, "cpu", "onnx-int8", exports)
    vectors = int8.encode(TEXTS)
    assert 0.95 <= cosines(vectors, reference).min() < 0.99999  # quantized: close, not identical
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # loaded once per process, model, device and backend
    assert load_encoder(DEFAULT_MODEL, "cpu", "onnx", exports) is onnx
    assert load_encoder(DEFAULT_MODEL, "cpu", "onnx-int8", exports) is int8 is not onnx


@pytest.mark.slow
def test_openvino_backend_or_a_clear_refusal(exports, encoder):
    try:
        import openvino  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match="openvino package"):
            ensure_export(DEFAULT_MODEL, "openvino", exports)
        return
    vino = load_encoder(DEFAULT_MODEL, "cpu", "openvino", exports)
    assert cosines(vino.encode(TEXTS), encoder.encode(TEXTS)).min() >= 0.999


@pytest.mark.slow
def test_unknown_backend_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match="backend"):
        write_project(tmp_path, {"items": {"kind": "csv", "path": "items.csv", "key": "id",
                                           "columns": {"id": "str", "text": "str"}}},
                      {"items": {"source": "items", "text_columns": ["text"], "backend": "tensorrt"}})
    with pytest.raises(ModelLoadError, match="unknown backend 'tensorrt'"):
        ensure_export(DEFAULT_MODEL, "tensorrt", tmp_path)


def test_backend_is_part_of_the_generation():
    fingerprints = {b: generation_fingerprint("v1", ["text"], " ", DEFAULT_MODEL, backend=b)
                    for b in BACKENDS}
    assert len(set(fingerprints.values())) == len(BACKENDS)
    assert fingerprints["torch"] == generation_fingerprint("v1", ["text"], " ", DEFAULT_MODEL)  # unchanged


def small_project(root, exports, backend: str, texts: list[str]):
    project = write_project(root, {"items": {"kind": "csv", "path": "items.csv", "key": "id",
                                             "columns": {"id": "str", "text": "str"}}},
                            {"items": {"source": "items", "text_columns": ["text"], "backend": backend}})
    (project.artifact_dir / "models").parent.mkdir(parents=True, exist_ok=True)
    if not (project.artifact_dir / "models").exists():
        (project.artifact_dir / "models").symlink_to(exports / "models", target_is_directory=True)
    frame = pd.DataFrame({"id": [f"k{i}" for i in range(len(texts))], "text": texts})
    write_parquet_atomic(frame, frame_path(project.artifact_dir, project.frame_asset("items")))
    return project


@pytest.mark.slow
def test_switching_backend_builds_a_new_table_blue_green(tmp_path, exports, encoder):
    texts = ["red kettle", "blue lamp", "green chair", "red kettle", "yellow tent", "blue lamp"]
    first = small_project(tmp_path, exports, "torch", texts)
    torch_run = embed_pipeline(first, "items", LazyEncoder(DEFAULT_MODEL, "cpu"))
    # duplicates share one encode: 4 distinct texts for 6 rows, every row embedded
    stats = torch_run.stats
    assert (stats.rows_encoded, stats.rows_embedded, stats.rows_reused) == (4, 6, 2)
    rows = pq.read_table(torch_run.stats.parquet_path).to_pandas().set_index("_row_id")
    np.testing.assert_array_equal(rows.loc["k0", "vector"], rows.loc["k3", "vector"])
    np.testing.assert_allclose(np.stack(rows.loc[["k0", "k1"], "vector"]), encoder.encode(texts[:2]),
                               atol=1e-5)

    switched = small_project(tmp_path, exports, "onnx-int8", texts)
    lazy = LazyEncoder(DEFAULT_MODEL, "cpu", "onnx-int8", switched.artifact_dir)
    int8_run = embed_pipeline(switched, "items", lazy)
    assert int8_run.generation != torch_run.generation
    assert int8_run.active_table != torch_run.active_table  # a new table, made active once whole
    catalog = Catalog(switched.artifact_dir)
    old = catalog.table(torch_run.active_table)
    assert old.status == "ready"  # kept for rollback
    assert read_manifest(catalog.table(int8_run.active_table).base_path)["model_backend"] == "onnx-int8"
    assert read_manifest(old.base_path)["model_backend"] == "torch"

    # nothing new: the refresh commits nothing and never loads the model
    again = LazyEncoder(DEFAULT_MODEL, "cpu", "onnx-int8", switched.artifact_dir)
    run = embed_pipeline(switched, "items", again)
    assert run.stats.counts.outcome == "no_change" and not again.loaded


@pytest.mark.slow
def test_refresh_reuses_vectors_the_table_holds(tmp_path, exports):
    texts = ["red kettle", "blue lamp", "green chair"]
    project = small_project(tmp_path, exports, "onnx", texts)
    embed_pipeline(project, "items", LazyEncoder(DEFAULT_MODEL, "cpu", "onnx", project.artifact_dir))
    # k2 now says what k0 says, and a new row repeats k1: neither text needs the model
    frame = pd.DataFrame({"id": ["k0", "k1", "k2", "k3"], "text": ["red kettle", "blue lamp", "red kettle",
                                                                   "blue lamp"]})
    write_parquet_atomic(frame, frame_path(project.artifact_dir, project.frame_asset("items")))
    lazy = LazyEncoder(DEFAULT_MODEL, "cpu", "onnx", project.artifact_dir)
    run = embed_pipeline(project, "items", lazy)
    counts = run.stats.counts
    assert (counts.outcome, counts.added, counts.changed, counts.rows_encoded) == ("refreshed", 1, 1, 0)
    assert run.stats.rows_reused == 2 and not lazy.loaded


@pytest.mark.slow
def test_infer_runs_on_the_pipelines_backend(tmp_path, exports, encoder):
    """`Jammi().infer` on a source gives the vectors its table holds: the pipeline's backend, not
    torch; asking for another model runs that one on torch."""
    from jammi.app.facade import Jammi

    texts = ["red kettle", "blue desk lamp", "green camping chair"]
    project = small_project(tmp_path, exports, "onnx-int8", texts)
    (tmp_path / "items.csv").write_text("id,text\n" + "".join(f"k{i},{t}\n" for i, t in enumerate(texts)))
    lazy = LazyEncoder(DEFAULT_MODEL, "cpu", "onnx-int8", project.artifact_dir)
    run = embed_pipeline(project, "items", lazy)
    table = pq.read_table(run.stats.parquet_path).to_pandas().set_index("_row_id")
    inferred = Jammi(project).infer("items").to_pandas().set_index("_row_id")
    stored = np.stack(table.loc[["k0", "k1", "k2"], "vector"])
    got = np.stack(inferred.loc[["k0", "k1", "k2"], "vector"])
    np.testing.assert_allclose(got, stored, atol=1e-6)
    assert cosines(got, encoder.encode(texts)).min() < 0.99999  # int8, not torch fp32
    inline = np.stack(Jammi(project).infer(texts=texts).to_pandas()["vector"])
    np.testing.assert_allclose(inline, stored, atol=1e-6)


@pytest.mark.slow
def test_jammi_search_encodes_the_query_without_torch(tmp_path, exports, encoder):
    """A torch table whose model has a cached ONNX export: `jammi search` in a fresh process
    never imports torch (nor sentence-transformers, dagster or pandas), and finds what torch finds."""
    texts = ["red kettle", "blue desk lamp", "green camping chair", "steel water bottle", "wool scarf"]
    project = small_project(tmp_path, exports, "torch", texts)
    embed_pipeline(project, "items", LazyEncoder(DEFAULT_MODEL, "cpu"))
    index_pipeline(project, "items")
    query = "a kettle for the kitchen"
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "jammi_assets.cli", "--project",
                           str(project.path), "search", "items", query, "-k", "3", "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    assert "onnxruntime" in modules
    assert not modules & {"torch", "sentence_transformers", "transformers", "dagster", "pandas"}
    found = json.loads(done.stdout)
    expected = search(project, "items", query, k=3, loader=lambda model_id: load_encoder(model_id, "cpu"))
    assert [r["_row_id"] for r in found] == expected["_row_id"].tolist() == ["k0", *expected["_row_id"][1:]]
    np.testing.assert_allclose([r["similarity"] for r in found], expected["similarity"], atol=1e-3)
    fast = load_query_encoder(DEFAULT_MODEL, "cpu", "torch", project.artifact_dir)
    assert cosines(fast.encode([query]), encoder.encode([query]))[0] >= 0.999


@pytest.mark.slow
def test_query_sessions_load_a_saved_graph_with_the_same_vectors(exports):
    """The query encoder's session comes from the export's graph optimized once and saved beside
    it (jammi.embedding.ort_session): its vectors equal those of a session of the export itself."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from jammi.embedding.exported import pool
    from jammi.embedding.ort_session import load_session, optimized_copy

    model = cached_export(exports, DEFAULT_MODEL, "onnx") / "model.onnx"
    tokenizer = Tokenizer.from_file(str(model.parent / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0)
    tokenizer.enable_truncation(256)
    encs = tokenizer.encode_batch(TEXTS)
    feed = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    direct = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def vectors(session) -> np.ndarray:
        names = [i.name for i in session.get_inputs()]
        return pool(session.run(None, {n: feed[n] for n in names})[0], feed["attention_mask"], "mean")

    expected = vectors(direct)
    load_query_encoder(DEFAULT_MODEL, "cpu", "torch", exports)  # what a search loads: saves the copy
    assert optimized_copy(model, "basic").exists()
    for session in (load_session(model, "basic", prepack=False), load_session(model, "basic")):
        np.testing.assert_allclose(vectors(session), expected, rtol=0, atol=1e-6)
    fast = load_query_encoder(DEFAULT_MODEL, "cpu", "torch", exports)
    np.testing.assert_allclose(fast.encode(TEXTS), expected, rtol=0, atol=1e-6)
