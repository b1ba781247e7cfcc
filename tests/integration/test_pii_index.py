"""PII end to end on real pages: generated forms with planted personal data and a page without any
are indexed through the real pipeline (preprocess, OCR, layout, embeddings) into each backend; the
stored records must hold the planted values with boxes on them, the filter and stats must see them,
get_metadata must return them, and blacking out the stored boxes must leave OCR nothing to read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing.stores.base import OPERATOR, Filters

pytestmark = pytest.mark.slow

PAGES = [(0, "zh", "form"), (1, "en", "form"), (2, "zh", "negative")]


def norm(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", s).upper()


def coverage(found: tuple[float, ...], truth: list[int]) -> float:
    ix = max(0.0, min(found[2], truth[2]) - max(found[0], truth[0]))
    iy = max(0.0, min(found[3], truth[3]) - max(found[1], truth[1]))
    return ix * iy / ((truth[2] - truth[0]) * (truth[3] - truth[1]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from imgrag.evals.datasets.pii_pages import render_pii_page

    root = tmp_path_factory.mktemp("pii_corpus")
    specs = {}
    for index, lang, kind in PAGES:
        data, spec = render_pii_page(index, 21, lang, kind, None)  # type: ignore[arg-type]
        (root / spec.file).write_bytes(data)
        specs[str((root / spec.file).resolve())] = spec
    return root, specs


@pytest.fixture(scope="module", params=["lancedb", "elasticsearch"])
def indexed(request: pytest.FixtureRequest, corpus: tuple[Path, dict[str, Any]],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any]]]:
    from conftest import es_settings

    from imgrag.indexing.config import Settings
    from imgrag.indexing.pipeline import Indexer
    from imgrag.indexing.runtime import Runtime

    tmp = tmp_path_factory.mktemp(request.param)
    settings = es_settings(tmp) if request.param == "elasticsearch" else Settings(home=tmp / "home")
    rt = Runtime(settings)
    root, specs = corpus
    from imgrag.indexing.pipeline import IndexOptions

    summary = Indexer(rt).index([root], IndexOptions(acl=[]))  # public: a clerk without clearance reads them
    assert summary.indexed == len(PAGES) and not summary.failed
    records = {}
    for path, spec in specs.items():
        (image_id,) = rt.store.live_ids_for_path(path)
        records[spec.file] = (spec, rt.store.get(image_id, OPERATOR))
    try:
        yield rt, records
    finally:
        if request.param == "elasticsearch":
            rt.store.drop()  # type: ignore[attr-defined]
        rt.store.close()


def test_planted_values_are_found_with_their_boxes(indexed: tuple[Any, dict[str, Any]]) -> None:
    _, records = indexed
    for spec, rec in records.values():
        if spec.page_kind == "negative":
            assert rec.pii == [] and not rec.has_pii, [f.text for f in rec.pii]
            continue
        assert rec.has_pii
        found = {(f.kind, norm(f.text)): f for f in rec.pii}
        for planted in spec.pii:
            f = found.get((planted.kind, norm(planted.value)))
            assert f is not None, f"{spec.file}: {planted.kind} {planted.value!r} not found in {sorted(found)}"
            # the finding points at its OCR line and span, and its box covers the printed value
            assert f.line is not None and rec.ocr_lines[f.line].text[f.start : f.end] == f.text
            assert f.bbox is not None and coverage(f.bbox, planted.bbox) >= 0.85, (planted, f.bbox)
        assert len(rec.pii) == len(spec.pii), "a finding that was not planted"


def test_filter_stats_and_region_flags(indexed: tuple[Any, dict[str, Any]]) -> None:
    from imgrag.indexing.search import Searcher, SearchRequest

    rt, records = indexed
    store = rt.store
    forms = {rec.image_id for spec, rec in records.values() if spec.page_kind == "form"}
    negatives = {rec.image_id for spec, rec in records.values() if spec.page_kind == "negative"}
    assert {r.image_id for r in store.list_images(OPERATOR, Filters(has_pii=True))} == forms
    assert {r.image_id for r in store.list_images(OPERATOR, Filters(has_pii=False))} == negatives
    hits = Searcher(rt).search(SearchRequest(query="合同编号 Agreement", filters=Filters(has_pii=False)), OPERATOR).hits
    assert hits and {h.image_id for h in hits} <= negatives
    st = store.stats(OPERATOR)
    planted = [p.kind for spec, _ in records.values() for p in spec.pii]
    assert st.pii_pages == len(forms)
    assert set(st.pii_by_kind) == set(planted)
    # text regions holding a value say so; the negative page's regions hold none
    regions = store.regions_of(list(forms | negatives))
    flagged = {r.image_id for r in regions if r.pii_kinds}
    assert flagged == forms
    assert all(r.kind != "tile" for r in regions if r.pii_kinds)


def test_mcp_get_metadata_and_has_pii_filter(indexed: tuple[Any, dict[str, Any]]) -> None:
    """Over a real MCP session: get_metadata returns the findings, search_images takes filters.has_pii."""
    import asyncio

    from mcp import Client

    from imgrag.indexing.app import Imgrag
    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    rt, records = indexed
    mcp = build_server(Imgrag(runtime=rt), fixed_principal(OPERATOR))

    async def calls() -> tuple[dict[str, Any], dict[bool, set[str]]]:
        async with Client(mcp) as c:
            meta = {}
            for _, rec in records.values():
                r = await c.call_tool("get_metadata", {"image_id": rec.image_id})
                meta[rec.image_id] = r.structured_content
            hits = {}
            for flag in (True, False):
                r = await c.call_tool("search_images", {"query": "合同编号 Agreement Name 姓名", "k": 10,
                                                        "filters": {"has_pii": flag}})
                hits[flag] = {h["image_id"] for h in r.structured_content["hits"]}
            return meta, hits

    meta, hits = asyncio.run(calls())
    for spec, rec in records.values():
        out = meta[rec.image_id]
        assert out["has_pii"] == bool(spec.pii)
        assert out["pii"] == [f.model_dump(mode="json") for f in rec.pii]
    forms = {rec.image_id for spec, rec in records.values() if spec.page_kind == "form"}
    assert hits[True] and hits[True] <= forms
    assert hits[False] and not hits[False] & forms


def test_blacking_out_the_stored_boxes_leaves_nothing_to_read(indexed: tuple[Any, dict[str, Any]], corpus: tuple[Path, dict[str, Any]]) -> None:
    from imgrag.indexing.pii import detect_lines, redact_pixels

    rt, records = indexed
    root, _ = corpus
    spec, rec = next((s, r) for s, r in records.values() if s.page_kind == "form" and s.lang == "zh")
    page = np.asarray(Image.open(root / spec.file).convert("RGB"))
    redacted = redact_pixels(page, [f.bbox for f in rec.pii])
    lines = rt.ocr.recognize(redacted)
    text = norm(" ".join(ln.text for ln in lines))
    assert "合同编号" in " ".join(ln.text for ln in lines)  # the rest of the page still reads
    for planted in spec.pii:
        assert norm(planted.value)[-6:] not in text, planted.value
    assert detect_lines(lines) == []


def test_uncleared_search_on_each_backend(indexed: tuple[Any, dict[str, Any]]) -> None:
    """The search guard over each real backend (its BM25 probe included): an uncleared principal
    searching for a stored value, whole or its last eight digits, is told the terms were left out
    and gets no page by them; the operator finds the page; snippets hold no value."""
    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.search import SearchRequest
    from imgrag.indexing.stores.base import Principal

    rt, records = indexed
    ig = Imgrag(runtime=rt)
    clerk = Principal(name="clerk")  # the pages were indexed public: everyone may read them
    _, rec = next((s, r) for s, r in records.values() if s.page_kind == "form")
    values = [f.text for f in rec.pii]
    digits = next(f.text for f in rec.pii if f.kind in ("cn_mobile", "cn_id", "bank_card") and len(re.sub(r"\D", "", f.text)) >= 11)
    whole = re.sub(r"\D", "", digits)
    op = ig.search(SearchRequest(query=digits, mode="keyword", k=3), OPERATOR)
    assert op.hits and op.hits[0].image_id == rec.image_id and not op.note
    for query in (digits, f"Phone {whole[-8:]}"):
        res = ig.search(SearchRequest(query=query, k=10), clerk)
        assert res.note, query
        assert whole[-8:] not in (res.query or ""), res.query
    res = ig.search(SearchRequest(query="Name 姓名 Phone 电话", k=10), clerk)
    dump = norm(res.model_dump_json())
    assert res.hits and not [v for v in values if len(norm(v)) >= 6 and norm(v) in dump]
