"""Personal data (GDPR / PIPL) in OCR text: detection with validation, and the redaction primitives.

Detection is built for precision: a contract page is full of numbers (dates, amounts, contract and
invoice numbers, versions) and a false alarm there masks what a user came to read. So every kind is
a strict pattern *and* a validator, and the weakly validated kinds need a label right before them:

============  =====================================================================  ==============
kind          pattern → validation                                                   label needed
============  =====================================================================  ==============
cn_id         18 characters (17 digits + digit/X, may be grouped 6-8-4) → GB 11643   no
              checksum, a real birth date (1900..today), a real province code
bank_card     16-19 digits (15 for Amex), plain or in groups of 4 → Luhn and an      plain ones not
              issuer prefix (UnionPay 62, Visa 4, Mastercard 51-55/2221-2720,        starting 62
              Amex 34/37, JCB 35, Discover 60/65)
iban          country + 2 check digits + BBAN, plain or in groups of 4 → the          no
              country's length and ISO 7064 mod-97 = 1
email         local@domain.tld                                                        no
us_ssn        AAA-GG-SSSS → area not 000/666/9xx, group not 00, serial not 0000,      space-separated
              not a published specimen                                               or plain ones
cn_mobile     [+86] 1[3-9]X XXXX XXXX (plain, or 3-4-4 with spaces/dashes)            no
cn_landline   [+86] (0AA[A]) / 0AA[A]- local → a real area code shape (010, 02X,      plain ones
              0[3-9]XX), local 7-8 digits not starting 0/1, 8 after a 2-digit code
phone         +CC ... or US (NXX) NXX-XXXX → libphonenumber: a valid number,          plain US ones
              grouped the way its country writes it                                   (10 digits)
passport      E/G/D/S/P/H + 8 digits, 2 letters + 7 digits, 9 digits, 1-2 letters     always
              + 6-8 digits
============  =====================================================================  ==============

Every pattern is bounded (no letter or digit next to it, nor one behind a ``-./``: no part of a
code like ``HT-2023-0512`` or ``INV-2025-834821``), and every numeric kind is refused right after a
currency sign or before 元/万/% (an amount). Overlapping matches keep the most specific kind
(e-mail, IBAN, ID, card, SSN, passport, mobile, landline, phone; then the longer). Matching runs on the line with full-width forms folded to ASCII one character for
one, so offsets are those of the OCR text. A label may also stand at the end of the previous OCR
line (a form's label column).

A finding's box is estimated from its character offsets: each character gets a width (CJK 1,
digits and most latin letters about half), the span's share of the line's width is laid along the
OCR polygon's top and bottom edges (so rotated lines work) and padded by half a character, because
redaction must cover the span even where the estimate is a little off.

Redaction: :func:`mask_text` masks every finding it is given *and* whatever it detects itself, so
one call per output covers text a model produced or re-read (``ocr_region``, agent answers);
:func:`redact_pixels` blacks out boxes given in original-image pixels on any view of the page (the
page, a crop, a thumbnail); :func:`mask_record` masks every text field of a stored record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, TypeVar, get_args

import numpy as np

from .models import BBox, OcrLine, PiiFinding, PiiKind

PII_KINDS: tuple[PiiKind, ...] = get_args(PiiKind)
"""Every kind, most specific first: the order overlapping matches are resolved in."""

_PRIORITY = {k: i for i, k in enumerate(("email", "iban", "cn_id", "bank_card", "us_ssn", "passport",
                                          "cn_mobile", "cn_landline", "phone"))}
assert set(_PRIORITY) == set(PII_KINDS)

# -- text folding -----------------------------------------------------------------------------------
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"


def fold(text: str) -> str:
    """Full-width forms → ASCII and dashes → ``-``, one character for one (offsets stay valid)."""
    out = []
    for ch in text:
        if ch in _DASHES:
            out.append("-")
            continue
        n = unicodedata.normalize("NFKC", ch) if ord(ch) > 127 else ch
        out.append(n if len(n) == 1 else ch)
    return "".join(out)


# -- boundaries, context ---------------------------------------------------------------------------
_L = r"(?<![0-9A-Za-z])(?<![0-9A-Za-z][\-./])"  # not inside a code like HT-2023-..., INV-...
# OCR glues a form's next column on ("R19304023Mobile:", "EY8800097E-mail:"): a capitalised word may
# follow directly
_WORD_AFTER = r"(?=[A-Z]-?[a-z])"
_R = rf"(?:(?![0-9A-Za-z])|{_WORD_AFTER})(?![\-./][0-9A-Za-z])"
_BOUNDED_LEFT, _BOUNDED_RIGHT = re.compile(_L), re.compile(_R)
_MONEY_BEFORE = re.compile(r"(?:[¥$€£]|RMB|CNY|USD|EUR|GBP|HKD|JPY)\s?$", re.I)
_MONEY_AFTER = re.compile(r"^\s?(?:[元万亿%‰]|yuan\b|dollars?\b|euros?\b)", re.I)
_FILL = r"[^0-9A-Za-z\u3400-\u9fff]{0,3}"
_LABEL_TAIL = rf"{_FILL}(?:(?:no|nr|number|num|号码|号)\.?{_FILL})?$"


def _label(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{words}){_LABEL_TAIL}", re.I)


_LABELS: dict[str, re.Pattern[str]] = {
    "passport": _label(r"护照|passport|passeport|reisepass"),
    "us_ssn": _label(r"\bSSN|\bSS#|social\s+security|社会安全号"),
    "phone": _label(r"电话|手机|座机|固话|传真|联系方式|\btel|\btelephone|\bphone|\bmobile|\bcell|\bfax"),
    "bank_card": _label(r"卡号|银行卡|账号|帐号|账户|信用卡|借记卡|\bcard|\baccount|\bacct"),
}


def _labelled(kind: str, before: str) -> bool:
    """Whether ``before`` (the line up to the match, after the previous line) ends with a label."""
    return bool(_LABELS[kind].search(before[-40:]))


def _is_amount(s: str, start: int, end: int) -> bool:
    return bool(_MONEY_BEFORE.search(s[max(0, start - 5) : start]) or _MONEY_AFTER.match(s[end : end + 8]))


# -- validators ------------------------------------------------------------------------------------
_CN_PROVINCES = frozenset(
    [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
     61, 62, 63, 64, 65, 71, 81, 82, 83]
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def valid_cn_id(value: str) -> bool:
    v = value.replace(" ", "").upper()
    if not re.fullmatch(r"\d{17}[\dX]", v) or int(v[:2]) not in _CN_PROVINCES:
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today() and cn_id_check_char(v[:17]) == v[17]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    n = len(digits)
    if n == 15:
        return digits[:2] in ("34", "37")
    if not 16 <= n <= 19:
        return False
    two, four = int(digits[:2]), int(digits[:4])
    return (
        digits[0] == "4"
        or 51 <= two <= 55
        or 2221 <= four <= 2720
        or two in (35, 60, 62, 65, 81)
    )


def valid_card(digits: str) -> bool:
    return len(set(digits)) > 1 and card_issuer_ok(digits) and luhn_ok(digits)


# ISO 13616 lengths (SWIFT IBAN registry)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_ok(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


_SSN_SPECIMENS = frozenset(["078051120", "219099999", "123456789"])


def valid_ssn(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        len(digits) == 9
        and area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and digits not in _SSN_SPECIMENS
    )


# -- detectors -------------------------------------------------------------------------------------
Span = tuple[PiiKind, int, int]

_EMAIL = re.compile(  # OCR sets an underscore apart ("michael _jones@"); the TLD is one case
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9](?:[A-Za-z0-9.%+\-]| ?_ ?){0,63}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.(?:[a-z]{2,24}|[A-Z]{2,24})"
    rf"(?:(?![A-Za-z0-9\-])|{_WORD_AFTER})"
)
_CN_ID = re.compile(_L + r"\d{6} ?\d{8} ?\d{3}[\dXx]" + _R)
_CARD = re.compile(  # plain, or groups of 4 (OCR may drop a space: 8, 12), or Amex 4-6-5
    _L + r"(?:\d{4}(?P<a>[ \-])\d{6}(?P=a)\d{5}|(?P<grouped>\d{4,12}(?:[ \-]\d{1,12}){1,4})|(?P<plain>\d{15,19}))"
    + r"(?![0-9])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,32}")
_SSN = re.compile(_L + r"(?:\d{3}(?P<s>[ \-])\d{2}(?P=s)\d{4}|(?P<plain>\d{9}))" + _R)
_CN_MOBILE = re.compile(  # 11 digits, 3-4-4, or 3-8 / 7-4 where OCR dropped a space
    _L + r"(?:(?:\+|00)86[ \-]?)?1[3-9]\d(?:\d{8}|(?P<s>[ \-])\d{4}(?P=s)?\d{4}|\d{4}[ \-]\d{4})" + _R
)
_AREA = r"(?:10|2\d|[3-9]\d{2})"
_CN_LANDLINE = re.compile(
    _L
    + rf"(?:(?P<intl>(?:\+|00)86[ \-]?)(?:\(0?(?P<a1>{_AREA})\)|0?(?P<a2>{_AREA}))|\(0(?P<a3>{_AREA})\)|0(?P<a4>{_AREA}))"
    r"(?P<sep>[ \-]?)(?P<local>[2-9]\d{2,3}[ \-]?\d{4})(?:[ \-]?(?:转|ext\.?|x)[ ]?\d{1,5})?" + _R
)
_PASSPORT = re.compile(_L + r"(?:[A-Z]{1,2}\d{6,8}|\d{9})" + _R)


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _email(s: str, before: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(s):
        yield "email", m.start(), m.end()


def _cn_id(s: str, before: str) -> Iterator[Span]:
    for m in _CN_ID.finditer(s):
        if valid_cn_id(m.group()):
            yield "cn_id", m.start(), m.end()


def _card_end(s: str, m: re.Match[str]) -> int | None:
    """End of the card number in a grouped match: the most leading groups that make a valid card,
    each but the last a multiple of 4 digits long (so a number printed after it is not swallowed)."""
    groups = list(re.finditer(r"\d+", m.group("grouped")))
    for k in range(len(groups), 1, -1):
        parts = [g.group() for g in groups[:k]]
        if all(len(p) % 4 == 0 for p in parts[:-1]) and valid_card("".join(parts)):
            end = m.start() + groups[k - 1].end()
            return end if _BOUNDED_RIGHT.match(s, end) else None
    return None


def _bank_card(s: str, before: str) -> Iterator[Span]:
    for m in _CARD.finditer(s):
        if m.group("grouped"):
            end = _card_end(s, m)
            if end is None:
                continue
        else:
            end = m.end()
            if not valid_card(_digits(m.group())) or not _BOUNDED_RIGHT.match(s, end):
                continue
        if _is_amount(s, m.start(), end):
            continue
        if m.group("plain") and not m.group().startswith("62") and not _labelled("bank_card", before + s[: m.start()]):
            continue
        yield "bank_card", m.start(), end


def _iban(s: str, before: str) -> Iterator[Span]:
    for m in _IBAN.finditer(s):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # cut the match after the country's length: a grouped IBAN may be followed by a word
        n, end = 0, m.start()
        while end < m.end() and n < want:
            n += s[end] != " "
            end += 1
        compact = s[m.start() : end].replace(" ", "")
        if n != want or not _BOUNDED_RIGHT.match(s, end):
            continue
        if iban_ok(compact) or (compact[:2] in _LETTER_BANKS and iban_ok(compact[:4] + compact[4:8].translate(_AS_LETTER) + compact[8:])):
            yield "iban", m.start(), end


# countries whose BBAN starts with a 4-letter bank code, where OCR reads O as 0 ("L0YD")
_LETTER_BANKS = frozenset(["GB", "NL", "IE"])
_AS_LETTER = str.maketrans("01586", "OISBG")


def _us_ssn(s: str, before: str) -> Iterator[Span]:
    for m in _SSN.finditer(s):
        if not valid_ssn(_digits(m.group())):
            continue
        if (m.group("plain") or m.group("s") == " ") and not _labelled("us_ssn", before + s[: m.start()]):
            continue
        yield "us_ssn", m.start(), m.end()


def _cn_mobile(s: str, before: str) -> Iterator[Span]:
    for m in _CN_MOBILE.finditer(s):
        if not _is_amount(s, m.start(), m.end()):
            yield "cn_mobile", m.start(), m.end()


def _cn_landline(s: str, before: str) -> Iterator[Span]:
    for m in _CN_LANDLINE.finditer(s):
        area = m.group("a1") or m.group("a2") or m.group("a3") or m.group("a4")
        local = _digits(m.group("local"))
        if len(area) < 3 and len(local) != 8:
            continue
        separated = m.group("intl") or m.group("a1") or m.group("a3") or m.group("sep")
        if not separated and not _labelled("phone", before + s[: m.start()]):
            continue
        if not _is_amount(s, m.start(), m.end()):
            yield "cn_landline", m.start(), m.end()


def _phone(s: str, before: str) -> Iterator[Span]:
    if sum(c.isdigit() for c in s) < 7:
        return
    from phonenumbers import Leniency, PhoneNumberMatcher

    # National numbers must be grouped as their country writes them (INV-2025-834821 is no phone);
    # one written with its +country code only needs to be valid (OCR drops spaces: "+44207946 9710").
    hits = {(m.start, m.end): m for m in PhoneNumberMatcher(s, "US", leniency=Leniency.STRICT_GROUPING)}
    for m in PhoneNumberMatcher(s, "US", leniency=Leniency.VALID):
        if m.raw_string.lstrip("(").startswith(("+", "00")):
            hits.setdefault((m.start, m.end), m)
    for m in sorted(hits.values(), key=lambda m: m.start):
        raw = m.raw_string
        international = raw.lstrip("(").startswith(("+", "00"))
        grouped = bool(re.search(r"[\s().\-]", raw))
        if not international and not grouped and (
            len(_digits(raw)) != 10 or not _labelled("phone", before + s[: m.start])
        ):
            continue  # plain national digits: only ten of them, right after a label
        if _is_amount(s, m.start, m.end):
            continue
        if not _BOUNDED_LEFT.match(s, m.start) or not _BOUNDED_RIGHT.match(s, m.end):
            continue
        yield "phone", m.start, m.end


def _passport(s: str, before: str) -> Iterator[Span]:
    for m in _PASSPORT.finditer(s):
        if _labelled("passport", before + s[: m.start()]):
            yield "passport", m.start(), m.end()


_DETECTORS = (_email, _iban, _cn_id, _bank_card, _us_ssn, _passport, _cn_mobile, _cn_landline, _phone)


# find_spans of a short stored text, remembered: a search masks its hits' snippets, regions and
# captions for every caller without clearance, and the same stored lines come back query after query
# (the detectors, phonenumbers' matcher above all, were ~25 % of such a search's time). A pure
# function of its arguments; long texts (a whole page at indexing) are not kept, and neither is
# what a client sends (queries, filters, tool arguments): a client can neither fill the cache nor
# time whether someone else sent the same text.
_SPANS_CACHED_CHARS = 1000


def find_spans(text: str, before: str = "", *, remember: bool = False) -> list[Span]:
    """Non-overlapping ``(kind, start, end)`` in ``text``; ``before`` is the text just before it
    (the previous OCR line), where a label may stand. ``remember``: ``text`` is a page's stored
    text (never a client's), worth keeping the answer for."""
    if remember and len(text) + len(before) <= _SPANS_CACHED_CHARS:
        return list(_remembered_spans(text, before))
    return _find_spans(text, before)


@lru_cache(maxsize=8192)
def _remembered_spans(text: str, before: str) -> tuple[Span, ...]:
    return tuple(_find_spans(text, before))


def _find_spans(text: str, before: str) -> list[Span]:
    s = fold(text)
    if not any(ch.isdigit() or ch == "@" for ch in s):
        return []
    b = fold(before)
    b = b + " " if b else ""
    found = [sp for det in _DETECTORS for sp in det(s, b)]
    found.sort(key=lambda sp: (_PRIORITY[sp[0]], -(sp[2] - sp[1]), sp[1]))
    kept: list[Span] = []
    for sp in found:
        if all(sp[2] <= k[1] or sp[1] >= k[2] for k in kept):
            kept.append(sp)
    return sorted(kept, key=lambda sp: sp[1])


# -- boxes -----------------------------------------------------------------------------------------
def _char_width(ch: str) -> float:
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.0
    if ch == " ":
        return 0.3
    if ch in "MWmw@%":
        return 0.85
    if ch.isupper():
        return 0.65
    if ch in "il.,:;'|!()[]-":
        return 0.3
    return 0.55


def span_box(line: OcrLine, start: int, end: int, pad_chars: float = 0.5) -> BBox:
    """The box of ``line.text[start:end]`` in the line's coordinates (original-image pixels),
    estimated from character widths along the OCR polygon (top edge p0→p1, bottom edge p3→p2)."""
    text = line.text
    widths = [_char_width(c) for c in text] or [1.0]
    total = sum(widths)
    a = sum(widths[:start])
    b = sum(widths[:end])
    pad = pad_chars * (b - a) / max(1, end - start)
    f0, f1 = max(0.0, (a - pad) / total), min(1.0, (b + pad) / total)
    if len(line.polygon) == 4:
        p = np.asarray(line.polygon, dtype=np.float64)
        top0, top1, bot1, bot0 = p[0], p[1], p[2], p[3]
    else:
        x0, y0, x1, y1 = line.bbox
        top0, top1, bot1, bot0 = (np.array(v, dtype=np.float64) for v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
    pts = np.stack([top0 + (top1 - top0) * f0, top0 + (top1 - top0) * f1,
                    bot0 + (bot1 - bot0) * f1, bot0 + (bot1 - bot0) * f0])
    lx0, ly0, lx1, ly1 = line.bbox
    return (
        round(float(max(lx0, pts[:, 0].min())), 1),
        round(float(max(ly0, pts[:, 1].min())), 1),
        round(float(min(lx1, pts[:, 0].max())), 1),
        round(float(min(ly1, pts[:, 1].max())), 1),
    )


# -- public detection API --------------------------------------------------------------------------
def detect_text(text: str, before: str = "") -> list[PiiFinding]:
    """Findings in free text (no line, no box): for text that did not come from a stored OCR line."""
    return [PiiFinding(kind=k, text=text[a:b], start=a, end=b) for k, a, b in find_spans(text, before)]


def detect_lines(lines: Sequence[OcrLine]) -> list[PiiFinding]:
    """Findings in a page's OCR lines, with line index, offsets and estimated boxes."""
    out: list[PiiFinding] = []
    prev = ""
    for i, ln in enumerate(lines):
        for k, a, b in find_spans(ln.text, prev):
            out.append(PiiFinding(kind=k, text=ln.text[a:b], line=i, start=a, end=b, bbox=span_box(ln, a, b)))
        prev = ln.text
    return out


def kinds_in(findings: Iterable[PiiFinding], box: BBox) -> list[PiiKind]:
    """Kinds of the findings whose box centre lies in ``box`` (a region's), in :data:`PII_KINDS` order."""
    x0, y0, x1, y1 = box
    hit = set()
    for f in findings:
        if f.bbox is None:
            continue
        cx, cy = (f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            hit.add(f.kind)
    return [k for k in PII_KINDS if k in hit]


def count_kinds(findings: Iterable[PiiFinding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return counts


# -- redaction -------------------------------------------------------------------------------------
PERSONAL_META_KEYS: frozenset[str] = frozenset(
    {
        "full_name", "person", "person_name", "patient", "patient_name", "patient_id", "patient_birth_date",
        "patient_sex", "patient_age", "patient_address", "patient_phone", "birth_date", "date_of_birth", "dob",
        "id_number", "id_card", "national_id", "passport", "ssn", "phone", "mobile", "email", "address",
        "姓名", "身份证", "身份证号", "出生日期", "电话", "手机", "邮箱", "住址", "地址",
    }
)
"""Metadata keys whose values are personal data whatever they look like (a name, a birth date):
masked whole for a principal without clearance, left out of full-text search, and refused as a
``meta`` filter for such a principal. Matched case-insensitively with ``-``/space as ``_``; a key
ending in ``_name`` / ``_id`` under ``patient_`` or ``person_`` counts too (DICOM-derived fields)."""


def is_personal_key(key: str) -> bool:
    k = key.strip().lower().replace("-", "_").replace(" ", "_")
    return k in PERSONAL_META_KEYS or k.startswith(("patient_", "person_"))


def mask_label(kind: str) -> str:
    return f"[{kind} redacted]"


@lru_cache(maxsize=4096)
def _loose(value: str) -> re.Pattern[str] | None:
    """A pattern for ``value`` that tolerates other spacing, dashes and case (snippets are normalised),
    and the separators a file or folder name puts between a name's parts ("ZHANG^SAN" is found in
    ``zhang_san_chest.dcm``)."""
    chars = [c for c in fold(value) if c.isalnum() or c in "@._%+"]
    if len(chars) < 4:
        return None
    return re.compile(r"[\s\-_.,^]?".join(re.escape(c) for c in chars), re.I)


def mask_text(text: str, findings: Iterable[PiiFinding] = (), before: str = "", *, remember: bool = False) -> str:
    """``text`` with personal data replaced by ``[kind redacted]``: every occurrence of the given
    findings' values (however spaced) and everything detected in ``text`` itself (``before``: the
    previous OCR line, where a label such as 护照号码 may stand; ``remember``: see :func:`find_spans`)."""
    if not text:
        return text
    spans: list[tuple[int, int, str]] = [(a, b, k) for k, a, b in find_spans(text, before, remember=remember)]
    folded: str | None = None
    for f in findings:
        pat = _loose(f.text)
        if pat is not None:
            folded = fold(text) if folded is None else folded
            spans.extend((m.start(), m.end(), f.kind) for m in pat.finditer(folded))
    if not spans:
        return text
    spans.sort()
    merged: list[list[Any]] = []
    for a, b, k in spans:
        if merged and a < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b, k])
    out, pos = [], 0
    for a, b, k in merged:
        out.append(text[pos:a])
        out.append(mask_label(k))
        pos = b
    out.append(text[pos:])
    return "".join(out)


def mask_name(text: str, *recs: Any) -> str:
    """A file path, file name or link reason (``case=<folder>``) with the personal data of ``recs``
    masked: their findings, the values under their personal metadata keys (a folder named after
    the patient) and whatever the detectors find in ``text`` itself."""
    known = [f for r in recs for f in r.pii if f.text != mask_label(f.kind)]
    text = mask_text(text, known)
    for r in recs:
        for meta in (r.meta, r.file_meta):
            for k, v in meta.items():
                pat = _loose(v) if is_personal_key(k) and v != mask_label("personal") else None
                if pat is not None and pat.search(fold(text)):
                    text = pat.sub(mask_label("personal"), fold(text))
    return text


def mask_values(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with :func:`mask_text` applied to every string,
    keys included: what an audit digest is taken of for a caller without clearance (a SHA-256 of
    a phone number is found again by trying every phone number)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {mask_values(k): mask_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_values(v) for v in value]
    return value


Img = TypeVar("Img")


def redact_pixels(image: Img, boxes: Iterable[BBox | None], view: BBox | None = None, *, margin: float = 1.0) -> Img:
    """A copy of ``image`` with every box filled black.

    ``boxes`` are in original-image pixels (as stored); ``view`` is the part of the original image
    that ``image`` shows — a crop's box, or ``(0, 0, width, height)`` of the original for a
    thumbnail or a resized page — so one call serves every output (default: ``image`` *is* the
    original). Accepts a numpy array (H, W[, C]) or a PIL image and returns the same type.
    """
    from PIL import Image

    is_pil = isinstance(image, Image.Image)
    arr = np.array(image) if is_pil else np.array(image, copy=True)
    h, w = arr.shape[:2]
    vx0, vy0, vx1, vy1 = view if view is not None else (0.0, 0.0, float(w), float(h))
    sx = w / max(vx1 - vx0, 1e-9)
    sy = h / max(vy1 - vy0, 1e-9)
    for box in boxes:
        if box is None:
            continue
        x0 = int(np.floor((box[0] - vx0) * sx - margin))
        y0 = int(np.floor((box[1] - vy0) * sy - margin))
        x1 = int(np.ceil((box[2] - vx0) * sx + margin))
        y1 = int(np.ceil((box[3] - vy0) * sy + margin))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 > x0 and y1 > y0:
            arr[y0:y1, x0:x1] = 0
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr[y0:y1, x0:x1, 3] = 255
    if is_pil:
        return Image.fromarray(arr, mode=image.mode)  # type: ignore[attr-defined,no-any-return]
    return arr  # type: ignore[return-value]


def mask_record(rec: Any) -> Any:
    """A copy of an :class:`~indexing.stores.base.ImageRecord` with personal data masked in every
    text it holds (OCR lines and text, layout, tables, dates, caption, metadata values, the
    findings themselves); boxes are kept so a client still sees *where* something was redacted.
    Findings include personal data the file carries in named fields (DICOM patient name, ID, birth
    date): their values are masked, and so is any copy of them in the page's texts (a name burnt
    into the pixels and OCR'd) and in its file path and link reasons (a file or case folder named
    after the patient). Metadata values under a personal key (:func:`is_personal_key`) are
    masked whole, the user's and the file's own. Masking a masked record changes nothing; the
    masked ``path`` is for showing only — open files from the stored record."""
    known = [f for f in rec.pii if f.text != mask_label(f.kind)]

    def m(t: str) -> str:
        return mask_text(t, known)

    def m_name(t: str) -> str:
        return mask_name(t, rec)

    return rec.model_copy(
        update={
            "ocr_lines": [ln.model_copy(update={"text": m(ln.text)}) for ln in rec.ocr_lines],
            "ocr_text": m(rec.ocr_text),
            "layout": [b.model_copy(update={"text": m(b.text)}) for b in rec.layout],
            "tables": [t.model_copy(update={"html": m(t.html)}) for t in rec.tables],
            "dates": [d.model_copy(update={"text": m(d.text)}) for d in rec.dates],
            "caption": m(rec.caption),
            "path": m_name(rec.path),
            "links": [ln.model_copy(update={"why": m_name(ln.why)}) for ln in rec.links],
            "meta": {k: mask_label("personal") if is_personal_key(k) else m(v) for k, v in rec.meta.items()},
            "file_meta": {k: mask_label("personal") if is_personal_key(k) else m(v) for k, v in rec.file_meta.items()},
            "pii": [f.model_copy(update={"text": mask_label(f.kind)}) for f in rec.pii],
        }
    )
