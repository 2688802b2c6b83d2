"""Documents and chunks: the chunks_<source> asset, chunk tables with _doc_id, refresh of edited,
shortened and deleted documents, document-ranked search (facade and CLI) and spec errors."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from jammi.app.facade import Jammi
from jammi.errors import ConfigError, SearchError
from jammi.query.documents import rank_documents
from jammi.shared import frame_path
from jammi.tables.catalog import Catalog
from jammi.tables.versions import read_current
from tests.conftest import invoke_cli, materialize, write_project

TOPICS = {
    "harbour": ("The harbour master logged {n} trawlers returning before the storm. Nets were mended on "
                "the quay while gulls circled the fish market. Tides shaped every schedule in town."),
    "orchard": ("The orchard produced {n} crates of apples this season. Pickers worked the rows at dawn "
                "and the cider press ran late into the evening. Frost in spring had thinned the blossom."),
    "railway": ("The branch line carried {n} passengers on market day. Signal boxes were repainted and "
                "the timetable gained an evening train. Engineers replaced sleepers near the viaduct."),
    "library": ("The village library lent {n} books over the winter. Volunteers catalogued donated atlases "
                "and the reading room hosted a chess club. A new roof kept the archive dry."),
}
FACT = "The lighthouse keeper fed seven cats every morning before sunrise."
QUERY = "who gives food to the cats at the lighthouse?"


def document(topics: list[str], seed: int, fact: bool = False) -> str:
    paragraphs = [TOPICS[t].format(n=seed * 10 + i) for i, t in enumerate(topics)]
    if fact:
        paragraphs[1] = paragraphs[1] + " " + FACT
    return "\n\n".join(paragraphs)


DOCS = {
    "d1": document(["harbour", "orchard", "railway"], 1),
    "d2": document(["library", "harbour", "orchard"], 2, fact=True),
    "d3": document(["railway", "library", "harbour", "orchard"], 3),
    "d4": document(["orchard", "railway", "library"], 4),
}


def write_docs(path, docs: dict[str, str]) -> None:
    path.write_text("".join(json.dumps({"doc_id": k, "body": v}) + "\n" for k, v in docs.items()),
                    encoding="utf-8")


def docs_project(root, chunking=None, extra_pipelines=None, source_extra=None):
    data = root / "docs.jsonl"
    write_docs(data, DOCS)
    source = {"kind": "jsonl", "path": str(data), "key": "doc_id",
              "columns": {"doc_id": {"type": "str", "nullable": False}, "body": "str"},
              **(source_extra or {})}
    pipes = {"docs": {"source": "docs", "text_columns": ["body"],
                      "chunking": chunking or {"strategy": "recursive", "max_tokens": 40, "overlap": 8}},
             **(extra_pipelines or {})}
    return write_project(root, {"docs": source}, pipes)


SELECTION = ["raw_docs", "validated_docs", "quarantine_docs", "chunks_docs", "docs_embeddings",
             "docs_ann_index"]


def run(project):
    result = materialize(project, selection=SELECTION)
    assert result.success
    meta = {}
    for node in ("chunks_docs", "docs_embeddings"):
        for m in result.asset_materializations_for_node(node):
            meta[node] = {k: v.value for k, v in m.metadata.items()}
    return meta


def chunks_frame(project) -> pd.DataFrame:
    return pd.read_parquet(frame_path(project.artifact_dir, "chunks_docs"))


def table_rows(project) -> pd.DataFrame:
    catalog = Catalog(project.artifact_dir)
    rec = catalog.active(pipeline="docs")
    version = catalog.current_version(rec)
    return read_current(rec.tables_dir, version, ["_doc_id", "_content_hash"]).to_pandas()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    project = docs_project(tmp_path_factory.mktemp("documents"))
    return project, run(project)


@pytest.mark.slow
def test_chunks_asset_holds_exact_offsets_and_deterministic_ids(built):
    project, meta = built
    chunks = chunks_frame(project)
    assert list(chunks.columns[:6]) == ["doc_id", "chunk_id", "ordinal", "start", "end", "text"]
    assert meta["chunks_docs"]["documents"] == 4 and meta["chunks_docs"]["documents_rechunked"] == 4
    for doc_id, part in chunks.groupby("doc_id"):
        assert part["ordinal"].tolist() == list(range(len(part))) and len(part) >= 3
        for row in part.itertuples():
            assert row.text == DOCS[doc_id][row.start:row.end]
            assert row.chunk_id.startswith(f"{doc_id}#{row.ordinal}:")
    # the view in the published catalog, like every other output
    con = duckdb.connect(str(project.artifact_dir / "jammi.duckdb"), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM jammi.chunks_docs").fetchone()[0]
        docs = con.execute("SELECT DISTINCT _doc_id FROM jammi.docs_embeddings ORDER BY 1").fetchall()
    finally:
        con.close()
    assert n == len(chunks) and [d[0] for d in docs] == sorted(DOCS)
    rows = table_rows(project)
    assert sorted(rows["_row_id"]) == sorted(chunks["chunk_id"])
    assert (rows["_doc_id"] == rows["_row_id"].str.rsplit("#", n=1).str[0]).all()
    assert meta["docs_embeddings"]["rows_encoded"] == chunks["text"].nunique()  # each distinct text once


@pytest.mark.slow
def test_document_search_ranks_parents_by_best_chunk(built):
    project, _ = built
    jammi = Jammi(project, recover_on_open=False)
    docs = jammi.search("docs", QUERY, k=3, documents=True, exact=True)
    assert docs.columns.tolist() == ["doc_id", "similarity", "chunk_id", "ordinal", "start", "end", "text"]
    assert docs["doc_id"].tolist()[0] == "d2" and docs["doc_id"].is_unique and len(docs) == 3
    top = docs.iloc[0]
    assert "lighthouse keeper" in top["text"] and top["text"] == DOCS["d2"][top["start"]:top["end"]]
    assert docs["similarity"].is_monotonic_decreasing
    chunks = jammi.search("docs", QUERY, k=8, exact=True)
    assert "doc_id" in chunks.columns and not chunks["doc_id"].is_unique  # chunks, not documents
    assert chunks.iloc[0]["chunk_id"] == top["chunk_id"]
    every = jammi.search("docs", QUERY, k=50, documents=True)  # more than there are: all four
    assert sorted(every["doc_id"]) == sorted(DOCS)


@pytest.mark.slow
def test_cli_documents_flag(built):
    project, _ = built
    out = invoke_cli(["search", "docs", QUERY, "--documents", "-k", "2", "--format", "json",
                      "--project", str(project.path)])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["doc_id"] for r in rows][0] == "d2" and len(rows) == 2
    assert {"chunk_id", "start", "end", "text", "similarity"} <= set(rows[0])


@pytest.mark.slow
def test_documents_on_an_unchunked_pipeline_is_refused(tmp_path):
    data = tmp_path / "items.csv"
    data.write_text("id,title\n1,A kettle\n2,A lamp\n", encoding="utf-8")
    project = write_project(tmp_path, {"items": {"kind": "csv", "path": str(data), "key": "id",
                                                 "columns": {"id": "int", "title": "str"}}},
                            {"items": {"source": "items", "text_columns": ["title"]}})
    assert materialize(project).success
    out = invoke_cli(["search", "items", "kettle", "--documents", "--project", str(project.path)])
    assert out.exit_code == 1 and "not a chunked pipeline" in out.output


def test_over_fetch_until_k_distinct_documents():
    # doc "a" owns the 30 nearest chunks; the three next documents come after them
    ranked = [("a", 1 - i / 100) for i in range(30)] + [("b", 0.5), ("c", 0.4), ("d", 0.3)]
    asked = []

    def chunk_search(n):
        asked.append(n)
        hits = ranked[:n]
        return pd.DataFrame({"doc_id": [d for d, _ in hits], "chunk_id": [f"{d}#{i}" for i, (d, _) in
                                                                         enumerate(hits)],
                             "similarity": [s for _, s in hits]})

    docs = rank_documents(chunk_search, 3, "p")
    assert docs["doc_id"].tolist() == ["a", "b", "c"] and asked == [12, 48]
    asked.clear()
    assert rank_documents(chunk_search, 10, "p")["doc_id"].tolist() == ["a", "b", "c", "d"]
    assert asked == [40]  # fewer hits than asked: the table is exhausted
    with pytest.raises(SearchError, match="not a chunked pipeline"):
        rank_documents(lambda n: pd.DataFrame({"id": [], "similarity": []}), 3, "p")


@pytest.mark.slow
def test_edit_shorten_delete_reembed_only_changed_chunks_and_leave_no_orphans(tmp_path):
    project = docs_project(tmp_path, {"strategy": "sentence", "max_tokens": 48, "overlap": 0})
    run(project)
    before = chunks_frame(project)
    edited = dict(DOCS)
    edited["d1"] = DOCS["d1"].replace("Nets were mended", "Sails were patched")  # one paragraph edited
    edited["d3"] = DOCS["d3"][: DOCS["d3"].index("\n\n")]  # shortened to its first paragraph
    del edited["d2"]  # deleted
    write_docs(tmp_path / "docs.jsonl", edited)
    meta = run(project)
    after = chunks_frame(project)
    new_ids = set(after["chunk_id"]) - set(before["chunk_id"])
    gone_ids = set(before["chunk_id"]) - set(after["chunk_id"])
    assert meta["chunks_docs"]["documents_rechunked"] == 2  # d1 and d3; d4 kept its chunks
    emb = meta["docs_embeddings"]
    assert 1 <= len(new_ids) <= 2 and emb["rows_encoded"] == len(new_ids)
    assert emb["added"] == len(new_ids) and emb["deleted"] == len(gone_ids)
    assert emb["unchanged"] == len(after) - len(new_ids)
    rows = table_rows(project)
    assert sorted(rows["_row_id"]) == sorted(after["chunk_id"])  # no orphan chunk
    assert "d2" not in set(rows["_doc_id"]) and set(rows["_doc_id"]) == {"d1", "d3", "d4"}
    docs = Jammi(project, recover_on_open=False).search("docs", QUERY, k=10, documents=True, exact=True)
    assert sorted(docs["doc_id"]) == ["d1", "d3", "d4"]
    assert all(r.text == edited[r.doc_id][r.start:r.end] for r in docs.itertuples())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunking": {"strategy": "paragraphs"}}, "pipelines.docs.chunking.strategy"),
        ({"chunking": {"max_tokens": 64, "overlap": 32}}, "less than half of max_tokens"),
        ({"chunking": {"max_tokens": 4}}, "pipelines.docs.chunking.max_tokens"),
        ({"chunking": {"size": 100}}, "pipelines.docs.chunking.size"),
        ({"pipes": {"again": {"source": "docs", "text_columns": ["body"], "chunking": {}}}},
         "already chunked by pipeline 'docs'"),
        ({"partitions": {"dynamic": "files"}}, "is partitioned"),
    ],
)
def test_spec_errors_name_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        docs_project(tmp_path, change.get("chunking"), change.get("pipes"),
                     {"partitions": change["partitions"]} if "partitions" in change else None)
