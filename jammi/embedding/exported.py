"""Encoding with an exported model and no torch: onnxruntime (fp32 or int8) or OpenVINO runs the
transformer, the `tokenizers` library tokenizes, and numpy pools and normalizes as the model's
sentence-transformers Pooling config says. jammi.embedding.backends writes the exports this reads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from jammi.embedding.pretokenized import counting_copy
from jammi.embedding.window import splits_on_whitespace, window_texts
from jammi.errors import ModelLoadError

EXPORT_META = "jammi_export.json"
TOKENIZER_FILE = "tokenizer.json"
POOLING_MODES = ("mean", "cls", "max")


def read_meta(directory: Path) -> dict:
    """The export's description (model id, backend, pooling, window), written last by the export."""
    try:
        return json.loads((Path(directory) / EXPORT_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"exported model at {directory} is incomplete ({err}); delete the directory "
                             "and it is exported again on the next run") from None


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token vectors (batch, seq, dim) under the attention mask, L2-normalised."""
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
    else:
        weights = mask[..., None].astype(np.float32)
        out = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.clip(norms, 1e-12, None)).astype(np.float32)


class _Tokenizer:
    """The model's fast tokenizer, truncating to the model window and padding to the batch's longest."""

    def __init__(self, directory: Path, max_seq_length: int, pad_token: str):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._counter = None  # untruncated, for counts: loaded when first asked (a query never asks)
        pad_id = self._tok.token_to_id(pad_token)
        self._tok.enable_truncation(max_length=max_seq_length)
        self._tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
        self.windowed = splits_on_whitespace(self._tok)  # jammi.embedding.window
        self._lock = threading.Lock()  # a tokenizer with padding set is not safe to share across threads

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            encs = self._tok.encode_batch_fast(texts)
        return {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}

    def counts(self, texts: list[str]) -> list[int]:
        with self._lock:
            if self._counter is None:
                self._counter = counting_copy(self._tok)
            return [len(e.ids) for e in self._counter.encode_batch_fast(texts)]


class ExportedEncoder:
    """An Encoder over an exported model directory (jammi_export.json, tokenizer.json and the model
    file of its backend); imports neither torch nor sentence-transformers. `optimize` is
    onnxruntime's graph optimization: "all" for bulk encoding, "basic" where start-up counts (a
    query: the graph optimized once and loaded from its saved copy, its weights not prepacked:
    jammi.embedding.ort_session);
    `threads`, onnxruntime's intra-op threads (default: one per core)."""

    def __init__(self, directory: Path, optimize: str = "all", threads: int | None = None):
        directory = Path(directory)
        meta = read_meta(directory)
        self.directory = directory
        self.model_id: str = meta["model_id"]
        self.backend: str = meta["backend"]
        self.device = "cpu"
        self.dimensions = int(meta["dimensions"])
        self.max_seq_length = int(meta["max_seq_length"])
        self.pooling: str = meta["pooling"]
        if self.pooling not in POOLING_MODES:
            raise ModelLoadError(f"model {self.model_id!r}: pooling {self.pooling!r} is not supported by "
                                 f"the exported backends (supported: {', '.join(POOLING_MODES)})")
        self._tokenizer = _Tokenizer(directory, self.max_seq_length, meta.get("pad_token", "[PAD]"))
        self._run = self._openvino(directory / meta["file"]) if self.backend == "openvino" else \
            self._onnxruntime(directory / meta["file"], optimize, threads)

    def _onnxruntime(self, path: Path, optimize: str, threads: int | None):
        import onnxruntime as ort

        if optimize == "basic":
            from jammi.embedding.ort_session import load_session

            session = load_session(path, "basic", threads, prepack=False)
        else:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        wanted = [i.name for i in session.get_inputs()]

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            return session.run(None, {name: feed[name] for name in wanted})[0]
        return run

    def _openvino(self, path: Path):
        try:
            import openvino as ov
        except ImportError:
            raise ModelLoadError(f"model {self.model_id!r}: backend 'openvino' needs the openvino "
                                 "package (pip install openvino)") from None
        compiled = ov.Core().compile_model(str(path), "CPU")
        wanted = [i.get_any_name() for i in compiled.inputs]
        output = compiled.outputs[0]
        request = compiled.create_infer_request()
        lock = threading.Lock()

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            with lock:
                return np.array(request.infer({name: feed[name] for name in wanted})[output])
        return run

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        feed = self._tokenizer(window_texts(texts, self.max_seq_length, self._tokenizer.windowed))
        hidden = np.asarray(self._run(feed), dtype=np.float32)
        return pool(hidden, feed["attention_mask"], self.pooling)

    def token_counts(self, texts: list[str]) -> list[int]:
        return self._tokenizer.counts(window_texts(texts, self.max_seq_length, self._tokenizer.windowed))
