"""Classify an image by source/quality and enhance it so OCR and embedders see consistent input.

Everything downstream reports boxes in *original* pixels, so every geometric step here is
recorded in one 3x3 matrix (``Preprocessed.to_original``) that maps processed-image
coordinates back. Coordinates are continuous: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``,
so a bbox ``(0, 0, W, H)`` is the whole image, whatever the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from imgrag.indexing.models import BBox, Enhancement, QualityClass

OrientationFn = Callable[[np.ndarray], int]
"""Returns the degrees (0/90/180/270) the image must be rotated *clockwise* to be upright."""

_CLASSIFY_SIDE = 800  # long side of the copy the cheap statistics are computed on
_PATCH = 384  # full-resolution window for noise / blur / stroke statistics
_ANALYSE_SIDE = 1200  # long side of the copy used for text height and skew
_MAX_SKEW = 15.0
_MIN_SKEW = 0.3


def as_rgb(img: np.ndarray) -> np.ndarray:
    """Accept grey and RGBA too: loaders differ, and failing on them helps nobody."""
    if img.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image, got dtype {img.dtype}; convert with np.clip(img, 0, 255).astype(np.uint8)"
        )
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {img.shape}")


def shrink(img: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Downscale by the smallest integer factor k giving long side ≤ ``max_side``; returns (copy, k).

    Integer area averaging is OpenCV's fast path (4-10x faster than a fractional INTER_AREA) and
    keeps the mapping exact: small-image coordinate × k = full-image coordinate. Up to k-1 trailing
    rows/columns are dropped.
    """
    h, w = img.shape[:2]
    k = -(-max(h, w) // max_side)
    if k <= 1:
        return img, 1
    h2, w2 = max(1, h // k), max(1, w // k)
    return cv2.resize(img[: h2 * k, : w2 * k], (w2, h2), interpolation=cv2.INTER_AREA), k


def _counts(gray: np.ndarray) -> np.ndarray:
    """``np.bincount(gray.ravel(), minlength=256)`` of a uint8 array, by OpenCV (~3x faster; the
    counts are whole numbers in float32, exact below 2**24 pixels, more than a classified copy has)."""
    if gray.size >= 2**24:
        return np.bincount(gray.ravel(), minlength=256)
    return cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.int64)


def _percentile(gray: np.ndarray, q: float, counts: np.ndarray | None = None) -> float:
    """Percentile of a uint8 array from its histogram (np.percentile sorts: 10x slower); ``counts``:
    the array's ``_counts`` when already made."""
    cdf = np.cumsum(_counts(gray) if counts is None else counts)
    return float(np.searchsorted(cdf, q / 100.0 * cdf[-1]))


def _percentile_of_counts(counts: np.ndarray, q: float) -> np.float32:
    """``np.percentile(a, q)`` (its default linear method, the same float32 bits) of a float32 array
    ``a`` holding small non-negative integers, from ``counts`` (``np.bincount`` of those integers):
    the two order statistics numpy interpolates between are read off the cumulative counts instead
    of partitioning the array (~1-2 CPU-ms on a 384 px window, twice a picture). The interpolation
    is numpy's own arithmetic: the index ``(n - 1) * q / 100`` in float64, then in float32
    ``a + (b - a) * g`` below ``g`` 0.5, ``b - (b - a) * (1 - g)`` from it."""
    cdf = np.cumsum(counts)
    n = int(cdf[-1])
    vi = (n - 1) * np.true_divide(q, 100)
    if vi >= n - 1:  # numpy takes the last value (both neighbours are index -1)
        return np.float32(np.searchsorted(cdf, n - 1, side="right"))
    lo = int(np.floor(vi))
    g = float(vi - np.floor(vi))
    a = np.float32(np.searchsorted(cdf, lo, side="right"))
    b = np.float32(np.searchsorted(cdf, lo + 1, side="right"))
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def _densest_window(ink: np.ndarray, k: int, full_shape: tuple[int, int]) -> tuple[slice, slice]:
    """The full-resolution window around the most ink: noise and blur are only measurable near text."""
    h, w = full_shape
    ph, pw = min(_PATCH, h), min(_PATCH, w)
    r = max(1, _PATCH // k)
    density = cv2.blur(ink.astype(np.float32), (r, r))
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0 = int(np.clip(cy * k + k // 2 - ph // 2, 0, h - ph))
    x0 = int(np.clip(cx * k + k // 2 - pw // 2, 0, w - pw))
    return slice(y0, y0 + ph), slice(x0, x0 + pw)


def _axis_alignment(gray: np.ndarray) -> float:
    """Share of edge energy within ±10° of the dominant pair of perpendicular directions.

    Printed glyphs are built from straight stems and bars; handwriting is curvy and slanted, so
    its gradient orientations spread (uniform spread gives 20/90 ≈ 0.22). The best pair of axes is
    searched, so a skewed scan still counts as aligned.
    """
    g = gray.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    # numpy's float32 square root of the exact sums of squares (whole numbers below 2**24): correctly
    # rounded wherever the arrays lie; cv2.magnitude's last bit depended on the arrays' alignment.
    mag = np.sqrt(gx * gx + gy * gy)
    cut = _edge_cut(mag)
    strong = mag > cut
    if strong.sum() < 50:
        # A flat drawing's edges are often one magnitude (a black-on-white step: exactly 1020), the
        # 90th percentile itself: then they count (cv2.magnitude's inexact last bit let some of them
        # over the cut by chance).
        strong = (mag >= cut) & (mag > 40.0)
        if strong.sum() < 50:
            return 0.0
    # Angles in float64, snapped to 1e-9 degrees: float32 arctan2 could give other last bits for the same
    # gradient at another memory alignment (SIMD body against scalar edges), and an angle
    # on a 5-degree bin edge (a 45-degree step, gx == gy) then fell in either bin, run to run.
    # Sobel gradients are whole numbers below 1021, so no other angle lies within 1e-5 degrees of an
    # edge: the snap moves only the exact ones, the same way every time.
    gxs, gys = gx[strong].astype(np.float64), gy[strong].astype(np.float64)
    theta = np.round(np.degrees(np.arctan2(gys, gxs)), 9) % 90.0
    hist = np.bincount((theta // 5).astype(int) % 18, weights=mag[strong], minlength=18)
    window = np.convolve(np.concatenate([hist, hist[:3]]), np.ones(4), mode="valid")[:18]
    return float(window.max() / hist.sum())


def _edge_cut(mag: np.ndarray) -> float:
    """``max(40, np.percentile(mag, 90))``, without the percentile's partition of every magnitude when
    90 % of them (the order statistic just above numpy's interpolation index) are 40 or less: the
    percentile then cannot exceed 40. The same value either way."""
    n = mag.size
    lo = int(np.floor((n - 1) * np.true_divide(90, 100)))
    if n - np.count_nonzero(mag > 40.0) >= lo + 2:
        return 40.0
    return max(40.0, float(np.percentile(mag, 90)))


def peak_mass(img: np.ndarray) -> float:
    """Share of the pixels at the commonest grey level, on the copy :func:`classify_quality` measures
    (its ``quality_stats["peak_mass"]``): high for a drawing on a flat background, low for a photo."""
    small, _ = shrink(as_rgb(img), _CLASSIFY_SIDE)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return float(_counts(gray).max() / gray.size)


def classify_quality(img: np.ndarray) -> tuple[QualityClass, dict[str, float]]:
    """Guess the source of an image from cheap statistics; returns the class and the statistics.

    Global statistics come from a copy with long side ≤ 800 px; noise, blur and stroke statistics
    come from one full-resolution 384 px window around the most ink, because downscaling hides them.
    """
    rgb = as_rgb(img)
    h, w = rgb.shape[:2]
    small, k = shrink(rgb, _CLASSIFY_SIDE)
    sat = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[:, :, 1]
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    gray_counts = _counts(gray)
    hist = gray_counts.astype(np.float64) / gray.size
    nz = hist[hist > 0]

    # A max filter wipes out text and leaves the local background, so uneven lighting and
    # grey paper still count as paper, and ink is "clearly darker than its surroundings".
    # (uint8 with OpenCV's saturating subtraction: where the background is under 25 or 50, the
    # bound is 0 instead of negative, and "gray >= 0" / "gray < 0" answer as before.)
    local_bg = cv2.dilate(gray, np.ones((15, 15), np.uint8))
    paper_mask = (gray >= cv2.subtract(local_bg, 25)) & (local_bg >= 140) & (sat < 60)
    ink_mask = gray < cv2.subtract(local_bg, 50)
    _, _, cc, _ = cv2.connectedComponentsWithStats(ink_mask.view(np.uint8), connectivity=8)
    short = min(gray.shape)
    area, ch, cw = cc[1:, cv2.CC_STAT_AREA], cc[1:, cv2.CC_STAT_HEIGHT], cc[1:, cv2.CC_STAT_WIDTH]
    glyph = (ch < 0.05 * short) & (cw < 0.25 * short) & (area >= 3)
    texty = float(area[glyph].sum() / area.sum()) if area.sum() else 0.0
    heights = ch[glyph & (ch >= 3)]
    cc_h_cv = float(heights.std() / heights.mean()) if heights.size >= 5 else 0.0

    ys, xs = _densest_window(ink_mask, k, (h, w))
    g_full = cv2.cvtColor(np.ascontiguousarray(rgb[ys, xs]), cv2.COLOR_RGB2GRAY)
    med = cv2.medianBlur(g_full, 3)
    p_paper, p_ink = _percentile(med, 90), _percentile(med, 2)
    contrast = max(p_paper - p_ink, 1.0)
    # Noise only where a whole 5x5 neighbourhood is paper: residuals next to strokes are text.
    bg = cv2.erode(g_full, np.ones((5, 5), np.uint8)) >= p_paper - 0.4 * contrast
    resid = g_full.astype(np.float32) - med.astype(np.float32)
    noise = float(resid[bg].std()) if bg.sum() > 100 else float(resid.std())
    # The largest step to a right or lower neighbour: whole grey levels, so its 99.5th percentile
    # comes from a histogram (the same float32 value np.percentile gives on the float array).
    grad = np.maximum(cv2.absdiff(med[:-1, 1:], med[:-1, :-1]), cv2.absdiff(med[1:, :-1], med[:-1, :-1]))
    p_grad = _percentile_of_counts(np.bincount(grad.ravel(), minlength=256), 99.5) if contrast > 40 else None
    edge_width = float(contrast / max(p_grad, 1.0)) if p_grad is not None else 0.0
    ink_full = (med < (p_paper + p_ink) / 2).astype(np.uint8)
    dt = cv2.distanceTransform(ink_full, cv2.DIST_L2, 3)
    ridge = (dt > 0) & (dt >= cv2.dilate(dt, np.ones((3, 3), np.uint8)))
    widths = 2.0 * dt[ridge]
    stroke_w = float(np.median(widths)) if widths.size else 0.0
    stroke_cv = float(widths.std() / widths.mean()) if widths.size >= 20 else 0.0

    stats = {
        "saturation": float(sat.mean() / 255.0),
        "ink_saturation": float(sat[ink_mask].mean() / 255.0) if ink_mask.any() else 0.0,
        "paper_fraction": float(paper_mask.mean()),
        "paper_level": _percentile(gray, 90, gray_counts),
        "peak_mass": float(hist.max()),
        "entropy": float(-(nz * np.log2(nz)).sum()),
        "edge_density": float(cv2.Canny(gray, 50, 150).mean() / 255.0),
        "laplacian_var": float(cv2.Laplacian(gray, cv2.CV_32F).var()),
        "text_ink_fraction": texty,
        "cc_height_cv": cc_h_cv,
        "noise": noise,
        "edge_width": edge_width,
        "stroke_width": stroke_w,
        "stroke_cv": stroke_cv,
        "axis_alignment": _axis_alignment(med),
    }
    return _decide(stats), stats


def _decide(st: dict[str, float]) -> QualityClass:
    """Rules over the statistics; thresholds were set on synthetic pages and scikit-image photos."""
    if st["paper_fraction"] < 0.45 or st["text_ink_fraction"] < 0.3:
        return "photo"
    # Pen strokes vary in width and direction; a stroke_cv above 1 means the "strokes" are shading.
    # Printed CJK has many diagonal strokes (axis alignment ~0.37-0.40 against ~0.46 for Latin
    # print and ~0.28 for handwriting), so the cut sits below printed Chinese.
    if st["axis_alignment"] < 0.34 and 0.35 < st["stroke_cv"] < 1.0:
        return "handwritten"
    if st["noise"] < 1.0 and st["peak_mass"] >= 0.35:
        return "born_digital"
    return "scanned"


@dataclass
class Preprocessed:
    """An enhanced image plus what was done to it and how to map its pixels back."""

    image: np.ndarray
    quality: QualityClass
    quality_stats: dict[str, float]
    applied: list[Enhancement]
    to_original: np.ndarray
    """3x3 affine matrix: processed-image (x, y, 1) -> original-image (x, y, 1)."""
    original_size: tuple[int, int]
    """(width, height) of the original image, for clamping."""
    text_height: float | None = None
    """Estimated glyph height in original pixels, when the image is a document with text."""

    def points_to_original(self, points: Sequence[Sequence[float]] | np.ndarray) -> list[tuple[float, float]]:
        """Map processed-image points to original pixels, clamped to the original image."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        mapped = pts @ self.to_original[:2, :2].T + self.to_original[:2, 2]
        w, h = self.original_size
        mapped[:, 0] = mapped[:, 0].clip(0, w)
        mapped[:, 1] = mapped[:, 1].clip(0, h)
        return [(float(x), float(y)) for x, y in mapped]

    def box_to_original(self, bbox: Sequence[float]) -> BBox:
        """Axis-aligned original-pixel box around a processed-image box's four mapped corners."""
        x0, y0, x1, y1 = bbox
        pts = np.array(self.points_to_original([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]))
        return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))


def _affine(a: float, b: float, c: float, d: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[a, b, tx], [c, d, ty], [0.0, 0.0, 1.0]])


def _rot90_forward(degrees: int, w: int, h: int) -> np.ndarray:
    """Continuous-coordinate map old -> new for cv2.rotate by ``degrees`` clockwise."""
    if degrees == 90:
        return _affine(0, -1, 1, 0, h, 0)
    if degrees == 180:
        return _affine(-1, 0, 0, -1, w, h)
    return _affine(0, 1, -1, 0, 0, w)  # 270


_CV_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _warp(img: np.ndarray, forward: np.ndarray, size: tuple[int, int], border: tuple[int, int, int]) -> np.ndarray:
    """warpAffine with a continuous-coordinate matrix (OpenCV works on pixel centres)."""
    to_idx = _affine(1, 0, 0, 1, -0.5, -0.5) @ forward @ _affine(1, 0, 0, 1, 0.5, 0.5)
    return cv2.warpAffine(
        img, to_idx[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )


def _rotated_canvas(w: int, h: int, angle: float) -> tuple[float, float]:
    """Width and height of the canvas that holds a w x h image rotated by ``angle`` degrees."""
    c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
    return w * c + h * s, w * s + h * c


def _skew_profile(ys: np.ndarray, xs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Projection-profile sharpness (sum of squared row counts) of the ink after each rotation."""
    rad = np.radians(angles).astype(np.float32)[:, None]
    rows = (-np.sin(rad) * xs[None, :] + np.cos(rad) * ys[None, :]).astype(np.int32)
    rows -= rows.min()
    nb = int(rows.max()) + 1
    rows += np.arange(len(angles), dtype=np.int32)[:, None] * nb
    counts = np.bincount(rows.ravel(), minlength=nb * len(angles)).astype(np.float64)
    return (counts.reshape(len(angles), nb) ** 2).sum(axis=1)


def _text_geometry(gray: np.ndarray) -> tuple[float | None, float | None]:
    """Median glyph height (original px) and the deskew angle (degrees CCW) from text-like components.

    The angle is the rotation that makes text lines horizontal (projection-profile search, coarse
    0.5° then fine 0.05°); None when there is too little text or no clear line structure.
    """
    small, k = shrink(gray, _ANALYSE_SIDE)
    local_bg = cv2.dilate(small, np.ones((15, 15), np.uint8)).astype(np.int16)
    ink = (small < local_bg - 50).view(np.uint8)
    n, labels, cc, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return None, None
    h_img, w_img = small.shape
    ch, cw, area = cc[:, cv2.CC_STAT_HEIGHT], cc[:, cv2.CC_STAT_WIDTH], cc[:, cv2.CC_STAT_AREA]
    glyph = (ch >= 3) & (ch <= 0.1 * min(h_img, w_img)) & (cw <= 0.3 * w_img) & (area >= 6)
    glyph[0] = False
    if glyph.sum() < 10:
        return None, None
    text_height = float(np.median(ch[glyph])) * k
    ys, xs = np.nonzero(glyph[labels])
    if ys.size < 500:
        return text_height, None
    step = max(1, ys.size // 20000)
    ys, xs = ys[::step].astype(np.float32), xs[::step].astype(np.float32)
    coarse = np.arange(-_MAX_SKEW, _MAX_SKEW + 1e-9, 0.5)
    scores = _skew_profile(ys, xs, coarse)
    best = float(coarse[int(np.argmax(scores))])
    if abs(best) >= _MAX_SKEW or scores.max() < 1.1 * np.median(scores):
        return text_height, None
    fine = best + np.arange(-0.5, 0.5 + 1e-9, 0.05)
    return text_height, float(fine[int(np.argmax(_skew_profile(ys, xs, fine)))])


def preprocess(
    img: np.ndarray,
    dpi: float | None = None,
    *,
    quality: QualityClass | None = None,
    orientation: OrientationFn | None = None,
    target_text_height: int = 32,
    max_side: int = 2400,
    max_upscale: float = 2.5,
    photo_max_side: int = 1600,
) -> Preprocessed:
    """Classify and enhance a copy of ``img`` for OCR and embedding; ``img`` is left untouched.

    Documents: rotate by ``orientation``'s answer, denoise when noisy, lift grey paper to white,
    deskew (±15°, skipped under 0.3°), scale so the median glyph is ~``target_text_height`` px
    (≤ ``max_upscale``×, long side ≤ ``max_side``; from ``dpi`` when no text is found), and
    unsharp-mask blurry input. Photos: median denoise when very noisy, long side ≤ ``photo_max_side``.
    ``quality`` overrides the detected class; the statistics are computed anyway, since the
    enhancement decisions rest on them. One warp does deskew and upscaling together (recorded as
    ``deskew`` then ``scale``); downscaling is a separate area-averaging resize before the deskew.
    """
    rgb = as_rgb(img)
    h0, w0 = rgb.shape[:2]
    detected, stats = classify_quality(rgb)
    q: QualityClass = quality or detected
    applied: list[Enhancement] = []
    to_original = np.eye(3)

    def geometric(out: np.ndarray, forward: np.ndarray, step: Enhancement) -> np.ndarray:
        nonlocal to_original
        to_original = to_original @ np.linalg.inv(forward)
        applied.append(step)
        return out

    out = rgb
    if q == "photo":
        if stats["noise"] > 8.0:
            out = cv2.medianBlur(out, 3)
            applied.append(Enhancement(name="denoise", params={"method": "median", "k": 3}))
        f = photo_max_side / max(h0, w0)
        if f < 1.0:
            size = (max(1, round(w0 * f)), max(1, round(h0 * f)))
            out = geometric(
                cv2.resize(out, size, interpolation=cv2.INTER_AREA),
                _affine(size[0] / w0, 0, 0, size[1] / h0, 0, 0),
                Enhancement(name="scale", params={"factor": round(f, 4)}),
            )
        return Preprocessed(out if out is not rgb else rgb.copy(), q, stats, applied, to_original, (w0, h0))

    if orientation is not None:
        deg = int(orientation(rgb)) % 360
        if deg % 90:
            raise ValueError(f"orientation callback returned {deg}°; it must return a multiple of 90")
        if deg:
            h, w = out.shape[:2]
            out = geometric(
                cv2.rotate(out, _CV_ROTATE[deg]), _rot90_forward(deg, w, h),
                Enhancement(name="rotate90", params={"degrees": deg}),
            )
    if stats["noise"] > 4.0:
        # A 3x3 median erases strokes thinner than 2 px; blur those gently instead.
        if stats["stroke_width"] >= 2.5:
            out = cv2.medianBlur(out, 3)
            applied.append(Enhancement(name="denoise", params={"method": "median", "k": 3}))
        else:
            out = cv2.GaussianBlur(out, (3, 3), 0.8)
            applied.append(Enhancement(name="denoise", params={"method": "gaussian", "k": 3}))
    paper = stats["paper_level"]
    if 120.0 <= paper < 235.0:
        lut = np.clip(np.arange(256) * (255.0 / paper), 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
        applied.append(Enhancement(name="levels", params={"white": round(paper, 1)}))
        paper = 255.0

    text_height, angle = _text_geometry(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY))
    if angle is not None and abs(angle) < _MIN_SKEW:
        angle = None
    h, w = out.shape[:2]
    if text_height:
        f, basis = target_text_height / text_height, "text_height"
    elif dpi:
        # No text found: assume 10 pt body text whose glyphs are ~0.6 em tall.
        f, basis = target_text_height / (dpi * 10 / 72 * 0.6), "dpi"
    else:
        f, basis = 1.0, "none"
    f = float(np.clip(f, 0.25, max_upscale))
    long_side = max(_rotated_canvas(w, h, angle or 0.0))
    if f * long_side > max_side:
        f, basis = max_side / long_side, "max_side"
    if abs(f - 1.0) < 0.1 and basis != "max_side":
        f = 1.0
    border = (int(paper),) * 3
    if f != 1.0 and (f < 1.0 or angle is None):
        # Downscale on its own with area averaging; a rotating warp would alias.
        size = (max(1, round(w * f)), max(1, round(h * f)))
        interp = cv2.INTER_AREA if f < 1.0 else cv2.INTER_CUBIC
        out = geometric(
            cv2.resize(out, size, interpolation=interp), _affine(size[0] / w, 0, 0, size[1] / h, 0, 0),
            Enhancement(name="scale", params={"factor": round(f, 4), "basis": basis}),
        )
        h, w = out.shape[:2]
        f_warp = 1.0
    else:
        f_warp = f
    if angle is not None:
        cw, ch = _rotated_canvas(w, h, angle)
        size = (int(np.ceil(f_warp * cw - 1e-6)), int(np.ceil(f_warp * ch - 1e-6)))
        m = cv2.getRotationMatrix2D((0.0, 0.0), angle, f_warp)
        forward = (
            _affine(1, 0, 0, 1, size[0] / 2, size[1] / 2)
            @ np.vstack([m, [0, 0, 1]])
            @ _affine(1, 0, 0, 1, -w / 2, -h / 2)
        )
        step = Enhancement(name="deskew", params={"angle": round(angle, 2)})
        out = geometric(_warp(out, forward, size, border), forward, step)
        if f_warp != 1.0:
            applied.append(Enhancement(name="scale", params={"factor": round(f_warp, 4), "basis": basis}))
    if stats["edge_width"] > 2.5:
        sigma = max(1.0, f)
        out = cv2.addWeighted(out, 1.8, cv2.GaussianBlur(out, (0, 0), sigma), -0.8, 0)
        params: dict[str, float | int | str | bool] = {"method": "unsharp", "sigma": round(sigma, 2), "amount": 0.8}
        applied.append(Enhancement(name="sharpen", params=params))
    if out is rgb:
        out = rgb.copy()
    return Preprocessed(out, q, stats, applied, to_original, (w0, h0), text_height)
