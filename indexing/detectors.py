"""Rule-based detectors that need no model: ink seals (stamps). Dates in OCR text are read by
:mod:`indexing.text`."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from imgrag.indexing.models import Seal
from imgrag.indexing.preprocess import as_rgb, shrink

# ---------------------------------------------------------------------------------------------
# Seals
#
# Sizes are fractions of the working copy's short side (the page's, for a page): the working copy is
# the image shrunk by an integer factor to a long side <= _SEAL_SIDE, so a 150 dpi page, a 300 dpi
# one and the ~2400 px output of indexing.preprocess all look alike to the tests below.

_SEAL_SIDE = 1000  # long side of the working copy
_MIN_SEAL, _MAX_SEAL = 0.05, 0.40  # stamp size
_MAX_GLYPH = 0.15  # no heading glyph is this big (a 40 mm company seal is ~0.19 of A4's short side)
_WEAK, _STRONG = 14, 34  # ink chroma above the paper's; weak ink counts only joined to strong ink
_HUE = {"red": (-22, 13), "blue": (93, 135)}  # OpenCV hue (0-180); red wraps, so -22 means 158
_PASSES = (0.012, 0.035)  # closing sizes: a stamp on its own; a faded ring broken into arcs
_OPEN = 0.02  # wider than any pen or text stroke
_SECTORS = 48  # angular sectors for the ring test
_RIM = 0.03  # depth of the rim zone, as a fraction of the outline's short side


def _paper_colour(small: np.ndarray) -> np.ndarray | None:
    """The paper's RGB: per-channel median of the brightest quarter of the pixels.

    None when the image has no paper: that colour is dark, far from neutral even for a yellowed or
    colour-cast scan, or not what most of the image is (a photo's sky, wall or skin). On a page,
    paper is well over half of the pixels; on the scikit-image photos it is at most 0.43.
    """
    sample = small[::6, ::6].reshape(-1, 3).astype(np.float32)
    vmax = sample.max(axis=1)
    paper = np.median(sample[vmax >= np.percentile(vmax, 75)], axis=0)
    if paper.min() < 120 or paper.max() - paper.min() > 100:
        return None
    if (np.abs(sample - paper).max(axis=1) < 40).mean() < 0.5:
        return None
    return paper


def _ink_masks(small: np.ndarray) -> tuple[dict[Literal["red", "blue"], np.ndarray], np.ndarray, np.ndarray]:
    """Stamp-ink masks per colour (0/1 uint8), a dark-ink mask (text, signatures) and a paper mask.

    Everything is relative to the paper's colour, so a tinted, yellowed, dark or colour-cast scan
    reads like a white page. Ink strength is chroma (red: R - max(G, B); blue: B - max(R, G)) above
    the paper's, with the hue in the colour's range. Pixels between ``_WEAK`` and ``_STRONG`` count
    only in a connected piece that has strong ones (hysteresis): faded, blurred or JPEG-washed ink
    stays attached to its stamp, the colour fringes JPEG leaves round black text stay out. Stamp ink
    is bright-ish: a navy signature or red-tinged black text is dark ink, which is also what a
    stamp's ring looks like where it crosses black text (the ink multiplies, black stays black).
    """
    paper_rgb = _paper_colour(small)
    r, g, b = cv2.split(small)
    vmax = cv2.max(cv2.max(r, g), b)
    level = float(paper_rgb.max()) if paper_rgb is not None else 255.0
    bright = vmax >= 0.45 * level
    hue = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[:, :, 0]
    masks: dict[Literal["red", "blue"], np.ndarray] = {}
    for colour, main, other in (("red", r, cv2.max(g, b)), ("blue", b, cv2.max(r, g))):
        chroma = cv2.subtract(main, other, dtype=cv2.CV_16S)
        base = 0
        if paper_rgb is not None:
            pr, pg, pb = (float(v) for v in paper_rgb)
            base = round(pr - max(pg, pb) if colour == "red" else pb - max(pr, pg))
        lo, hi = _HUE[colour]
        hue_ok = (hue <= hi) | (hue >= 180 + lo) if lo < 0 else (hue >= lo) & (hue <= hi)
        weak = ((chroma >= _WEAK + base) & hue_ok & bright).view(np.uint8)
        n, labels = cv2.connectedComponents(weak, connectivity=8)
        keep = np.zeros(n, np.uint8)
        keep[labels[chroma >= _STRONG + base]] = 1
        keep[0] = 0
        masks[colour] = keep[labels]
    dark = vmax < 0.55 * level
    if paper_rgb is None:
        paper = np.zeros(vmax.shape, bool)
    else:
        d = [cv2.absdiff(c, round(float(v))) for c, v in zip((r, g, b), paper_rgb)]
        paper = cv2.max(cv2.max(d[0], d[1]), d[2]) < 40
    return masks, dark, paper


def _sector_index(ys: np.ndarray, xs: np.ndarray, cy: float, cx: float) -> np.ndarray:
    ang = np.arctan2(ys - cy, xs - cx)
    return (((ang + np.pi) / (2 * np.pi)) * _SECTORS).astype(np.int64) % _SECTORS


def _coverage(zone: np.ndarray, ink: np.ndarray, min_share: float = 0.08) -> float:
    """Fraction of angular sectors (around the crop's centre) in which ``ink`` fills at least
    ``min_share`` of ``zone``: 1.0 for a ring all round, about half for an arc."""
    h, w = zone.shape
    zy, zx = np.nonzero(zone)
    iy, ix = np.nonzero(zone & ink)
    if iy.size == 0:
        return 0.0
    totals = np.bincount(_sector_index(zy, zx, h / 2, w / 2), minlength=_SECTORS)
    counts = np.bincount(_sector_index(iy, ix, h / 2, w / 2), minlength=_SECTORS)
    return float((counts > min_share * totals).mean())


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box, (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, min(a[2] * a[3], b[2] * b[3]))


def _in_text_row(box: tuple[int, int, int, int], glyphs: list[tuple[int, int, int, int]]) -> bool:
    """Is ``box`` one glyph of a coloured text line (a similar-sized neighbour beside it)?

    ``glyphs`` are the colour's finest blobs; those overlapping ``box`` are its own pieces.
    """
    x, y, w, h = box
    cy = y + h / 2
    for g in glyphs:
        x2, y2, w2, h2 = g
        if _overlap(box, g) > 0.3 or not 0.6 * h <= h2 <= 1.6 * h:
            continue
        gap = max(x2 - (x + w), x - (x2 + w2))
        if abs(y2 + h2 / 2 - cy) < 0.3 * h and gap < 1.5 * max(w, w2):
            return True
    return False


def _outlines(blob: np.ndarray, own: np.ndarray, k_open: int, min_side: float) -> tuple[list[np.ndarray], float]:
    """Filled stamp outlines in one blob (crop-sized 0/1 uint8 arrays), and the share of the
    blob's coloured pixels (``own``) that lie outside all of them.

    ``blob`` is the blob with its holes filled. Opening it with a disc wider than any pen or text
    stroke strips what sticks out of a stamp (a signature or a text line across it, a stroke joining
    two stamps) and leaves each stamp's disc, oval or square; a second opening, with a disc a
    quarter of the stamp's size, also strips a stroke that text bridged into a thick band. When
    much coloured ink is left outside, the outlines are the thick parts of something else (letters
    of a bold red word). A ring broken open has no inside to keep: its convex hull stands in.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_open, k_open))
    core = cv2.morphologyEx(blob, cv2.MORPH_OPEN, kernel)
    out: list[np.ndarray] = []
    if core.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
        for j in range(1, n):
            side = min(stats[j, cv2.CC_STAT_WIDTH], stats[j, cv2.CC_STAT_HEIGHT])
            if side < min_side:
                continue
            d = max(k_open, int(side * 0.25) | 1)
            part = (labels == j).view(np.uint8)
            part = cv2.morphologyEx(part, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
            m, labels2, stats2, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
            if m > 1:
                out.append((labels2 == 1 + int(np.argmax(stats2[1:, cv2.CC_STAT_AREA]))).view(np.uint8))
    if out:
        covered = np.zeros_like(blob)
        for region in out:
            covered |= region
        covered = cv2.dilate(covered, kernel)
        return out, 1.0 - cv2.countNonZero(own & covered) / max(1, cv2.countNonZero(own))
    pts = cv2.findNonZero(own)
    if pts is None:
        return [], 0.0
    hull = np.zeros_like(blob)
    cv2.drawContours(hull, [cv2.convexHull(pts)], -1, 1, thickness=-1)
    return [hull], 0.0


def _measure(
    region: np.ndarray, mask: np.ndarray, dark: np.ndarray, paper: np.ndarray, x: int, y: int
) -> dict[str, float]:
    """What ``detect_seals`` decides on, for one outline: ``region`` is the filled outline (0/1
    uint8) cropped at (x, y) of the working copy, ``mask`` the colour's ink, ``dark`` the dark ink,
    ``paper`` the plain paper.

    - ring: sector coverage of the outline's border band (8 % deep) by coloured ink;
    - ring_any: the same by coloured or dark ink (black text crossing the ring breaks its colour);
    - rim: share of the outermost 3 % inked, coloured or dark (a ring: most; a block of text: little);
    - inside: share of coloured ink inside the band (a name and a star: sparse; a filled stamp: most);
    - context: share of plain paper in a margin a quarter of the size around the box;
    - fill: outline area / its minimum-area rectangle (an ellipse: pi/4, a square: 1);
    - aspect: short / long side of that rectangle.
    """
    h, w = region.shape
    ink = mask[y : y + h, x : x + w].astype(bool)
    over = dark[y : y + h, x : x + w]
    band_w = max(2, int(0.08 * min(w, h)))
    square = np.ones((2 * band_w + 1, 2 * band_w + 1), np.uint8)
    inner = cv2.erode(region, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    band = (region > 0) & (inner == 0)
    depth = cv2.distanceTransform(region, cv2.DIST_L2, 3) / max(1.0, min(w, h))
    rim_zone = (region > 0) & (depth < _RIM)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    (_, _), (rw, rh), _ = cv2.minAreaRect(max(contours, key=cv2.contourArea))
    x0, y0 = max(0, x - w // 4), max(0, y - h // 4)
    x1, y1 = min(paper.shape[1], x + w + w // 4), min(paper.shape[0], y + h + h // 4)
    around = np.ones((y1 - y0, x1 - x0), bool)
    around[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
    return {
        "ring": _coverage(band, ink),
        "ring_any": _coverage(band, ink | over),
        "rim": float((ink | over)[rim_zone].mean()) if rim_zone.any() else 0.0,
        "inside": float(ink[inner > 0].mean()) if inner.any() else 0.0,
        "context": float(paper[y0:y1, x0:x1][around].mean()) if around.any() else 0.0,
        "fill": float(cv2.countNonZero(region)) / max(rw * rh, 1.0),
        "aspect": min(rw, rh) / max(rw, rh, 1.0),
    }


def _seal_candidates(img: np.ndarray) -> tuple[list[dict], int]:
    """Every stamp-sized colour outline with its measurements (see ``_measure``) plus ``colour``,
    ``box`` (x, y, w, h in working-copy pixels: multiply by the returned factor for ``img``'s),
    ``left_out`` (see ``_outlines``) and ``glyph_row`` (see ``_in_text_row``).

    Colour blobs are grouped twice (``_PASSES``): with a small closing (a stamp on its own) and a
    large one (a faded ring broken into arcs, its star left floating inside). Where black text or a
    signature crosses a ring, its ink is dark, not coloured: dark pixels right next to coloured ones
    join the blob, so the ring's pieces stay together.
    """
    small, k = shrink(as_rgb(img), _SEAL_SIDE)
    if _paper_colour(small) is None:  # no paper (a photo): no outline could pass _is_seal's context test
        return [], k
    masks, dark, paper = _ink_masks(small)
    short = min(small.shape[:2])
    min_side, max_side = _MIN_SEAL * short, _MAX_SEAL * short
    k_open = max(5, int(short * _OPEN) | 1)
    out: list[dict] = []
    for colour, mask in masks.items():
        pts = cv2.findNonZero(mask)
        if pts is None:
            continue
        pad = int(short * max(_PASSES)) + 2  # morphology only where this colour has ink
        ix, iy, iw, ih = cv2.boundingRect(pts)
        x0, y0 = max(0, ix - pad), max(0, iy - pad)
        x1, y1 = min(mask.shape[1], ix + iw + pad), min(mask.shape[0], iy + ih + pad)
        roi = mask[y0:y1, x0:x1]
        ks = max(3, int(short * _PASSES[0]) | 1)
        near = cv2.dilate(roi, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ks, ks)))
        bridged = roi | (dark[y0:y1, x0:x1].view(np.uint8) & near)
        glyphs: list[tuple[int, int, int, int]] = []
        for frac in _PASSES:
            ks = max(3, int(short * frac) | 1)
            closed = cv2.morphologyEx(bridged, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ks, ks)))
            contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
            boxes = [cv2.boundingRect(c) for c in contours]
            glyphs = glyphs or boxes  # the finest grouping
            for c, (bx, by, bw, bh) in zip(contours, boxes):
                if min(bw, bh) < min_side:
                    continue
                blob = np.zeros((bh, bw), np.uint8)
                cv2.drawContours(blob, [c - np.array([bx, by])], -1, 1, thickness=-1)
                own = blob & mask[by : by + bh, bx : bx + bw]
                if not own.any():
                    continue
                regions, left_out = _outlines(blob, own, k_open, min_side)
                for region in regions:
                    rx, ry, rw, rh = cv2.boundingRect(region)
                    if min(rw, rh) < min_side or max(rw, rh) > max_side or not 0.5 <= rw / rh <= 2.0:
                        continue
                    x, y = bx + rx, by + ry
                    m: dict = _measure(region[ry : ry + rh, rx : rx + rw], mask, dark, paper, x, y)
                    m.update(
                        colour=colour,
                        box=(x, y, rw, rh),
                        left_out=left_out,
                        glyph_row=max(rw, rh) < _MAX_GLYPH * short and _in_text_row((x, y, rw, rh), glyphs),
                    )
                    out.append(m)
    return out, k


def _is_seal(c: dict) -> bool:
    if c["ring"] < 0.6 or c["ring_any"] < 0.85 or c["rim"] < 0.6 or c["context"] < 0.4:
        return False  # not outlined all round, or not on paper
    if c["glyph_row"] or c["left_out"] > 0.2:
        return False  # a letter of a coloured word or heading
    if c["fill"] >= 0.9:  # square: a name stamp (maybe filled, white characters); a long frame is a box
        return c["aspect"] >= 0.75 and 0.008 <= c["inside"] <= 0.9
    # round or oval: an ellipse's outline, sparse inside (the name, a star); a disc is an icon
    return 0.7 <= c["fill"] <= 0.86 and 0.008 <= c["inside"] <= 0.5


def detect_seals(img: np.ndarray) -> list[Seal]:
    """Find red or blue ink stamps; bboxes are in the pixel coordinates of ``img`` (RGB uint8).

    A stamp is a colour outline 5-40 % of the image's short side, an ellipse (round, oval) or a
    square-ish rectangle, inked all round its border (where black text crosses the ring the dark ink
    counts), with a sparse inside (ring text, star) or a filled square, on paper, and not a letter
    of a coloured word or heading. Colour is measured against the paper's own (see ``_ink_masks``),
    so faded, JPEG'd, tinted and colour-cast scans work; pen strokes across a stamp are stripped
    off its outline. Red headings and rules, red-framed boxes, blue links and code, solid icons and
    red or blue objects in photos (which have no paper) fail one of the tests. Known misses: two
    stamps pressed over each other come out as one box; two small (< 15 %) stamps side by side on a
    line read as glyphs of a coloured word.
    """
    candidates, k = _seal_candidates(img)
    kept = [c for c in candidates if _is_seal(c)]
    for c in kept:
        c["confidence"] = (
            0.3 * c["ring"]
            + 0.2 * c["ring_any"]
            + 0.3 * min(c["context"] / 0.8, 1.0)
            + 0.2 * min(c["inside"] / 0.05, 1.0)
        )
    # one stamp found by both groupings (or as both colours): keep the better-supported, larger one
    kept.sort(key=lambda c: (-round(c["confidence"], 3), -c["box"][2] * c["box"][3]))
    chosen: list[dict] = []
    for c in kept:
        if all(_overlap(c["box"], d["box"]) <= 0.5 for d in chosen):
            chosen.append(c)
    seals: list[Seal] = []
    for c in chosen:
        x, y, w, h = c["box"]
        shape: Literal["round", "oval", "square"] = (
            "square" if c["fill"] >= 0.9 else "round" if c["aspect"] >= 0.85 else "oval"
        )
        seals.append(
            Seal(
                bbox=(float(x * k), float(y * k), float((x + w) * k), float((y + h) * k)),
                color=c["colour"],
                shape=shape,
                confidence=round(float(np.clip(c["confidence"], 0.0, 1.0)), 3),
            )
        )
    return seals
