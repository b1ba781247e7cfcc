"""`visual`: queries that name what a scanned page shows, over :mod:`evals.datasets.visualpages`.

Each kind of page (bar / pie / line chart, floor plan, handwritten note, a photo of a rocket, a red
stamp, a logo) is asked for in English and in Chinese, as a person would ("a floor plan", "平面图");
every page of that kind is relevant ("a chart" and "图表": all three chart kinds). The printed text
never names the visual, so a page is found only by what it looks like — the case the image and tile
routes are for, and which ``IMGRAG_IMAGE_ROUTE_QUALITY`` used to keep off document pages.

    python -m imgrag.evals.golden.visual CORPUS_DIR OUT.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import GoldenItem, write_golden

NAME = "visual"
QUERIES: dict[str, list[tuple[str, str]]] = {
    "bar_chart": [("en", "a bar chart"), ("zh", "柱状图")],
    "pie_chart": [("en", "a page with a pie chart"), ("zh", "饼图")],
    "line_chart": [("en", "a line chart of a trend"), ("zh", "折线图")],
    "floor_plan": [("en", "a floor plan"), ("zh", "房屋平面图")],
    "handwritten": [("en", "a handwritten note"), ("zh", "手写的便条")],
    "photo_machine": [("en", "a page with a photo of a rocket"), ("zh", "有火箭照片的页面")],
    "stamp": [("en", "a document with a red stamp"), ("zh", "盖了红色印章的文件")],
    "logo": [("en", "a page with a company logo"), ("zh", "有公司标志的页面")],
}
CHARTS = ("bar_chart", "pie_chart", "line_chart")


def golden(corpus_dir: str | Path) -> list[GoldenItem]:
    made = json.loads((Path(corpus_dir).parent / "meta" / "visualpages.json").read_text(encoding="utf-8"))
    by_kind: dict[str, list[str]] = {}
    for m in made:
        by_kind.setdefault(m["kind"], []).append(m["file"])
    items = [
        GoldenItem(id=f"{NAME}/{kind}/{lang}", query=q, relevant=by_kind[kind], lang=lang, kind=kind)
        for kind, qs in QUERIES.items() if kind in by_kind for lang, q in qs
    ]
    charts = [f for k in CHARTS for f in by_kind.get(k, [])]
    items += [GoldenItem(id=f"{NAME}/chart/{lang}", query=q, relevant=charts, lang=lang, kind="chart")
              for lang, q in (("en", "a chart"), ("zh", "图表"))]
    return items


if __name__ == "__main__":  # pragma: no cover - a build script
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m imgrag.evals.golden.visual CORPUS_DIR OUT.jsonl")
    its = golden(sys.argv[1])
    print(f"{len(its)} items → {write_golden(sys.argv[2], its)}")
