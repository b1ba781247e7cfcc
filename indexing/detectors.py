"""Rule-based detectors that need no model: ink seals (stamps) and dates in OCR text.

Dates are indexed as year/month/day tokens so that the embedded store, which can only filter list
columns with ``array_has_any``, can answer date-range filters (see ``date_filter_tokens``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Literal

import cv2
import numpy as np

from indexing.models import DateMention, Seal
from indexing.preprocess import as_rgb, shrink

# ---------------------------------------------------------------------------------------------
# Seals

_SEAL_SIDE = 1000  # long side of the working copy
_MIN_SEAL, _MAX_SEAL = 0.05, 0.40  # seal size as a fraction of the page's short side


def _colour_masks(hsv: np.ndarray) -> dict[Literal["red", "blue"], np.ndarray]:
    """Ink masks; red wraps around hue 0/180. Thresholds admit faded stamp ink, not grey text."""
    h, s, v = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    inked = (s >= 60) & (v >= 60)
    return {
        "red": (((h <= 10) | (h >= 160)) & inked).view(np.uint8),
        "blue": ((h >= 95) & (h <= 130) & inked).view(np.uint8),
    }


def _sector_coverage(ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, sectors: int = 36) -> float:
    """Fraction of angular sectors around the centre that contain at least one ink pixel."""
    if ys.size == 0:
        return 0.0
    ang = np.arctan2(ys - cy, xs - cx)
    idx = ((ang + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    return float(np.unique(idx).size / sectors)


def _in_text_row(i: int, boxes: list[tuple[int, int, int, int]]) -> bool:
    """Is box i one glyph of a coloured text line (similar-sized neighbours beside it)?"""
    x, y, w, h = boxes[i]
    cy = y + h / 2
    for j, (x2, y2, w2, h2) in enumerate(boxes):
        if j == i or not 0.6 * h <= h2 <= 1.6 * h:
            continue
        gap = max(x2 - (x + w), x - (x2 + w2))
        if abs(y2 + h2 / 2 - cy) < 0.3 * h and gap < 1.5 * max(w, w2):
            return True
    return False


def detect_seals(img: np.ndarray) -> list[Seal]:
    """Find red or blue ink stamps; bboxes are in the pixel coordinates of ``img`` (RGB uint8).

    A candidate is a closed colour blob 5-40 % of the short side, roughly as wide as tall, whose
    border band is inked all round (a ring or outline, or a filled stamp), with some ink inside
    but not solid colour, sitting on paper, and not one glyph in a row of coloured glyphs.
    Red headings, rules, solid icons and red objects in photos fail one of these.
    """
    small, k = shrink(as_rgb(img), _SEAL_SIDE)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    short = min(small.shape[:2])
    ks = max(3, int(short * 0.012) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (ks, ks))
    paper = (hsv[:, :, 1] < 60) & (hsv[:, :, 2] >= 130)
    seals: list[Seal] = []
    for colour, mask in _colour_masks(hsv).items():
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [cv2.boundingRect(c) for c in contours]
        for i, (contour, (x, y, w, h)) in enumerate(zip(contours, boxes)):
            if min(w, h) < _MIN_SEAL * short or max(w, h) > _MAX_SEAL * short or not 0.5 <= w / h <= 2.0:
                continue
            hull = cv2.convexHull(contour)
            hull_area = cv2.contourArea(hull)
            if hull_area <= 0 or cv2.contourArea(contour) / hull_area < 0.8:
                continue  # a compact blob, not a scribble or a glyph cluster
            region = np.zeros((h, w), np.uint8)
            cv2.drawContours(region, [hull - np.array([x, y])], -1, 1, thickness=-1)
            band_w = max(2, int(0.1 * min(w, h)))
            square = np.ones((2 * band_w + 1, 2 * band_w + 1), np.uint8)
            inner = cv2.erode(region, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            ink = mask[y : y + h, x : x + w].astype(bool)
            band = ink & (region > 0) & (inner == 0)
            ys, xs = np.nonzero(band)
            coverage = _sector_coverage(ys, xs, h / 2, w / 2)
            inside = float(ink[inner > 0].mean()) if inner.any() else 0.0
            (_, _), (rw, rh), _ = cv2.minAreaRect(hull)
            rectangular = hull_area / max(rw * rh, 1.0)
            x0, y0 = max(0, x - w // 4), max(0, y - h // 4)
            x1, y1 = min(small.shape[1], x + w + w // 4), min(small.shape[0], y + h + h // 4)
            ring = np.ones((y1 - y0, x1 - x0), bool)
            ring[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
            context = float(paper[y0:y1, x0:x1][ring].mean()) if ring.any() else 0.0
            if coverage < 0.75 or not 0.03 <= inside <= 0.9 or context < 0.4:
                continue
            if _in_text_row(i, boxes):
                continue
            shape: Literal["round", "oval", "square"]
            if rectangular >= 0.9:
                shape = "square"
            else:
                shape = "round" if min(rw, rh) / max(rw, rh) >= 0.85 else "oval"
            confidence = 0.5 * coverage + 0.3 * min(context / 0.8, 1.0) + 0.2 * min(inside / 0.1, 1.0)
            seals.append(
                Seal(
                    bbox=(float(x * k), float(y * k), float((x + w) * k), float((y + h) * k)),
                    color=colour,
                    shape=shape,
                    confidence=round(float(np.clip(confidence, 0.0, 1.0)), 3),
                )
            )
    return sorted(seals, key=lambda s: -s.confidence)


# ---------------------------------------------------------------------------------------------
# Dates

Precision = Literal["day", "month", "year"]
MIN_DATE, MAX_DATE = date(1900, 1, 1), date(2100, 12, 31)

# Full-width digits and separators are common in CJK OCR output; one-for-one so spans stay valid.
_FULLWIDTH = str.maketrans("０１２３４５６７８９－／．，　", "0123456789-/., ")
_CN_DIGIT = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"○": 0, "零": 0, "两": 2}
_CN_NUM = "〇○零一二三四五六七八九十廿卅两"
_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MON = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_CJK = re.compile(
    r"(?<![\d〇○零一二三四五六七八九])(?P<y>\d{4}|[〇○零一二三四五六七八九]{4})\s*年"
    rf"(?:\s*(?P<m>\d{{1,2}}|[{_CN_NUM}]{{1,3}})\s*月(?:\s*(?P<d>\d{{1,2}}|[{_CN_NUM}]{{1,4}})\s*[日号號])?)?"
)
_EN_MDY = re.compile(rf"\b{_MON}\s*(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:\s*,\s*|\s+)(?P<y>\d{{4}})\b", re.I)
_EN_DMY = re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON},?\s+(?P<y>\d{{4}})\b", re.I)
_EN_MY = re.compile(rf"\b{_MON},?\s+(?P<y>\d{{4}})\b", re.I)
_ISO = re.compile(r"(?<![\d.])(?P<y>\d{4}) ?(?P<sep>[-/.]) ?(?P<m>\d{1,2}) ?(?P=sep) ?(?P<d>\d{1,2})(?![\d]|[-/.]\d)")
_NUMERIC = re.compile(r"(?<![\d.])(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})(?![\d]|[-/.]\d)")


def _cn_number(s: str) -> int | None:
    """Chinese numerals up to 39: 五, 十二, 二十一, 廿三, 卅一; also plain ASCII digits."""
    if s.isdigit():
        return int(s)
    tens = {"廿": 2, "卅": 3}.get(s[0])
    if tens is not None:
        s = "十" + s[1:]
    if "十" in s:
        head, _, tail = s.partition("十")
        if tens is None:
            tens = _CN_DIGIT.get(head) if head else 1
        ones = _CN_DIGIT.get(tail) if tail else 0
        return None if tens is None or ones is None or "十" in tail else tens * 10 + ones
    return _CN_DIGIT[s] if len(s) == 1 and s in _CN_DIGIT else None


def _cn_year(s: str) -> int | None:
    return int(s) if s.isdigit() else int("".join(str(_CN_DIGIT[c]) for c in s))


def _make(y: int | None, m: int | None, d: int | None) -> date | None:
    """The date, or None when impossible (2023-02-30) or outside 1900-2100."""
    if y is None or m is None or d is None:
        return None
    try:
        out = date(y, m, d)
    except ValueError:
        return None
    return out if MIN_DATE <= out <= MAX_DATE else None


def dates_in_text(text: str, line_index: int | None = None, *, dayfirst: bool = False) -> list[DateMention]:
    """Dates written in one string, in reading order.

    Numeric ``a/b/yyyy``: day-first when ``a`` > 12, month-first when ``b`` > 12; when both could be
    a month, ``dayfirst`` decides (default False: US month/day), except with dots (``12.05.2023``),
    which only day-first writers use. Year-month and year-only forms (``2023年5月``, ``May 2023``,
    ``2023年``) give the first day of the period with ``precision`` "month"/"year".
    """
    norm = text.translate(_FULLWIDTH)
    found: list[tuple[int, int, date, Precision]] = []

    def add(m: re.Match[str], d: date | None, precision: Precision) -> None:
        if d is not None and all(m.end() <= s or m.start() >= e for s, e, *_ in found):
            found.append((m.start(), m.end(), d, precision))

    for m in _CJK.finditer(norm):
        y = _cn_year(m["y"])
        if m["d"]:
            add(m, _make(y, _cn_number(m["m"]), _cn_number(m["d"])), "day")
        elif m["m"]:
            add(m, _make(y, _cn_number(m["m"]), 1), "month")
        else:
            add(m, _make(y, 1, 1), "year")
    for rx in (_EN_MDY, _EN_DMY):
        for m in rx.finditer(norm):
            add(m, _make(int(m["y"]), _MONTHS[m["mon"][:3].lower()], int(m["d"])), "day")
    for m in _ISO.finditer(norm):
        add(m, _make(int(m["y"]), int(m["m"]), int(m["d"])), "day")
    for m in _NUMERIC.finditer(norm):
        a, b = int(m["a"]), int(m["b"])
        day_first = a > 12 or (b <= 12 and (dayfirst or m["sep"] == "."))
        add(m, _make(int(m["y"]), a if not day_first else b, b if not day_first else a), "day")
    for m in _EN_MY.finditer(norm):
        add(m, _make(int(m["y"]), _MONTHS[m["mon"][:3].lower()], 1), "month")
    return [
        DateMention(text=text[s:e], date=d, line_index=line_index, precision=p) for s, e, d, p in sorted(found)
    ]


def extract_dates(lines: Iterable[str], *, dayfirst: bool = False) -> list[DateMention]:
    """Dates in OCR lines; ``line_index`` is the position of the line in ``lines``."""
    return [m for i, line in enumerate(lines) for m in dates_in_text(line, i, dayfirst=dayfirst)]


def date_tokens(d: date, precision: Precision = "day") -> list[str]:
    """Index tokens for a date: ``Y2023``, ``M2023-05``, ``D2023-05-12`` (down to ``precision``).

    A month-precision mention gets no day token, so it matches a filter only when the filter
    covers its whole month.
    """
    tokens = [f"Y{d.year:04d}"]
    if precision != "year":
        tokens.append(f"M{d.year:04d}-{d.month:02d}")
    if precision == "day":
        tokens.append(f"D{d.isoformat()}")
    return tokens


def date_filter_tokens(start: date | None, end: date | None) -> list[str]:
    """Fewest year/month/day tokens covering the inclusive range [start, end].

    Use with ``array_has_any(date_tokens, [...])``: whole years become ``Y`` tokens, whole
    months ``M`` tokens, the leftover days ``D`` tokens. Open ends are bounded to 1900-01-01 and
    2100-12-31; an empty range gives ``[]``.
    """
    d = max(start or MIN_DATE, MIN_DATE)
    last = min(end or MAX_DATE, MAX_DATE)
    tokens: list[str] = []
    while d <= last:
        month_end = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        if d.month == 1 and d.day == 1 and date(d.year, 12, 31) <= last:
            tokens.append(f"Y{d.year:04d}")
            d = date(d.year + 1, 1, 1)
        elif d.day == 1 and month_end <= last:
            tokens.append(f"M{d.year:04d}-{d.month:02d}")
            d = month_end + timedelta(days=1)
        else:
            tokens.append(f"D{d.isoformat()}")
            d += timedelta(days=1)
    return tokens
