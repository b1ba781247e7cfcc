"""Pixel work behind crops, OCR re-reads and thumbnails: boxes, zoom, enhancement, size-capped PNGs.

Pure functions on numpy/PIL images, so the geometry is unit-tested without models or an index.
Boxes are continuous pixel coordinates: ``(0, 0, W, H)`` is the whole image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from .errors import ImgragError

BoxF = tuple[float, float, float, float]
BoxI = tuple[int, int, int, int]


def to_pixels(bbox: Sequence[float], units: str, width: int, height: int) -> BoxF:
    """Convert a requested box to original-image pixels (relative units are fractions of W/H)."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    if x1 <= x0 or y1 <= y0:
        raise ImgragError(
            f"bbox {list(bbox)} is empty or inverted",
            "give [x0, y0, x1, y1] with x1 > x0 and y1 > y0 (left, top, right, bottom)",
        )
    if units == "relative":
        if min(x0, y0) < -0.5 or max(x1, y1) > 1.5:
            raise ImgragError(
                f"bbox {list(bbox)} is not in relative units (fractions 0..1 of the image)",
                "use units='px' for pixel coordinates",
            )
        return (x0 * width, y0 * height, x1 * width, y1 * height)
    return (x0, y0, x1, y1)


def clamp_box(box: BoxF, width: int, height: int) -> tuple[BoxI, bool]:
    """Clip to the image and round outwards to whole pixels; refuse a box with nothing left."""
    x0, y0, x1, y1 = box
    cx0, cy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    cx1, cy1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if cx1 <= cx0 or cy1 <= cy0:
        raise ImgragError(
            f"bbox [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the image ({width}x{height} px)",
            f"use pixel coordinates within [0, 0, {width}, {height}] or units='relative' with values 0..1",
        )
    clipped = x0 < 0 or y0 < 0 or x1 > width or y1 > height
    return (cx0, cy0, cx1, cy1), clipped


def enhance(img: Image.Image) -> Image.Image:
    """Stretch contrast (1% tails) and unsharp-mask: faint scans and soft photos of print read better."""
    img = ImageOps.autocontrast(img, cutoff=1)
    return img.filter(ImageFilter.UnsharpMask(radius=2, percent=130, threshold=2))


def resize(img: Image.Image, width: int, height: int) -> Image.Image:
    if (width, height) == img.size:
        return img
    method = Image.Resampling.LANCZOS if width >= img.width else Image.Resampling.BOX
    return img.resize((max(1, width), max(1, height)), method)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)  # 6 costs 2-4x the time on photos for ~10% fewer bytes
    return buf.getvalue()


def _is_grey(img: Image.Image) -> bool:
    """Whether an RGB image is grey to the eye (a scan of black print): its channels agree."""
    arr = np.asarray(img, dtype=np.int16)
    return bool(((arr.max(axis=2) - arr.min(axis=2)) > 12).mean() < 0.001)


def fit_png(img: Image.Image, max_side: int, max_bytes: int) -> tuple[bytes, Image.Image]:
    """Encode as PNG no larger than ``max_side`` px and ``max_bytes``: a grey RGB image over the
    cap goes out as a one-channel PNG first (a third of the bytes, nothing lost to the eye), then
    it shrinks until it fits."""
    if max(img.size) > max_side:
        f = max_side / max(img.size)
        img = resize(img, round(img.width * f), round(img.height * f))
    data = png_bytes(img)
    if len(data) > max_bytes and img.mode == "RGB" and _is_grey(img):
        img = img.convert("L")
        data = png_bytes(img)
    for _ in range(8):
        if len(data) <= max_bytes or max(img.size) <= 16:
            break
        f = max(0.3, min(0.9, math.sqrt(max_bytes / len(data)) * 0.95))
        img = resize(img, max(1, round(img.width * f)), max(1, round(img.height * f)))
        data = png_bytes(img)
    return data, img


def render_crop(
    page: np.ndarray, box: BoxI, scale: float, *, do_enhance: bool, max_side: int, max_bytes: int
) -> tuple[bytes, Image.Image, float, str]:
    """Crop ``box`` from an RGB page, zoom by ``scale``, optionally enhance, encode capped.

    Returns (png, final image, scale actually applied, note about any reduction).
    """
    x0, y0, x1, y1 = box
    crop = Image.fromarray(page[y0:y1, x0:x1])
    w, h = crop.size
    eff = min(scale, max_side / max(w, h))
    note = ""
    if eff < scale:
        note = f"scale reduced from {scale:g} to {eff:.3g} to keep the PNG within {max_side} px"
    out = resize(crop, max(1, round(w * eff)), max(1, round(h * eff)))
    if do_enhance:
        out = enhance(out)
    data, final = fit_png(out, max_side, max_bytes)
    if final.size != out.size:
        note = (note + "; " if note else "") + f"downscaled to {final.width}x{final.height} to stay under {max_bytes} bytes"
    applied = final.width / w
    return data, final, applied, note


def thumbnail(page: np.ndarray, side: int, max_bytes: int = 200_000) -> bytes:
    img = Image.fromarray(page)
    f = min(1.0, side / max(img.size))
    img = resize(img, max(1, round(img.width * f)), max(1, round(img.height * f)))
    return fit_png(img, side, max_bytes)[0]


def auto_ocr_scale(line_heights: Sequence[float], box: BoxI, *, target: float, max_scale: float) -> float:
    """Zoom that makes text about ``target`` px tall: from the known OCR lines in the region, else
    from the region's size (a small region is usually small print someone wants re-read)."""
    hs = [h for h in line_heights if h > 0]
    if hs:
        s = target / float(np.median(hs))
    else:
        w, h = box[2] - box[0], box[3] - box[1]
        s = 1200.0 / max(w, h)
    return float(min(max_scale, max(1.0, s)))


def ocr_canvas(page: np.ndarray, box: BoxI, zoom: float, pad: int = 8) -> tuple[np.ndarray, int, tuple[float, float]]:
    """The region upscaled for OCR, with a small margin in its own border colour (detectors miss
    glyphs that touch the edge); returns the canvas, the margin and the x/y scale applied."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    sw, sh = max(1, round(w * zoom)), max(1, round(h * zoom))
    # Bicubic, not Lanczos: Lanczos ringing around thin strokes costs the recogniser characters and spaces.
    big = cv2.resize(np.ascontiguousarray(page[y0:y1, x0:x1]), (sw, sh), interpolation=cv2.INTER_CUBIC)
    border = np.concatenate([big[0], big[-1], big[:, 0], big[:, -1]]).reshape(-1, big.shape[2])
    fill = np.median(border, axis=0).astype(np.uint8)
    canvas = np.empty((sh + 2 * pad, sw + 2 * pad, big.shape[2]), np.uint8)
    canvas[:] = fill
    canvas[pad : pad + sh, pad : pad + sw] = big
    return canvas, pad, (sw / w, sh / h)
