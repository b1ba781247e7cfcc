"""`docqa`: Debian Reference pages (English and Simplified Chinese) with questions answered on the page.

Pages come from :func:`evals.datasets.docpages.make_doc_pages` (``pdftoppm`` at 100 dpi), and every
query is generated from the page's own ``pdftotext`` text, so it is printed there:

- *section*: a numbered heading (``1.2.5`` / ``Permissions for groups of users``) → "Which section
  of the Debian Reference is “Permissions for groups of users”?", answer ``1.2.5``;
- *table*: a table caption (``Table 1.9: 时间戳类型列表``) → "“时间戳类型列表”是哪个表格", answer
  ``Table 1.9``;
- *keywords* (English): six content words of one sentence, in order, no paraphrase;
- *phrase* (Chinese): a 10-character run of Chinese text from one line.

Keyword and phrase queries are kept only when no other page of the corpus (either language) contains
them, so exactly one page is relevant; section and table queries name something whose heading or
caption is on that page only. Choices are made by hashing the text, so the set is reproducible.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel

from imgrag.evals.datasets.docpages import DocPage, make_doc_pages, read_doc_pages

from . import GoldenItem

NAME = "docqa"

_HEADER = re.compile(r"^(Debian Reference|Debian 参考手册|\d+\s*/\s*\d+)$")
_SECTION_NO = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){1,3})$")
_TABLE = re.compile(r"^Table\s+(\d{1,2}\.\d{1,3})\s*[:：]\s*(.{6,90})$")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{10,}")
_EN_STOP = frozenset(
    """about above after again against also among another any are because been before being below
    between both but can cannot could does doing down during each either else even every few from
    further have having here how however into its itself just least less like make many may might
    more most much must need never next none not now often once only other otherwise our out over
    own per rather same see several shall should since some such than that the their them then
    there these they this those though through thus too under until upon used uses using very was
    were what when where whether which while who whom whose why will with within without would
    you your yours""".split()
)


class DocqaRecipe(BaseModel):
    pages_per_lang: int = 30
    dpi: int = 100
    keyword_queries_per_page: int = 2


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _lines(page: DocPage) -> list[str]:
    return [ln.strip() for ln in page.text.splitlines() if ln.strip() and not _HEADER.match(ln.strip())]


def _sections(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for i, ln in enumerate(lines[:-1]):
        m = _SECTION_NO.match(ln)
        title = lines[i + 1].strip()
        if m and 2 <= len(title) <= 60 and not _SECTION_NO.match(title) and not title.startswith(("$", "#", "•")):
            out.append((m.group(1), title))
    return out


def _tables(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for ln in lines:
        m = _TABLE.match(ln)
        if m:
            out.append((m.group(1), m.group(2).strip().rstrip("。.")))
    return out


def _en_keywords(line: str) -> list[str] | None:
    if line.startswith(("$", "#", "•", "–")) or "”" in line[:3]:
        return None
    words = re.findall(r"[A-Za-z][A-Za-z'-]*[A-Za-z]", line)
    letters = sum(c.isalpha() for c in line)
    if len(words) < 9 or letters < 0.7 * len(line):
        return None
    content = [w for w in words if len(w) >= 4 and w.lower() not in _EN_STOP]
    if len(content) < 6:
        return None
    return content[:6]


def page_items(page: DocPage, others: dict[str, str], per_page: int) -> list[GoldenItem]:
    """Golden items for one page; ``others`` maps every other page's file to its squashed text."""
    lines = _lines(page)
    stem = Path(page.file).stem
    rel = [page.file]
    own = _squash(page.text)
    items: list[GoldenItem] = []

    def unique(*needles: str) -> bool:
        keys = [_squash(n) for n in needles]
        return all(k in own for k in keys) and not any(all(k in t for k in keys) for t in others.values())

    for num, title in _sections(lines)[:1]:
        if page.lang == "en":
            q = f"Which section of the Debian Reference is “{title}”?"
        else:
            q = f"《Debian 参考手册》中“{title}”是第几节"
        items.append(GoldenItem(id=f"{NAME}/{stem}/section-{num}", query=q, relevant=rel, answer=num,
                                answer_aliases=[f"section {num}", f"第 {num} 节"], lang=page.lang, kind="section"))
    for num, caption in _tables(lines)[:1]:
        if page.lang == "en":
            cap = caption[0].lower() + caption[1:] if caption[:1].isupper() and caption[1:2].islower() else caption
            q = f"Which table is the {cap}?"
        else:
            q = f"“{caption}”是哪个表格"
        items.append(GoldenItem(id=f"{NAME}/{stem}/table-{num}", query=q, relevant=rel, answer=f"Table {num}",
                                answer_aliases=[f"表 {num}", f"表{num}"], lang=page.lang, kind="table"))

    candidates: list[tuple[int, str, str]] = []  # (hash, kind, query)
    for ln in lines:
        if page.lang == "en":
            kw = _en_keywords(ln)
            if kw and unique(*kw):
                candidates.append((_h(page.file + ln), "keywords", " ".join(kw)))
        else:
            for run in _CJK_RUN.findall(ln):
                mid = (len(run) - 10) // 2
                phrase = run[mid : mid + 10]
                if unique(phrase):
                    candidates.append((_h(page.file + phrase), "phrase", phrase))
    seen: set[str] = set()
    for _, kind, q in sorted(candidates):
        if len([i for i in items if i.kind == kind]) >= per_page:
            break
        if q in seen:
            continue
        seen.add(q)
        items.append(GoldenItem(id=f"{NAME}/{stem}/{kind}-{_h(q) % 10**6:06d}", query=q, relevant=rel, lang=page.lang, kind=kind))
    return items


def items_from_pages(pages: list[DocPage], per_page: int = 2) -> list[GoldenItem]:
    texts = {p.file: _squash(p.text) for p in pages if p.kind == "page"}
    out: list[GoldenItem] = []
    for p in pages:
        if p.kind != "page":
            continue
        out.extend(page_items(p, {f: t for f, t in texts.items() if f != p.file}, per_page))
    return out


def build_corpus(out_dir: str | Path, recipe: DocqaRecipe) -> None:
    """Rasterise the pages into ``out_dir/corpus``; texts in ``out_dir/meta/docpages.jsonl``."""
    out = Path(out_dir)
    make_doc_pages(out / "corpus", recipe.pages_per_lang, dpi=recipe.dpi, pdf_lang=None, sidecar=out / "meta" / "docpages.jsonl")


def golden(out_dir: str | Path, recipe: DocqaRecipe | None = None) -> list[GoldenItem]:
    """The golden items of a built corpus (from the pages' pdftotext text)."""
    r = recipe or DocqaRecipe()
    return items_from_pages(read_doc_pages(Path(out_dir) / "meta" / "docpages.jsonl"), r.keyword_queries_per_page)
