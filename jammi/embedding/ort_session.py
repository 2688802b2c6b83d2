"""onnxruntime sessions that start fast: the model's graph is optimized once and saved beside the
export with its weights in a separate file, and later processes load that copy with no
optimization of their own, the weights memory-mapped instead of parsed and copied. On the 87 MB
all-MiniLM-L6-v2 export this takes a query's session set-up from about 150 ms to about 30 ms,
and the copy computes exactly what the session it was saved from computes. Without `prepack`
(onnxruntime re-laying the weights out for its matrix kernels at load) it takes under 10 ms: a
vector then differs from the prepacked session's by about 1e-7 per component, and an encode
call by a few percent.

The copy lives in <export>/optimized/<key>/ (model.onnx, weights.bin), the key a digest of the
model file's identity (inode, size, mtime), the optimization level and the onnxruntime version,
so an export written again, another level or another onnxruntime never loads a stale copy (and
the copy under an old key is removed once a new one is saved). It is written into a hidden
directory and renamed into place, so a reader never sees half of it. Where the export directory
cannot be written, the model is loaded and optimized in each process as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

OPTIMIZED_DIR = "optimized"
GRAPH_FILE = "model.onnx"
WEIGHTS_FILE = "weights.bin"
MIN_EXTERNAL_BYTES = 1024  # initializers this large go to the weights file (mapped at load)
LEVELS = ("basic", "extended")  # levels whose saved graph runs on any CPU ("all" is hardware-specific)


def _level(ort, level: str):
    return {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]


def optimized_key(model: Path, level: str, ort_version: str) -> str:
    """Which saved copy fits `model` optimized at `level` by onnxruntime `ort_version`."""
    st = os.stat(model)
    ident = f"{model.name}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{level}|{ort_version}"
    return hashlib.sha1(ident.encode("utf-8")).hexdigest()[:16]


def optimized_copy(model: Path, level: str) -> Path:
    """Where the saved copy of `model` optimized at `level` is (or would be) for this onnxruntime."""
    import onnxruntime as ort

    model = Path(model)
    return model.parent / OPTIMIZED_DIR / optimized_key(model, level, ort.__version__) / GRAPH_FILE


def _options(ort, level: str, threads: int | None, prepack: bool = True):
    options = ort.SessionOptions()
    options.graph_optimization_level = _level(ort, level)
    if threads:
        options.intra_op_num_threads = threads
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def _create(ort, path: Path, options):
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_session(model: Path, level: str = "basic", threads: int | None = None, prepack: bool = True):
    """An onnxruntime CPU session of `model` at optimization `level` ("basic" or "extended"),
    from its saved optimized copy when there is one, else optimizing it now and saving the copy;
    `threads` intra-op threads (default: one per core), `prepack` as the module docstring says."""
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(f"optimization level {level!r} cannot be saved portably (use one of {LEVELS})")
    model = Path(model)
    graph = optimized_copy(model, level)
    if graph.exists():
        try:
            return _create(ort, graph, _options(ort, "none", threads, prepack))
        except Exception as err:  # a damaged copy: optimize the export again, as if there were none
            log.warning("optimized copy %s does not load (%s); optimizing %s again", graph.parent, err, model)
            shutil.rmtree(graph.parent, ignore_errors=True)
    return _optimize_and_save(ort, model, graph, level, threads, prepack)


def _optimize_and_save(ort, model: Path, graph: Path, level: str, threads: int | None, prepack: bool):
    final = graph.parent
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as err:
        log.debug("cannot save an optimized copy of %s (%s)", model, err)
        return _create(ort, model, _options(ort, level, threads, prepack))
    options = _options(ort, level, threads, prepack)
    options.optimized_model_filepath = str(tmp / GRAPH_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                     str(MIN_EXTERNAL_BYTES))
    try:
        session = _create(ort, model, options)  # optimizes, then writes the copy
    except Exception as err:  # the copy could not be written (disk full, say): optimize per process
        log.debug("cannot save an optimized copy of %s (%s)", model, err)
        shutil.rmtree(tmp, ignore_errors=True)
        return _create(ort, model, _options(ort, level, threads, prepack))
    try:
        os.replace(tmp, final)
    except OSError:  # another process saved the same copy first
        shutil.rmtree(tmp, ignore_errors=True)
        return session
    for old in final.parent.iterdir():  # copies under other keys are stale, as are dead writers' leftovers
        if old.name != final.name and not old.name.startswith(f".{final.name}.tmp-"):
            shutil.rmtree(old, ignore_errors=True)
    return session
