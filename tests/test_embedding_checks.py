"""Checks on embedding tables and indexes: each fails on a table made to fail it, and a
failed error check blocks the index and keeps the previous table serving search."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jammi.app.facade import Jammi
from jammi.embedding import model as model_module
from jammi.embedding.vectors import to_vector_array
from jammi.spec.project import DEFAULT_MODEL, IndexSpec
from jammi.tables import checks as ec
from jammi.tables.catalog import Catalog
from jammi.tables.contract import sidecar, table_schema
from jammi.tables.index import build_index
from jammi.tables.versions import FileRef, Version
from tests.conftest import PRODUCT_COLUMNS, failure_message, materialize, write_project


def _write_table(base, vectors: np.ndarray) -> None:
    n, d = vectors.shape
    pq.write_table(pa.table({
        "_row_id": pa.array([str(i) for i in range(n)]),
        "_source_id": pa.array(["s"] * n),
        "_model_id": pa.array(["m"] * n),
        "vector": to_vector_array(vectors),
        # one content hash, one vector, as the contract has it (the index keeps one per hash)
        "_content_hash": pa.array([v.tobytes().hex()[:32] for v in vectors]),
    }, schema=table_schema(d)), sidecar(base, ".parquet"))


def _unit(rng, n, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_vector_integrity_passes_clean_and_names_bad_rows(tmp_path):
    rng = np.random.default_rng(1)
    clean = _unit(rng, 50)
    _write_table(tmp_path / "clean", clean)
    assert all(o.passed for o in ec.vector_integrity(sidecar(tmp_path / "clean", ".parquet"), 16))

    bad = clean.copy()
    bad[3, 0] = np.nan
    bad[7] = 0.0
    bad[9] *= 1.01
    _write_table(tmp_path / "bad", bad)
    out = {o.name: o for o in ec.vector_integrity(sidecar(tmp_path / "bad", ".parquet"), 16)}
    assert not out[ec.FINITE_VALUES].passed and out[ec.FINITE_VALUES].examples == ["3"]
    assert not out[ec.NO_ZERO_VECTORS].passed and out[ec.NO_ZERO_VECTORS].examples == ["7"]
    assert not out[ec.UNIT_NORM].passed and out[ec.UNIT_NORM].examples[0]["row"] == "9"
    assert out[ec.UNIT_NORM].statistic == pytest.approx(0.01, abs=1e-4)
    wrong = {o.name: o for o in ec.vector_integrity(sidecar(tmp_path / "clean", ".parquet"), 32)}
    assert not wrong[ec.DIMENSIONS].passed and set(wrong) == {ec.DIMENSIONS}


def test_row_count_and_drift(tmp_path):
    assert ec.row_count(90, 100, 7, 3).passed
    miss = ec.row_count(89, 100, 7, 3)
    assert not miss.passed and miss.statistic == 89 and miss.threshold == 90
    rng = np.random.default_rng(2)
    base = _unit(rng, 300)
    _write_table(tmp_path / "a", base)
    _write_table(tmp_path / "b", base[::-1].copy())
    shifted = base + 3.0 * np.eye(16, dtype=np.float32)[0]
    _write_table(tmp_path / "c", shifted / np.linalg.norm(shifted, axis=1, keepdims=True))
    a, b, c = (sidecar(tmp_path / n, ".parquet") for n in "abc")
    same = ec.embedding_drift(b, a, 16, 0.05)
    assert same.passed and same.statistic == pytest.approx(0.0, abs=1e-5)
    assert same.details["mean_nn_distance"] == pytest.approx(0.0, abs=1e-5)
    moved = ec.embedding_drift(c, a, 16, 0.05, severity="error")
    assert not moved.passed and moved.statistic > 0.05 and moved.severity == "error"
    assert ec.embedding_drift(a, None, 16, 0.05).passed


def test_ann_recall_measures_the_sidecar_against_exact_search(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("good", "other"):
        _write_table(tmp_path / name, _unit(rng, 400))
        build_index(tmp_path / name, 16, IndexSpec())
    version = Version("good", 0, (FileRef("good.parquet", 400),), rows=400)
    good = ec.ann_recall(tmp_path, version, 16, IndexSpec())
    assert good.passed and good.statistic >= 0.95 and good.details["queries"] == 200
    # a sidecar from another table of the same size: in step by count, wrong by content
    for suffix in (".usearch", ".rowmap"):
        shutil.copy(sidecar(tmp_path / "other", suffix), sidecar(tmp_path / "good", suffix))
    stale = ec.ann_recall(tmp_path, version, 16, IndexSpec())
    assert not stale.passed and stale.statistic < 0.5 and stale.examples


class _NanForPoison:
    """Fault injection around the real model: NaN vectors for texts containing 'poison'."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id, self.dimensions = inner.model_id, inner.dimensions
        self.max_seq_length, self.device = inner.max_seq_length, "cpu"

    def encode(self, texts):
        out = self.inner.encode(texts)
        out[[i for i, t in enumerate(texts) if "poison" in t]] = np.nan
        return out

    def token_counts(self, texts):
        return self.inner.token_counts(texts)


@pytest.mark.slow
def test_failed_error_check_blocks_the_index_and_keeps_the_previous_table(
    tmp_path, products_csv, encoder, monkeypatch
):
    project = write_project(
        tmp_path, {"products": {"kind": "csv", "path": "data/products.csv", "key": "id",
                                "columns": PRODUCT_COLUMNS}},
        {"products": {"source": "products", "text_columns": ["title", "body"], "model": DEFAULT_MODEL}},
    )
    first = materialize(project)
    assert first.success
    evals = {e.check_name: e.passed for e in first.get_asset_check_evaluations()
             if not e.asset_key.to_user_string().startswith("validated_")}
    assert set(evals) == {*ec.TABLE_CHECKS, ec.ANN_RECALL} and all(evals.values())
    good = Catalog(project.artifact_dir).newest_ready(pipeline="products")
    before = Jammi(project).search("products", "coffee", k=2)

    with open(products_csv, "a", encoding="utf-8") as fh:
        fh.write("7,Poison pill,poison text,3\n")
    monkeypatch.setitem(model_module._cache, (DEFAULT_MODEL, "cpu", "torch"), _NanForPoison(encoder))
    second = materialize(project)
    evals = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert evals[ec.FINITE_VALUES] is False and evals[ec.NO_ZERO_VECTORS] is True
    assert evals[ec.ROW_COUNT] is True and ec.ANN_RECALL not in evals
    assert not second.success and "finite_values" in failure_message(second)
    materialized = {e.asset_key.to_user_string() for e in second.get_asset_materialization_events()}
    assert "products_ann_index" not in materialized
    # a refresh of the same generation: the blocked version is not committed and leaves no file
    catalog = Catalog(project.artifact_dir)
    assert [t.table_name for t in catalog.tables(pipeline="products")] == [good.table_name]
    assert catalog.current_version(catalog.active(pipeline="products")).version == 0
    assert not list((project.artifact_dir / "jammi_db").glob(f"{good.table_name}.v*"))
    # a full rebuild: the new table is marked failed and the previous one keeps serving
    third = materialize(project, run_config={"ops": {"products_embeddings": {"config": {"full": True}}}})
    assert not third.success and "finite_values" in failure_message(third)
    newest = catalog.tables(pipeline="products")[0]
    assert newest.status == "failed" and "finite_values" in newest.error
    assert catalog.active(pipeline="products").table_name == good.table_name
    after = Jammi(project).search("products", "coffee", k=2)
    assert after["_row_id"].tolist() == before["_row_id"].tolist()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a batch's unused result slots are NaN
def test_small_segments_are_scanned_not_walked(tmp_path):
    """A segment of up to EXACT_ROWS rows is searched by USearch's scan of its sidecar, so even
    a graph too sparse to find its neighbours (connectivity 2, expansion 1) gives the exact
    ranking; a larger one walks the graph, which that sparse graph misses (leaving slots of the
    batch's result unused: NaN distances, never converted)."""
    from jammi.tables.index import EXACT_ROWS, VersionIndex

    rng = np.random.default_rng(4)
    sparse = IndexSpec(connectivity=2, expansion_add=1, expansion_search=1)
    recalls = {}
    for name, n in (("small", 300), ("large", EXACT_ROWS + 500)):
        vectors = _unit(rng, n)
        _write_table(tmp_path / name, vectors)
        build_index(tmp_path / name, 16, sparse)
        index = VersionIndex(tmp_path, Version(name, 0, (FileRef(f"{name}.parquet", n),), rows=n), 16, sparse)
        queries = _unit(rng, 50)
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        found = index.search_many(queries, 10)
        recalls[name] = np.mean([len({int(r) for r, _ in hits} & set(top.tolist())) / 10
                                 for hits, top in zip(found, exact, strict=True)])
        if name == "small":
            first = found[0]
            assert [int(r) for r, _ in first] == exact[0].tolist()
            np.testing.assert_allclose([s for _, s in first], (queries[0] @ vectors[exact[0]].T), atol=1e-5)
    assert recalls["small"] == 1.0 and recalls["large"] < 0.9
