"""Static int8 quantisation of an ONNX model from stored calibration ranges (ONNX Runtime QDQ).

A generic helper: :func:`calibrate_ranges` runs a float model over example inputs once and returns
each tensor's range (what ONNX Runtime's calibrators compute); :func:`quantize_from_ranges` writes
the int8 (QDQ) model from the float model and those ranges, with no inputs and no calibration run, so
a repository can keep the ranges (a few kB of JSON) and derive the quantised model at first use
instead of shipping it. The same float model, ranges and options give the same bytes.

``indexing/ocr_int8.py`` uses it for the PP-OCR recogniser (``IMGRAG_OCR_INT8``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

QUANT_OPSET = 13  # per-channel QDQ needs opset >= 13


def _upgraded(src: Path, dst_dir: Path) -> Path:
    """``src`` converted to opset ``QUANT_OPSET`` (if below) and through ONNX Runtime's pre-processing
    (shape inference and graph clean-up, no symbolic shapes): what the ranges are named against."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    mid = dst_dir / "opset.onnx"
    if opset < QUANT_OPSET:
        model = version_converter.convert_version(model, QUANT_OPSET)
    onnx.save(model, str(mid))
    out = dst_dir / "pre.onnx"
    quant_pre_process(str(mid), str(out), skip_symbolic_shape=True)
    return out


def calibrate_ranges(
    model: str | Path,
    inputs: Sequence[dict[str, np.ndarray]],
    *,
    percentile: float = 99.999,
    symmetric: bool = False,
) -> dict[str, list[float]]:
    """Each calibrated tensor's ``[lowest, highest]`` over ``inputs`` (feeds for the float model; any
    shapes, one run each): the exact ``(100 - percentile) / 2`` and ``(100 + percentile) / 2``
    percentiles of the tensor's values over all inputs (``symmetric``: +-the ``percentile``-th of
    their magnitudes), taken from the top and bottom values each run keeps, not from a histogram.
    100 gives the minimum and maximum. JSON-ready, sorted by name.

    ONNX Runtime's own Percentile calibrator histograms magnitudes only, so with asymmetric ranges
    it cuts every negative value to ~0, and it re-bins all histograms after each run (minutes for a
    few hundred text lines on two cores); the tensors it picks (its augmented graph) are used here."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    if not 50.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [50, 100], got {percentile}")
    feeds = list(inputs)
    if not feeds:
        raise ValueError("no calibration inputs")
    tail = (100.0 - percentile) / 100.0 if symmetric else (100.0 - percentile) / 200.0
    with tempfile.TemporaryDirectory(prefix="imgrag-calib-") as td:
        pre = _upgraded(Path(model), Path(td))
        cal = create_calibrator(pre, None, augmented_model_path=f"{td}/augmented.onnx",
                                calibrate_method=CalibrationMethod.Percentile)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(f"{td}/augmented.onnx", opts, providers=["CPUExecutionProvider"])
        names = sorted(cal.tensors_to_calibrate)
        del cal
        first = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds[0]), strict=True))
        biggest = {n: first[n].size for n in names}
        hi: dict[str, np.ndarray] = {}
        lo: dict[str, np.ndarray] = {}
        count = dict.fromkeys(names, 0)
        for i, feed in enumerate(feeds):
            outs = first if i == 0 else dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))
            for n in names:
                a = np.asarray(outs[n], dtype=np.float32).ravel()
                count[n] += a.size
                biggest[n] = max(biggest[n], a.size)
                keep = min(a.size, int(np.ceil(tail * biggest[n] * len(feeds))) + 1)
                for store, vals in ((hi, a if not symmetric else np.abs(a)), (lo, -a)):
                    held = store.get(n)
                    if held is not None and held.size >= keep:  # only values above the pool's least can enter
                        vals = vals[vals > held.min()]
                    top = vals if keep >= vals.size else np.partition(vals, vals.size - keep)[vals.size - keep:]
                    both = top if held is None else np.concatenate([held, top])
                    store[n] = both if both.size <= keep else np.partition(both, both.size - keep)[both.size - keep:]
                    if symmetric:
                        break
    out: dict[str, list[float]] = {}
    for n in names:
        m = int(np.floor(tail * count[n]))  # values beyond the cut on each side

        top = _kth_largest(hi[n], m)
        out[n] = [-top, top] if symmetric else [-_kth_largest(lo[n], m), top]
    return out


def _kth_largest(vals: np.ndarray, m: int) -> float:
    v = np.sort(vals)[::-1]
    return float(v[min(m, v.size - 1)])


def quantize_from_ranges(
    src: str | Path,
    dst: str | Path,
    ranges: dict[str, Sequence[float]],
    *,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] | None = None,
    per_channel: bool = True,
    reduce_range: bool = False,
    activations: str = "uint8",
    extra_options: dict[str, Any] | None = None,
) -> Path:
    """Write the QDQ int8 model of ``src`` (int8 weights, ``activations`` uint8 or int8) to ``dst``,
    atomically; the nodes named in ``exclude`` stay float32. ``ranges`` as :func:`calibrate_ranges`
    gives them."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quantize import (
        check_static_quant_arguments,
        load_model_with_shape_infer,
    )

    act = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activations]
    if not op_types:  # what quantize_static quantises by default: every op it has a quantised form of
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgrag-quant-", dir=dst.parent) as td:
        pre = _upgraded(Path(src), Path(td))
        model = load_model_with_shape_infer(pre)
        tensors = TensorsData(
            CalibrationMethod.MinMax,
            {k: TensorData(lowest=np.float32(v[0]), highest=np.float32(v[1])) for k, v in ranges.items()},
        )
        check_static_quant_arguments(QuantFormat.QDQ, act, QuantType.QInt8)
        quantizer = QDQQuantizer(model, per_channel, reduce_range, QuantType.QInt8, act, tensors, None,
                                 list(exclude), list(op_types), dict(extra_options or {}))
        quantizer.quantize_model()
        tmp = Path(td) / "out.onnx"
        quantizer.model.save_model_to_file(str(tmp), False)
        os.replace(tmp, dst)
    return dst


def read_ranges(path: str | Path) -> dict[str, list[float]]:
    return {k: [float(a), float(b)] for k, (a, b) in json.loads(Path(path).read_text())["ranges"].items()}
