"""Votes on pages that print none of the query's concepts count IMGRAG_WEIGHT_UNPRINTED.

"the moon" read as 月亮 too: BM25 matched 月 in a report's date (2020年03月17日) and ranked it first,
at weight 3 six times a first image vote, above the photo every picture route ranked first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from imgrag.indexing import search as S
from imgrag.indexing import translate as T
from imgrag.indexing.config import Settings
from imgrag.indexing.models import OcrLine
from imgrag.indexing.search import Recall, Searcher, SearchRequest, prints_no_concept
from imgrag.indexing.stores.base import OPERATOR, ImageRecord

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _dictionary(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    d = T.Dictionary.from_entries([
        {"simplified": "月亮", "definitions": ["moon"]},
        {"simplified": "咖啡", "definitions": ["coffee"]},
        {"simplified": "日期", "definitions": ["date"]},
        {"simplified": "检查", "definitions": ["to inspect", "examination"]},
    ])
    monkeypatch.setattr(T, "_DICT", d)
    for f in (T.readings, T.concepts, S._page_meanings, S._page_forms):
        f.cache_clear()
    yield
    for f in (T.readings, T.concepts, S._page_meanings, S._page_forms):
        f.cache_clear()


def page(i: str, text: str = "", **kw: Any) -> ImageRecord:
    lines = [OcrLine(text=text, bbox=(0, 0, 100, 20), confidence=0.9)] if text else []
    return ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=800, height=1000,
                       quality=kw.pop("quality", "scanned"), indexed_at=NOW, ocr_text=text, ocr_lines=lines, **kw)


def test_a_page_prints_a_concept_in_either_language_or_none() -> None:
    cs = T.concepts("the moon")
    assert cs
    assert prints_no_concept(page("r", "检查日期：2020年03月17日"), cs, None)  # 月 is a piece of 月亮
    assert not prints_no_concept(page("zh", "今晚的月亮很圆"), cs, None)
    assert not prints_no_concept(page("en", "The Moon landing, 1969"), cs, None)
    assert not prints_no_concept(page("t", "", tags=["moon"]), cs, None)  # its tags are its words
    assert not prints_no_concept(page("m", "", file_meta={"subject": "moon"}), cs, None)
    assert not prints_no_concept(page("p", "", quality="photo", caption="moon | 月亮"), cs, None)  # a photo's caption
    assert prints_no_concept(page("d", "", caption="moon | 月亮"), cs, None)  # a document's is the model's guess
    assert prints_no_concept(page("c", "一个控制台"), T.concepts("一杯咖啡"), None)  # 一 alone is no concept


def _searcher(records: dict[str, ImageRecord], **settings: Any) -> Searcher:
    class Store:
        def spaces(self) -> None:
            return None

        def get_many(self, ids, principal):  # type: ignore[no-untyped-def]
            return {i: records[i] for i in ids if i in records}

    vecs = SimpleNamespace(identity="t", dim=2, embed_queries=lambda t: np.ones((len(t), 2), np.float32))
    s = Settings(search_cache=0, two_stage_pages=0, image_route_quality=[], **settings)
    return Searcher(SimpleNamespace(settings=s, store=Store(), text_embedder=vecs, image_embedder=vecs))  # type: ignore[arg-type]


def _rank(searcher: Searcher, query: str, ranked: dict[str, list[str]]) -> list[str]:
    rec = Recall(query=query, ranked=ranked, route_scores={r: {d: 1.0 for d in ids} for r, ids in ranked.items()})
    return [h.image_id for h in searcher.rank(SearchRequest(query=query, k=3), OPERATOR, rec).hits]


def test_the_photo_every_picture_route_ranks_first_is_not_outvoted_by_a_piece_of_a_word() -> None:
    records = {
        "report": page("report", "检查日期：2020年03月17日"),
        "photo": page("photo", "", quality="photo"),  # nothing printed on it, no caption: found by how it looks
        "other": page("other", "检查日期：2019年06月02日"),
    }
    ranked = {"bm25": ["report", "other"], "image": ["photo"], "region_tile": ["photo"]}
    assert _rank(_searcher(records), "the moon", ranked)[0] == "photo"
    assert _rank(_searcher(records, weight_unprinted=1.0), "the moon", ranked)[0] == "report"  # before
    assert _rank(_searcher(records, translate_query=False), "the moon", ranked)[0] == "report"  # off with it


def test_a_page_that_prints_the_concept_keeps_its_full_vote() -> None:
    records = {
        "report": page("report", "检查日期：2020年03月17日 今晚的月亮"),
        "photo": page("photo", "", quality="photo"),
    }
    ranked = {"bm25": ["report"], "image": ["photo"], "region_tile": ["photo"]}
    assert _rank(_searcher(records), "the moon", ranked)[0] == "report"
    # a query without a concept (one character) is left as it is
    assert _rank(_searcher(records | {"report": page("report", "2020年03月17日")}), "月", ranked)[0] == "report"


def test_text_votes_count_less_only_when_no_document_prints_the_query() -> None:
    """The text vector ranks *some* line first for any query: when no document among the first
    candidates prints a concept of it, those votes on documents no longer beat the photo the image
    routes found; when one does (a paraphrase may still be found by the vector), every text vote stays."""
    report = page("report", "检查日期：2020年03月17日")
    photo = page("photo", "", quality="photo")
    ranked = {"text_vector": ["report", "photo"], "region_text": ["report"], "image": ["photo"]}
    assert _rank(_searcher({"report": report, "photo": photo}), "the moon", ranked)[0] == "photo"
    assert _rank(_searcher({"report": report, "photo": photo}, weight_unprinted=1.0), "the moon", ranked)[0] == "report"
    # another document prints it: the query is answered in words, the text routes keep their votes
    moon = page("moon", "今晚的月亮很圆")
    ranked = {"text_vector": ["report", "moon", "photo"], "region_text": ["report", "moon"], "image": ["photo"]}
    assert _rank(_searcher({"report": report, "photo": photo, "moon": moon}), "the moon", ranked) == ["moon", "report", "photo"]
