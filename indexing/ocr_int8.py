"""The PP-OCR text recogniser in int8 (``IMGRAG_OCR_INT8``), derived at first use, never shipped.

The float32 recogniser rapidocr bundles (PP-OCRv6_rec_small) is ~54 % of a document page's CPU.
This module writes its static int8 (QDQ) version into the model cache the first time it is asked
for: opset 11 -> 13, per-channel int8 weights, uint8 activations, the activation ranges read from
``ocr_int8_ranges.json`` beside this file (calibrated once by ``benchmarks/calibrate_ocr_int8.py``
on rendered text lines and generated pages, none from the evals' pages), and the layers in
``RECIPE["float32"]`` left in float32 (the ones whose quantisation dropped spaces between words).
The same float model, ranges and recipe give the same bytes; the file name and the engine's identity
carry a hash of all three, so an index read with it is told apart from one read in float32.

The figures (lines read differently, CPU a page) are in docs/performance.md, session 12.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ImgragError

log = logging.getLogger(__name__)

RANGES_FILE = Path(__file__).with_name("ocr_int8_ranges.json")
FLOAT_MODEL = "PP-OCRv6_rec_small.onnx"
_LOCK = threading.Lock()


def _ranges_doc() -> dict[str, Any]:
    return json.loads(RANGES_FILE.read_text())


@lru_cache(maxsize=1)
def recipe() -> dict[str, Any]:
    """What the int8 model is made with: the quantiser's options and the float32 layers (from the
    ranges file, where the calibration script writes them beside the ranges)."""
    doc = _ranges_doc()
    return dict(doc["recipe"])


def float_model_path() -> Path:
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ImgragError("rapidocr is not installed", "pip install 'rapidocr>=3.4' onnxruntime") from exc
    path = Path(rapidocr.__file__).parent / "models" / FLOAT_MODEL
    if not path.is_file():
        raise ImgragError(
            f"IMGRAG_OCR_INT8 needs rapidocr's bundled {FLOAT_MODEL}, not found at {path}",
            "reinstall rapidocr (pip install --force-reinstall 'rapidocr>=3.4,<4') or unset IMGRAG_OCR_INT8",
        )
    return path


@lru_cache(maxsize=4)
def _sha(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha(path: Path) -> str:
    st = path.stat()
    return _sha(str(path), st.st_size, st.st_mtime)


def identity() -> str:
    """``rec-int8-<hash>``: changes with the float model, the ranges or the recipe."""
    h = hashlib.sha256()
    h.update(file_sha(float_model_path()).encode())
    h.update(RANGES_FILE.read_bytes())
    return f"rec-int8-{h.hexdigest()[:10]}"


def int8_model(cache_dir: Path) -> Path:
    """The int8 recogniser under ``cache_dir`` (``ocr-int8/<identity>.onnx``), written on first use
    (~2-3 CPU-s, once per cache), then reused."""
    out = Path(cache_dir) / "ocr-int8" / f"{identity()}.onnx"
    if out.is_file():
        return out
    with _LOCK:
        if out.is_file():
            return out
        doc = _ranges_doc()
        src = float_model_path()
        if doc.get("float_sha256") not in (None, file_sha(src)):
            raise ImgragError(
                f"IMGRAG_OCR_INT8: the calibration ranges in {RANGES_FILE.name} were made for another {FLOAT_MODEL} "
                "than the one rapidocr bundles now",
                "unset IMGRAG_OCR_INT8, or re-calibrate: python benchmarks/calibrate_ocr_int8.py",
            )
        from .ortquant import quantize_from_ranges

        r = recipe()
        log.info("writing the int8 recogniser %s (once)", out)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            quantize_from_ranges(
                src, tmp, {k: v for k, v in doc["ranges"].items()},
                exclude=r.get("float32", []), per_channel=bool(r.get("per_channel", True)),
                reduce_range=bool(r.get("reduce_range", False)), activations=str(r.get("activations", "uint8")),
                op_types=r.get("op_types"), extra_options=r.get("extra_options"),
            )
            if float(r.get("space_scale", 1.0)) != 1.0:
                scale_space(tmp, float(r["space_scale"]))
            os.replace(tmp, out)
        except ImportError as exc:
            raise ImgragError(
                f"IMGRAG_OCR_INT8 needs onnx and onnxruntime's quantisation tools ({exc})",
                "pip install 'onnx>=1.16' onnxruntime, or unset IMGRAG_OCR_INT8",
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
    return out


def scale_space(path: Path, factor: float) -> None:
    """Multiply the space character's probability in the recogniser's output by ``factor`` and
    renormalise (a Mul, ReduceSum and Div after its softmax), in place.

    int8 arithmetic lowers the space class's probability systematically: the quantised model drops
    spaces between words ("1.1.6 Virtual" -> "1.1.6Virtual") far more often than it adds one; the
    factor (the recipe's ``space_scale``, chosen on the calibration set) gives some of it back. The
    space is the last class: rapidocr decodes [blank] + the model's ``character`` list + [" "]."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    chars = next((p.value for p in model.metadata_props if p.key == "character"), None)
    out = model.graph.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if chars is None or not dims or dims[-1] != len(chars.splitlines()) + 2:
        raise ImgragError(f"IMGRAG_OCR_INT8: cannot find the space class in {path.name}'s output",
                          "unset IMGRAG_OCR_INT8, or re-calibrate: python benchmarks/bench_ocr_int8.py")
    scale = np.ones((dims[-1],), np.float32)
    scale[-1] = factor
    name = out.name
    for node in model.graph.node:
        node.output[:] = [f"{name}_raw" if o == name else o for o in node.output]
    model.graph.initializer.extend([numpy_helper.from_array(scale, "imgrag_space_scale"),
                                    numpy_helper.from_array(np.array([-1], np.int64), "imgrag_space_axes")])
    model.graph.node.extend([
        helper.make_node("Mul", [f"{name}_raw", "imgrag_space_scale"], [f"{name}_scaled"], name="imgrag_space_scale"),
        helper.make_node("ReduceSum", [f"{name}_scaled", "imgrag_space_axes"], [f"{name}_sum"], name="imgrag_space_sum",
                         keepdims=1),
        helper.make_node("Div", [f"{name}_scaled", f"{name}_sum"], [name], name="imgrag_space_norm"),
    ])
    onnx.save(model, str(path))
