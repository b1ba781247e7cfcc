"""Evidence lines, how well each answers a sub-question, and the extractive answerer.

Pure functions over what the MCP tools returned, so the answer logic and the citation checks can be
tested without a server. Text is compared and dates are read as the index does
(:mod:`indexing.text`: ``squash`` for substring checks, ``find_date`` for a "when" answer).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from imgrag.indexing.text import CJK, find_date, normalize, squash, tokens

from .mcp_client import LinkView
from .planner import SubQuestion
from .spans import NOT_DATE_OR_PARTY, VALUE_TYPES, AnswerType, answer_type, in_question, key_not_asked, literals, spans

BBox = tuple[float, float, float, float]
Source = Literal["ocr_region", "metadata", "snippet"]


class EvidenceLine(BaseModel):
    """One line of text seen in this run, and where."""

    image_id: str
    text: str
    bbox: BBox | None = None
    confidence: float = 0.0
    source: Source = "ocr_region"
    rank: int = Field(default=0, description="rank of the image among the sub-question's hits (0 = best)")


class ImageInfo(BaseModel):
    """What this run learned about one image through get_metadata and ocr_region."""

    image_id: str
    path: str = ""
    file: str = ""
    page: int = 1
    n_pages: int = 1
    width: int = 0
    height: int = 0
    ocr_text: str = ""
    lines: list[EvidenceLine] = Field(default_factory=list, description="page-level OCR lines (metadata)")
    reread: list[EvidenceLine] = Field(default_factory=list, description="lines from ocr_region re-reads")
    doc_id: str = Field(default="", description="source file id; pages of one PDF share it")
    seals: list[BBox] = Field(default_factory=list, description="seal boxes found by the index's seal detector")
    seal_labels: list[str] = Field(default_factory=list, description="per seal: colour and shape, e.g. 'red round'")
    vlm_notes: list[str] = Field(default_factory=list)
    caption: str = Field(default="", description="what the image shows (a DICOM image: from its tags)")
    links: list[LinkView] = Field(default_factory=list, description="pages linked to this one (get_metadata)")

    def corpus(self) -> str:
        """Every OCR text of this image seen in the run, normalised for substring checks."""
        parts = [self.ocr_text, *(ln.text for ln in self.lines), *(ln.text for ln in self.reread)]
        return squash("\n".join(parts))


def overlap(a: BBox | list[float], b: BBox | list[float]) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])) or 1.0
    return inter / small


def lines_at(info: ImageInfo, bbox: BBox | list[float]) -> list[EvidenceLine]:
    """The page's stored OCR lines at ``bbox`` (mostly inside it, or holding most of it), in reading order."""
    at = [ln for ln in info.lines if ln.bbox is not None and overlap(ln.bbox, bbox) >= 0.5]
    return sorted(at, key=lambda ln: (ln.bbox[1], ln.bbox[0]))  # type: ignore[index]


def snippet_matches(snippet: str, info: ImageInfo, bbox: BBox | list[float] | None = None) -> bool:
    """Whether a quoted snippet is the index's own OCR text of the page (what ``get_metadata``
    returned, never an ``ocr_region`` re-read of this run), after normalisation; with ``bbox``, the
    text of the stored lines at that box."""
    s = squash(snippet)
    if not s:
        return False
    if bbox is not None:
        return s in squash("\n".join(ln.text for ln in lines_at(info, bbox)))
    return s in squash("\n".join([info.ocr_text, *(ln.text for ln in info.lines)]))


def stored(line: EvidenceLine, info: ImageInfo | None) -> EvidenceLine | None:
    """The stored page-OCR line a piece of evidence stands for, so that whatever is quoted is what
    the index holds at the box it cites: a page line is itself; a search snippet (one stored line,
    but boxed with its whole block) or a re-read is the stored line at its box with the same text;
    None when the page's OCR has no such line there (a re-read that reads the pixels otherwise)."""
    if line.source == "metadata":
        return line
    if info is None or line.bbox is None:
        return None
    s = squash(line.text)
    for ln in lines_at(info, line.bbox):
        if s and s == squash(ln.text):
            return ln.model_copy(update={"rank": line.rank})
    return None


# -- recognising values ----------------------------------------------------------------------
AMOUNT_RE = re.compile(
    r"((?:人民币|RMB|CNY|USD|GBP|EUR|JPY|HKD|US\$|[¥￥$£€])\s*[\d,，]+(?:\.\d+)?\s*(?:元|万元)?"
    r"|[\d,，]+(?:\.\d+)?\s*(?:元|万元|yuan|dollars|pounds|euros)"
    r"|[零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整]{4,})",
    re.I,
)
ROLE_RE = re.compile(r"(甲方|乙方|丙方|买方|卖方|委托方|受托方|出租方|承租方|party\s*[a-c]\b|buyer|seller|client|contractor|supplier|vendor)", re.I)
_COLON = re.compile(r"[:：]")


SECTION_NO_RE = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d{1,3}){1,3})(?![\d]|\.\d)")
TABLE_NO_RE = re.compile(r"(?<![A-Za-z])(Table|Figure|表|图)\s*(\d{1,2}(?:\.\d{1,3})+)(?![\d]|\.\d)", re.I)
_CAPTION_LABEL = re.compile(r"(?<![A-Za-z])(Table|Figure|表|图)\s*$", re.I)
_ASKS_TABLE = re.compile(r"(\btables?\b|表格|哪张表|哪个表|哪一个表|\bfigure\b|哪张图)", re.I)
_QUOTED_PART = re.compile(r"[\"“「『《][^\"”」』》]*[\"”」』》]")


_CAPTION = re.compile(r"^\s*(Table|Figure|表|图)\s*\d{1,2}(?:\.\d{1,3})+\s*[:：]", re.I)


def is_caption(text: str) -> bool:
    """A table or figure caption ("Table 1.4: …", "表 1.4：…")."""
    return _CAPTION.match(text) is not None


def asks_table(sub: SubQuestion) -> bool:
    """A "which table / figure" question (the answer is "Table 1.9"), not a section number."""
    return bool(_ASKS_TABLE.search(_QUOTED_PART.sub(" ", sub.question)))


def title_match(sub: SubQuestion, text: str) -> tuple[float, int]:
    """How much of the title the question names (its quoted entity) is on ``text``, and where it starts
    there (-1 when not found whole). Falls back to the key terms when the question quotes nothing."""
    flat = squash(text)
    best, at = 0.0, -1
    for e in sub.entities:
        se = squash(e)
        if not se:
            continue
        if se in flat:
            return 1.0, flat.index(se)
        words = tokens(e)
        if words:
            have = set(tokens(text))
            best = max(best, sum(w in have for w in words) / len(words))
    if not sub.entities:
        best = term_coverage(sub.key_terms, text)
    return best, at


def _beside(line: EvidenceLine, pool: list[EvidenceLine], side: int, max_gap: float = float("inf")) -> EvidenceLine | None:
    """The nearest line on the same row to the left (``side=-1``) or right (``+1``) of ``line``,
    at most ``max_gap`` line heights away."""
    if line.bbox is None:
        return None
    x0, y0, x1, y1 = line.bbox
    cy, h = (y0 + y1) / 2, max(1.0, y1 - y0)
    best, best_dx = None, max_gap * h
    for other in pool:
        if other.bbox is None or other is line or other.image_id != line.image_id:
            continue
        ocy = (other.bbox[1] + other.bbox[3]) / 2
        dx = x0 - other.bbox[2] if side < 0 else other.bbox[0] - x1
        if abs(ocy - cy) < 0.5 * h and -0.2 * h <= dx < best_dx:
            best, best_dx = other, dx
    return best


def row_cells(line: EvidenceLine, pool: list[EvidenceLine], side: int, max_gap: float = 30.0) -> list[EvidenceLine]:
    """The other cells of ``line``'s table row on one side (``-1`` left, ``+1`` right), nearest first.
    A cell is on the row when the boxes share at least 40 % of the smaller height: a two-line cell
    is centred on its row, so its first line sits half a line above the key beside it."""
    if line.bbox is None:
        return []
    x0, y0, x1, y1 = line.bbox
    h = max(1.0, y1 - y0)
    found: list[tuple[float, EvidenceLine]] = []
    seen: set[str] = set()
    for other in pool:
        if other.bbox is None or other is line or other.image_id != line.image_id:
            continue
        ox0, oy0, ox1, oy1 = other.bbox
        shared = min(y1, oy1) - max(y0, oy0)
        dx = x0 - ox1 if side < 0 else ox0 - x1
        key = squash(other.text)
        if shared >= 0.4 * min(h, max(1.0, oy1 - oy0)) and -0.2 * h <= dx < max_gap * h and key not in seen:
            seen.add(key)
            found.append((dx, other))
    return [o for _, o in sorted(found, key=lambda t: t[0])]


def _left(line: EvidenceLine, pool: list[EvidenceLine]) -> EvidenceLine | None:
    """A heading's number OCR'd as its own box, just left of the title."""
    return _beside(line, pool, -1, max_gap=8)


def _stacked(line: EvidenceLine, pool: list[EvidenceLine], side: int, max_gap: float) -> EvidenceLine | None:
    """The nearest line just above (``side=-1``) or below (``+1``) ``line`` that overlaps its
    horizontal span, at most ``max_gap`` line heights away."""
    if line.bbox is None:
        return None
    x0, y0, x1, y1 = line.bbox
    h = max(1.0, y1 - y0)
    best, best_dy = None, max_gap * h
    for other in pool:
        if other.bbox is None or other is line or other.image_id != line.image_id:
            continue
        dy = y0 - other.bbox[3] if side < 0 else other.bbox[1] - y1
        if -0.3 * h <= dy < best_dy and other.bbox[0] < x1 and other.bbox[2] > x0 - 2 * h:
            best, best_dy = other, dy
    return best


def _above(line: EvidenceLine, pool: list[EvidenceLine]) -> EvidenceLine | None:
    """The nearest line just above ``line`` that overlaps it horizontally."""
    return _stacked(line, pool, -1, max_gap=2.0)


def section_number(sub: SubQuestion, line: EvidenceLine, pool: list[EvidenceLine]) -> tuple[str, EvidenceLine] | None:
    """The number of the heading or caption on ``line`` ("1.2.5", "Table 1.9"), read before the title
    on the line itself, else from the box to its left or the line above; None when there is none."""
    table = asks_table(sub)
    _, at = title_match(sub, line.text)
    candidates = [line, *(x for x in (_left(line, pool), _above(line, pool)) if x is not None)]
    for n, cand in enumerate(candidates):
        text = cand.text
        if n > 0 and len(squash(text)) > 16:
            continue  # a neighbour is a bare number or caption label, not a sentence
        pat = TABLE_NO_RE if table else SECTION_NO_RE
        for m in pat.finditer(text):
            if not table and _CAPTION_LABEL.search(text[: m.start()]):
                continue  # "Table 1.10: List of special device files" numbers a table, not the section
            if n == 0:
                # Only a number before the title ("1.2.5 Permissions…"), or at the start of the line
                # when the title is only partly there: never a number inside the title or after it.
                before = len(squash(text[: m.start()]))
                if (at >= 0 and before > at) or (at < 0 and before > 3):
                    continue
            return (f"{m.group(1)} {m.group(2)}" if table else m.group(1)), cand
    return None


def find_amount(text: str) -> str | None:
    m = AMOUNT_RE.search(text)
    return m.group(0).strip() if m else None


def after_colon(text: str) -> str:
    parts = _COLON.split(text, maxsplit=1)
    return parts[1].strip(" ：:;；,，") if len(parts) == 2 else ""


def term_coverage(terms: list[str], text: str) -> float:
    """Share of terms in ``text``; multi-word terms ("party a") match as phrases."""
    if not terms:
        return 0.0
    have = set(tokens(text))
    flat = normalize(text)
    hit = 0
    for t in terms:
        hit += (t in flat) if " " in t else (t in have)
    return hit / len(terms)


def entity_match(entities: list[str], info: ImageInfo) -> float:
    """1 when every entity is on the page, 0.5 when some are, 0 when none (or no entities)."""
    if not entities:
        return 0.0
    corpus = info.corpus()
    found = sum(squash(e) in corpus for e in entities)
    return 1.0 if found == len(entities) else (0.5 if found else 0.0)


# -- scoring and values --------------------------------------------------------------------------
class Scored(BaseModel):
    line: EvidenceLine
    score: float
    value: str
    snippet_line: EvidenceLine
    why: str = ""


def _below(line: EvidenceLine, pool: list[EvidenceLine]) -> EvidenceLine | None:
    """The nearest line under ``line`` that starts in its horizontal span (a value on the next row)."""
    return _stacked(line, pool, +1, max_gap=2.5)


def _right(line: EvidenceLine, pool: list[EvidenceLine]) -> EvidenceLine | None:
    """OCR often splits "甲方：" from its value on the same row."""
    return _beside(line, pool, +1)


def score_line(sub: SubQuestion, line: EvidenceLine, pool: list[EvidenceLine], image_bonus: float) -> Scored | None:
    """How well one line answers ``sub`` and the value it gives, or None if it says nothing about it."""
    text = line.text.strip()
    if not text:
        return None
    cov = term_coverage(sub.key_terms, text)
    score = cov
    value, snippet_line, why = text, line, f"terms {cov:.2f}"
    if sub.intent == "date":
        d = find_date(text)
        if d:
            score += 1.0
            value, why = d, why + " +date"
        elif cov > 0:
            nxt = _right(line, pool) or _below(line, pool)
            if nxt is not None and (d := find_date(nxt.text)):
                score += 0.9
                value, snippet_line, why = d, nxt, why + " +date(next)"
    elif sub.intent == "amount":
        a = find_amount(text)
        if a:
            score += 1.0
            value, why = a, why + " +amount"
    elif sub.intent == "remedy":
        if REMEDY_LINE.search(text):
            score += 1.0
            why += " +remedy"
    elif sub.intent == "section":
        # "Which section is “Console basics”?": the line with the title, and the number printed before
        # it (same line, the box to its left or the line above); key words like "section" or
        # "Debian Reference" only pick the page, the running header must not win.
        t, at = title_match(sub, text)
        if t < 0.5:
            return None
        found = section_number(sub, line, pool)
        score = t + (0.1 if at >= 0 else 0.0)  # the whole title beats a sentence that has its words
        if found is not None:
            value, snippet_line = found
            score += 1.0 if snippet_line is line else 0.9
            why = f"title {t:.2f} +number" + ("" if snippet_line is line else "(next)")
        else:
            score, why = 0.3 * t, f"title {t:.2f}, no number"
    elif sub.intent == "party":
        # "甲方（买方）：X" answers "甲方是谁"; "第三条 付款方式：甲方应于…" merely mentions it. The role
        # asked for must be in the line's label (before the colon); context words count for little.
        has_colon = bool(_COLON.search(text))
        label = _COLON.split(text, maxsplit=1)[0] if has_colon else text
        roles = asked_roles(sub)
        if roles:
            is_label = any(r in squash(label) for r in roles)
        else:
            is_label = term_coverage([t for t in sub.key_terms if len(t) > 1] or sub.key_terms, label) > 0
        score = 0.5 * cov
        v = after_colon(text) if has_colon else ""
        if is_label and v:
            score += 1.0 - (0.5 if len(label) > 16 else 0.0) - (0.3 if len(v) > 40 else 0.0)
            value, why = v, why + " +role:value"
        elif is_label and (has_colon or len(text) <= 12):
            # The value sits in the next box on the row, or on the next row.
            nxt = _right(line, pool) or _below(line, pool)
            if nxt is not None and nxt.text.strip(" ：:"):
                score += 0.8
                value, snippet_line, why = nxt.text.strip(" ：:"), nxt, why + " +value(next)"
    if score <= 0:
        return None
    score += image_bonus + 0.1 * line.confidence - 0.05 * line.rank
    score += {"ocr_region": 0.1, "metadata": 0.0, "snippet": -0.05}[line.source]
    return Scored(line=line, score=round(score, 4), value=value, snippet_line=snippet_line, why=why)


_INTRO = re.compile(r"([:：]\s*$|\bfollowing\b|\bas follows\b|\bby typing\b|下面|下列|如下|以下)", re.I)


def following(line: EvidenceLine, pool: list[EvidenceLine], n: int = 3, max_gap: float = 6.0) -> list[EvidenceLine]:
    """The next ``n`` rows under ``line`` in reading order (a code block or table row after an
    introducing sentence), each at most ``max_gap`` line heights below the previous one."""
    if line.bbox is None:
        return []
    h = max(1.0, line.bbox[3] - line.bbox[1])
    below = sorted(
        (o for o in pool if o.bbox is not None and o.image_id == line.image_id and o is not line and o.bbox[1] >= line.bbox[1] + 0.6 * h),
        key=lambda o: (o.bbox[1], o.bbox[0]),  # type: ignore[index]
    )
    out: list[EvidenceLine] = []
    last = line.bbox[3]
    for o in below:
        assert o.bbox is not None
        if o.bbox[1] - last > max_gap * h:
            break
        if out and abs(o.bbox[1] - out[-1].bbox[1]) < 0.5 * h:  # type: ignore[index]
            continue  # another cell of a row already taken
        out.append(o)
        last = o.bbox[3]
        if len(out) >= n:
            break
    return out


_PAGE_NO = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


def next_page_name(path: str) -> str | None:
    """The file of the next page when a book is stored a page per file ("book-p029.png" →
    "book-p030.png", the number's width kept); None when the name has no page number."""
    m = _PAGE_NO.match(path)
    if not m:
        return None
    num = m.group(2)
    return f"{m.group(1)}{int(num) + 1:0{len(num)}d}{m.group(3)}"


def next_page(info: ImageInfo, images: dict[str, ImageInfo]) -> ImageInfo | None:
    """The page after ``info`` among the pages this run has seen: the same document's next page,
    or the next file of a page-per-file book."""
    nxt = next_page_name(info.path or info.file)
    for other in images.values():
        if other.image_id == info.image_id:
            continue
        if info.n_pages > 1 and info.doc_id and other.doc_id == info.doc_id and other.page == info.page + 1:
            return other
        if info.n_pages <= 1 and nxt and (other.path or other.file) == nxt:
            return other
    return None


def near_bottom(line: EvidenceLine, pool: list[EvidenceLine], rows: int = 4) -> bool:
    """Whether ``line`` is among the last ``rows`` rows of its page (its sentence may go on over the page)."""
    return line.bbox is not None and len(following(line, pool, rows, max_gap=float("inf"))) < rows


_FOLIO = re.compile(r"^\s*(?:\d+\s*/\s*\d+|\d+|page\s+\d+|第\s*\d+\s*页)\s*$", re.I)


def top_rows(info: ImageInfo, n: int = 6) -> list[EvidenceLine]:
    """The first ``n`` rows of a page in reading order, without its page number ("11 / 233")."""
    lines = sorted((ln for ln in info.lines if ln.bbox is not None and ln.text.strip() and not _FOLIO.match(ln.text)),
                   key=lambda ln: (ln.bbox[1], ln.bbox[0]))  # type: ignore[index]
    return lines[:n]


def score_typed(sub: SubQuestion, atype: AnswerType, line: EvidenceLine, pool: list[EvidenceLine], image_bonus: float,
                next_rows: list[EvidenceLine] | None = None) -> Scored | None:
    """Question coverage of the line plus the type fit of the best span in it, in the rows after
    it (more so after "…the following:") or in the cells beside it; values already in the
    question are its subject, not its answer. Types without a value (definition, yes/no, list)
    quote the line, and the cell beside a short table label."""
    text = line.text.strip()
    terms = content_terms(sub.key_terms)
    cov = weighted_coverage(terms, text)
    if not text or cov <= 0:
        return None
    flat = squash(text)
    if any(squash(lit) in flat for lit in literals(sub.question)):
        cov += 0.3  # the path or option the question names, verbatim
    best: tuple[float, str, EvidenceLine, str] | None = None

    def consider(cand: EvidenceLine, weight: float, tag: str) -> None:
        nonlocal best
        for v, fit in spans(cand.text, atype):
            if in_question(v, sub.question) or key_not_asked(v, atype, sub.question):
                continue
            if best is None or fit * weight > best[0]:
                best = (fit * weight, v, cand, tag)

    # A line of several sentences: the value in the sentence that matches the question ("chown(1)
    # changes the owner. chgrp(1) changes the group." asked which command changes the group).
    parts = [p for p in _SENTENCE_END.split(text) if p.strip()]
    if len(parts) > 1:
        # The path or option the question names picks the line; the other words pick the clause
        # ("/dev/ttyS0 的次设备号": "主设备号是4，次设备号是64").
        subject = set(tokens(" ".join(literals(sub.question))))
        clause_terms = [t for t in terms if t not in subject] or terms
        covs = [weighted_coverage(clause_terms, p) for p in parts]
        for part, c in zip(parts, covs, strict=True):
            consider(line.model_copy(update={"text": part}), 1.0 if c == max(covs) else 0.8, "span")
        if best is not None:
            best = (best[0], best[1], line, best[3])  # the quote is the whole line, as OCR read it
    else:
        consider(line, 1.0, "span")
    intro = bool(_INTRO.search(text))
    for k, nxt in enumerate(following(line, pool, 3)):
        if is_caption(nxt.text):
            break  # "Table 1.4: “ls -l”…" titles the table above; what it quotes answers nothing after it
        consider(nxt, (0.95 if intro else 0.7) - 0.1 * k, f"span(next {k + 1})")
    # A table row: the key (the first column) is usually left of the cell that matches, often past
    # other columns (size, popcon, yes/no); the nearest cell on the right comes next.
    short = len(text.split()) <= 8
    left = row_cells(line, pool, -1)
    for k, cell in enumerate(left):
        first_column = k == len(left) - 1
        consider(cell, (1.0 if short else 0.85) * (1.0 if first_column else 0.9), "span(cell)")
    right = row_cells(line, pool, 1)
    if right:
        consider(right[0], 0.75, "span(cell)")
    if next_rows and (best is None or best[0] < 0.6) and near_bottom(line, pool):
        # The question's context ends the page and the answer starts the next one.
        for k, nxt in enumerate(next_rows):
            consider(nxt, (0.9 if intro else 0.75) - 0.05 * k, f"span(next page {k + 1})")
    value, snippet_line, why = text, line, f"terms {cov:.2f} [{atype}]"
    score = cov
    if best is not None:
        fit, value, snippet_line, tag = best
        score = cov + 0.8 * fit
        why += f" +{tag} {fit:.2f}"
    elif atype in VALUE_TYPES:
        score = 0.6 * cov  # names the topic but not the value
        why += " no value"
    elif len(squash(text)) <= 20:
        # A short table label ("ctime"): its meaning is the cell beside it, or the row under it.
        cell = _beside(line, pool, 1, max_gap=12) or next(iter(following(line, pool, 1)), None)
        if cell is not None and cell.text.strip():
            value, snippet_line, why = cell.text.strip(), cell, why + " +cell"
    score += image_bonus + 0.1 * line.confidence - 0.05 * line.rank
    # A re-read line wins only by what it reads better (a value the page OCR garbled); as good as
    # the stored line, the stored line is quoted (it is what the index holds and shows).
    score += {"ocr_region": 0.0, "metadata": 0.01, "snippet": -0.05}[line.source]
    return Scored(line=line, score=round(score, 4), value=value, snippet_line=snippet_line, why=why)


_SENTENCE_END = re.compile(r"(?<=[。；;！？!?，])|(?<=[a-z0-9)\]”\"]\.)\s+(?=[A-Z])")
# Words that name the kind of answer, not its subject: every line about commands says "command".
_TYPE_WORDS = frozenset("command commands 命令 命 令 option options flag flags 选项 参数 table tables 表格".split())


def content_terms(terms: list[str]) -> list[str]:
    """The question's terms without the words that only name the answer's type."""
    return [t for t in terms if t not in _TYPE_WORDS] or terms


def typed(sub: SubQuestion) -> AnswerType | None:
    """The answer type the extractive answerer reads ``sub`` with, or None for the contract intents
    (date, party, amount, section, seal), which have their own readers."""
    atype = answer_type(sub.question)
    if sub.intent in ("general", "location") or (sub.intent in ("date", "party") and atype in NOT_DATE_OR_PARTY):
        return atype
    if sub.intent == "remedy" and atype in VALUE_TYPES and not REMEDY_ASKED.search(sub.question):
        return atype  # "which option may fix garbled characters": an option, read as one
    return None


# A line that prescribes an action ("3. Rework: polish with 120-grit paper…", "返工：…", "Corrective
# action: …"), and a question that asks for one in so many words ("怎么处理" is also a "how" question).
REMEDY_LINE = re.compile(r"(\brework\b|\brepair\b|\bcorrective\s+action|\bremedy\b|\bdisposition\b"
                         r"|返工|返修|纠正措施|处置|整改|补救|维修)", re.I)
REMEDY_ASKED = re.compile(r"(怎么处理|如何处理|怎样处理|怎么修|如何修|修复|返工|返修|整改|纠正|处置|补救|\brework\b|\bcorrective\b)", re.I)


def weighted_coverage(terms: list[str], text: str) -> float:
    """Like :func:`term_coverage`, but a single CJK character or a one- or two-letter word counts a
    quarter: "个", "一", "组" are in half the lines of a Chinese page."""
    if not terms:
        return 0.0
    have = set(tokens(text))
    flat = normalize(text)
    got = tot = 0.0
    for t in terms:
        w = 0.25 if len(t) == 1 or (t.isascii() and len(t) <= 2) else 1.0
        tot += w
        if " " in t or t in have:
            got += w * ((t in flat) if " " in t else 1.0)
        elif t.isascii() and len(t) >= 4 and any(x.startswith(t) for x in have):
            got += 0.5 * w  # "sudo" in "/etc/sudoers", "install" in "installed": the same word, less surely
    return got / tot if tot else 0.0


def page_pool(image_id: str, lines: list[EvidenceLine], images: dict[str, ImageInfo]) -> list[EvidenceLine]:
    """Every stored line of the page: the evidence and the page's OCR lines (the neighbours of a
    matching line are rarely matches themselves)."""
    info = images.get(image_id)
    return [*lines, *(info.lines if info else [])]


def running_lines(images: dict[str, ImageInfo], band: float = 0.08) -> set[str]:
    """The running headers and footers of the pages seen in this run: the same text in the top or
    bottom ``band`` of two or more pages ("Debian Reference", "Debian 参考手册"). They name the book,
    never answer a question about it, and a page's first rows are read as the end of the page before."""
    where: dict[str, set[str]] = {}
    for info in images.values():
        if not info.height:
            continue
        for ln in info.lines:
            if ln.bbox is not None and (ln.bbox[3] <= band * info.height or ln.bbox[1] >= (1 - band) * info.height):
                if key := squash(ln.text):
                    where.setdefault(key, set()).add(info.image_id)
    return {k for k, ids in where.items() if len(ids) >= 2}


def best_lines(sub: SubQuestion, evidence: list[EvidenceLine], images: dict[str, ImageInfo]) -> list[Scored]:
    """The best answering line per image, best first. Only stored page-OCR lines are scored (a
    re-read or a search snippet counts as the stored line at its box), so every value and quote
    it gives is text the index holds where it is cited; for a typed question, not a running header."""
    evidence = [x for ln in evidence if (x := stored(ln, images.get(ln.image_id))) is not None]
    atype = typed(sub)
    furniture = running_lines(images) if atype is not None else set()
    if furniture:
        images = {iid: info.model_copy(update={"lines": [ln for ln in info.lines if squash(ln.text) not in furniture]})
                  for iid, info in images.items()}
        evidence = [ln for ln in evidence if squash(ln.text) not in furniture]
    per_image: dict[str, Scored] = {}
    by_image: dict[str, list[EvidenceLine]] = {}
    for ln in evidence:
        by_image.setdefault(ln.image_id, []).append(ln)
    if atype is not None:
        # The top rows of a fetched next page are candidates too: a table that starts the page
        # after the sentence introducing it.
        for image_id in list(by_image):
            info = images.get(image_id)
            after = next_page(info, images) if info is not None else None
            if after is not None:
                rank = min(ln.rank for ln in by_image[image_id])
                known = {squash(ln.text) for ln in by_image.get(after.image_id, [])}
                extra = [ln.model_copy(update={"rank": rank}) for ln in top_rows(after, 8) if squash(ln.text) not in known]
                by_image.setdefault(after.image_id, []).extend(x for x in extra if term_coverage(sub.key_terms, x.text) > 0)
    for image_id, lines in by_image.items():
        info = images.get(image_id)
        bonus = 0.6 * entity_match(sub.entities, info) if info else 0.0
        if atype is not None and info is not None and page_lang(info) == question_lang(sub.question):
            # A manual printed in both languages answers in both: quote the one the question is asked in.
            bonus += SAME_LANGUAGE_BONUS
        pool = page_pool(image_id, lines, images) if atype is not None else lines
        after = next_page(info, images) if info is not None and atype is not None else None
        rows = top_rows(after) if after is not None else None
        for ln in lines:
            s = score_typed(sub, atype, ln, pool, bonus, rows) if atype is not None else score_line(sub, ln, lines, bonus)
            if s is not None and (image_id not in per_image or s.score > per_image[image_id].score):
                per_image[image_id] = s
    return sorted(per_image.values(), key=lambda s: -s.score)


SAME_LANGUAGE_BONUS = 0.15
_CJK_CHAR = re.compile(f"[{CJK}]")


def question_lang(question: str) -> Literal["zh", "en"]:
    return "zh" if _CJK_CHAR.search(question) else "en"


def page_lang(info: ImageInfo) -> Literal["zh", "en"]:
    """The language a page is written in: Chinese when CJK characters are a real share of its text
    (a Chinese manual page is full of Latin commands, an English one has no CJK at all)."""
    text = info.ocr_text or " ".join(ln.text for ln in info.lines)
    cjk = len(_CJK_CHAR.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if cjk >= 20 and cjk >= 0.15 * latin else "en"


def asked_roles(sub: SubQuestion) -> list[str]:
    """Party roles named in the sub-question, in comparison form ("甲方", "partya")."""
    return list(dict.fromkeys(squash(m.group(0)) for m in ROLE_RE.finditer(sub.question)))


_ORG_TAIL = re.compile(r"^[\s.,，]*(?:(?:co|ltd|limited|inc|llc|corp|plc)\.?[\s.,，]*)+", re.I)


def label_for(sub: SubQuestion) -> str:
    """A short label for a claim: the role asked about ("甲方", "Party B"), else the question's
    content words without the entity ("合同金额", "signed")."""
    from .planner import strip_question_words

    if sub.intent == "party":
        m = ROLE_RE.search(sub.question)
        if m:
            return m.group(0)
    if sub.intent == "section":
        zh = bool(re.search(r"[\u4e00-\u9fff]", _QUOTED_PART.sub("", sub.question)))
        if asks_table(sub):
            return "表格" if zh else "Table"
        return "章节" if zh else "Section"
    if sub.intent == "seal":
        zh = bool(re.search(r"[\u4e00-\u9fff]", sub.question))
        return "印章位置" if zh else "Seal"
    text = sub.question
    for e in sub.entities:
        head, _, tail = text.partition(e)
        text = head + " " + _ORG_TAIL.sub(" ", tail)
    label = strip_question_words(text)
    label = re.sub(r"\s+", " ", label).strip(" .,，")
    return label or sub.question
