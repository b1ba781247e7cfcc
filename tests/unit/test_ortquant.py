"""Static int8 quantisation from stored ranges (indexing/ortquant.py) on a two-layer model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from imgrag.indexing.ortquant import calibrate_ranges, quantize_from_ranges


def _model(path: Path) -> Path:
    """x (1, 3, 8, W) -> Conv 3->4 (3x3, pad 1) -> Relu -> Conv 4->2 (1x1): opset 11, as rapidocr's."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(2, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="Conv.0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="Relu.0"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="Conv.1"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, "w"])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(1, 3, 8, int(w))).astype(np.float32)} for w in rng.integers(8, 40, n)]


def test_percentile_100_gives_each_tensors_minimum_and_maximum(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    feeds = _feeds(6)
    ranges = calibrate_ranges(src, feeds, percentile=100.0)
    xs = np.concatenate([f["x"].ravel() for f in feeds])
    assert ranges["x"] == pytest.approx([float(xs.min()), float(xs.max())])
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    ys = np.concatenate([sess.run(None, f)[0].ravel() for f in feeds])
    assert ranges["y"] == pytest.approx([float(ys.min()), float(ys.max())], rel=1e-5)


def test_a_percentile_cuts_the_tails_on_both_sides(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    feeds = _feeds(6)
    xs = np.sort(np.concatenate([f["x"].ravel() for f in feeds]))
    ranges = calibrate_ranges(src, feeds, percentile=99.0)  # 0.5 % cut each side
    cut = int(np.floor(0.005 * xs.size))
    assert ranges["x"] == pytest.approx([float(xs[cut]), float(xs[-1 - cut])])
    assert ranges["x"][0] < 0 < ranges["x"][1]  # negatives kept (ORT's histogram percentile cuts them to ~0)
    sym = calibrate_ranges(src, feeds, percentile=99.0, symmetric=True)["x"]
    assert sym[0] == -sym[1] and sym[1] == pytest.approx(float(np.sort(np.abs(xs))[-1 - int(np.floor(0.01 * xs.size))]))


def test_the_int8_model_is_deterministic_reads_close_and_keeps_excluded_layers_float(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.onnx")
    feeds = _feeds(8)
    ranges = calibrate_ranges(src, feeds, percentile=100.0)
    a = quantize_from_ranges(src, tmp_path / "a.onnx", ranges)
    b = quantize_from_ranges(src, tmp_path / "b.onnx", ranges)
    assert a.read_bytes() == b.read_bytes()
    qa = onnx.load(str(a))
    assert sum(n.op_type == "QuantizeLinear" for n in qa.graph.node) >= 2
    assert qa.opset_import[0].version >= 13
    f = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(a), providers=["CPUExecutionProvider"])
    x = feeds[0]
    want, got = f.run(None, x)[0], q.run(None, x)[0]
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    assert not np.array_equal(got, want)
    # Conv.1 kept float32: its weight stays a float initializer with no DequantizeLinear in front
    c = quantize_from_ranges(src, tmp_path / "c.onnx", ranges, exclude=["Conv.1"])
    qc = onnx.load(str(c))
    conv1 = next(n for n in qc.graph.node if n.name == "Conv.1")
    assert "w2" in conv1.input
    assert c.read_bytes() != a.read_bytes()
