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
    (~10-30 s, once per cache), then reused."""
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
        try:
            quantize_from_ranges(
                src, out, {k: v for k, v in doc["ranges"].items()},
                exclude=r.get("float32", []), per_channel=bool(r.get("per_channel", True)),
                reduce_range=bool(r.get("reduce_range", False)), activations=str(r.get("activations", "uint8")),
                op_types=r.get("op_types"), extra_options=r.get("extra_options"),
            )
        except ImportError as exc:
            raise ImgragError(
                f"IMGRAG_OCR_INT8 needs onnx and onnxruntime's quantisation tools ({exc})",
                "pip install 'onnx>=1.16' onnxruntime, or unset IMGRAG_OCR_INT8",
            ) from exc
    return out
