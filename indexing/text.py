"""Text as the index, the planner, the answerer and the metrics read it: one module, so they agree
on what a word, a match and a date are.

Normalisation (:func:`normalize`, :func:`squash`): NFKC (full-width → half-width), lower case,
whitespace collapsed or, for substring checks, removed — OCR puts spaces in Chinese text and
drops them in English unpredictably, so neither may decide a match.

Tokens (:func:`tokens`): LanceDB's full-text index has no CJK analyser, so we hand it
pre-tokenised text: latin words lower-cased, every CJK character as a unigram plus each adjacent
pair as a bigram. Bigrams give BM25 phrase-like precision ("盖章" beats documents that merely
contain 盖 and 章); unigrams keep recall for single-character words and OCR errors.

Dates (:func:`find_dates`): what is written in Chinese or English, as a first day and a precision
(day, month, year). The index, the question planner, the extractive answerer and the answer
metric all read dates with it; the embedded store filters them as year/month/day tokens
(:func:`date_tokens`, :func:`date_filter_tokens`).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from datetime import date, timedelta
from typing import Literal, NamedTuple

from .models import DateMention

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""The CJK ideograph ranges (for a regex character class)."""

_TOKEN = re.compile(rf"[{CJK}]+|[0-9a-z]+(?:[.,'][0-9a-z]+)*")
STOPWORDS = frozenset(
    "a an and are as at be by for from in is it of on or the to was were with what which who whom where when how "
    "find show me please image images photo picture document page".split()
)


# -- normalisation and tokens -------------------------------------------------------------------
def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, collapse whitespace: how snippets are compared."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def squash(text: str) -> str:
    """The comparison form of a text for substring checks: normalised, without any whitespace."""
    return normalize(text).replace(" ", "")


def tokens(text: str, *, drop_stopwords: bool = False) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(normalize(text)):
        tok = m.group(0)
        if "\u3400" <= tok[0] <= "\ufaff":
            out.extend(tok)
            out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
        elif not (drop_stopwords and tok in STOPWORDS):
            out.append(tok)
    return out


_WORD = re.compile(r"[0-9a-z]+(?:[.,'][0-9a-z]+)*")  # _TOKEN's second branch: it never matches inside a CJK run


def latin_words(normalized: str) -> list[str]:
    """The latin tokens of :func:`tokens` (words, numbers, codes) of an already normalised text, in
    order, without its CJK unigrams and bigrams: what a stem lookup needs, at a fraction of the cost
    on a Chinese page."""
    return _WORD.findall(normalized)


def fts_text(text: str) -> str:
    """The whitespace-separated token string stored in the embedded store's full-text column."""
    return " ".join(tokens(text))


def is_meaningful(text: str, min_chars: int = 4) -> bool:
    """Whether OCR text says anything: a stray "0" read off a photo must not get a text vector,
    or it ranks for every query on the text routes."""
    return sum(ch.isalpha() for ch in text) >= min_chars


def keyword_query(query: str) -> str:
    """The query for full-text routes: latin stop words dropped ("a", "of", "find" match every
    English page and would let BM25 rank by noise); CJK text is kept whole for the analyser."""
    words = []
    for m in _TOKEN.finditer(normalize(query)):
        tok = m.group(0)
        if "\u3400" <= tok[0] <= "\ufaff" or tok not in STOPWORDS:
            words.append(tok)
    return " ".join(words)


def query_terms(query: str) -> list[str]:
    """Distinct query tokens without stop words, in order."""
    return list(dict.fromkeys(tokens(query, drop_stopwords=True)))


@lru_cache(maxsize=1 << 15)  # lines of ~1k recent pages; a few tens of MB at most
def token_set(text: str) -> frozenset[str]:
    """The distinct tokens of ``text``, memoised: search tokenises every OCR line and block of its
    candidate pages for every query, and the same hot pages come back query after query."""
    return frozenset(tokens(text))


def coverage(query_terms_: list[str], text: str) -> float:
    """Share of the query's terms found in ``text`` (0..1): how well one region answers the query."""
    if not query_terms_:
        return 0.0
    have = token_set(text)
    return sum(t in have for t in query_terms_) / len(query_terms_)


# -- dates ----------------------------------------------------------------------------------------
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
_CJK_DATE = re.compile(
    r"(?<![\d〇○零一二三四五六七八九])(?P<y>\d{4}|[〇○零一二三四五六七八九]{4})\s*年"
    rf"(?:\s*(?P<m>\d{{1,2}}|[{_CN_NUM}]{{1,3}})\s*月(?:\s*(?P<d>\d{{1,2}}|[{_CN_NUM}]{{1,4}})\s*[日号號])?)?"
)
_EN_MDY = re.compile(rf"\b{_MON}\s*(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:\s*,\s*|\s+)(?P<y>\d{{4}})\b", re.I)
_EN_DMY = re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON},?\s+(?P<y>\d{{4}})\b", re.I)
_EN_MY = re.compile(rf"\b{_MON},?\s+(?P<y>\d{{4}})\b", re.I)
_ISO = re.compile(r"(?<![\d.])(?P<y>\d{4}) ?(?P<sep>[-/.]) ?(?P<m>\d{1,2}) ?(?P=sep) ?(?P<d>\d{1,2})(?![\d]|[-/.]\d)")
_NUMERIC = re.compile(r"(?<![\d.])(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})(?![\d]|[-/.]\d)")
# Only in a question: "2023-05" is a month, a bare "2023" a year. On a page both are as often a
# contract number, an amount or a page count, so the index does not read them.
_Q_YEAR_MONTH = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})\b(?!-)")
_Q_YEAR = re.compile(r"(?<![\d-])\b(?P<y>(?:19|20)\d{2})\b(?![-/.]\d)")


class DateSpan(NamedTuple):
    """A date written at ``text[start:end]``; ``date`` is the first day of what ``precision`` covers."""

    start: int
    end: int
    date: date
    precision: Precision

    @property
    def last(self) -> date:
        """The last day the mention covers ("2023年5月" → 2023-05-31)."""
        return last_day(self.date, self.precision)


def last_day(d: date, precision: Precision) -> date:
    """The last day of the period a mention of ``precision`` starting on ``d`` stands for."""
    if precision == "year":
        return date(d.year, 12, 31)
    if precision == "month":
        return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
    return d


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


def find_dates(text: str, *, dayfirst: bool = False, question: bool = False) -> list[DateSpan]:
    """Dates written in ``text``, in reading order, never overlapping (the fuller form wins).

    Chinese (``2023年5月12日``, ``二〇二三年五月十二日``, ``廿八号``, full-width digits), English
    (``May 12, 2023``, ``12th of May 2023``, ``Sept. 3 2021``), ISO-like (``2023-05-12``,
    ``2023/5/12``, ``2023.05.12``) and numeric ``a/b/yyyy``: day-first when ``a`` > 12,
    month-first when ``b`` > 12; when both could be a month, ``dayfirst`` decides (default
    False: US month/day), except with dots (``12.05.2023``), which only day-first writers use.
    Year-month and year-only forms (``2023年5月``, ``May 2023``, ``2023年``) give the first day
    of the period with precision "month"/"year". Impossible dates and dates outside 1900-2100
    are not dates. ``question``: also ``2023-05`` (a month) and a bare ``2023`` (a year).
    """
    norm = text.translate(_FULLWIDTH)
    found: list[DateSpan] = []

    def add(m: re.Match[str], d: date | None, precision: Precision) -> None:
        if d is not None and all(m.end() <= s.start or m.start() >= s.end for s in found):
            found.append(DateSpan(m.start(), m.end(), d, precision))

    for m in _CJK_DATE.finditer(norm):
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
    if question:
        for m in _Q_YEAR_MONTH.finditer(norm):
            add(m, _make(int(m["y"]), int(m["m"]), 1), "month")
        for m in _Q_YEAR.finditer(norm):
            add(m, _make(int(m["y"]), 1, 1), "year")
    return sorted(found)


def dates_in_text(text: str, line_index: int | None = None, *, dayfirst: bool = False) -> list[DateMention]:
    """The dates of one OCR line as the index stores them (see :func:`find_dates`)."""
    return [
        DateMention(text=text[s.start : s.end], date=s.date, line_index=line_index, precision=s.precision)
        for s in find_dates(text, dayfirst=dayfirst)
    ]


def extract_dates(lines: Iterable[str], *, dayfirst: bool = False) -> list[DateMention]:
    """Dates in OCR lines; ``line_index`` is the position of the line in ``lines``."""
    return [m for i, line in enumerate(lines) for m in dates_in_text(line, i, dayfirst=dayfirst)]


def find_date(text: str) -> str | None:
    """The first full date (day precision) in ``text``, as written: the value of a "when" answer."""
    return next((text[s.start : s.end] for s in find_dates(text) if s.precision == "day"), None)


def date_tokens(d: date, precision: Precision = "day") -> list[str]:
    """Index tokens for a date: ``Y2023``, ``M2023-05``, ``D2023-05-12`` (down to ``precision``).

    A month-precision mention gets no day token, so it matches a filter only when the filter
    covers its whole month.
    """
    out = [f"Y{d.year:04d}"]
    if precision != "year":
        out.append(f"M{d.year:04d}-{d.month:02d}")
    if precision == "day":
        out.append(f"D{d.isoformat()}")
    return out


def date_filter_tokens(start: date | None, end: date | None) -> list[str]:
    """Fewest year/month/day tokens covering the inclusive range [start, end].

    Use with ``array_has_any(date_tokens, [...])``: whole years become ``Y`` tokens, whole
    months ``M`` tokens, the leftover days ``D`` tokens. Open ends are bounded to 1900-01-01 and
    2100-12-31; an empty range gives ``[]``.
    """
    d = max(start or MIN_DATE, MIN_DATE)
    last = min(end or MAX_DATE, MAX_DATE)
    out: list[str] = []
    while d <= last:
        month_end = last_day(d, "month")
        if d.month == 1 and d.day == 1 and date(d.year, 12, 31) <= last:
            out.append(f"Y{d.year:04d}")
            d = date(d.year + 1, 1, 1)
        elif d.day == 1 and month_end <= last:
            out.append(f"M{d.year:04d}-{d.month:02d}")
            d = month_end + timedelta(days=1)
        else:
            out.append(f"D{d.isoformat()}")
            d += timedelta(days=1)
    return out
