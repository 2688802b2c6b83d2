"""The encoder a search uses for its query text: the table's exported model on onnxruntime or
OpenVINO when one is cached (no torch import: a `jammi search` starts in a fraction of the time),
else the model itself through load_encoder.

A torch table's queries run on its fp32 ONNX export, which gives the same vectors (cosine to the
torch ones above 0.9999); an onnx-int8 or openvino table's queries run on its own export, so query
and table vectors come from the same model.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from jammi.embedding.backends import ONNX, TORCH, cached_export, ensure_export
from jammi.embedding.exported import ExportedEncoder
from jammi.embedding.model import Encoder, load_encoder
from jammi.errors import ModelLoadError

log = logging.getLogger(__name__)
QUERY_THREADS = 4  # a query is a few dozen tokens: more threads only wait on each other
_cache: dict[Path, ExportedEncoder] = {}
_lock = threading.Lock()


def query_export(model_id: str, backend: str, artifact_dir: Path | str | None) -> Path | None:
    """The cached export that encodes queries for a `backend` table of `model_id`, if any."""
    return cached_export(artifact_dir, model_id, ONNX if backend == TORCH else backend)


def load_query_encoder(model_id: str, device: str = "auto", backend: str = TORCH,
                       artifact_dir: Path | str | None = None) -> Encoder:
    """An encoder for query texts: torch-free from a cached export when there is one (loaded once
    per process), the model through load_encoder otherwise."""
    found = query_export(model_id, backend, artifact_dir)
    if found is None:
        return load_encoder(model_id, device, backend, artifact_dir)
    with _lock:
        if found not in _cache:
            # a query pays the set-up: a saved optimized graph, and at most QUERY_THREADS threads
            threads = min(QUERY_THREADS, os.cpu_count() or 1)
            _cache[found] = ExportedEncoder(found, optimize="basic", threads=threads)
        return _cache[found]


def prepare_query_export(model_id: str, backend: str, artifact_dir: Path | str) -> Path | None:
    """Export the model for torch-free queries of a torch table (the other backends export their own
    before they encode); a model that cannot be exported keeps its queries on torch."""
    if backend != TORCH:
        return query_export(model_id, backend, artifact_dir)
    try:
        return ensure_export(model_id, ONNX, artifact_dir)
    except ModelLoadError as err:
        log.warning("queries of %s stay on torch: %s", model_id, err)
        return None
