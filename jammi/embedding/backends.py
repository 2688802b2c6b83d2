"""Inference backends and their exports: a pipeline's `backend:` (torch, onnx, onnx-int8, openvino)
and the model files the non-torch backends run, exported once per model and backend under the
artifact directory (models/<model-slug>/<backend>/) and reused, offline, by every later process.

An export is written into a hidden directory beside its target and renamed into place, its
description (jammi_export.json) written last, so a reader never sees half an export. Exporting
needs torch and transformers; reading an export (jammi.embedding.exported) needs neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path

from jammi.embedding.exported import EXPORT_META, TOKENIZER_FILE
from jammi.embedding.model_files import model_short_name, quiet_loading, resolve_model_path
from jammi.errors import ModelLoadError

log = logging.getLogger(__name__)

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
OPENVINO = "openvino"
BACKENDS = (TORCH, ONNX, ONNX_INT8, OPENVINO)
MODELS_DIR = "models"
MODEL_FILES = {ONNX: "model.onnx", ONNX_INT8: "model_int8.onnx", OPENVINO: "model.xml"}
OPSET = 17
SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}
_lock = threading.Lock()


def export_dir(artifact_dir: Path | str, model_id: str, backend: str) -> Path:
    """Where `model_id`'s export for `backend` lives: keyed by the model id (a readable name and a
    hash of the full id, so two ids with one short name never share files) and the backend."""
    digest = hashlib.sha1(model_id.encode("utf-8")).hexdigest()[:10]
    return Path(artifact_dir) / MODELS_DIR / f"{model_short_name(model_id)}-{digest}" / backend


def cached_export(artifact_dir: Path | str | None, model_id: str, backend: str) -> Path | None:
    """The finished export of `model_id` for `backend`, if one was written; never exports."""
    if artifact_dir is None or backend not in MODEL_FILES:
        return None
    directory = export_dir(artifact_dir, model_id, backend)
    return directory if (directory / EXPORT_META).exists() else None


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r} (choose one of {', '.join(BACKENDS)})")
    if backend == OPENVINO:
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ModelLoadError("backend 'openvino' needs the openvino package, which is not installed "
                                 "(pip install openvino), or choose backend onnx or onnx-int8") from None


def ensure_export(model_id: str, backend: str, artifact_dir: Path | str) -> Path:
    """The export of `model_id` for `backend`, exporting it now (needs torch) when not cached."""
    check_backend(backend)
    if backend == TORCH:
        raise ModelLoadError("backend 'torch' runs the model directly and has no export")
    found = cached_export(artifact_dir, model_id, backend)
    if found:
        return found
    with _lock:
        found = cached_export(artifact_dir, model_id, backend)
        if found:
            return found
        if backend == ONNX:
            return _write(model_id, backend, artifact_dir, _export_onnx)
        fp32 = cached_export(artifact_dir, model_id, ONNX) or _write(model_id, ONNX, artifact_dir,
                                                                     _export_onnx)
        maker = _quantize if backend == ONNX_INT8 else _to_openvino
        return _write(model_id, backend, artifact_dir, lambda _path, out: maker(fp32, out))


def _sentence_config(path: Path, model_id: str) -> dict:
    """Pooling mode, window and dimensions from the model's sentence-transformers files."""
    modules = _json(path / "modules.json", [])
    kinds = {m.get("type", "").rsplit(".", 1)[-1]: m for m in modules}
    unsupported = sorted(set(kinds) - SUPPORTED_MODULES)
    if unsupported or "Pooling" not in kinds:
        raise ModelLoadError(f"model {model_id!r}: modules {unsupported or ['(no Pooling)']} cannot be "
                             "exported; only Transformer + Pooling (+ Normalize) models run on the "
                             "onnx and openvino backends; use backend: torch")
    pooling = _json(path / kinds["Pooling"].get("path", "1_Pooling") / "config.json", {})
    modes = [m for m, flag in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                               ("max", "pooling_mode_max_tokens")) if pooling.get(flag)]
    if len(modes) != 1 or any(pooling.get(k) for k in pooling if k.startswith("pooling_mode_")
                              and k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                            "pooling_mode_max_tokens")):
        raise ModelLoadError(f"model {model_id!r}: its pooling {pooling} is not one of mean, cls or max; "
                             "use backend: torch")
    window = _json(path / "sentence_bert_config.json", {}).get("max_seq_length")
    tokenizer = _json(path / "tokenizer_config.json", {})
    limit = window or tokenizer.get("model_max_length") or 512
    return {"pooling": modes[0], "max_seq_length": int(min(limit, 512)),
            "dimensions": int(pooling.get("word_embedding_dimension", 0)),
            "pad_token": _token(tokenizer.get("pad_token")) or "[PAD]"}


def _token(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def _write(model_id: str, backend: str, artifact_dir: Path | str, make) -> Path:
    """Export into a hidden directory, then rename it onto the target."""
    path = Path(resolve_model_path(model_id))
    if not (path / TOKENIZER_FILE).exists():
        raise ModelLoadError(f"model {model_id!r}: no local copy with tokenizer.json at {path}; the onnx "
                             "and openvino backends export a local model (set 'model:' to a directory)")
    meta = {"model_id": model_id, "backend": backend, "file": MODEL_FILES[backend],
            **_sentence_config(path, model_id)}
    final = export_dir(artifact_dir, model_id, backend)
    tmp = final.parent / f".{backend}.{os.getpid()}-{threading.get_ident()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        log.info("exporting model %s for backend %s to %s", model_id, backend, final)
        make(path, tmp / MODEL_FILES[backend])
        shutil.copyfile(path / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)  # a directory without its description is a leftover
        os.replace(tmp, final)
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(f"model {model_id!r}: export for backend {backend!r} failed "
                             f"({type(err).__name__}: {err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _export_onnx(path: Path, out: Path) -> None:
    """torch.onnx.export (TorchScript exporter) of the transformer's last hidden state, with
    batch and sequence axes dynamic; eager attention so the mask is computed in the graph."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    with quiet_loading():
        model = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    sample = tokenizer(["an export sample", "a second, longer export sample text"], padding=True,
                       return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.inference_mode(False), torch.no_grad(), _quiet_warnings():
        torch.onnx.export(LastHidden(model).eval(), tuple(sample[n] for n in names), str(out),
                          input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def _quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantization of the fp32 export's weights, per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_warnings():
        logging.getLogger().disabled, was = True, logging.getLogger().disabled
        try:
            quantize_dynamic(str(fp32 / MODEL_FILES[ONNX]), str(out), per_channel=True,
                             weight_type=QuantType.QInt8)
        finally:
            logging.getLogger().disabled = was


def _to_openvino(fp32: Path, out: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(fp32 / MODEL_FILES[ONNX])), str(out), compress_to_fp16=False)


@contextlib.contextmanager
def _quiet_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
