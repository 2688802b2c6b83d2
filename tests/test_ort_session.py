"""Fast onnxruntime sessions: the graph optimized once, saved beside the model with its weights in
a separate file, and loaded from there afterwards; the saved copy computes what a session of the
model itself computes, a stale or damaged copy is never used, and a directory that cannot take
the copy only costs the optimization."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from jammi.embedding.ort_session import OPTIMIZED_DIR, WEIGHTS_FILE, load_session, optimized_copy


def write_model(path: Path, seed: int = 0) -> Path:
    """x (n, 64) -> relu(x @ W1 + b) @ W2 * 1.0: big enough initializers to go to the weights file,
    and an identity-like Mul that basic optimization folds away."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((64, 256)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(256).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((256, 32)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.ones(1, dtype=np.float32), "one")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["m"]),
             helper.make_node("Mul", ["m", "one"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32])
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def plain(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(session, x: np.ndarray) -> np.ndarray:
    return session.run(None, {"x": x})[0]


X = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)


@pytest.mark.parametrize("prepack", [True, False])
def test_saved_copy_computes_what_the_model_computes(tmp_path, prepack):
    model = write_model(tmp_path / "export" / "model.onnx")
    expected = outputs(plain(model), X)
    first = load_session(model, "basic", prepack=prepack)  # optimizes and saves the copy
    copy = optimized_copy(model, "basic")
    assert copy.exists() and (copy.parent / WEIGHTS_FILE).stat().st_size > 64 * 256 * 4
    assert copy.stat().st_size < 4096  # the graph alone: the weights are in their own file
    saved_at = copy.stat().st_mtime_ns
    second = load_session(model, "basic", prepack=prepack)  # loads the copy
    assert copy.stat().st_mtime_ns == saved_at  # not saved again
    for session in (first, second):
        np.testing.assert_allclose(outputs(session, X), expected, rtol=0, atol=1e-5)
    if prepack:
        np.testing.assert_array_equal(outputs(second, X), expected)
    assert [p.name for p in (model.parent / OPTIMIZED_DIR).iterdir()] == [copy.parent.name]


def test_a_rewritten_model_never_loads_the_old_copy(tmp_path):
    model = write_model(tmp_path / "export" / "model.onnx", seed=0)
    load_session(model, "basic")
    old = optimized_copy(model, "basic")
    write_model(model, seed=2)  # exported again: other weights, same path
    os.utime(model, ns=(old.stat().st_mtime_ns + 10**9,) * 2)
    fresh = optimized_copy(model, "basic")
    assert fresh != old
    np.testing.assert_array_equal(outputs(load_session(model, "basic"), X), outputs(plain(model), X))
    assert fresh.exists() and not old.parent.exists()  # the stale copy is removed once replaced


def test_a_damaged_copy_is_optimized_again(tmp_path):
    model = write_model(tmp_path / "export" / "model.onnx")
    load_session(model, "basic")
    copy = optimized_copy(model, "basic")
    (copy.parent / WEIGHTS_FILE).write_bytes(b"\0" * 16)  # truncated weights
    session = load_session(model, "basic")
    np.testing.assert_array_equal(outputs(session, X), outputs(plain(model), X))
    assert (copy.parent / WEIGHTS_FILE).stat().st_size > 64 * 256 * 4  # saved whole again
    np.testing.assert_array_equal(outputs(load_session(model, "basic"), X), outputs(plain(model), X))


def test_no_copy_where_it_cannot_be_written(tmp_path):
    model = write_model(tmp_path / "export" / "model.onnx")
    (model.parent / OPTIMIZED_DIR).write_text("not a directory", encoding="utf-8")
    session = load_session(model, "basic")
    np.testing.assert_array_equal(outputs(session, X), outputs(plain(model), X))
    assert (model.parent / OPTIMIZED_DIR).is_file()


def test_only_portable_levels_are_saved(tmp_path):
    model = write_model(tmp_path / "export" / "model.onnx")
    with pytest.raises(ValueError, match="cannot be saved portably"):
        load_session(model, "all")
    assert not (model.parent / OPTIMIZED_DIR).exists()
