"""`visual`: queries that name what a scanned page shows, over :mod:`evals.datasets.visualpages`.

Each kind of page (bar / pie / line chart, floor plan, map, flow diagram, table, handwritten note,
photo, red stamp, logo) is asked for in English and in Chinese, as a person would ("a floor plan",
"平面图"); every page of that kind is relevant whatever its language ("a chart" and "图表": all
three chart kinds). The printed text never names the visual, so a page is found by what it looks
like — the case the visual-kind evidence and the image routes are for.

Each kind and language has two phrasings; :func:`~evals.splits.question_split` of
``visual/<kind>/<lang>`` sends one to ``dev`` and the other to ``heldout``, and each split is asked
of its own corpus (``visualpages`` seeds): tune on dev, report held-out once.

    python -m imgrag.evals.golden.visual CORPUS_DIR OUT.jsonl [dev|heldout]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..splits import question_split
from . import GoldenItem, write_golden

NAME = "visual"
QUERIES: dict[str, dict[str, tuple[str, str]]] = {
    "bar_chart": {"en": ("a bar chart", "a page with bars comparing values"), "zh": ("柱状图", "有条形图的页面")},
    "pie_chart": {"en": ("a page with a pie chart", "a pie chart of shares"), "zh": ("饼图", "有饼状图的页面")},
    "line_chart": {"en": ("a line chart of a trend", "a line graph"), "zh": ("折线图", "趋势曲线图")},
    "floor_plan": {"en": ("a floor plan", "a floor plan of the rooms"), "zh": ("房屋平面图", "户型图")},
    "map": {"en": ("a map", "a page with a map of towns"), "zh": ("地图", "有地图的页面")},
    "diagram": {"en": ("a flow chart", "a process diagram"), "zh": ("流程图", "示意图")},
    "table": {"en": ("a table of numbers", "a page with a table"), "zh": ("表格", "有表格的页面")},
    "handwritten": {"en": ("a handwritten note", "handwriting"), "zh": ("手写的便条", "手写笔记")},
    "photo": {"en": ("a page with a photo", "a photograph"), "zh": ("有照片的页面", "照片")},
    "stamp": {"en": ("a document with a red stamp", "a page with an official seal"), "zh": ("盖了红色印章的文件", "有公章的文件")},
    "logo": {"en": ("a page with a company logo", "a letterhead with a logo"), "zh": ("有公司标志的页面", "带徽标的页面")},
    "chart": {"en": ("a chart", "a graph"), "zh": ("图表", "统计图")},
}  # fmt: skip
CHARTS = ("bar_chart", "pie_chart", "line_chart")


def golden(corpus_dir: str | Path, split: str | None = None) -> list[GoldenItem]:
    """The queries over one corpus; ``split``: only that half's phrasings (None: both)."""
    made = json.loads((Path(corpus_dir).parent / "meta" / "visualpages.json").read_text(encoding="utf-8"))
    by_kind: dict[str, list[str]] = {}
    for m in made:
        by_kind.setdefault(m["kind"], []).append(m["file"])
    by_kind["chart"] = [f for k in CHARTS for f in by_kind.get(k, [])]
    items = []
    for kind, langs in QUERIES.items():
        if not by_kind.get(kind):
            continue
        for lang, phrasings in langs.items():
            dev = 0 if question_split(f"{NAME}/{kind}/{lang}") == "dev" else 1
            for i, q in enumerate(phrasings):
                half = "dev" if i == dev else "heldout"
                if split is None or split == half:
                    items.append(GoldenItem(id=f"{NAME}/{kind}/{lang}/{half}", query=q, relevant=by_kind[kind], lang=lang, kind=kind))
    return items


if __name__ == "__main__":  # pragma: no cover - a build script
    if len(sys.argv) not in (3, 4):
        raise SystemExit("usage: python -m imgrag.evals.golden.visual CORPUS_DIR OUT.jsonl [dev|heldout]")
    its = golden(sys.argv[1], sys.argv[3] if len(sys.argv) == 4 else None)
    print(f"{len(its)} items → {write_golden(sys.argv[2], its)}")
