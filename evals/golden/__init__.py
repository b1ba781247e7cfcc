"""Golden sets: the JSONL format and the scripts that build the standard sets from public packages.

One line per query::

    {"id": "...", "query": "...", "relevant": ["file.png", ...],
     "answer": "...", "answer_aliases": ["..."],            # optional: answers eval
     "relevance": {"file.png": 2},                           # optional: graded relevance (default 1)
     "answer_bboxes": [[x0, y0, x1, y1], ...],               # optional: "where" questions, pixels of relevant[0]
     "lang": "zh", "kind": "party_a"}                        # optional: breakdowns

``relevant`` names files as they sit in the indexed folder (file name, or a path relative to the
folder when names repeat); a multi-page file can be named ``doc.pdf#page=3``. The standard sets are
built by :mod:`evals.golden.contracts`, :mod:`evals.golden.docqa`, :mod:`evals.golden.clipart` and
:mod:`evals.golden.natural` and :mod:`evals.golden.pictures` into the eval cache (``IMGRAG_EVAL_CACHE``) the first time ``imgrag eval``
names them (:mod:`evals.standard`), never committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GoldenItem(BaseModel):
    """One golden query. Unknown fields are kept, so sets written by other tools load too."""

    model_config = ConfigDict(extra="allow")

    id: str
    query: str = Field(min_length=1)
    relevant: list[str] = Field(default_factory=list, description="relevant file names")
    answer: str | None = None
    answer_aliases: list[str] = Field(default_factory=list)
    relevance: dict[str, int] | None = Field(default=None, description="graded relevance; overrides grade 1")
    answer_bbox: list[float] | None = Field(default=None, description="the (first) box that answers a 'where' question")
    answer_bboxes: list[list[float]] | None = Field(default=None, description="every box that answers it")
    lang: str | None = None
    kind: str | None = None

    @model_validator(mode="after")
    def _boxes(self) -> GoldenItem:
        for b in [self.answer_bbox, *(self.answer_bboxes or [])]:
            if b is not None and (len(b) != 4 or b[2] <= b[0] or b[3] <= b[1]):
                raise ValueError(f"{self.id}: a bbox must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {b}")
        if self.answer_bbox is not None and not self.answer_bboxes:
            self.answer_bboxes = [self.answer_bbox]
        return self

    def qrels(self) -> dict[str, int]:
        """File name → relevance grade (> 0)."""
        grades = {name: 1 for name in self.relevant}
        grades.update({k: v for k, v in (self.relevance or {}).items() if v > 0})
        return grades

    @property
    def has_answer(self) -> bool:
        return bool(self.answer) or bool(self.answer_bboxes)

    @property
    def is_where(self) -> bool:
        return bool(self.answer_bboxes)


def write_golden(path: str | Path, items: list[GoldenItem]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate golden ids: {dup[:5]}")
    with p.open("w", encoding="utf-8") as fh:
        for it in items:
            data = it.model_dump(mode="json", exclude_none=True)
            if not data.get("answer_aliases"):
                data.pop("answer_aliases", None)
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
    return p


class GoldenFormatError(ValueError):
    pass


def read_golden(path: str | Path) -> list[GoldenItem]:
    """Load a JSONL golden set; a bad line raises GoldenFormatError naming the file and line."""
    p = Path(path)
    items: list[GoldenItem] = []
    seen: set[str] = set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            it = GoldenItem.model_validate_json(line)
        except Exception as e:  # pydantic's message names the field
            raise GoldenFormatError(f"{p}:{n}: not a golden line ({e.__class__.__name__}: {str(e).splitlines()[0]})") from e
        if it.id in seen:
            raise GoldenFormatError(f"{p}:{n}: duplicate id {it.id!r}")
        seen.add(it.id)
        items.append(it)
    if not items:
        raise GoldenFormatError(f"{p}: no golden lines")
    return items
