"""Visual marks end to end: scanned pages whose text never names what they show (a bar chart, a
floor plan with Chinese room names, a text-only page) go through the real pipeline into each
backend; each page must be marked with what it shows, the mark must be a region and an image tile,
and a query naming the visual — in English or Chinese — must find its page first, while a query
for the words of the text page still finds that page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgrag.indexing.stores.base import OPERATOR, Filters

pytestmark = pytest.mark.slow

FILES = {"bar_chart": "visual_dev_bar_chart_0_en.png", "floor_plan": "visual_dev_floor_plan_1_zh.png", "text": "visual_dev_text_0_en.png"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgrag.evals.datasets.visualpages import make_visual_pages

    made = tmp_path_factory.mktemp("visual_made") / "corpus"
    make_visual_pages(made, "dev")
    root = tmp_path_factory.mktemp("visual_corpus")
    for name in FILES.values():
        shutil.copy(made / name, root / name)
    return root


@pytest.fixture(scope="module", params=["lancedb", "elasticsearch"])
def indexed(request: pytest.FixtureRequest, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    from conftest import es_settings

    from imgrag.indexing.config import Settings
    from imgrag.indexing.pipeline import Indexer
    from imgrag.indexing.runtime import Runtime

    tmp = tmp_path_factory.mktemp(request.param)
    settings = es_settings(tmp) if request.param == "elasticsearch" else Settings(home=tmp / "home")
    rt = Runtime(settings)
    summary = Indexer(rt).index([corpus])
    assert summary.indexed == len(FILES) and not summary.failed
    records = {}
    for kind, name in FILES.items():
        (image_id,) = rt.store.live_ids_for_path(str((corpus / name).resolve()))
        records[kind] = rt.store.get(image_id, OPERATOR)
    try:
        yield rt, records
    finally:
        if request.param == "elasticsearch":
            rt.store.drop()  # type: ignore[attr-defined]
        rt.store.close()


def test_pages_are_marked_with_what_they_show(indexed: tuple[Any, dict[str, Any]]) -> None:
    rt, records = indexed
    assert [m.kind for m in records["bar_chart"].visual] == ["bar_chart"]
    assert [m.kind for m in records["floor_plan"].visual] == ["floor_plan"]
    assert records["text"].visual == []
    chart = records["bar_chart"]
    regions = {r.label: r for r in rt.store.regions_of([chart.image_id])}
    assert "柱状图" in regions["v0"].text and regions["v0"].kind == "label"
    assert regions["f0"].kind == "tile" and regions["f0"].bbox == chart.visual[0].bbox
    x0, y0, x1, y1 = chart.visual[0].bbox
    assert y0 > 200 and (x1 - x0) * (y1 - y0) < 0.5 * chart.width * chart.height  # the chart, not the page


@pytest.mark.parametrize(
    ("query", "kind"),
    [("a bar chart", "bar_chart"), ("柱状图", "bar_chart"), ("a floor plan", "floor_plan"), ("户型图", "floor_plan"),
     ("general conditions", "text")],
)  # fmt: skip
def test_a_query_naming_the_visual_finds_its_page(indexed: tuple[Any, dict[str, Any]], query: str, kind: str) -> None:
    from imgrag.indexing.search import Searcher, SearchRequest, snippet_in_record

    rt, records = indexed
    hits = Searcher(rt).search(SearchRequest(query=query, k=3), OPERATOR).hits
    assert hits and hits[0].image_id == records[kind].image_id, [h.path for h in hits]
    for h in hits:  # a mark's names are no page text: never a snippet or a region's text
        assert h.snippet and snippet_in_record(h.snippet, record_of(records, h.image_id)), h.snippet
        assert h.region is None or h.region.kind != "label" or h.region.text == ""
    if kind == "bar_chart":  # no line says so: the region that answers is the figure the page was marked with
        assert hits[0].region is not None and hits[0].region.kind == "label"
        assert hits[0].region.bbox == records[kind].visual[0].bbox


def record_of(records: dict[str, Any], image_id: str) -> Any:
    return next(r for r in records.values() if r.image_id == image_id)


def test_label_regions_are_found_by_the_region_route(indexed: tuple[Any, dict[str, Any]]) -> None:
    rt, records = indexed
    vec = rt.text_embedder.embed_queries(["a bar chart 柱状图"])[0]
    hits = rt.store.knn_regions("text", vec, 50, Filters(), OPERATOR)
    labels = [h for h in hits if h.kind == "label"]
    assert labels and labels[0].image_id == records["bar_chart"].image_id
