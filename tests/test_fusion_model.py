"""One way to the model: fusion embeds through the pipelines' encoder path (out-of-memory
back-off included), and its embedding cache is keyed by model id, so changing `matching.model`
never reuses another model's vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jammi.app.fusion import fuse_and_check
from jammi.embedding.model import LazyEncoder, load_encoder
from jammi.embedding.model_files import resolve_model_path
from jammi.embedding.texts import content_hash
from jammi.fusion.fuse import embed_records, record_texts
from jammi.fusion.state import load_state
from jammi.spec.project import DEFAULT_MODEL, parse_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

NAMES = ["Trail Running Shoe", "Insulated Water Bottle", "Two Person Dome Tent", "Camp Stove"]


def project(tmp_path, model: str | None):
    cols = {"id": "str", "name": "str"}
    matching = {"fields": {"name": "text"}, **({"model": model} if model else {})}
    return parse_project({
        "sources": {"shop": {"kind": "csv", "path": "a.csv", "key": "id", "columns": cols},
                    "feed": {"kind": "csv", "path": "b.csv", "key": "id", "columns": cols}},
        "entities": {"item": {"fields": {"name": "str"},
                              "sources": {"shop": {"mapping": {"name": "name"}},
                                          "feed": {"mapping": {"name": "name"}}},
                              "matching": matching}},
    }, tmp_path / "jammi.yaml")


def frames() -> dict[str, pd.DataFrame]:
    return {"shop": pd.DataFrame({"id": [f"s{i}" for i in range(4)], "name": NAMES}),
            "feed": pd.DataFrame({"id": [f"f{i}" for i in range(4)], "name": [n.lower() for n in NAMES]})}


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    """The packaged model under a second id: a directory linking to the same weights."""
    link = tmp_path_factory.mktemp("models") / "minilm-under-another-id"
    link.symlink_to(resolve_model_path(DEFAULT_MODEL), target_is_directory=True)
    return str(link)


def test_changing_matching_model_never_reuses_the_other_models_vectors(tmp_path, second_model):
    first = project(tmp_path, None)
    run = fuse_and_check(first, "item", frames(), LazyEncoder(DEFAULT_MODEL, "cpu"))
    texts = set(record_texts(run.result.records, ["name"]))
    assert run.result.stats["texts_embedded"] == len(texts) == 8
    assert set(run.result.vectors) == {content_hash(DEFAULT_MODEL, t) for t in texts}

    again = fuse_and_check(first, "item", frames(), LazyEncoder(DEFAULT_MODEL, "cpu"))
    assert again.incremental and again.result.stats["texts_embedded"] == 0  # same model: all reused

    other = project(tmp_path, second_model)  # same artifacts, same texts, another model id
    switched = fuse_and_check(other, "item", frames(), LazyEncoder(second_model, "cpu"))
    assert switched.incremental  # the previous state was loaded ...
    assert switched.result.stats["texts_embedded"] == 8  # ... and none of its vectors were used
    keys_b = {content_hash(second_model, t) for t in texts}
    assert keys_b <= set(switched.result.vectors) and not keys_b & set(run.result.vectors)
    saved = load_state(other.artifact_dir, "item")
    assert keys_b <= set(saved.vectors)
    # the same weights under two ids: equal vectors, stored apart
    for t in texts:
        np.testing.assert_allclose(saved.vectors[content_hash(second_model, t)],
                                   saved.vectors[content_hash(DEFAULT_MODEL, t)], atol=1e-5)


class OutOfMemoryOverTwo:
    """The real model, failing like an exhausted accelerator on any batch over two texts."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []
        self.model_id, self.dimensions, self.max_seq_length = inner.model_id, inner.dimensions, 256

    def encode(self, texts):
        self.batches.append(len(texts))
        if len(texts) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.encode(texts)


def test_fusion_embeds_through_the_out_of_memory_back_off():
    model = load_encoder(DEFAULT_MODEL, "cpu")
    flaky = OutOfMemoryOverTwo(model)
    vectors, n = embed_records(NAMES + [""], flaky, {})
    assert n == 4 and max(flaky.batches) > 2 and flaky.batches[-1] <= 2  # it halved and went on
    np.testing.assert_allclose(vectors[:4], model.encode(NAMES), atol=1e-5)
    assert not vectors[4].any()  # an empty text embeds to zeros, never reaching the model
