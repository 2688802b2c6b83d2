"""The one silver recipe (migrate, remediate, validate, quarantine) and extraction of what
real exports hold: columns named with a leading underscore, undeclared nested columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jammi.app.facade import Jammi
from jammi.demo.versioned import PARTNERS_SOURCE, write_partner_files
from jammi.ingest.extract import extract
from jammi.shared import frame_path
from jammi.silver.pandera_model import REASON_COLUMN, build_model
from jammi.silver.recipe import to_silver
from tests.conftest import materialize, write_project


def beir_corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"_id": "d1", "title": "Sleep", "text": "Sleep helps memory.", "metadata": {}, "_rank": 1},
            {"_id": "d2", "title": "Tea", "text": "Green tea has catechins.", "metadata": {"year": 2020},
             "_rank": -3},
            {"_id": "d3", "title": "Rain", "text": "Rain falls.", "metadata": {}, "_rank": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return write_project(tmp_path, {"corpus": {
        "kind": "jsonl", "path": str(path), "key": "_id",
        "columns": {"_id": {"type": "str", "nullable": False}, "title": "str", "text": "str",
                    "_rank": {"type": "int", "ge": 0}}}})


def test_columns_with_a_leading_underscore_are_validated(tmp_path):
    project = beir_corpus(tmp_path)
    spec = project.sources["corpus"]
    schema = build_model("corpus", spec).to_schema()
    assert set(schema.columns) == {"_id", "title", "text", "_rank"}
    assert schema.columns["_id"].unique and not schema.columns["_id"].nullable
    silver = to_silver(extract(project, "corpus"), spec, "corpus")
    assert silver.valid["_id"].tolist() == ["d1", "d3"]
    assert silver.quarantine["_id"].tolist() == ["d2"]
    assert "_rank: greater_than_or_equal_to(0.0) failed for value -3" in silver.quarantine[REASON_COLUMN][0]


@pytest.mark.slow
def test_undeclared_nested_columns_are_kept_as_json_text(tmp_path):
    project = beir_corpus(tmp_path)
    result = materialize(project, selection=["raw_corpus"])
    assert result.success
    raw = pq.read_table(frame_path(project.artifact_dir, "raw_corpus")).to_pandas()
    assert raw["metadata"].tolist() == ["{}", '{"year": 2020}', "{}"]


@pytest.mark.slow
def test_infer_on_a_versioned_source_embeds_the_migrated_rows(tmp_path, encoder):
    write_partner_files(tmp_path)
    project = write_project(tmp_path, {"partners": PARTNERS_SOURCE},
                            {"partners": {"source": "partners", "text_columns": ["title", "description"]}})
    table = Jammi(project, recover_on_open=False).infer(source="partners")
    ids = table["_row_id"].to_pylist()
    assert ids == ["P-100", "P-101", "P-200", "P-201"]  # v1 rows migrated, bad rows quarantined
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False))
    expected = encoder.encode(["Trail running shoes Light shoes for wet trails"])[0]
    assert float(vectors[0] @ expected) > 0.9999
    pipeline_rows = to_silver(extract(project, "partners"), project.sources["partners"], "partners").valid
    assert pipeline_rows["partner_sku"].tolist() == ids
    assert isinstance(pipeline_rows, pd.DataFrame)
