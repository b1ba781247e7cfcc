"""OCR engines: text lines with boxes, in original-image pixels and in reading order.

The default engine wraps ``rapidocr`` (PP-OCR det/rec/cls ONNX models bundled in the wheel, Chinese +
English, no downloads). ``PaddleOcrEngine`` is an optional adapter for users who already have PaddleOCR
and its model folders on disk; it never downloads either.

Threading: models load lazily, once per process, and are shared by every engine object with the same
parameters. ONNX Runtime already spreads one inference over all cores, so calls into one model are
serialised by a lock: a thread pool may call ``recognize`` freely, it just gains nothing by doing so.
The indexing pipeline's page workers are the exception: each gets its own sessions with a share of
the cores (``threads.worker_slots``), so pages run side by side instead of queueing.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.logs import OneLineFormatter
from imgrag.indexing.models import BBox, OcrLine

if TYPE_CHECKING:  # pragma: no cover
    from rapidocr import RapidOCR

log = logging.getLogger(__name__)

ENGINE_CHOICES = ("rapidocr", "paddleocr")


@runtime_checkable
class OcrEngine(Protocol):
    """What the pipeline needs from an OCR engine."""

    name: str
    """Identity including model versions; stored in the index so results can be traced and redone."""

    def recognize(self, img: np.ndarray) -> list[OcrLine]:
        """RGB uint8 image in; lines with bbox/polygon in that image's pixels, in reading order."""
        ...

    def recognize_batch(self, imgs: Sequence[np.ndarray]) -> list[list[OcrLine]]:
        ...


# --------------------------------------------------------------------------------------------------
# small helpers shared with layout.py


def _pkg_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - only in odd installs
        return "unknown"


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Accept gray, RGB or RGBA (any numeric dtype) and return contiguous RGB uint8; alpha goes on white."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ImgragError(
            f"cannot OCR an array of shape {arr.shape}",
            "pass an RGB image as a (height, width, 3) uint8 array",
        )
    return np.ascontiguousarray(arr)


def rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    """The PP-OCR/rapid* models take BGR like OpenCV; our records are RGB."""
    return np.ascontiguousarray(to_rgb_uint8(img)[:, :, ::-1])


def rotate_cw(img: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate by a multiple of 90 degrees clockwise (the convention ``detect_orientation`` returns)."""
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    return np.ascontiguousarray(np.rot90(img, k=-(degrees // 90) % 4))


def reading_order(lines: Sequence[OcrLine], *, row_tolerance: float = 0.5) -> list[int]:
    """Indices of ``lines`` top-to-bottom, left-to-right.

    Lines whose vertical centres differ by less than ``row_tolerance`` x the smaller line height
    count as one row, so a slightly skewed or baseline-jittered row still reads left to right.
    """
    if not lines:
        return []
    boxes = np.array([ln.bbox for ln in lines], dtype=np.float64)
    yc = (boxes[:, 1] + boxes[:, 3]) / 2
    hs = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    rows: list[list[int]] = []
    row_yc: list[float] = []
    row_h: list[float] = []
    for i in np.argsort(yc, kind="stable"):
        if rows and abs(yc[i] - row_yc[-1]) <= row_tolerance * min(hs[i], row_h[-1]):
            rows[-1].append(int(i))
            n = len(rows[-1])
            row_yc[-1] += (yc[i] - row_yc[-1]) / n
            row_h[-1] += (hs[i] - row_h[-1]) / n
        else:
            rows.append([int(i)])
            row_yc.append(float(yc[i]))
            row_h.append(float(hs[i]))
    return [i for row in rows for i in sorted(row, key=lambda j: (boxes[j, 0], boxes[j, 1]))]


def _is_junk(text: str) -> bool:
    """Nothing a search could match: empty, or only punctuation/box-drawing (table rules, dots)."""
    stripped = text.strip()
    return not stripped or not any(ch.isalnum() for ch in stripped)


def _line_from_quad(quad: np.ndarray, text: str, score: float, w: int, h: int) -> OcrLine:
    quad = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    quad[:, 0] = np.clip(quad[:, 0], 0, w)
    quad[:, 1] = np.clip(quad[:, 1], 0, h)
    bbox: BBox = (
        float(quad[:, 0].min()),
        float(quad[:, 1].min()),
        float(quad[:, 0].max()),
        float(quad[:, 1].max()),
    )
    return OcrLine(
        text=text.strip(),
        bbox=bbox,
        polygon=[(round(float(x), 1), round(float(y), 1)) for x, y in quad],
        confidence=float(score),
    )


def quiet_loggers(prefixes: tuple[str, ...], level: int = logging.WARNING) -> None:
    """Silence the rapid* packages' INFO chatter (each creates its own handler at INFO).

    Pre-attaching a handler at ``level`` matters: their ``Logger`` helper resets the logger's level
    to INFO whenever a model is constructed, but only adds a handler if none exists.
    """
    import sys

    names = set(logging.root.manager.loggerDict) | set(sys.modules)
    for name in names:
        if not name.startswith(prefixes):
            continue
        lg = logging.getLogger(name)
        lg.setLevel(level)
        if lg.handlers:
            for handler in lg.handlers:
                handler.setLevel(max(handler.level, level))
        else:
            handler = logging.StreamHandler()
            handler.setLevel(level)
            handler.setFormatter(OneLineFormatter("[%(levelname)s] %(name)s: %(message)s"))
            lg.addHandler(handler)
            lg.propagate = False


# --------------------------------------------------------------------------------------------------
# RapidOCR


@dataclass
class TextDetection:
    """What the text detector found on one image: what ``RapidOcrEngine.read`` recognises next.

    ``bgr`` is the image the detector saw (after the small-image upscale by ``scale``); ``size`` is
    the caller's image size (w, h); ``crops`` the perspective-corrected line crops."""

    bgr: np.ndarray
    size: tuple[int, int]
    scale: float = 1.0
    crops: list[np.ndarray] = field(default_factory=list)
    raw: Any = None  # rapidocr's TextDetOutput (boxes in the detector's working pixels)
    op_record: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.crops

    def quads(self) -> np.ndarray:
        """(N, 4, 2) line quadrilaterals in ``bgr`` pixels."""
        from rapidocr.utils.process_img import map_boxes_to_original

        h, w = self.bgr.shape[:2]
        return map_boxes_to_original(np.array(self.raw.boxes, dtype=np.float64), dict(self.op_record), h, w)


@runtime_checkable
class DetectsFirst(Protocol):
    """An engine whose detection and recognition can be run apart (the indexing pipeline's fast path)."""

    def detect(self, img: np.ndarray) -> TextDetection: ...

    def read(self, det: TextDetection) -> list[OcrLine]: ...

    def orientation(self, det: TextDetection) -> int: ...



_RAPID_LOCK = threading.Lock()
_RAPID_CACHE: dict[tuple[Any, ...], tuple[RapidOCR, threading.Lock]] = {}


def _rapid_params(
    det_max_side: int, threads: int | None, rec_batch: int, use_cls: bool, rec_model: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "Global.log_level": "error",  # its INFO/WARNING lines ("detection result is empty") are noise
        "Global.text_score": 0.0,  # we filter ourselves, after dropping junk
        "Global.use_cls": use_cls,
        # "max" bounds the det input; rapidocr's default "min"/736 upscales every small image (3x slower
        # on a 1000x400 crop); small inputs are upscaled by us instead, see RapidOcrEngine.recognize.
        "Det.limit_type": "max",
        "Det.limit_side_len": int(det_max_side),
        "Rec.rec_batch_num": int(rec_batch),
    }
    if rec_model is not None:  # the int8 recogniser (indexing/ocr_int8.py); its character list is in its metadata
        params["Rec.model_path"] = rec_model
    from imgrag.indexing.threads import ort_engine_cfg

    for k, v in ort_engine_cfg(threads).items():  # threads, and the memory arena (IMGRAG_ORT_ARENA)
        params[f"EngineConfig.onnxruntime.{k}"] = v
    return params


_DET_LUTS: dict[tuple[float, ...], np.ndarray] = {}


def _det_input(op: Any, img: np.ndarray) -> np.ndarray | None:
    """rapidocr's detector input (``DetPreProcess.__call__``) through a 256-entry float32 table:
    the same bytes (the table holds what its float64 arithmetic gives each byte value), ~10 instead of
    ~44 CPU-ms for a 1600 x 1120 page, which the detector sees about once a page."""
    resized = op.resize(img)
    if resized is None:
        return None
    mean, std = np.asarray(op.mean, dtype=np.float64).ravel(), np.asarray(op.std, dtype=np.float64).ravel()
    if resized.dtype != np.uint8 or resized.ndim != 3 or len(set(mean)) != 1 or len(set(std)) != 1:
        out = op.normalize(resized)  # another input or per-channel constants: rapidocr's own arithmetic
        return np.expand_dims(op.permute(out), axis=0).astype(np.float32)
    key = (float(op.scale), float(mean[0]), float(std[0]))
    lut = _DET_LUTS.get(key)
    if lut is None:
        lut = _DET_LUTS[key] = ((np.arange(256, dtype=np.float32) * op.scale - mean[:1]) / std[:1]).astype(np.float32)
    return np.take(lut, resized.transpose(2, 0, 1))[None]


def patch_det_input() -> None:
    """Route rapidocr's detector preprocessing through ``_det_input`` (idempotent)."""
    try:
        from rapidocr.ch_ppocr_det.utils import DetPreProcess
    except ImportError as exc:  # another rapidocr layout: its own preprocessing stays
        log.debug("cannot route rapidocr's detector input: %s", exc)
        return
    if getattr(DetPreProcess.__call__, "__imgrag_lut__", False):
        return

    def call(self: Any, img: np.ndarray) -> np.ndarray | None:
        return _det_input(self, img)

    call.__imgrag_lut__ = True  # type: ignore[attr-defined]
    DetPreProcess.__call__ = call


def _get_rapidocr(
    det_max_side: int, threads: int | None, rec_batch: int, use_cls: bool, rec_model: str | None = None
) -> tuple[RapidOCR, threading.Lock]:
    """One RapidOCR per parameter set per process (its det/cls/rec sessions load on first use)."""
    from imgrag.indexing.threads import arena_enabled, session_slot

    key: tuple[Any, ...] = (det_max_side, threads, rec_batch, use_cls, rec_model, arena_enabled())

    own = session_slot()
    if own is not None and threads is None:  # a page-analysis worker: its own sessions (threads.worker_slots)
        threads = own[0]
        key += own
    with _RAPID_LOCK:
        hit = _RAPID_CACHE.get(key)
        if hit is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:  # pragma: no cover - it is a hard dependency
                raise ImgragError("rapidocr is not installed", "pip install 'rapidocr>=3.4' onnxruntime") from exc
            from imgrag.indexing.threads import patch_ort_sessions

            patch_ort_sessions()
            patch_det_input()
            hit = (RapidOCR(params=_rapid_params(det_max_side, threads, rec_batch, use_cls, rec_model)), threading.Lock())
            _RAPID_CACHE[key] = hit
        return hit


@lru_cache(maxsize=1)
def _rapid_model_names() -> str:
    """Names of the bundled det/rec/cls models rapidocr's default config resolves to (no loading)."""
    try:
        from rapidocr.inference_engine.base import FileInfo, InferSession
        from rapidocr.main import DEFAULT_CFG_PATH
        from rapidocr.utils.parse_parameters import ParseParams

        cfg = ParseParams.load(DEFAULT_CFG_PATH)
        names = []
        for part in (cfg.Det, cfg.Rec, cfg.Cls):
            info = InferSession.get_model_url(
                FileInfo(
                    engine_type=part.engine_type,
                    ocr_version=part.ocr_version,
                    task_type=part.task_type,
                    lang_type=part.lang_type,
                    model_type=part.model_type,
                )
            )
            names.append(Path(str(info["model_dir"])).stem)
        return "+".join(names)
    except Exception:  # pragma: no cover - identity is informative only
        return "default"


class RapidOcrEngine:
    """PP-OCR (rapidocr + onnxruntime) with the models bundled in the wheel.

    ``det_max_side`` bounds the detector input (1600 keeps 9-pt text on a 150 dpi A4 page and costs
    ~0.5 s of detection on 2 cores); images whose long side is below ``upscale_below`` are enlarged
    first so small crops (``ocr_region``) still detect. ``min_confidence`` drops lines whose
    recognition score is below it; lines with no letter, digit or CJK character are always dropped.
    ``rec_batch`` 1 (rapidocr's default is 6) measured 5-25 % faster on 2 CPU cores; ``threads`` sets
    ONNX Runtime's intra-op threads (default: one per physical core). ``int8_cache`` (a folder) reads
    with the int8 recogniser derived into it at first use (``IMGRAG_OCR_INT8``, indexing/ocr_int8.py);
    the engine's name then carries that model's identity.
    """

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        det_max_side: int = 1600,
        upscale_below: int = 640,
        threads: int | None = None,
        rec_batch: int = 1,
        use_cls: bool = True,
        int8_cache: str | Path | None = None,
    ) -> None:
        self.min_confidence = float(min_confidence)
        self.det_max_side = int(det_max_side)
        self.upscale_below = int(upscale_below)
        self.threads = threads
        self.rec_batch = int(rec_batch)
        self.use_cls = bool(use_cls)
        self.name = f"rapidocr-{_pkg_version('rapidocr')}:{_rapid_model_names()}"
        self.int8_cache = None if int8_cache is None else Path(int8_cache)
        self._rec_model: str | None = None
        if self.int8_cache is not None:
            from .ocr_int8 import identity

            self.name += f"+{identity()}"

    def _engine(self) -> tuple[RapidOCR, threading.Lock]:
        if self.int8_cache is not None and self._rec_model is None:
            from .ocr_int8 import int8_model

            self._rec_model = str(int8_model(self.int8_cache))
        return _get_rapidocr(self.det_max_side, self.threads, self.rec_batch, self.use_cls, self._rec_model)

    def load(self) -> None:
        """Create the det/cls/rec sessions now (rapidocr 3.x creates them on first use)."""
        rapid, lock = self._engine()
        with lock:
            for name in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
                loader = getattr(rapid, name, None)
                if callable(loader):
                    loader()

    def detect(self, img: np.ndarray) -> TextDetection:
        """Stage 1 of ``recognize``: text-line boxes only (the detector is ~40 % of a page's OCR).

        The pipeline looks at them before paying for recognition: no boxes means no recogniser and
        no layout model, and the page orientation is read off the same boxes (``orientation``)."""
        rgb = to_rgb_uint8(img)
        h, w = rgb.shape[:2]
        if h < 2 or w < 2:
            return TextDetection(bgr=rgb[:, :, ::-1], size=(w, h))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        scale = 1.0
        long_side = max(h, w)
        if long_side < self.upscale_below:
            import cv2

            scale = min(4.0, self.upscale_below / long_side)
            bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        engine, lock = self._engine()
        from rapidocr.main import RapidOCRError

        work, op_record = engine.preprocess_img(bgr)
        with lock:
            try:
                crops, det_res = engine.detect_and_crop(work, op_record)
            except RapidOCRError:  # "the text detection result is empty"
                return TextDetection(bgr=bgr, size=(w, h), scale=scale)
        return TextDetection(bgr=bgr, size=(w, h), scale=scale, crops=crops, raw=det_res, op_record=op_record)

    def text_score(self, img: np.ndarray, side: int) -> int:
        """How many text lines a cheap look finds: the detector (with its own thresholds) on a copy
        of ``img`` shrunk to long side ``side`` (area averaging; never enlarged). The indexing
        pipeline's gate for photos: a 384 px look sees ~1/3 of the pixels ``detect`` sees on a 512 px
        photo (enlarged to ``upscale_below``), and 0 means the full detector, the recogniser and
        the layout model are skipped (docs/performance.md)."""
        import cv2

        rgb = to_rgb_uint8(img)
        h, w = rgb.shape[:2]
        if min(h, w) < 2:
            return 0
        f = min(1.0, side / max(h, w))
        if f < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        engine, lock = self._engine()
        with lock:
            out = engine._load_det_model()(np.ascontiguousarray(rgb[:, :, ::-1]))  # rapidocr 3.x: TextDetector
        return 0 if out.boxes is None else len(out.boxes)

    def read(self, det: TextDetection) -> list[OcrLine]:
        """Stage 2 of ``recognize``: direction classifier + recogniser on ``det``'s line crops."""
        if det.empty:
            return []
        from rapidocr.ch_ppocr_cls import TextClsOutput
        from rapidocr.main import RapidOCRError

        engine, lock = self._engine()
        cls_res = TextClsOutput()
        with lock:
            try:
                imgs = det.crops
                if engine.use_cls:
                    imgs, cls_res = engine.cls_and_rotate(imgs)
                rec_res = engine.recognize_txt(imgs)
            except RapidOCRError:
                return []
        raw = copy.copy(det.raw)
        raw.boxes = np.array(det.raw.boxes, copy=True)  # build_final_output maps them in place
        out = engine.build_final_output(det.bgr, raw, cls_res, rec_res, list(det.crops), dict(det.op_record))
        boxes = getattr(out, "boxes", None)
        txts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        if boxes is None or txts is None or scores is None or len(txts) == 0:
            return []
        w, h = det.size
        lines: list[OcrLine] = []
        for quad, text, score in zip(boxes, txts, scores):
            if float(score) < self.min_confidence or _is_junk(text):
                continue
            lines.append(_line_from_quad(np.asarray(quad) / det.scale, text, float(score), w, h))
        return [lines[i] for i in reading_order(lines)]

    def orientation(self, det: TextDetection, **kw: Any) -> int:
        """``detect_orientation``'s answer for the image ``det`` was run on, from ``det``'s boxes:
        no second pass of the detector."""
        if det.empty:
            return 0
        engine, lock = self._engine()
        return _orientation_from_quads(det.bgr, det.quads(), engine, lock, **kw)

    def recognize(self, img: np.ndarray) -> list[OcrLine]:
        return self.read(self.detect(img))

    def recognize_batch(self, imgs: Sequence[np.ndarray]) -> list[list[OcrLine]]:
        # rapidocr has no cross-image batching; one image already fills the cores.
        return [self.recognize(im) for im in imgs]


# --------------------------------------------------------------------------------------------------
# PaddleOCR (optional)

_PADDLE_HINT = (
    "install it with `pip install 'imgrag[paddle]' paddlepaddle` and download the PP-OCR model folders, "
    "then pass their paths (or set IMGRAG_PADDLE_MODEL_DIR to a folder holding them); "
    "or use the default engine, IMGRAG_OCR_ENGINE=rapidocr"
)


def _find_subdir(root: Path, needles: Iterable[str]) -> Path | None:
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        low = child.name.lower()
        if any(n in low for n in needles):
            return child
    return None


class PaddleOcrEngine:
    """PaddleOCR 3.x pipeline on local model folders only (PaddleOCR would otherwise download them).

    Give ``det_model_dir`` and ``rec_model_dir`` (and optionally ``cls_model_dir`` for the text-line
    orientation model), or ``model_dir``: a folder whose sub-folders are named ``*det*``, ``*rec*`` and
    optionally ``*textline_ori*``/``*cls*``. Without them, or without ``paddleocr`` importable,
    construction raises ``ImgragError`` naming the fix.
    """

    def __init__(
        self,
        det_model_dir: str | Path | None = None,
        rec_model_dir: str | Path | None = None,
        cls_model_dir: str | Path | None = None,
        *,
        model_dir: str | Path | None = None,
        det_model_name: str | None = None,
        rec_model_name: str | None = None,
        min_confidence: float = 0.5,
        device: str = "cpu",
    ) -> None:
        if model_dir is not None:
            root = Path(model_dir).expanduser()
            if not root.is_dir():
                raise ImgragError(f"PaddleOCR model folder {root} does not exist", _PADDLE_HINT)
            det_model_dir = det_model_dir or _find_subdir(root, ("det",))
            rec_model_dir = rec_model_dir or _find_subdir(root, ("rec",))
            cls_model_dir = cls_model_dir or _find_subdir(root, ("textline_ori", "cls"))
        if det_model_dir is None or rec_model_dir is None:
            raise ImgragError(
                "the paddleocr engine needs local detection and recognition model folders", _PADDLE_HINT
            )
        dirs = {"det": Path(det_model_dir).expanduser(), "rec": Path(rec_model_dir).expanduser()}
        if cls_model_dir is not None:
            dirs["cls"] = Path(cls_model_dir).expanduser()
        for role, path in dirs.items():
            if not path.is_dir():
                raise ImgragError(f"PaddleOCR {role} model folder {path} does not exist", _PADDLE_HINT)
        if importlib.util.find_spec("paddleocr") is None:
            raise ImgragError("the paddleocr engine was chosen but paddleocr is not installed", _PADDLE_HINT)
        self.dirs = dirs
        self.det_model_name = det_model_name
        self.rec_model_name = rec_model_name
        self.min_confidence = float(min_confidence)
        self.device = device
        self.name = (
            f"paddleocr-{_pkg_version('paddleocr')}:"
            f"{det_model_name or dirs['det'].name}+{rec_model_name or dirs['rec'].name}"
        )

    def _pipeline(self) -> tuple[Any, threading.Lock]:
        """The PaddleOCR pipeline for these folders, built on first use and shared process-wide."""
        key = tuple(sorted((k, str(v)) for k, v in self.dirs.items())) + (self.device,)
        with _PADDLE_LOCK:
            hit = _PADDLE_CACHE.get(key)
            if hit is None:
                from paddleocr import PaddleOCR

                pipeline = PaddleOCR(
                    text_detection_model_dir=str(self.dirs["det"]),
                    text_detection_model_name=self.det_model_name,
                    text_recognition_model_dir=str(self.dirs["rec"]),
                    text_recognition_model_name=self.rec_model_name,
                    textline_orientation_model_dir=str(self.dirs["cls"]) if "cls" in self.dirs else None,
                    use_textline_orientation="cls" in self.dirs,
                    use_doc_orientation_classify=False,  # those would need more downloaded models
                    use_doc_unwarping=False,
                    device=self.device,
                )
                hit = _PADDLE_CACHE[key] = (pipeline, threading.Lock())
            return hit

    def recognize(self, img: np.ndarray) -> list[OcrLine]:
        bgr = rgb_to_bgr(img)  # PaddleX treats arrays as BGR
        h, w = bgr.shape[:2]
        ocr, lock = self._pipeline()
        with lock:
            results = list(ocr.predict(bgr))
        lines: list[OcrLine] = []
        for res in results:
            for text, score, poly in zip(res["rec_texts"], res["rec_scores"], res["rec_polys"]):
                if float(score) < self.min_confidence or _is_junk(str(text)):
                    continue
                lines.append(_line_from_quad(np.asarray(poly, dtype=np.float64), str(text), float(score), w, h))
        return [lines[i] for i in reading_order(lines)]

    def recognize_batch(self, imgs: Sequence[np.ndarray]) -> list[list[OcrLine]]:
        return [self.recognize(im) for im in imgs]


_PADDLE_LOCK = threading.Lock()
_PADDLE_CACHE: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}


# --------------------------------------------------------------------------------------------------
# factory

_FACTORIES: dict[str, Callable[..., OcrEngine]] = {
    "rapidocr": RapidOcrEngine,
    "paddleocr": PaddleOcrEngine,
}


def get_ocr_engine(name: str = "rapidocr", **opts: Any) -> OcrEngine:
    """Build an engine by name; options go to its constructor. Unknown names list the choices."""
    key = (name or "rapidocr").strip().lower()
    factory = _FACTORIES.get(key)
    if factory is None:
        raise ImgragError(
            f"unknown OCR engine {name!r}",
            f"choose one of: {', '.join(ENGINE_CHOICES)} (IMGRAG_OCR_ENGINE)",
        )
    try:
        return factory(**opts)
    except TypeError as exc:
        raise ImgragError(f"bad option for OCR engine {key!r}: {exc}", "check the engine's options") from exc


# --------------------------------------------------------------------------------------------------
# page orientation


def _crop_axis_aligned(img: np.ndarray, quad: np.ndarray, pad: int = 2) -> np.ndarray:
    h, w = img.shape[:2]
    x0 = max(int(np.floor(quad[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(quad[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + pad, w)
    y1 = min(int(np.ceil(quad[:, 1].max())) + pad, h)
    return img[y0:y1, x0:x1]


def _middle_chunk(crop: np.ndarray, max_ratio: float = 8.0) -> np.ndarray:
    """A centred piece at most ``max_ratio`` times as wide as high: symmetric under a 180° turn and
    cheap to recognise (long lines cost rec time linearly)."""
    h, w = crop.shape[:2]
    cw = int(h * max_ratio)
    if w <= cw:
        return crop
    x0 = (w - cw) // 2
    return crop[:, x0 : x0 + cw]


def detect_orientation(
    img: np.ndarray,
    *,
    max_side: int = 960,
    max_lines: int = 8,
    elongation: float = 2.0,
    engine: RapidOcrEngine | None = None,
) -> int:
    """Degrees clockwise (0/90/180/270) to rotate ``img`` so its text is upright; 0 when unsure.

    1. The PP-OCR detector on a copy downscaled to ``max_side`` finds text lines; whether they run
       mostly horizontally or vertically decides {0, 180} versus {90, 270}.
    2. The longest lines are cropped from the full-size image and turned horizontal; the bundled
       text-direction classifier votes 0 vs 180. If its vote is not clear, recognition confidence of
       each crop as-is versus turned 180° decides.
    Vertical CJK writing is rare in the documents we index and would read as a 90° page.
    ``engine`` picks whose loaded models to reuse (default: the default ``RapidOcrEngine``'s).
    """
    import cv2

    rgb = to_rgb_uint8(img)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    h, w = bgr.shape[:2]
    if min(h, w) < 8:
        return 0
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(bgr, (max(round(w * scale), 1), max(round(h * scale), 1)), interpolation=cv2.INTER_AREA) if scale < 1 else bgr

    rapid, lock = (engine or RapidOcrEngine())._engine()
    with lock:
        det_out = rapid._load_det_model()(small)  # rapidocr 3.x: lazily built TextDetector
    if det_out.boxes is None or len(det_out.boxes) == 0:
        return 0
    quads = np.asarray(det_out.boxes, dtype=np.float64) / scale
    return _orientation_from_quads(bgr, quads, rapid, lock, max_lines=max_lines, elongation=elongation)


def _orientation_from_quads(
    bgr: np.ndarray, quads: np.ndarray, rapid: Any, lock: threading.Lock, *, max_lines: int = 8, elongation: float = 2.0
) -> int:
    """Steps 1-2 of ``detect_orientation`` on text-line quads already found in ``bgr`` (its pixels)."""
    xs, ys = quads[..., 0], quads[..., 1]
    dx = xs.max(1) - xs.min(1)
    dy = ys.max(1) - ys.min(1)
    horizontal = dx > elongation * dy
    vertical = dy > elongation * dx
    hor_w, ver_w = float(dx[horizontal].sum()), float(dy[vertical].sum())
    if hor_w == 0 and ver_w == 0:
        return 0
    if hor_w >= 2 * ver_w:
        base, chosen = 0, horizontal
    elif ver_w >= 2 * hor_w:
        base, chosen = 90, vertical
    else:
        log.debug("orientation unsure: horizontal %.0f px vs vertical %.0f px of text", hor_w, ver_w)
        return 0

    idx = np.flatnonzero(chosen)
    idx = idx[np.argsort(-np.maximum(dx[idx], dy[idx]))][:max_lines]
    crops = []
    for i in idx:
        crop = _crop_axis_aligned(bgr, quads[i])
        if crop.shape[0] >= 4 and crop.shape[1] >= 4:
            crops.append(_middle_chunk(rotate_cw(crop, base)))
    if not crops:
        return 0

    with lock:
        cls_out = rapid._load_cls_model()(crops)
    p180 = [float(p) if str(label) == "180" else 1.0 - float(p) for label, p in cls_out.cls_res]
    vote = float(np.mean(p180))
    if vote >= 0.7:
        return (base + 180) % 360
    if vote <= 0.3:
        return base

    from rapidocr.ch_ppocr_rec.typings import TextRecInput

    with lock:
        rec = rapid._load_rec_model()
        up = rec(TextRecInput(img=crops)).scores
        down = rec(TextRecInput(img=[rotate_cw(c, 180) for c in crops])).scores
    up_s, down_s = float(np.mean(up)), float(np.mean(down))
    log.debug("orientation: cls vote %.2f, rec upright %.3f vs flipped %.3f", vote, up_s, down_s)
    if abs(up_s - down_s) < 0.05:
        return 0
    return base if up_s > down_s else (base + 180) % 360
