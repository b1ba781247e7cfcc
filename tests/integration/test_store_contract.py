"""One contract for every index backend: the embedded LanceDB store and Elasticsearch.

Every test in the first part runs once per backend (the ``store`` fixture in ``conftest.py``) on
small synthetic records with hand-made vectors, so no model is loaded and each test takes well
under a second. The last part covers what only the Elasticsearch backend has: index generations
and the one-line errors for an unreachable, foreign, old or unauthorised server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgrag.indexing.errors import BackendUnavailableError, ImgragError
from imgrag.indexing.models import DateMention, PiiFinding, Seal
from imgrag.indexing.pii import mask_record
from imgrag.indexing.stores.base import (
    OPERATOR,
    Filters,
    ImageRecord,
    ImageVectors,
    Indexed,
    IndexStore,
    MetadataUpdate,
    ModelSpaces,
    Principal,
    RegionRecord,
    WeightedTerms,
)

IMG, FEAT, TXT = 16, 24, 16
SPACES = ModelSpaces(image="test-joint", image_dim=IMG, feature="test-feat", feature_dim=FEAT, text="test-text", text_dim=TXT)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


# -- synthetic records --------------------------------------------------------------------------
def unit(dim: int, *weights: tuple[int, float]) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    for i, w in weights:
        v[i] += w
    return v / np.linalg.norm(v)


def rand_unit(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class Spec:
    image_id: str
    text: str = "common words"
    doc_id: str | None = None
    path: str | None = None
    page: int = 1
    quality: str = "scanned"
    fmt: str = "png"
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    file_meta: dict[str, str] = field(default_factory=dict)
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, value, file field): personal data in tags
    acl: list[str] = field(default_factory=list)
    dates: list[tuple[date, str]] = field(default_factory=list)
    seal: bool = False
    pii: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) found in the block's text
    caption: str = ""
    caption_source: str = ""
    image: np.ndarray | None = None
    feature: np.ndarray | None = None
    text_vec: np.ndarray | None = None
    tiles: list[tuple[str, tuple[float, float, float, float], np.ndarray]] | None = None
    blocks: list[tuple[str, str, tuple[float, float, float, float], str, np.ndarray]] | None = None


def make(spec: Spec) -> Indexed:
    seed = sum(map(ord, spec.image_id))
    rec = ImageRecord(
        image_id=spec.image_id,
        doc_id=spec.doc_id or f"doc-{spec.image_id}",
        path=spec.path or f"/data/{spec.image_id}.{spec.fmt}",
        page=spec.page,
        format=spec.fmt,
        width=200,
        height=100,
        quality=spec.quality,  # type: ignore[arg-type]
        ocr_text=spec.text,
        caption=spec.caption,
        caption_source=spec.caption_source,  # type: ignore[arg-type]
        tags=spec.tags,
        meta=spec.meta,
        file_meta=spec.file_meta,
        acl=spec.acl,
        dates=[DateMention(text=d.isoformat(), date=d, precision=p) for d, p in spec.dates],  # type: ignore[arg-type]
        seals=[Seal(bbox=(1, 2, 30, 40), color="red", confidence=0.9)] if spec.seal else [],
        pii=[
            PiiFinding(kind=k, text=t, line=0, start=0, end=len(t), bbox=(10, 5, 60, 15))  # type: ignore[arg-type]
            for k, t in spec.pii
        ] + [PiiFinding(kind=k, text=t, start=0, end=len(t), field=f) for k, t, f in spec.fields],  # type: ignore[arg-type]
        indexed_at=NOW,
        models={"image": "test-joint"},
    )
    tiles = spec.tiles if spec.tiles is not None else [("t0", (0, 0, 100, 100), rand_unit(IMG, seed + 1))]
    blocks = (
        spec.blocks
        if spec.blocks is not None
        else [("b0", "block", (0, 0, 200, 20), spec.text, rand_unit(TXT, seed + 2))]
    )
    regions = [
        RegionRecord(region_id=f"{spec.image_id}:{s}", image_id=spec.image_id, kind="tile", label=s, bbox=b, vector=v)
        for s, b, v in tiles
    ] + [
        RegionRecord(
            region_id=f"{spec.image_id}:{s}", image_id=spec.image_id, kind=k, label=s, bbox=b, text=t,  # type: ignore[arg-type]
            pii_kinds=sorted({f.kind for f in rec.pii if f.bbox is not None and f.bbox[2] <= b[2]}), vector=v,
        )
        for s, k, b, t, v in blocks
    ]
    vectors = ImageVectors(
        image=spec.image if spec.image is not None else rand_unit(IMG, seed + 3),
        feature=spec.feature if spec.feature is not None else rand_unit(FEAT, seed + 4),
        text=spec.text_vec if spec.text_vec is not None else rand_unit(TXT, seed + 5),
    )
    return Indexed(record=rec, vectors=vectors, regions=regions)


def load(store: IndexStore, specs: list[Spec]) -> None:
    store.ensure_spaces(SPACES)
    store.write([make(s) for s in specs])


def ids_knn(store: IndexStore, principal: Principal, filters: Filters) -> set[str]:
    return {h.image_id for h in store.knn("image", rand_unit(IMG, 99), 50, filters, principal)}


def ids_bm25(store: IndexStore, principal: Principal, filters: Filters, q: str = "common") -> set[str]:
    return {h.image_id for h in store.bm25(q, 50, filters, principal)}


def ids_regions(
    store: IndexStore, kind: str, principal: Principal, filters: Filters, image_ids: list[str] | None = None
) -> set[str]:
    vec = rand_unit(IMG if kind == "tile" else TXT, 98)
    return {h.image_id for h in store.knn_regions(kind, vec, 200, filters, principal, image_ids=image_ids)}  # type: ignore[arg-type]


def visible_everywhere(store: IndexStore, principal: Principal, filters: Filters) -> dict[str, set[str]]:
    """The ids each read path returns for one principal and filter set."""
    return {
        "list": {r.image_id for r in store.list_images(principal, filters, limit=1000)},
        "knn": ids_knn(store, principal, filters),
        "bm25": ids_bm25(store, principal, filters),
        "tiles": ids_regions(store, "tile", principal, filters),
        "text": ids_regions(store, "text", principal, filters),
        # the second stage of a two-stage search, handed every page: the ACL and filters still bind
        "tiles, two-stage": ids_regions(store, "tile", principal, filters, every_id(store)),
        "text, two-stage": ids_regions(store, "text", principal, filters, every_id(store)),
    }


def every_id(store: IndexStore) -> list[str]:
    return sorted(r.image_id for r in store.list_images(OPERATOR, Filters(), limit=1000))


def assert_visible(store: IndexStore, principal: Principal, filters: Filters, expected: set[str]) -> None:
    seen = visible_everywhere(store, principal, filters)
    for route, ids in seen.items():
        assert ids == expected, f"{route}: got {sorted(ids)}, expected {sorted(expected)} for {filters}"
    assert store.count(principal, filters) == len(expected)


# -- basics --------------------------------------------------------------------------------------
def test_empty_store_answers_empty(store: IndexStore) -> None:
    assert store.spaces() is None
    assert store.live_ids(["a"]) == set()
    assert store.live_ids_for_path("/x") == {}
    assert store.get("a", OPERATOR) is None
    assert store.get_many(["a"], OPERATOR) == {}
    assert store.knn_stats("feature", unit(FEAT, (0, 1)), 5, Filters(), OPERATOR) == ([], {})
    assert store.get_vectors("a", OPERATOR) is None
    assert store.list_images(OPERATOR, Filters()) == []
    assert store.count(OPERATOR, Filters()) == 0
    assert store.knn("image", unit(IMG, (0, 1)), 5, Filters(), OPERATOR) == []
    assert store.bm25("contract", 5, Filters(), OPERATOR) == []
    assert store.knn_regions("tile", unit(IMG, (0, 1)), 5, Filters(), OPERATOR) == []
    assert store.regions_of(["a"]) == []
    assert store.versions() == []
    assert store.soft_delete(["a"]) == 0
    assert store.purge() == 0
    st = store.stats(OPERATOR)
    assert (st.images, st.documents, st.regions, st.version) == (0, 0, 0, None)
    with pytest.raises(ImgragError):
        store.commit("index", {})


def test_write_get_roundtrip(store: IndexStore) -> None:
    a = make(Spec("a", text="first page", tags=["t"], meta={"k": "v"}, dates=[(date(2023, 5, 12), "day")], seal=True))
    b = make(Spec("b", text="second page"))
    a.record.feature_stats = {"exemplar_mean": 0.25, "exemplar_sd": 0.0625, "colour_layout": list(range(48))}
    store.ensure_spaces(SPACES)
    assert store.spaces() == SPACES
    store.write([a, b])
    got = store.get("a", OPERATOR)
    assert got is not None
    assert got.model_dump(mode="json") == a.record.model_dump(mode="json")
    assert store.get("missing", OPERATOR) is None
    many = store.get_many(["a", "b", "missing"], OPERATOR)
    assert set(many) == {"a", "b"}
    assert many["b"].ocr_text == "second page"
    # the exemplar term's read: the hits and their records' statistics alone, {} for a page without any
    hits, stats = store.knn_stats("feature", a.vectors.feature, 5, Filters(), OPERATOR)
    assert [h.image_id for h in hits] == ["a", "b"]
    assert [h.image_id for h in hits] == [h.image_id for h in store.knn("feature", a.vectors.feature, 5, Filters(), OPERATOR)]
    assert stats == {"a": a.record.feature_stats, "b": {}}
    vec = store.get_vectors("b", OPERATOR)
    assert vec is not None
    np.testing.assert_allclose(vec.image, b.vectors.image, atol=1e-6)
    np.testing.assert_allclose(vec.feature, b.vectors.feature, atol=1e-6)
    np.testing.assert_allclose(vec.text, b.vectors.text, atol=1e-6)
    assert vec.feature.shape == (FEAT,)


def test_live_ids_and_paths(store: IndexStore) -> None:
    load(store, [
        Spec("p1", path="/docs/a.pdf", doc_id="docA", page=1),
        Spec("p2", path="/docs/a.pdf", doc_id="docA", page=2),
        Spec("q1", path="/docs/b.png", doc_id="docB"),
    ])
    assert store.live_ids(["p1", "q1", "nope"]) == {"p1", "q1"}
    assert store.live_ids([]) == set()
    assert store.live_ids_for_path("/docs/a.pdf") == {"p1": "docA", "p2": "docA"}
    assert store.live_ids_for_path("/docs/a") == {}
    store.soft_delete(["p2"])
    assert store.live_ids(["p1", "p2"]) == {"p1"}
    assert store.live_ids_for_path("/docs/a.pdf") == {"p1": "docA"}


def test_live_pages_by_path_or_content(store: IndexStore) -> None:
    """An index run's lookups for a run of files in one query: live rows by path or by doc_id."""
    load(store, [
        Spec("p1", path="/docs/a.pdf", doc_id="docA", page=1),
        Spec("p2", path="/docs/a.pdf", doc_id="docA", page=2),
        Spec("q1", path="/docs/b's.png", doc_id="docB"),
        Spec("r1", path="/docs/c.png", doc_id="docC"),
    ])
    assert store.live_pages([], []) == []
    assert sorted(store.live_pages(["/docs/a.pdf"], [])) == [("p1", "docA", "/docs/a.pdf"), ("p2", "docA", "/docs/a.pdf")]
    assert store.live_pages(["/nowhere"], ["docB", "docX"]) == [("q1", "docB", "/docs/b's.png")]
    assert sorted(store.live_pages(["/docs/b's.png"], ["docC"])) == [("q1", "docB", "/docs/b's.png"), ("r1", "docC", "/docs/c.png")]
    store.soft_delete(["r1", "p2"])
    assert store.live_pages(["/docs/a.pdf"], ["docC"]) == [("p1", "docA", "/docs/a.pdf")]


def test_write_is_idempotent_and_replaces(store: IndexStore) -> None:
    load(store, [Spec("a", text="old words")])
    store.write([make(Spec("a", text="new words"))])
    store.write([make(Spec("a", text="new words"))])
    assert store.count(OPERATOR, Filters()) == 1
    rec = store.get("a", OPERATOR)
    assert rec is not None and rec.ocr_text == "new words"
    assert [h.image_id for h in store.bm25("new", 10, Filters(), OPERATOR)] == ["a"]
    assert store.bm25("old", 10, Filters(), OPERATOR) == []
    assert [h.image_id for h in store.knn("image", rand_unit(IMG, 1), 10, Filters(), OPERATOR)] == ["a"]


# -- routes --------------------------------------------------------------------------------------
def test_knn_orders_by_cosine_on_each_field(store: IndexStore) -> None:
    e0, close, far, e1 = (0, 1.0), [(0, 1.0), (1, 0.5)], [(0, 1.0), (1, 2.0)], (1, 1.0)
    load(store, [
        Spec("A", image=unit(IMG, e0), feature=unit(FEAT, e1), text_vec=unit(TXT, *close)),
        Spec("B", image=unit(IMG, *close), feature=unit(FEAT, *far), text_vec=unit(TXT, e1)),
        Spec("C", image=unit(IMG, *far), feature=unit(FEAT, *close), text_vec=unit(TXT, e0)),
        Spec("D", image=unit(IMG, e1), feature=unit(FEAT, e0), text_vec=unit(TXT, *far)),
    ])
    cos_close, cos_far = 1 / np.sqrt(1.25), 1 / np.sqrt(5)
    cases = {
        "image": (IMG, ["A", "B", "C", "D"]),
        "feature": (FEAT, ["D", "C", "B", "A"]),
        "text": (TXT, ["C", "A", "D", "B"]),
    }
    for fld, (dim, order) in cases.items():
        hits = store.knn(fld, unit(dim, (0, 1.0)), 10, Filters(), OPERATOR)  # type: ignore[arg-type]
        assert [h.image_id for h in hits] == order, fld
        scores = [h.score for h in hits]
        np.testing.assert_allclose(scores, [1.0, cos_close, cos_far, 0.0], atol=0.03, err_msg=fld)
        top2 = store.knn(fld, unit(dim, (0, 1.0)), 2, Filters(), OPERATOR)  # type: ignore[arg-type]
        assert [h.image_id for h in top2] == order[:2]


def test_bm25_english_and_chinese(store: IndexStore) -> None:
    load(store, [
        Spec("en1", text="This contract was signed by both parties on 12 May 2023"),
        Spec("en2", text="Invoice for payment due in June"),
        Spec("en3", text="Meeting notes about the weather", tags=["urgent"], meta={"client": "Acme"}),
        Spec("zh1", text="本合同于2023年5月12日签订，甲方盖章。"),
        Spec("zh2", text="发票金额与付款日期"),
        Spec("zh3", text="会议纪要", caption="a red stamp"),
    ])
    hits = store.bm25("contract signed", 10, Filters(), OPERATOR)
    assert [h.image_id for h in hits] == ["en1"]
    assert all(h.score > 0 for h in hits)
    assert [h.image_id for h in store.bm25("INVOICE", 10, Filters(), OPERATOR)] == ["en2"]
    zh = [h.image_id for h in store.bm25("合同 签订 日期", 10, Filters(), OPERATOR)]
    assert zh[0] == "zh1", zh
    assert "zh2" in zh and "zh3" not in zh and not {"en1", "en2", "en3"} & set(zh)
    assert [h.image_id for h in store.bm25("甲方盖章", 10, Filters(), OPERATOR)][0] == "zh1"
    # tags, metadata values and captions are searchable too
    assert [h.image_id for h in store.bm25("urgent", 10, Filters(), OPERATOR)] == ["en3"]
    assert [h.image_id for h in store.bm25("acme", 10, Filters(), OPERATOR)] == ["en3"]
    assert [h.image_id for h in store.bm25("stamp", 10, Filters(), OPERATOR)] == ["zh3"]
    assert store.bm25("  ?! ", 10, Filters(), OPERATOR) == []
    assert store.bm25("zebra", 10, Filters(), OPERATOR) == []
    assert len(store.bm25("合同 invoice meeting", 2, Filters(), OPERATOR)) == 2


def test_bm25_scores_a_page_the_same_whichever_run_wrote_it(store: IndexStore) -> None:
    """Pages added by a later `imgrag index` run are scored with the collection's term statistics,
    not their own batch's (LanceDB searched rows written after its FTS index apart)."""
    load(store, [Spec("first", text="alpha beta gamma")] + [Spec(f"f{i}", text=f"filler words {i}") for i in range(6)])
    store.commit("index", {"indexed": 7})
    load(store, [Spec("second", text="alpha beta gamma"), Spec("other", text="alpha delta")])
    store.commit("index", {"indexed": 2})
    for q in ("gamma", "alpha beta"):
        scores = {h.image_id: h.score for h in store.bm25(q, 10, Filters(), OPERATOR)}
        assert scores["first"] == pytest.approx(scores["second"], rel=1e-5), (q, scores)


def test_bm25_weighted_extra_terms(store: IndexStore) -> None:
    """A translated query's terms find pages on their own, vote at their weight, and keep filters."""
    load(store, [
        Spec("en1", text="The contract price is payable in two instalments"),
        Spec("en2", text="Price list of the canteen"),
        Spec("zh1", text="本合同价格为人民币十万元"),
        Spec("zh2", text="合同价格 合同价格 合同价格", tags=["t"]),
    ])
    ids = lambda hits: [h.image_id for h in hits]  # noqa: E731
    plain = store.bm25("合同价格", 10, Filters(), OPERATOR)
    assert not {"en1", "en2"} & set(ids(plain))
    both = store.bm25("合同价格", 10, Filters(), OPERATOR, [WeightedTerms(text="contract price", weight=0.5)])
    assert set(ids(both)) == {"zh1", "zh2", "en1", "en2"}
    assert ids(both).index("en1") < ids(both).index("en2")  # both translated words beat one
    by_id = {h.image_id: h.score for h in both}
    low = store.bm25("合同价格", 10, Filters(), OPERATOR, [WeightedTerms(text="contract price", weight=0.1)])
    low_by_id = {h.image_id: h.score for h in low}
    # the original terms score as before; the translated ones scale with their weight
    assert low_by_id["zh1"] == pytest.approx({h.image_id: h.score for h in plain}["zh1"], rel=1e-3)
    assert low_by_id["en1"] == pytest.approx(by_id["en1"] / 5, rel=1e-2)
    # an empty original query still searches the extra terms; an empty extra is ignored
    assert ids(store.bm25("", 10, Filters(), OPERATOR, [WeightedTerms(text="canteen", weight=0.5)])) == ["en2"]
    assert ids(store.bm25("合同价格", 10, Filters(), OPERATOR, [WeightedTerms(text=" ?! ", weight=0.5)])) == ids(plain)
    # filters and the ACL bind the extra terms too
    assert ids(store.bm25("合同价格", 10, Filters(tags=["t"]), OPERATOR, [WeightedTerms(text="price", weight=1.0)])) == ["zh2"]


def test_knn_regions_tile_and_text_with_bbox(store: IndexStore) -> None:
    load(store, [
        Spec(
            "R1",
            tiles=[("t0", (0, 0, 50, 50), unit(IMG, (2, 1))), ("t1", (50, 0, 100, 50), unit(IMG, (3, 1)))],
            blocks=[("b0", "block", (10, 60, 90, 80), "total amount", unit(TXT, (4, 1)))],
        ),
        Spec(
            "R2",
            tiles=[("t0", (0, 0, 10, 10), unit(IMG, (5, 1))), ("t1", (0, 10, 10, 20), unit(IMG, (6, 1)))],
            blocks=[
                ("b0", "block", (5, 5, 95, 15), "signature line", unit(TXT, (7, 1))),
                ("l0", "lines", (1, 2, 3, 4), "loose lines", unit(TXT, (8, 1))),
            ],
        ),
    ])
    hits = store.knn_regions("tile", unit(IMG, (3, 1)), 10, Filters(), OPERATOR)
    top = hits[0]
    assert (top.region_id, top.image_id, top.kind, top.label) == ("R1:t1", "R1", "tile", "t1")
    assert tuple(top.bbox) == (50, 0, 100, 50)
    assert top.score == pytest.approx(1.0, abs=0.03)
    assert all(h.kind == "tile" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.region_id for h in hits} == {"R1:t0", "R1:t1", "R2:t0", "R2:t1"}  # several per image

    hits = store.knn_regions("text", unit(TXT, (7, 1)), 10, Filters(), OPERATOR)
    top = hits[0]
    assert (top.region_id, top.image_id, top.kind, top.text) == ("R2:b0", "R2", "block", "signature line")
    assert tuple(top.bbox) == (5, 5, 95, 15)
    assert all(h.kind in ("block", "lines") for h in hits)
    lines = store.knn_regions("text", unit(TXT, (8, 1)), 10, Filters(), OPERATOR)[0]
    assert (lines.region_id, lines.kind, tuple(lines.bbox)) == ("R2:l0", "lines", (1, 2, 3, 4))

    regions = {r.region_id: r for r in store.regions_of(["R2"])}
    assert set(regions) == {"R2:t0", "R2:t1", "R2:b0", "R2:l0"}
    assert regions["R2:b0"].text == "signature line" and tuple(regions["R2:t1"].bbox) == (0, 10, 10, 20)
    assert all(r.score == 0 for r in regions.values())


def test_knn_regions_two_stage_scores_only_the_given_pages_exactly(store: IndexStore) -> None:
    """The second stage of a two-stage search: the regions of the given pages only, with the
    same scores and order as the search over every region, within the filter's own image_ids."""
    load(store, [
        Spec(f"S{i}", tags=["odd"] if i % 2 else [],
             tiles=[(f"t{j}", (j, 0, j + 1, 1), rand_unit(IMG, 100 * i + j)) for j in range(3)],
             blocks=[(f"b{j}", "block", (0, j, 5, j + 1), f"block {j}", rand_unit(TXT, 100 * i + 10 + j)) for j in range(2)])
        for i in range(8)
    ])
    for kind, dim in (("tile", IMG), ("text", TXT)):
        q = rand_unit(dim, 7)
        every = store.knn_regions(kind, q, 200, Filters(), OPERATOR)  # type: ignore[arg-type]
        assert len(every) == 8 * (3 if kind == "tile" else 2)
        some = ["S6", "S1", "S4", "missing"]
        got = store.knn_regions(kind, q, 200, Filters(), OPERATOR, image_ids=some)  # type: ignore[arg-type]
        want = [h for h in every if h.image_id in some]
        assert [h.region_id for h in got] == [h.region_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
        two = store.knn_regions(kind, q, 2, Filters(), OPERATOR, image_ids=some)  # type: ignore[arg-type]
        assert len(two) == 2 and two[0].region_id == want[0].region_id  # (Elasticsearch fills k from the best pages)
        # the filters still apply: tags, and the filter's own image_ids (intersected)
        odd = store.knn_regions(kind, q, 200, Filters(tags=["odd"]), OPERATOR, image_ids=some)  # type: ignore[arg-type]
        assert {h.image_id for h in odd} == {"S1"}
        both = store.knn_regions(kind, q, 200, Filters(image_ids=["S4", "S5"]), OPERATOR, image_ids=some)  # type: ignore[arg-type]
        assert {h.image_id for h in both} == {"S4"}
        assert store.knn_regions(kind, q, 200, Filters(), OPERATOR, image_ids=[]) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_exactly_tied_hits_come_best_first_then_by_id_whatever_was_written_first(store: IndexStore, order: tuple[int, ...]) -> None:
    """Twelve pages with the same vectors and words tie exactly on every route; a route's k best are
    then the tie's first k by page (region) id, in that order, whichever write (data file) holds
    which, and whatever order the store's threads return them in (Lance with two compute threads
    swapped two tied pages). The cut-off falls inside the tie: which pages make it is fixed too."""
    img, txt, tile = rand_unit(IMG, 7), rand_unit(TXT, 8), rand_unit(IMG, 9)
    specs = [
        Spec(f"t{i:02d}", text="tied words", image=img, text_vec=txt, tiles=[("t0", (0, 0, 10, 10), tile)],
             blocks=[("b0", "block", (0, 0, 20, 20), "tied words", txt)])
        for i in (5, 11, 0, 7, 2, 9, 1, 10, 4, 8, 3, 6)
    ]
    load(store, [Spec("other", text="other words")])
    for part in order:  # three writes, in an order of their own: a data file each on LanceDB
        store.write([make(sp) for sp in specs[4 * part : 4 * part + 4]])
    store.commit("index", {"indexed": 13})
    want = [f"t{i:02d}" for i in range(5)]
    assert [h.image_id for h in store.knn("image", img, 5, Filters(), OPERATOR)] == want
    assert [h.image_id for h in store.knn("text", txt, 5, Filters(), OPERATOR)] == want
    assert [h.image_id for h in store.bm25("tied", 5, Filters(), OPERATOR)] == want
    # (Elasticsearch names the regions of ceil(k / IMGRAG_ES_REGION_HITS) pages: here fewer than k)
    for kind, vec, region, ids in (("tile", tile, "t0", None), ("text", txt, "b0", None), ("text", txt, "b0", [f"t{i:02d}" for i in range(12)][::-1])):
        got = [h.region_id for h in store.knn_regions(kind, vec, 5, Filters(), OPERATOR, ids)]  # type: ignore[arg-type]
        assert got and got == [f"{i}:{region}" for i in want][: len(got)], (kind, ids)


def test_write_replaces_a_pages_regions(store: IndexStore) -> None:
    load(store, [Spec("P", tiles=[(f"t{i}", (i, 0, i + 1, 1), unit(IMG, (i, 1))) for i in range(3)],
                      blocks=[("b0", "block", (0, 0, 5, 5), "old block", unit(TXT, (0, 1)))])])
    assert len(store.regions_of(["P"])) == 4
    store.write([make(Spec("P", tiles=[("n0", (7, 7, 9, 9), unit(IMG, (9, 1)))], blocks=[]))])
    regions = store.regions_of(["P"])
    assert [(r.region_id, tuple(r.bbox)) for r in regions] == [("P:n0", (7, 7, 9, 9))]
    tile_ids = {h.region_id for h in store.knn_regions("tile", unit(IMG, (1, 1)), 10, Filters(), OPERATOR)}
    assert tile_ids == {"P:n0"}
    assert store.knn_regions("text", unit(TXT, (0, 1)), 10, Filters(), OPERATOR) == []
    assert store.stats(OPERATOR).regions == 1


# -- filters -------------------------------------------------------------------------------------
CORPUS = [
    Spec("c1", path="/data/contracts/a.pdf", doc_id="docA", page=1, dates=[(date(2023, 5, 12), "day")],
         tags=["urgent"], meta={"dept": "legal", "year": "2023"}, seal=True),
    Spec("c2", path="/data/contracts/a.pdf", doc_id="docA", page=2,
         dates=[(date(2021, 3, 1), "day"), (date(2025, 7, 1), "day")], meta={"dept": "legal", "year": "2021"},
         pii=[("cn_mobile", "13812345678"), ("email", "li.na@example.com")]),
    Spec("c3", path="/data/contracts/b.png", doc_id="docB", quality="born_digital",
         dates=[(date(2023, 11, 1), "month")], tags=["archive"], meta={"dept": "sales"}),
    Spec("c4", path="/data/photos/cat.jpg", fmt="jpg", quality="photo", tags=["pets", "urgent"],
         pii=[("cn_mobile", "13912345678")]),
    Spec("c5", path="/data/photos/x.jpg", fmt="jpg", quality="handwritten",
         dates=[(date(2022, 12, 31), "day"), (date(2023, 1, 1), "day")], seal=True),
    Spec("c6", path="/data/scans/y.tif", fmt="tif", dates=[(date(2023, 1, 1), "year")]),
    Spec("c7", path="/data/contractsX/z.png", dates=[(date(2024, 2, 29), "day")]),
]
ALL = {s.image_id for s in CORPUS}

FILTER_CASES: list[tuple[str, Filters, set[str]]] = [
    ("none", Filters(), ALL),
    ("signed in 2023", Filters(date_from=date(2023, 1, 1), date_to=date(2023, 12, 31)), {"c1", "c3", "c5", "c6"}),
    ("January 2023", Filters(date_from=date(2023, 1, 1), date_to=date(2023, 1, 31)), {"c5"}),
    ("November 2023", Filters(date_from=date(2023, 11, 1), date_to=date(2023, 11, 30)), {"c3"}),
    ("half a month", Filters(date_from=date(2023, 11, 15), date_to=date(2023, 12, 31)), set()),
    ("one day", Filters(date_from=date(2022, 12, 31), date_to=date(2022, 12, 31)), {"c5"}),
    ("from 2024", Filters(date_from=date(2024, 1, 1)), {"c2", "c7"}),
    ("until 2021", Filters(date_to=date(2021, 12, 31)), {"c2"}),
    ("2021-2025", Filters(date_from=date(2021, 1, 1), date_to=date(2025, 12, 31)), ALL - {"c4"}),
    # Filters refuses an inverted range (the caller is told to swap it); a backend handed one anyway finds nothing
    ("empty range", Filters.model_construct(date_from=date(2024, 1, 1), date_to=date(2023, 1, 1)), set()),
    ("quality", Filters(quality=["photo"]), {"c4"}),
    ("qualities", Filters(quality=["scanned", "handwritten"]), {"c1", "c2", "c5", "c6", "c7"}),
    ("tag", Filters(tags=["urgent"]), {"c1", "c4"}),
    ("any tag", Filters(tags=["archive", "pets"]), {"c3", "c4"}),
    ("meta", Filters(meta={"dept": "legal"}), {"c1", "c2"}),
    ("all meta", Filters(meta={"dept": "legal", "year": "2023"}), {"c1"}),
    ("meta miss", Filters(meta={"dept": "nope"}), set()),
    ("path prefix", Filters(path_prefix="/data/contracts/"), {"c1", "c2", "c3"}),
    ("path prefix 2", Filters(path_prefix="/data/photos"), {"c4", "c5"}),
    ("doc", Filters(doc_id="docA"), {"c1", "c2"}),
    ("seal", Filters(has_seal=True), {"c1", "c5"}),
    ("no seal", Filters(has_seal=False), ALL - {"c1", "c5"}),
    ("pii", Filters(has_pii=True), {"c2", "c4"}),
    ("no pii", Filters(has_pii=False), ALL - {"c2", "c4"}),
    ("pii and seal", Filters(has_pii=True, has_seal=True), set()),
    ("ids", Filters(image_ids=["c2", "c4", "zz"]), {"c2", "c4"}),
    ("no ids", Filters(image_ids=[]), set()),
    ("combined", Filters(tags=["urgent"], quality=["scanned"], date_from=date(2023, 1, 1)), {"c1"}),
]


def _shared_store(request: pytest.FixtureRequest, factory: pytest.TempPathFactory, specs: list[Spec]) -> Iterator[IndexStore]:
    from conftest import open_test_store

    s, dispose = open_test_store(request.param, factory.mktemp(request.param))
    try:
        load(s, specs)
        s.commit("index", {"indexed": len(specs)})  # lancedb-ann builds its vector indices here
        yield s
    finally:
        dispose()


@pytest.fixture(scope="module", params=["lancedb", "lancedb-ann", "elasticsearch"])
def corpus_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexStore]:
    """One store per backend holding CORPUS, shared by the read-only filter tests."""
    yield from _shared_store(request, tmp_path_factory, CORPUS)


@pytest.mark.parametrize(("name", "filters", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filters_apply_inside_every_route(
    corpus_store: IndexStore, name: str, filters: Filters, expected: set[str]
) -> None:
    assert_visible(corpus_store, OPERATOR, filters, expected)


def test_list_images_pages_through_everything(corpus_store: IndexStore) -> None:
    pages = [corpus_store.list_images(OPERATOR, Filters(), offset=o, limit=3) for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert {r.image_id for p in pages for r in p} == ALL


# -- access control ------------------------------------------------------------------------------
ACL_CORPUS = [
    Spec("pub", text="common public words"),
    Spec("ali", text="common alice words", acl=["alice"]),
    Spec("leg", text="common legal words", acl=["legal"]),
    Spec("hr", text="common hr words", acl=["alice", "hr"]),
]
# The shared ACL store also holds an operator's literal `--acl @public`: a token no principal holds,
# not "everyone" (LanceDB's acl_read column marks public pages with that very word).
ACL_READ_CORPUS = [*ACL_CORPUS, Spec("lit", text="common alice literal words", acl=["@public"])]
PRINCIPALS: dict[str, tuple[Principal, set[str]]] = {
    "alice": (Principal(name="alice"), {"pub", "ali", "hr"}),
    "bob in legal": (Principal(name="bob", groups=["legal"]), {"pub", "leg"}),
    "carol": (Principal(name="carol"), {"pub"}),
    "anonymous": (Principal(), {"pub"}),
    "hr group": (Principal(name="dave", groups=["hr", "other"]), {"pub", "hr"}),
    "operator": (OPERATOR, {"pub", "ali", "leg", "hr", "lit"}),
}


@pytest.fixture(scope="module", params=["lancedb", "lancedb-ann", "elasticsearch"])
def acl_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexStore]:
    """One store per backend holding ACL_READ_CORPUS, shared by the read-only ACL tests."""
    yield from _shared_store(request, tmp_path_factory, ACL_READ_CORPUS)


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_acl_inside_every_read(acl_store: IndexStore, who: str) -> None:
    store = acl_store
    principal, expected = PRINCIPALS[who]
    assert_visible(store, principal, Filters(), expected)
    for s in ACL_READ_CORPUS:
        visible = s.image_id in expected
        assert (store.get(s.image_id, principal) is not None) == visible, s.image_id
        assert (store.get_vectors(s.image_id, principal) is not None) == visible, s.image_id
    assert set(store.get_many([s.image_id for s in ACL_READ_CORPUS], principal)) == expected
    hits, stats = store.knn_stats("image", rand_unit(IMG, 99), 50, Filters(), principal)
    assert {h.image_id for h in hits} == set(stats) == expected
    assert store.stats(principal).images == len(expected)
    assert store.stats(principal).regions == 2 * len(expected)
    # a filter cannot widen what the ACL allows
    assert store.count(principal, Filters(image_ids=["ali", "leg", "hr", "lit"])) == len(expected - {"pub"})
    # the text of a hidden page does not leak through BM25
    assert {h.image_id for h in store.bm25("alice legal hr", 10, Filters(), principal)} == expected - {"pub"}


# -- soft delete, purge, versions ----------------------------------------------------------------
def test_soft_delete_hides_everywhere_then_purge_removes(store: IndexStore) -> None:
    load(store, CORPUS)
    assert store.soft_delete(["c1", "nope"]) == 1
    assert store.soft_delete(["c1"]) == 0
    rest = ALL - {"c1"}
    assert_visible(store, OPERATOR, Filters(), rest)
    assert_visible(store, OPERATOR, Filters(doc_id="docA"), {"c2"})
    assert store.get("c1", OPERATOR) is None
    assert store.get_vectors("c1", OPERATOR) is None
    assert store.get_many(["c1", "c2"], OPERATOR).keys() == {"c2"}
    assert set(store.knn_stats("image", rand_unit(IMG, 99), 50, Filters(image_ids=["c1", "c2"]), OPERATOR)[1]) == {"c2"}
    assert store.live_ids(["c1", "c2"]) == {"c2"}
    assert store.live_ids_for_path("/data/contracts/a.pdf") == {"c2": "docA"}
    assert store.regions_of(["c1"]) == []
    st = store.stats(OPERATOR)
    assert (st.images, st.deleted, st.documents) == (len(rest), 1, len(rest))
    assert store.stats(Principal(name="carol")).deleted == 0

    assert store.purge() == 1
    assert store.purge() == 0
    assert store.stats(OPERATOR).deleted == 0
    assert store.count(OPERATOR, Filters()) == len(rest)
    assert store.get("c1", OPERATOR) is None
    # a purged page can be indexed again
    store.write([make(CORPUS[0])])
    assert store.live_ids(["c1"]) == {"c1"}


def test_update_metadata_in_place_applies_to_every_read_and_rolls_back(store: IndexStore) -> None:
    load(store, ACL_CORPUS + [Spec("gone", text="common gone words", acl=["alice"])])
    store.soft_delete(["gone"])
    v1 = store.commit("index", {"indexed": 5})
    alice, bob, carol = Principal(name="alice"), Principal(name="bob", groups=["legal"]), Principal(name="carol")
    before = {i: store.get_vectors(i, OPERATOR) for i in ("pub", "ali")}
    regions_before = {(r.region_id, r.bbox, r.text) for r in store.regions_of(["pub", "ali"])}

    assert store.update_metadata(["pub", "ali"], MetadataUpdate()) == 0
    # restrict a public page and move alice's page to legal; "leg" already has that ACL, "gone"
    # is soft-deleted and "nope" does not exist: neither counts nor changes
    upd = MetadataUpdate(acl=["legal"], tags=["fixed"], meta={"owner": "zebra"})
    assert store.update_metadata(["pub", "ali", "nope", "gone"], upd) == 2
    assert store.update_metadata(["pub", "ali"], upd) == 0  # idempotent
    assert store.update_metadata(["leg"], MetadataUpdate(acl=["legal"])) == 0

    # the new ACL holds inside every route at once, regions and BM25 included
    assert_visible(store, alice, Filters(), {"hr"})
    assert_visible(store, bob, Filters(), {"pub", "ali", "leg"})
    assert_visible(store, carol, Filters(), set())
    assert {h.image_id for h in store.bm25("public alice", 10, Filters(), alice)} == set()
    # tags and metadata filter everywhere, and their words are searchable
    assert_visible(store, OPERATOR, Filters(tags=["fixed"]), {"pub", "ali"})
    assert_visible(store, OPERATOR, Filters(meta={"owner": "zebra"}), {"pub", "ali"})
    assert {h.image_id for h in store.bm25("zebra", 10, Filters(), OPERATOR)} == {"pub", "ali"}
    rec = store.get("ali", OPERATOR)
    assert rec is not None and (rec.acl, rec.tags, rec.meta) == (["legal"], ["fixed"], {"owner": "zebra"})
    assert rec.ocr_text == "common alice words" and rec.indexed_at == NOW
    # vectors and regions are untouched; nothing else changed
    for i, vec in before.items():
        got = store.get_vectors(i, OPERATOR)
        assert got is not None and vec is not None
        np.testing.assert_allclose(got.image, vec.image, atol=1e-6)
        np.testing.assert_allclose(got.feature, vec.feature, atol=1e-6)
        np.testing.assert_allclose(got.text, vec.text, atol=1e-6)
    assert {(r.region_id, r.bbox, r.text) for r in store.regions_of(["pub", "ali"])} == regions_before
    assert store.live_ids(["pub", "ali", "gone"]) == {"pub", "ali"}
    assert store.count(OPERATOR, Filters()) == 4 and store.stats(OPERATOR).deleted == 1
    hr = store.get("hr", OPERATOR)
    assert hr is not None and hr.acl == ["alice", "hr"]

    # a given empty ACL makes a page public; fields not given keep their values
    assert store.update_metadata(["ali"], MetadataUpdate(acl=[])) == 1
    assert_visible(store, carol, Filters(), {"ali"})
    rec = store.get("ali", OPERATOR)
    assert rec is not None and (rec.acl, rec.tags, rec.meta) == ([], ["fixed"], {"owner": "zebra"})

    # a metadata update is part of the next version: rolling back restores the old ACL everywhere
    v2 = store.commit("index", {"updated_metadata": 3})
    assert v2.version == v1.version + 1
    store.rollback(v1.version)
    assert_visible(store, alice, Filters(), {"pub", "ali", "hr"})
    assert_visible(store, carol, Filters(), {"pub"})
    assert_visible(store, OPERATOR, Filters(tags=["fixed"]), set())
    assert store.get("gone", OPERATOR) is None
    store.rollback(v2.version)
    assert_visible(store, carol, Filters(), {"ali"})
    assert_visible(store, alice, Filters(), {"hr", "ali"})


def test_get_many_follows_every_change_for_each_principal(store: IndexStore) -> None:
    """The record fetch answers each principal for the index as it is now: read, change the ACL,
    delete, roll back, and read again after each step (the embedded store remembers its answers per
    table version and principal; none may outlive a change)."""
    load(store, ACL_CORPUS)
    v1 = store.commit("index", {"indexed": 4})
    alice, carol = Principal(name="alice"), Principal(name="carol")
    ids = ["pub", "ali", "leg", "hr", "nope"]

    def seen() -> dict[str, set[str]]:
        return {w: set(store.get_many(ids, p)) for w, p in (("alice", alice), ("carol", carol), ("op", OPERATOR))}

    first = {"alice": {"pub", "ali", "hr"}, "carol": {"pub"}, "op": {"pub", "ali", "leg", "hr"}}
    assert seen() == first
    assert seen() == first  # asked again: the same answers
    store.update_metadata(["ali"], MetadataUpdate(acl=["legal"]))
    store.update_metadata(["leg"], MetadataUpdate(acl=[]))
    assert seen() == {"alice": {"pub", "hr", "leg"}, "carol": {"pub", "leg"}, "op": {"pub", "ali", "leg", "hr"}}
    store.soft_delete(["pub"])
    assert seen() == {"alice": {"hr", "leg"}, "carol": {"leg"}, "op": {"ali", "leg", "hr"}}
    rec = store.get_many(["ali"], OPERATOR)["ali"]
    assert rec.acl == ["legal"]
    store.commit("index", {"updated_metadata": 2})
    store.rollback(v1.version)
    assert seen() == first
    assert store.get_many(["ali"], OPERATOR)["ali"].acl == ["alice"]


def test_purge_is_final_no_rollback_brings_a_purged_page_back(store: IndexStore) -> None:
    from imgrag.indexing.errors import ImgragError

    load(store, CORPUS)
    v1 = store.commit("index", {"indexed": len(CORPUS)})
    store.soft_delete(["c1"])
    store.commit("delete", {"deleted": 1})
    assert store.purge() == 1
    store.commit("purge", {"purged": 1})
    try:
        store.rollback(v1.version)
    except ImgragError as e:
        assert "purge" in str(e)
    assert store.get("c1", OPERATOR) is None
    assert "c1" not in store.live_ids(["c1"])


def test_versions_and_rollback_round_trip(store: IndexStore) -> None:
    load(store, [Spec("A", text="alpha original"), Spec("B", text="beta original")])
    v1 = store.commit("index", {"indexed": 2})
    assert v1.version == 1 and v1.spaces == SPACES
    store.write([make(Spec("C", text="gamma new")), make(Spec("B", text="beta changed"))])
    assert store.commit("index", {"indexed": 2, "replaced": 1}).version == 2
    assert store.soft_delete(["A"]) == 1
    assert store.commit("delete", {"deleted": 1}).version == 3
    vs = store.versions()
    assert [(v.version, v.op) for v in vs] == [(1, "index"), (2, "index"), (3, "delete")]
    assert vs[1].summary == {"indexed": 2, "replaced": 1}

    def state() -> dict[str, str]:
        return {r.image_id: r.ocr_text for r in store.list_images(OPERATOR, Filters())}

    assert state() == {"B": "beta changed", "C": "gamma new"}
    v4 = store.rollback(1)
    assert (v4.version, v4.op) == (4, "rollback to 1")
    assert state() == {"A": "alpha original", "B": "beta original"}
    assert {h.image_id for h in store.bm25("changed gamma", 10, Filters(), OPERATOR)} == set()
    assert {h.image_id for h in store.bm25("original", 10, Filters(), OPERATOR)} == {"A", "B"}
    assert ids_knn(store, OPERATOR, Filters()) == {"A", "B"}
    assert ids_regions(store, "tile", OPERATOR, Filters()) == {"A", "B"}
    assert store.live_ids(["A", "B", "C"]) == {"A", "B"}

    store.rollback(3)  # undo the rollback
    assert state() == {"B": "beta changed", "C": "gamma new"}
    assert store.get("A", OPERATOR) is None and store.stats(OPERATOR).deleted == 1
    store.rollback(2)  # before the delete
    assert state() == {"A": "alpha original", "B": "beta changed", "C": "gamma new"}
    assert store.stats(OPERATOR).deleted == 0
    assert [v.version for v in store.versions()] == [1, 2, 3, 4, 5, 6]
    assert store.stats(OPERATOR).version == 6

    # uncommitted writes are discarded by a rollback too
    store.write([make(Spec("D", text="delta"))])
    store.soft_delete(["B"])
    store.rollback(6)
    assert state() == {"A": "alpha original", "B": "beta changed", "C": "gamma new"}

    with pytest.raises(ImgragError, match="no version 99"):
        store.rollback(99)


def reopen(store: IndexStore) -> IndexStore:
    """A second handle on the same index, as another process (or the next command) opens it."""
    from imgrag.indexing.stores.lance import LanceStore

    if isinstance(store, LanceStore):
        return LanceStore(store.path, ann_min_rows=store.ann_min_rows)
    from imgrag.indexing.stores.elastic import ElasticStore

    return ElasticStore(store.settings)  # type: ignore[attr-defined]


def die(store: IndexStore) -> None:
    """The writer goes away without committing: the embedded store's handle releases its lock as a
    killed process's does (tests/e2e/test_crash.py kills real ones); an Elasticsearch client that is
    simply no longer used is what a killed one leaves (this one still has to drop the test indices)."""
    if store.backend == "lancedb":
        store.close()


def state(store: IndexStore) -> dict[str, str]:
    return {r.image_id: r.ocr_text for r in store.list_images(OPERATOR, Filters())}


def test_changes_of_a_writer_that_stopped_get_a_version_rollback_undoes(store: IndexStore) -> None:
    load(store, [Spec("A", text="alpha"), Spec("B", text="beta")])
    v1 = store.commit("index", {"indexed": 2})
    store.write([make(Spec("C", text="gamma"))])
    store.soft_delete(["A"])
    die(store)

    other = reopen(store)
    try:
        other.recover()  # what the next writer does first (the embedded store already did it at open)
        assert other.recover() is None  # once
        vs = other.versions()
        assert [(v.version, v.op) for v in vs] == [(1, "index"), (2, "recovered")]
        assert "reason" in vs[-1].summary
        assert state(other) == {"B": "beta", "C": "gamma"}  # nothing written is lost ...
        other.rollback(v1.version)  # ... and all of it can be undone
        assert state(other) == {"A": "alpha", "B": "beta"}
        # a later writer commits normally after the recovered version
        other.write([make(Spec("D", text="delta"))])
        assert other.commit("index", {"indexed": 1}).version == 4
    finally:
        other.close()


def test_an_interrupted_first_run_can_be_rolled_back_to_the_empty_index(store: IndexStore) -> None:
    load(store, [Spec("A", text="alpha"), Spec("B", text="beta")])
    die(store)
    other = reopen(store)
    try:
        other.recover()
        assert [(v.version, v.op) for v in other.versions()] == [(0, "empty"), (1, "recovered")]
        assert set(state(other)) == {"A", "B"}
        v = other.rollback(0)
        assert (v.version, v.op) == (2, "rollback to 0")
        assert state(other) == {} and other.count(OPERATOR, Filters()) == 0
        assert ids_knn(other, OPERATOR, Filters()) == set() and ids_regions(other, "tile", OPERATOR, Filters()) == set()
        other.rollback(1)
        assert set(state(other)) == {"A", "B"}
    finally:
        other.close()


def test_a_writer_block_that_raises_records_its_changes(store: IndexStore) -> None:
    load(store, [Spec("A", text="alpha")])
    store.commit("index", {"indexed": 1})
    with pytest.raises(RuntimeError, match="boom"), store.writer():
        store.write([make(Spec("B", text="beta"))])
        raise RuntimeError("boom")
    vs = store.versions()
    assert [(v.version, v.op) for v in vs] == [(1, "index"), (2, "interrupted")]
    assert set(state(store)) == {"A", "B"}
    with store.writer():  # a block that changes nothing records nothing
        assert store.live_ids(["A"]) == {"A"}
    assert len(store.versions()) == 2
    store.rollback(1)
    assert set(state(store)) == {"A"}


def test_uncommitted_changes_of_a_live_writer_are_not_taken_over(store: IndexStore) -> None:
    """A second handle that opens (a reader, or `imgrag versions`) while a writer is still at work
    must not record that writer's changes as "recovered"."""
    load(store, [Spec("A", text="alpha")])
    store.commit("index", {"indexed": 1})
    with store.writer():
        store.write([make(Spec("B", text="beta"))])
        reader = reopen(store)
        try:
            assert [v.op for v in reader.versions()] == ["index"]
            assert reader.live_ids(["B"]) == {"B"}
        finally:
            reader.close()
        store.commit("index", {"indexed": 1})
    assert [v.op for v in store.versions()] == ["index", "index"]


def test_a_reader_keeps_working_across_a_purge_by_another_handle(store: IndexStore) -> None:
    load(store, CORPUS)
    store.commit("index", {"indexed": len(CORPUS)})
    reader = reopen(store)
    try:
        before = visible_everywhere(reader, OPERATOR, Filters())
        assert before["list"] == {s.image_id for s in CORPUS}
        store.soft_delete(["c1"])
        store.commit("delete", {"deleted": 1})
        assert store.purge() == 1
        store.commit("purge", {"purged": 1})
        after = visible_everywhere(reader, OPERATOR, Filters())  # at once: no wait for a refresh
        for route, ids in before.items():
            assert "c1" not in after[route] and after[route] <= ids, route
        assert after["list"] == before["list"] - {"c1"}
    finally:
        reader.close()


def test_replace_image_space_from_features_and_rollback(store: IndexStore) -> None:
    load(store, [Spec("A", text="alpha words"), Spec("B", text="beta words", acl=["alice"]), Spec("C", text="gamma")])
    store.soft_delete(["C"])
    v1 = store.commit("index", {"indexed": 3})
    new = SPACES.model_copy(update={"image": "test-joint-2", "image_dim": 8})
    proj = np.random.default_rng(5).normal(size=(FEAT, 8)).astype(np.float32)
    seen: list[str] = []

    def new_vectors(feats: np.ndarray, records: list[ImageRecord]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        assert feats.shape == (len(records), FEAT)
        seen.extend(r.image_id for r in records)
        whole = feats @ proj
        whole /= np.linalg.norm(whole, axis=1, keepdims=True)
        # tiles of live pages from "pixels" (here: the negated whole vector), none for deleted ones
        return whole, [{} if r.deleted else {"t0": -whole[i]} for i, r in enumerate(records)]

    with pytest.raises(ImgragError, match="features"):
        store.replace_image_space(new.model_copy(update={"feature": "other-feat"}), new_vectors)
    assert store.spaces() == SPACES and seen == []

    done = store.replace_image_space(new, new_vectors)
    assert (done.images, done.tiles_from_pixels, done.tiles_placeholder) == (3, 2, 1)
    assert sorted(seen) == ["A", "B", "C"]
    assert store.spaces() == new and store.stats(OPERATOR).spaces == new
    v2 = store.commit("reembed", {"images": 3})
    assert v2.spaces == new
    vec = store.get_vectors("A", OPERATOR)
    assert vec is not None and vec.image.shape == (8,) and vec.feature.shape == (FEAT,) and vec.text.shape == (TXT,)
    expect = vec.feature @ proj
    np.testing.assert_allclose(vec.image, expect / np.linalg.norm(expect), atol=1e-5)
    # every route works in the new space, with ACL, deletes and text untouched
    q = vec.image
    assert [h.image_id for h in store.knn("image", q, 5, Filters(), OPERATOR)][0] == "A"
    assert {h.image_id for h in store.knn("image", q, 5, Filters(), Principal(name="carol"))} == {"A"}
    tiles = store.knn_regions("tile", -q, 5, Filters(), OPERATOR)
    assert tiles[0].region_id == "A:t0" and tiles[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.image_id for h in store.bm25("alpha beta gamma", 5, Filters(), OPERATOR)} == {"A", "B"}
    assert store.live_ids(["A", "B", "C"]) == {"A", "B"} and store.stats(OPERATOR).deleted == 1
    assert {r.region_id for r in store.regions_of(["A"])} == {"A:t0", "A:b0"}
    with pytest.raises(ImgragError):
        store.ensure_spaces(SPACES)

    store.rollback(v1.version)
    assert store.spaces() == SPACES
    back = store.get_vectors("A", OPERATOR)
    assert back is not None and back.image.shape == (IMG,)
    assert {h.image_id for h in store.knn("image", back.image, 5, Filters(), OPERATOR)} == {"A", "B"}
    store.rollback(v2.version)
    assert store.spaces() == new and store.live_ids(["A", "B", "C"]) == {"A", "B"}


def test_model_space_mismatch_is_refused(store: IndexStore) -> None:
    load(store, [Spec("A")])
    store.ensure_spaces(SPACES)  # the same models: fine, and idempotent
    other = SPACES.model_copy(update={"text": "another-text-model", "text_dim": 32})
    with pytest.raises(ImgragError) as err:
        store.ensure_spaces(other)
    assert "other embedding models" in err.value.message
    assert "another-text-model" in err.value.message and "test-text" in err.value.message
    assert store.spaces() == SPACES
    assert store.live_ids(["A"]) == {"A"}


def test_search_with_other_configured_models_names_both_spaces(store: IndexStore, tmp_path: Path) -> None:
    """An index built with other models than the configured ones: one clear error naming both
    spaces and the fix, on every backend, instead of a dimension error from the driver."""
    from imgrag.indexing.config import Settings
    from imgrag.indexing.runtime import Runtime
    from imgrag.indexing.search import Searcher, SearchRequest

    load(store, [Spec("A", text="alpha words"), Spec("B", text="beta words")])
    rt = Runtime(Settings(home=tmp_path / "home", text_embedder="e5", image_embedder="bridge"), store=store)
    searcher = Searcher(rt)
    with pytest.raises(ImgragError) as err:
        searcher.search(SearchRequest(query="alpha", routes=["text_vector"]), OPERATOR)
    text_id = rt.text_embedder.identity
    assert "test-text" in err.value.message and text_id in err.value.message and "text space" in err.value.message
    assert "IMGRAG_TEXT_EMBEDDER" in err.value.hint
    with pytest.raises(ImgragError) as err:
        searcher.search(SearchRequest(query="alpha", mode="vector"), OPERATOR)
    assert "test-joint" in err.value.message and rt.image_embedder.identity in err.value.message
    assert "imgrag reembed" in err.value.hint and "IMGRAG_IMAGE_EMBEDDER" in err.value.hint
    # routes that need no configured model still work: keywords, and similar images from stored vectors
    assert [h.image_id for h in searcher.search(SearchRequest(query="alpha", mode="keyword"), OPERATOR).hits] == ["A"]
    assert {h.image_id for h in searcher.search(SearchRequest(similar_to="A"), OPERATOR).hits} == {"B"}


def test_stats(store: IndexStore) -> None:
    load(store, CORPUS)
    st = store.stats(OPERATOR)
    assert st.backend == store.backend
    assert (st.images, st.documents, st.deleted, st.regions) == (7, 6, 0, 14)
    assert st.by_quality == {"scanned": 4, "born_digital": 1, "photo": 1, "handwritten": 1}
    assert st.by_format == {"png": 4, "jpg": 2, "tif": 1}
    assert st.pii_pages == 2 and st.pii_by_kind == {"cn_mobile": 2, "email": 1}
    # a page counts once in each year it mentions (c5: 2022 and 2023; c6's year-precision 2023 is 2023)
    assert st.by_year == {"2021": 1, "2022": 1, "2023": 4, "2024": 1, "2025": 1}
    assert st.version is None and st.spaces == SPACES
    store.commit("index", {"indexed": 7})
    assert store.stats(OPERATOR).version == 1


def test_pii_findings_round_trip_and_flag_their_regions(store: IndexStore) -> None:
    load(store, [Spec("p", pii=[("cn_id", "11010519491231002X")]), Spec("q")])
    rec = store.get("p", OPERATOR)
    assert rec is not None and rec.has_pii and rec.pii[0].kind == "cn_id" and rec.pii[0].bbox == (10, 5, 60, 15)
    assert not store.get("q", OPERATOR).has_pii  # type: ignore[union-attr]
    regions = {r.region_id: r for r in store.regions_of(["p", "q"])}
    assert regions["p:b0"].pii_kinds == ["cn_id"] and regions["p:t0"].pii_kinds == []
    assert regions["q:b0"].pii_kinds == []
    hits = store.knn_regions("text", rand_unit(TXT, 98), 10, Filters(has_pii=True), OPERATOR)
    assert {h.region_id for h in hits} == {"p:b0"} and hits[0].pii_kinds == ["cn_id"]
    # the finding's value is not added to the full text: only what the OCR text holds is searchable
    assert ids_bm25(store, OPERATOR, Filters(), "11010519491231002X") == set()
    assert ids_bm25(store, OPERATOR, Filters(), "cn_id") == set()


def test_an_index_from_before_pii_detection_is_upgraded(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index built without the PII fields gains them when opened (LanceDB) or before the next
    write (Elasticsearch); its old pages count as holding none."""
    from conftest import open_test_store

    if backend == "lancedb":
        from imgrag.indexing.stores.lance import LanceStore

        old = LanceStore(tmp_path / "index", ann_min_rows=10**9)
        load(old, [Spec("old")])
        old._images.drop_columns(["has_pii"])
        old._regions.drop_columns(["has_pii", "pii_kinds"])
        store: Any = LanceStore(tmp_path / "index", ann_min_rows=10**9)
        dispose = store.close
    else:
        from imgrag.indexing.stores.elastic import mapping, writes

        store, dispose = open_test_store(backend, tmp_path)
        row_document = writes.row_document

        def old_row(item: Indexed, version: int, **kw: Any) -> dict[str, Any]:
            doc = row_document(item, version, **kw)
            del doc["has_pii"], doc["pii_kinds"]
            for b in doc["blocks"]:
                del b["pii_kinds"]
            return doc

        monkeypatch.setattr(mapping, "ADDED_FIELDS", {})
        monkeypatch.setattr(mapping, "ADDED_BLOCK_FIELDS", {})
        monkeypatch.setattr(writes, "row_document", old_row)
        load(store, [Spec("old")])
        monkeypatch.undo()
    try:
        store.ensure_spaces(SPACES)
        store.write([make(Spec("new", pii=[("email", "a.b@example.com")]))])
        assert_visible(store, OPERATOR, Filters(has_pii=True), {"new"})
        assert_visible(store, OPERATOR, Filters(has_pii=False), {"old"})
        assert store.stats(OPERATOR).pii_by_kind == {"email": 1}
    finally:
        dispose()


def test_lance_an_index_from_before_the_stats_column_reads_its_pages_stats_from_their_records(tmp_path: Path) -> None:
    """Pages written before session 19 have no ``feature_stats`` column value: their records' are
    read instead; pages written since are read from the column, and a value there that does not
    validate counts as none (the exemplar term leaves that page alone) instead of failing a search."""
    from imgrag.indexing.stores.lance import LanceStore

    old = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    before = make(Spec("old", acl=["alice"]))
    before.record.feature_stats = {"exemplar_mean": 0.5, "exemplar_sd": 0.25}
    load(old, [])
    old.write([before])
    old._images.drop_columns(["feature_stats"])
    old.close()
    store = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    try:
        assert "feature_stats" in store._images.schema.names
        new = make(Spec("new"))
        new.record.feature_stats = {"exemplar_mean": 0.125, "exemplar_sd": 0.5, "colour_layout": [7] * 48}
        store.write([new])
        def stats(principal: Principal) -> dict[str, Any]:
            hits, got = store.knn_stats("feature", new.vectors.feature, 5, Filters(), principal)
            assert {h.image_id for h in hits} == set(got)
            return got

        assert stats(OPERATOR) == {"old": before.record.feature_stats, "new": new.record.feature_stats}
        # the older page's fallback read is ACL-bound as well
        assert stats(Principal(name="carol")) == {"new": new.record.feature_stats}
        assert stats(Principal(name="alice")) == {"old": before.record.feature_stats, "new": new.record.feature_stats}
        store._images.update(where="image_id = 'new'", values={"feature_stats": '{"exemplar_mean": "high"}'})
        assert stats(OPERATOR)["new"] == {}
        # the column gone under an open handle (a rollback to before it): read from the records again
        store._images.drop_columns(["feature_stats"])
        assert stats(OPERATOR) == {"old": before.record.feature_stats, "new": new.record.feature_stats}
        newer = make(Spec("newer"))
        store.write([newer])  # written without the column, as the table now is
        assert stats(OPERATOR)["newer"] == {}
    finally:
        store.close()


# -- the file's own metadata, personal data and links ---------------------------------------------
def _cases_store(store: IndexStore) -> None:
    load(store, [
        Spec("ct1", text="", fmt="dicom", quality="photo", caption="CT computed tomography of the chest",
             file_meta={"modality": "CT", "accession": "ACC1", "study_uid": "1.2.3"},
             fields=[("person_name", "ZHANG SAN", "PatientName"), ("patient_id", "P0042", "PatientID")]),
        Spec("rep1", text="Accession No ACC1 a 7 mm nodule in the right upper lobe", file_meta={"accession": "ACC1"}),
        Spec("rep2", text="healed fracture of the left sixth rib", path="/data/cases/s2.report.png"),
        Spec("dx2", text="", fmt="dicom", quality="photo", path="/data/cases/s2.dcm", acl=["radiology"],
             file_meta={"modality": "DX"}),
        Spec("photo9", text="", quality="photo", meta={"part_number": "BRK-1"}),
    ])


def _searcher(store: IndexStore, tmp_path: Path) -> Any:
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.search import Searcher

    return Searcher(SimpleNamespace(store=store, settings=Settings(home=tmp_path / "home")))  # type: ignore[arg-type]


def test_file_meta_filters_like_meta_and_personal_data_is_never_searchable(store: IndexStore) -> None:
    _cases_store(store)
    ct = Filters(meta={"modality": "CT"})
    assert {r.image_id for r in store.list_images(OPERATOR, ct)} == {"ct1"}
    assert ids_knn(store, OPERATOR, ct) == {"ct1"}
    assert ids_bm25(store, OPERATOR, Filters(), "ACC1") == {"ct1", "rep1"}  # file_meta values are words too
    # personal data from the file's fields: stored with the page's findings, never indexed
    for word in ("zhang", "P0042", "person_name", "PatientName"):
        assert ids_bm25(store, OPERATOR, Filters(), word) == set(), word
    assert store.list_images(OPERATOR, Filters(meta={"patient_id": "P0042"})) == []
    rec = store.get("ct1", OPERATOR)
    assert rec is not None and rec.has_pii
    assert [(f.kind, f.text, f.field) for f in rec.pii] == [("person_name", "ZHANG SAN", "PatientName"), ("patient_id", "P0042", "PatientID")]
    assert {r.image_id for r in store.list_images(OPERATOR, Filters(has_pii=True))} == {"ct1"}
    assert ids_knn(store, OPERATOR, Filters(has_pii=True)) == {"ct1"}  # (no OCR text: not a BM25 hit)
    assert store.stats(OPERATOR).pii_by_kind == {"person_name": 1, "patient_id": 1}
    # masked like every other finding for a principal without clearance
    masked = mask_record(rec).model_dump_json()
    assert "ZHANG" not in masked and "P0042" not in masked and "[person_name redacted]" in masked


def test_links_on_both_sides_follow_acl_and_roll_back(store: IndexStore, tmp_path: Path) -> None:
    from imgrag.indexing.links import relink
    from imgrag.indexing.search import SearchRequest

    _cases_store(store)
    v1 = store.commit("index", {})
    assert relink(store, ["ct1", "rep1", "rep2", "dx2", "photo9"], OPERATOR) == 4
    store.commit("index", {"linked": 4})
    recs = store.get_many(["ct1", "rep1", "rep2", "dx2", "photo9"], OPERATOR)
    assert [(ln.image_id, ln.kind, ln.why) for ln in recs["ct1"].links] == [("rep1", "document", "accession=ACC1")]
    assert [(ln.image_id, ln.kind) for ln in recs["rep1"].links] == [("ct1", "image")]
    assert [(ln.image_id, ln.why) for ln in recs["rep2"].links] == [("dx2", "stem")]
    assert recs["photo9"].links == []
    assert relink(store, ["ct1"], OPERATOR) == 0  # nothing changed: nothing rewritten

    s = _searcher(store, tmp_path)
    hits = s.search(SearchRequest(query="nodule right upper lobe", mode="keyword"), OPERATOR).hits
    assert [h.image_id for h in hits] == ["rep1", "ct1"]  # the report brings its CT along
    assert hits[1].ranks.get("links") == 1 and [ln.image_id for ln in hits[0].links] == ["ct1"]
    alone = s.search(SearchRequest(query="nodule right upper lobe", mode="keyword", follow_links=False), OPERATOR).hits
    assert [h.image_id for h in alone] == ["rep1"]
    # A linked page the caller may not read is neither ranked nor listed.
    bob = Principal(name="bob")
    hits = s.search(SearchRequest(query="fracture rib", mode="keyword"), bob).hits
    assert [h.image_id for h in hits] == ["rep2"] and hits[0].links == []
    rad = Principal(name="ann", groups=["radiology"])
    assert [h.image_id for h in s.search(SearchRequest(query="fracture rib", mode="keyword"), rad).hits] == ["rep2", "dx2"]
    # "images whose report mentions X"
    req = SearchRequest(query="computed tomography chest", mode="keyword", filters=Filters(linked_text="nodule lobe"))
    assert [h.image_id for h in s.search(req, OPERATOR).hits] == ["ct1"]
    req = SearchRequest(query="DX", mode="keyword", filters=Filters(linked_text="healed fracture"))
    assert s.search(req, bob).hits == [] and [h.image_id for h in s.search(req, rad).hits] == ["dx2"]
    # Links are part of the records: a rollback restores the unlinked state.
    store.rollback(v1.version)
    assert store.get("ct1", OPERATOR).links == []  # type: ignore[union-attr]


# -- LanceDB only ---------------------------------------------------------------------------------
def test_lance_pq_index_waits_until_it_can_train_then_keeps_recall(tmp_path: Path) -> None:
    """IMGRAG_LANCE_ANN_INDEX=ivf_pq: no index below 256 rows (LanceDB would build one that stays
    empty), then an index over every row whose re-ranked answers match the exact scan's."""
    from imgrag.indexing.stores.lance import LanceStore

    specs = [Spec(f"p{i:03d}", text=f"common page{i}", image=rand_unit(IMG, 5000 + i)) for i in range(300)]
    flat = LanceStore(tmp_path / "flat", ann_min_rows=10**9)
    pq = LanceStore(tmp_path / "pq", ann_min_rows=0, ann_index="ivf_pq")
    try:
        for st in (flat, pq):
            load(st, specs[:200])
            st.commit("index", {"indexed": 200})
        assert [ix.columns for ix in pq._images.list_indices() if ix.columns[0].endswith("_vec")] == []
        for st in (flat, pq):
            st.write([make(s) for s in specs[200:]])
            st.commit("index", {"indexed": 100})
        name = next(ix.name for ix in pq._images.list_indices() if ix.columns == ["img_vec"])
        stats = pq._images.index_stats(name)
        assert stats is not None and stats.index_type == "IVF_PQ" and stats.num_indexed_rows == 300
        overlap = 0
        for seed in range(10):
            q = rand_unit(IMG, 100 + seed)
            want = {h.image_id for h in flat.knn("image", q, 10, Filters(), OPERATOR)}
            overlap += len(want & {h.image_id for h in pq.knn("image", q, 10, Filters(), OPERATOR)})
        assert overlap >= 90, overlap  # PQ codes pick the candidates, the exact re-rank orders them
    finally:
        flat.close()
        pq.close()


def test_lance_page_knn_rescores_its_hits_exactly_and_pq_keeps_its_deep_rerank(tmp_path: Path) -> None:
    """IMGRAG_LANCE_ANN_REFINE (1): an IVF_HNSW_SQ search re-scores its k hits (at least 50) on the float32 vectors,
    so the scores fusion sees are exact cosines and the top 10 matches the exact scan's; an IVF_PQ
    index keeps re-ranking 10 x k whatever the setting (and whatever IMGRAG_LANCE_ANN_INDEX says now)."""
    from imgrag.indexing.stores.lance import LanceStore

    specs = [Spec(f"p{i:03d}", text=f"common page{i}", image=rand_unit(IMG, 7000 + i)) for i in range(300)]
    flat = LanceStore(tmp_path / "flat", ann_min_rows=10**9)
    sq = LanceStore(tmp_path / "sq", ann_min_rows=0)
    pq = LanceStore(tmp_path / "pq", ann_min_rows=0, ann_index="ivf_pq", ann_refine=1)
    coarse = None
    try:
        for st in (flat, sq, pq):
            load(st, specs)
            st.commit("index", {"indexed": 300})
        assert (sq.ann_ef, sq.ann_refine) == (400, 1)
        assert sq._refine(sq._images, "img_vec", 50) == 1
        assert sq._refine(sq._images, "img_vec", 10) == 5  # at least 50 candidates re-scored
        assert pq._refine(pq._images, "img_vec", 50) == 10
        reopened = LanceStore(tmp_path / "pq", ann_min_rows=0)  # the setting says ivf_hnsw_sq; the index is PQ
        assert reopened._refine(reopened._images, "img_vec", 50) == 10
        reopened.close()
        coarse = LanceStore(tmp_path / "sq", ann_min_rows=0, ann_refine=0)  # no re-rank: int8 distances
        vec = {s.image_id: s.image for s in specs}
        overlap, worst, worst_coarse = 0, 0.0, 0.0
        for seed in range(10):
            q = rand_unit(IMG, 300 + seed)
            want = [h.image_id for h in flat.knn("image", q, 10, Filters(), OPERATOR)]
            got = sq.knn("image", q, 50, Filters(), OPERATOR)
            overlap += len(set(want) & {h.image_id for h in got[:10]})
            worst = max(worst, *(abs(h.score - float(vec[h.image_id] @ q)) for h in got))
            worst_coarse = max(worst_coarse, *(abs(h.score - float(vec[h.image_id] @ q)) for h in coarse.knn("image", q, 50, Filters(), OPERATOR)))
        assert overlap >= 95, overlap
        assert worst < 1e-5, worst
        assert worst_coarse > 1e-4, worst_coarse  # what the re-rank corrects (the check above can fail)
    finally:
        for st in (flat, sq, pq, coarse):
            if st is not None:
                st.close()


def test_lance_ann_index_is_built_at_the_threshold_and_stays_exact_enough(tmp_path: Path) -> None:
    from imgrag.indexing.stores.lance import LanceStore

    specs = [Spec(f"p{i}", text=f"common page{i}", acl=["alice"] if i % 3 == 0 else []) for i in range(40)]
    flat, ann = LanceStore(tmp_path / "flat", ann_min_rows=10**9), LanceStore(tmp_path / "ann", ann_min_rows=30)

    def indexed_columns(store: LanceStore) -> set[str]:
        return {c for t in (store._images, store._regions) for ix in t.list_indices() for c in ix.columns}

    for st in (flat, ann):
        load(st, specs[:20])
        st.commit("index", {"indexed": 20})
    assert "img_vec" not in indexed_columns(ann)  # under the threshold: exact scans
    for st in (flat, ann):
        st.write([make(s) for s in specs[20:]])
        st.commit("index", {"indexed": 20})
    # page vectors and both region vector columns (IVF_FLAT: exact distances in the probed partitions),
    # and the scalar columns every search filters on (the answers below must not change with them)
    assert indexed_columns(ann) == {"img_vec", "feat_vec", "text_vec", "tile_vec", "fts", "image_id", "deleted", "quality", "kind",
                                    "date_tokens", "acl_read"}
    assert {ix.index_type for t in (ann._images, ann._regions) for ix in t.list_indices() if ix.columns == ["date_tokens"]} == {"LabelList"}
    assert {ix.index_type for t in (ann._images, ann._regions) for ix in t.list_indices() if ix.columns == ["acl_read"]} == {"LabelList"}
    assert {ix.index_type for ix in ann._regions.list_indices() if ix.columns == ["kind"]} == {"Bitmap"}
    assert {ix.index_type for ix in ann._images.list_indices() if ix.columns == ["image_id"]} == {"BTree"}
    region_ix = {tuple(ix.columns): ix.name for ix in ann._regions.list_indices() if ix.columns[0].endswith("_vec")}
    assert set(region_ix) == {("tile_vec",), ("text_vec",)}
    assert all(ann._regions.index_stats(n).index_type == "IVF_FLAT" for n in region_ix.values())  # type: ignore[union-attr]
    assert indexed_columns(flat) == {"fts"}
    # pages written after the index are found too, and filters / ACL stay inside the query
    late = make(Spec("late", text="common late", image=unit(IMG, (3, 1.0))))
    for st in (flat, ann):
        st.write([late])
    alice = Principal(name="alice")
    for field, dim in (("image", IMG), ("feature", FEAT), ("text", TXT)):
        for seed in range(5):
            q = rand_unit(dim, 1000 + seed)
            for who in (OPERATOR, alice, Principal(name="carol")):
                want = [h.image_id for h in flat.knn(field, q, 10, Filters(), who)]  # type: ignore[arg-type]
                got = [h.image_id for h in ann.knn(field, q, 10, Filters(), who)]  # type: ignore[arg-type]
                assert got == want, (field, seed, who)
    assert ann.knn("image", unit(IMG, (3, 1.0)), 1, Filters(), OPERATOR)[0].image_id == "late"
    for kind, dim in (("tile", IMG), ("text", TXT)):
        for seed in range(5):
            q = rand_unit(dim, 7 + seed)
            for who in (OPERATOR, alice, Principal(name="carol")):
                want = [h.region_id for h in flat.knn_regions(kind, q, 10, Filters(), who)]  # type: ignore[arg-type]
                assert [h.region_id for h in ann.knn_regions(kind, q, 10, Filters(), who)] == want, (kind, seed, who)  # type: ignore[arg-type]
    # rollback to a version from before the index works, and the next commit rebuilds it
    ann.rollback(1)
    assert ann.count(OPERATOR, Filters()) == 20
    ann.write([make(s) for s in specs[20:]])
    v = ann.commit("index", {"indexed": 20})
    assert "img_vec" in indexed_columns(ann)
    # over a tenth of the table unindexed: the commit folds it into the index, keeping old versions
    ann.write([make(Spec(f"q{i}", text="common more", image=unit(IMG, (5, 1.0), (i, 0.1)))) for i in range(10)])
    ann.commit("index", {"indexed": 10})
    stats = ann._images.index_stats(next(ix.name for ix in ann._images.list_indices() if ix.columns == ["img_vec"]))
    assert stats is not None and stats.num_unindexed_rows == 0
    assert ann.knn("image", unit(IMG, (5, 1.0), (3, 0.1)), 1, Filters(), OPERATOR)[0].image_id == "q3"
    ann.rollback(v.version)
    assert ann.count(OPERATOR, Filters()) == 40
    flat.close()
    ann.close()


def test_lance_scalar_indices_come_before_the_ann_threshold_and_change_no_answer(tmp_path: Path, monkeypatch: Any) -> None:
    """From _SCALAR_MIN_ROWS rows (below the ANN threshold) the filter columns get scalar indices;
    filters, ACL, the record fetch and soft deletes answer exactly as without them, and as a store
    written before ``acl_read`` answers them with the old ACL clause."""
    from imgrag.indexing.stores import lance
    from imgrag.indexing.stores.lance import LanceStore, where_clause

    monkeypatch.setattr(lance, "_SCALAR_MIN_ROWS", 30)
    specs = [Spec(f"p{i}", text=f"common page{i}", acl=["alice"] if i % 3 == 0 else [],
                  dates=[(date(2020 + i % 4, 1 + i % 12, 1 + i % 28), "day")] if i % 5 else []) for i in range(40)]
    plain, scalar = LanceStore(tmp_path / "plain", ann_min_rows=10**9), LanceStore(tmp_path / "scalar", ann_min_rows=10**9)
    monkeypatch.setattr(plain, "_ensure_ann", lambda name, table: None)  # the store as before: no scalar indices
    # a store written before acl_read (session 12): tables without the column, the old ACL clause
    old = LanceStore(tmp_path / "old", ann_min_rows=10**9)
    old.ensure_spaces(SPACES)
    for t in (old._images, old._regions):
        t.drop_columns(["acl_read"])
    old.close()
    old = LanceStore(tmp_path / "old", ann_min_rows=10**9)
    for st in (plain, scalar, old):
        load(st, specs)
        st.commit("index", {"indexed": 40})
        st.soft_delete(["p5"])
    assert not old._acl_read and scalar._acl_read
    for st in (plain, scalar, old):  # a metadata change rewrites acl_read too (old: writes without it)
        st.update_metadata(["p1"], MetadataUpdate(acl=["alice"]))
    assert "p1" not in scalar.get_many(["p1"], Principal(name="carol")) and "p1" in scalar.get_many(["p1"], Principal(name="alice"))
    columns = {c for t in (scalar._images, scalar._regions) for ix in t.list_indices() for c in ix.columns}
    assert columns == {"fts", "image_id", "deleted", "quality", "kind", "date_tokens", "acl_read"}
    assert {c for t in (plain._images, plain._regions) for ix in t.list_indices() for c in ix.columns} == {"fts"}
    assert {c for t in (old._images, old._regions) for ix in t.list_indices() for c in ix.columns} == columns - {"acl_read"}
    alice = Principal(name="alice")
    assert "acl_read" in where_clause(Filters(), alice, True) and "acl_read" not in where_clause(Filters(), alice)
    some = [f"p{i}" for i in range(0, 40, 3)]
    ids = [f"p{i}" for i in range(0, 40, 2)]
    years = [Filters(), Filters(date_from=date(2021, 1, 1), date_to=date(2021, 12, 31)),
             Filters(date_from=date(2022, 3, 1), date_to=date(2023, 2, 15))]
    assert 0 < plain.count(OPERATOR, years[1]) < plain.count(OPERATOR, Filters())  # the date filter filters
    assert plain.count(Principal(name="carol"), Filters()) < plain.count(alice, Filters())  # the ACL filters
    for st in (scalar, old):
        for who, flt in ((w, f) for w in (OPERATOR, alice, Principal(name="carol"), Principal()) for f in years):
            assert sorted(st.get_many(ids, who)) == sorted(plain.get_many(ids, who))
            assert st.count(who, flt) == plain.count(who, flt)
            for kind, dim in (("tile", IMG), ("text", TXT)):
                q = rand_unit(dim, 11)
                want = [h.region_id for h in plain.knn_regions(kind, q, 10, flt, who)]  # type: ignore[arg-type]
                assert [h.region_id for h in st.knn_regions(kind, q, 10, flt, who)] == want  # type: ignore[arg-type]
                want = [h.region_id for h in plain.knn_regions(kind, q, 10, flt, who, image_ids=some)]  # type: ignore[arg-type]
                assert [h.region_id for h in st.knn_regions(kind, q, 10, flt, who, image_ids=some)] == want  # type: ignore[arg-type]
            q = rand_unit(IMG, 12)
            assert [h.image_id for h in st.knn("image", q, 10, flt, who)] == [h.image_id for h in plain.knn("image", q, 10, flt, who)]
            assert [h.image_id for h in st.bm25("common", 50, flt, who)] == [h.image_id for h in plain.bm25("common", 50, flt, who)]
    assert "p5" not in scalar.get_many(["p5"], OPERATOR)
    plain.close()
    scalar.close()
    old.close()


def test_lance_commit_merges_a_small_tables_files_and_changes_no_answer(tmp_path: Path, monkeypatch: Any) -> None:
    """Every write adds a data file; a commit merges a small table's files into one (queries pay
    per file). Same answers before and after, on every read path; rolling back still works; a table
    over _COMPACT_MAX_ROWS keeps its files."""
    from imgrag.indexing.stores import lance
    from imgrag.indexing.stores.lance import LanceStore

    def files(st: LanceStore) -> tuple[int, int]:
        return st._images.stats()["fragment_stats"]["num_fragments"], st._regions.stats()["fragment_stats"]["num_fragments"]

    specs = [Spec(f"p{i}", text=f"common page{i}", acl=["alice"] if i % 3 == 0 else []) for i in range(24)]
    merged, kept = LanceStore(tmp_path / "merged", ann_min_rows=10**9), LanceStore(tmp_path / "kept", ann_min_rows=10**9)
    monkeypatch.setattr(kept, "_compact", lambda name, table: None)  # the store as before: one file per write
    for st in (merged, kept):
        load(st, [])
        for i in range(0, 24, 2):  # 12 writes: 12 files per table
            st.write([make(s) for s in specs[i : i + 2]])
        assert files(st) == (12, 12)
        v1 = st.commit("index", {"indexed": 24}).version
        assert files(st) == ((1, 1) if st is merged else (12, 12))
        st.soft_delete(["p4"])
        st.commit("delete", {"deleted": 1})
    ids = [f"p{i}" for i in range(24)]
    for who in (OPERATOR, Principal(name="alice"), Principal(name="carol")):
        assert visible_everywhere(merged, who, Filters()) == visible_everywhere(kept, who, Filters())
        got = merged.get_many(ids, who)
        assert got.keys() == kept.get_many(ids, who).keys() and "p4" not in got
        for kind, dim in (("tile", IMG), ("text", TXT)):
            q = rand_unit(dim, 11)
            want = [(h.region_id, h.score) for h in kept.knn_regions(kind, q, 20, Filters(), who)]  # type: ignore[arg-type]
            assert [(h.region_id, h.score) for h in merged.knn_regions(kind, q, 20, Filters(), who)] == want  # type: ignore[arg-type]
        q = rand_unit(IMG, 12)
        assert [(h.image_id, h.score) for h in merged.knn("image", q, 20, Filters(), who)] == [
            (h.image_id, h.score) for h in kept.knn("image", q, 20, Filters(), who)
        ]
        assert [(h.image_id, h.score) for h in merged.bm25("common", 50, Filters(), who)] == [
            (h.image_id, h.score) for h in kept.bm25("common", 50, Filters(), who)
        ]
    merged.rollback(v1)  # the files of the version before the merge are still there
    assert "p4" in merged.get_many(ids, OPERATOR)
    # over the row limit: the files stay as they are
    monkeypatch.setattr(lance, "_COMPACT_MAX_ROWS", 10)
    big = LanceStore(tmp_path / "big", ann_min_rows=10**9)
    load(big, [])
    for i in range(0, 24, 2):
        big.write([make(s) for s in specs[i : i + 2]])
    big.commit("index", {"indexed": 24})
    assert files(big) == (12, 12)
    for st in (merged, kept, big):
        st.close()


def test_lance_commit_compacts_a_big_table_past_the_limit_with_indices_remapped(tmp_path: Path, monkeypatch: Any) -> None:
    """A table over _COMPACT_MAX_ROWS is compacted by a commit once it has more than
    ``compact_fragments`` data files: 1 file after, every index (ANN, scalar, FTS) still covering
    every row (remapped, not rebuilt), the same answers, the older version restorable. A compaction
    that fails leaves the table as it was and the commit goes through."""
    from imgrag.indexing.stores import lance
    from imgrag.indexing.stores.lance import IMAGES, REGIONS, LanceStore

    monkeypatch.setattr(lance, "_COMPACT_MAX_ROWS", 10)
    specs = [Spec(f"p{i}", text=f"common page{i}", acl=["alice"] if i % 3 == 0 else []) for i in range(24)]
    st = LanceStore(tmp_path / "big", ann_min_rows=0, compact_fragments=0)  # indices from the first commit

    def files() -> tuple[int, int]:
        return st._images.stats()["fragment_stats"]["num_fragments"], st._regions.stats()["fragment_stats"]["num_fragments"]

    def answers() -> list[Any]:
        out: list[Any] = []
        for who in (OPERATOR, Principal(name="alice"), Principal(name="carol")):
            out.append(sorted(visible_everywhere(st, who, Filters())))
            for kind, dim in (("tile", IMG), ("text", TXT)):
                out.append([(h.region_id, round(h.score, 6)) for h in st.knn_regions(kind, rand_unit(dim, 11), 20, Filters(), who)])  # type: ignore[arg-type]
            out.append([(h.image_id, round(h.score, 6)) for h in st.knn("image", rand_unit(IMG, 12), 20, Filters(), who)])
            out.append([(h.image_id, round(h.score, 6)) for h in st.bm25("common", 50, Filters(), who)])
        return out

    load(st, [])
    for i in range(0, 24, 2):  # 12 writes: 12 files per table
        st.write([make(s) for s in specs[i : i + 2]])
    v1 = st.commit("index", {"indexed": 24}).version
    assert files() == (12, 12)  # compaction off: the files stay
    before = answers()
    st.compact_fragments = 12
    st.commit("index", {"indexed": 0})
    assert files() == (12, 12)  # not past the limit
    # a compaction that fails commits nothing: the table stays as it was, searchable
    st.compact_fragments = 10
    monkeypatch.setattr(type(st._images), "to_lance", lambda self, **kw: (_ for _ in ()).throw(OSError("disk full")))
    st.commit("index", {"indexed": 0})
    assert files() == (12, 12) and answers() == before
    monkeypatch.undo()
    monkeypatch.setattr(lance, "_COMPACT_MAX_ROWS", 10)
    st.compact_fragments = 10
    st.commit("index", {"indexed": 0})
    assert files() == (1, 1)
    for name, table in ((IMAGES, st._images), (REGIONS, st._regions)):
        indices = table.list_indices()
        assert len(indices) >= 4, name
        for ix in indices:  # remapped onto the new file: no row left to a flat scan
            assert table.index_stats(ix.name).num_unindexed_rows == 0, (name, ix.name)
    assert answers() == before
    st.soft_delete(["p4"])
    st.commit("delete", {"deleted": 1})
    assert answers() != before
    st.compact_fragments = 0  # else the rollback's own commit compacts the restored files again
    st.rollback(v1)  # the files of the version before the compaction are still there
    assert files() == (12, 12) and answers() == before
    st.close()


# -- Elasticsearch only --------------------------------------------------------------------------
def _es_store(tmp_path: Path, **overrides: Any) -> Any:
    from conftest import es_settings

    from imgrag.indexing.stores.elastic import ElasticStore

    return ElasticStore(es_settings(tmp_path, **overrides))


@pytest.fixture
def es_store(tmp_path: Path) -> Iterator[Any]:
    s = _es_store(tmp_path)
    try:
        yield s
    finally:
        s.drop()
        s.close()


def test_es_new_generation_and_rollback_across_models(es_store: Any) -> None:
    load(es_store, [Spec("A", text="alpha")])
    es_store.commit("index", {"indexed": 1})
    other = SPACES.model_copy(update={"image": "clip-b32", "image_dim": 8})
    v2 = es_store.start_generation(other)
    assert v2.version == 2 and v2.spaces == other
    assert es_store.spaces() == other
    assert es_store.count(OPERATOR, Filters()) == 0  # a new generation starts empty: re-index into it
    with pytest.raises(ImgragError, match="other embedding models"):
        es_store.ensure_spaces(SPACES)
    es_store.write([make(Spec("B", text="beta", image=unit(8, (0, 1)), tiles=[("t0", (0, 0, 1, 1), unit(8, (1, 1)))]))])
    es_store.commit("index", {"indexed": 1})
    assert [h.image_id for h in es_store.knn("image", unit(8, (0, 1)), 5, Filters(), OPERATOR)] == ["B"]

    es_store.rollback(1)  # back to the first models: the alias switches generation
    assert es_store.spaces() == SPACES
    assert {r.image_id for r in es_store.list_images(OPERATOR, Filters())} == {"A"}
    es_store.ensure_spaces(SPACES)
    with pytest.raises(ImgragError):
        es_store.knn("image", unit(8, (0, 1)), 5, Filters(), OPERATOR)  # the 8-d space is not live
    es_store.rollback(3)
    assert es_store.spaces() == other
    assert {r.image_id for r in es_store.list_images(OPERATOR, Filters())} == {"B"}


def _segments(store: Any) -> int:
    index = store._live()[0]
    return int(store.es.indices.stats(index=index, metric="segments")["indices"][index]["primaries"]["segments"]["count"])


def _answers(store: Any) -> tuple[list[tuple[str, float]], ...]:
    """Hits and scores of each route (sorted: equal scores come in the segments' order)."""
    q = rand_unit(IMG, 99)
    return (
        sorted((h.image_id, round(h.score, 4)) for h in store.knn("image", q, 20, Filters(), OPERATOR)),
        sorted((h.image_id, round(h.score, 4)) for h in store.bm25("common", 20, Filters(), OPERATOR)),
        sorted((h.region_id, round(h.score, 4)) for h in store.knn_regions("tile", q, 20, Filters(), OPERATOR)),
    )


def test_es_a_large_write_is_force_merged_and_answers_the_same(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A write operation of at least IMGRAG_ES_MERGE_MIN_PAGES pages leaves its index in at most
    IMGRAG_ES_MERGE_SEGMENTS segments when commit returns (a refresh per write is a segment each);
    smaller ones, a stopped run's version, and the setting at 0 leave the segments alone."""
    st = _es_store(tmp_path, es_merge_segments=1, es_merge_min_pages=6)
    try:
        load(st, [Spec(f"p{i}") for i in range(3)])
        load(st, [Spec(f"q{i}") for i in range(2)])
        st.commit("index", {"indexed": 5})  # 5 pages: below the bar
        assert _segments(st) >= 2
        load(st, [Spec(f"r{i}") for i in range(3)])
        load(st, [Spec(f"s{i}") for i in range(3)])
        before = _answers(st)
        n = _segments(st)
        assert n >= 3
        with caplog.at_level(logging.INFO):
            v = st.commit("index", {"indexed": 6})
        assert v.version == 2
        assert _segments(st) == 1
        assert _answers(st) == before  # the same pages, scores and regions
        assert any("merged" in r.getMessage() for r in caplog.records)
        # the count starts again after each commit: 2 more pages do not merge
        load(st, [Spec(f"t{i}") for i in range(2)])
        st.commit("index", {"indexed": 2})
        assert _segments(st) == 2
    finally:
        st.drop()
        st.close()
    off = _es_store(tmp_path, es_merge_segments=0, es_merge_min_pages=1)
    try:
        load(off, [Spec("a")])
        load(off, [Spec("b")])
        off.commit("index", {"indexed": 2})
        assert _segments(off) == 2
    finally:
        off.drop()
        off.close()


def test_es_a_refused_merge_is_logged_and_the_write_stands(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from elasticsearch import ApiError

    st = _es_store(tmp_path, es_merge_segments=1, es_merge_min_pages=1)
    try:
        load(st, [Spec("a")])
        load(st, [Spec("b")])

        def refuse(**kw: Any) -> Any:
            raise ApiError("security_exception", meta=type("M", (), {"status": 403})(), body={  # type: ignore[arg-type]
                "error": {"type": "security_exception", "reason": "action [indices:admin/forcemerge] is unauthorized"}})

        st.es.indices.forcemerge = refuse
        with caplog.at_level(logging.WARNING):
            v = st.commit("index", {"indexed": 2})
        assert v.version == 1 and [x.version for x in st.versions()] == [1]
        assert st.live_ids(["a", "b"]) == {"a", "b"}
        assert any("could not force-merge" in r.getMessage() and "unauthorized" in r.getMessage() for r in caplog.records)
    finally:
        st.drop()
        st.close()


def test_es_a_slow_merge_is_left_to_the_server_after_the_wait(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A merge that outlasts IMGRAG_ES_MERGE_WAIT_S does not hold the write: commit returns, logged."""
    st = _es_store(tmp_path, es_merge_segments=1, es_merge_min_pages=1, es_merge_wait_s=0.2)
    try:
        load(st, [Spec("a")])
        load(st, [Spec("b")])
        polls: list[str] = []

        def never_done(task: str) -> dict[str, Any]:
            polls.append(task)
            return {"completed": False}

        st._task = never_done
        with caplog.at_level(logging.INFO):
            v = st.commit("index", {"indexed": 2})
        assert v.version == 1 and polls
        assert st.live_ids(["a", "b"]) == {"a", "b"}
        assert any("still merging" in r.getMessage() for r in caplog.records)
    finally:
        st.drop()
        st.close()


def test_es_bulk_failures_are_reported(es_store: Any) -> None:
    from imgrag.indexing.stores.elastic import BulkWriteError

    load(es_store, [Spec("ok")])
    bad = make(Spec("bad"))
    # sabotage one document so that Elasticsearch rejects it: an unknown field under "strict"
    original = es_store._bulk

    def tamper(actions: list[dict[str, Any]], what: str) -> dict[str, str]:
        for a in actions:
            if a.get("_op_type") == "index" and a["_source"]["image_id"] == "bad":
                a["_source"]["unexpected_field"] = 1
        return original(actions, what)

    es_store._bulk = tamper
    with pytest.raises(BulkWriteError) as err:
        es_store.write([make(Spec("good")), bad])
    assert set(err.value.failures) == {"bad"}
    assert "1 of 2" in err.value.message
    assert es_store.live_ids(["good", "bad"]) == {"good"}


def test_es_refuses_a_foreign_index_and_bad_settings(tmp_path: Path, es_url: str) -> None:
    from elasticsearch import Elasticsearch

    from imgrag.indexing.stores.elastic import open_elastic

    prefix = f"imgrag-test-foreign-{datetime.now().strftime('%H%M%S%f')}"
    client = Elasticsearch(es_url)
    client.indices.create(index=prefix, settings={"index": {"number_of_replicas": 0}})
    try:
        from conftest import es_settings

        with pytest.raises(ImgragError, match="not an imgrag alias"):
            open_elastic(es_settings(tmp_path, es_index_prefix=prefix))
    finally:
        client.indices.delete(index=prefix)
        client.close()
    from conftest import es_settings

    with pytest.raises(ImgragError, match="IMGRAG_ES_INDEX_PREFIX"):
        open_elastic(es_settings(tmp_path, es_index_prefix="Bad Prefix"))
    s = open_elastic(es_settings(tmp_path, es_analyzer="no_such_analyzer"))
    try:
        with pytest.raises(ImgragError) as err:
            s.ensure_spaces(SPACES)
        assert "IMGRAG_ES_ANALYZER" in str(err.value) and "no_such_analyzer" in str(err.value)
    finally:
        s.drop()
        s.close()


def test_es_unreachable_is_one_clear_error(tmp_path: Path) -> None:
    from imgrag.indexing.config import Settings
    from imgrag.indexing.stores.elastic import open_elastic

    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(BackendUnavailableError) as err:
        open_elastic(Settings(home=tmp_path, es_url=url, es_max_retries=0, es_request_timeout=5))
    assert url in err.value.message and "IMGRAG_ES_URL" in err.value.hint


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Fake(BaseHTTPRequestHandler):
    respond: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], Any]]

    def _answer(self) -> None:
        status, headers, body = type(self).respond(self)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], Any]]], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], Any]]) -> str:
        handler = type("Handler", (_Fake,), {"respond": staticmethod(respond)})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


ES_HEADER = {"X-Elastic-Product": "Elasticsearch"}


def _err(kind: str, reason: str) -> dict[str, Any]:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}}


@pytest.mark.parametrize(
    ("case", "status", "headers", "body", "expect"),
    [
        ("401", 401, {}, _err("security_exception", "missing authentication credentials"), "IMGRAG_ES_API_KEY"),
        ("403", 403, ES_HEADER, _err("security_exception", "action [indices:admin/aliases/get] is unauthorized"), "privilege"),
        ("elasticsearch 8", 200, ES_HEADER, {"version": {"number": "8.17.0"}, "tagline": "You Know, for Search"}, "needs 9.x"),
        ("opensearch", 200, {}, {"version": {"distribution": "opensearch", "number": "2.11.0"}}, "not Elasticsearch"),
        ("compat header", 400, ES_HEADER, _err("media_type_header_exception", "Accept version must be either version 8 or 7, but found 9. Accept=application/vnd.elasticsearch+json; compatible-with=9"), "not version 9"),
    ],
)
def test_es_server_problems_are_one_clear_error(
    tmp_path: Path, fake_server: Any, case: str, status: int, headers: dict[str, str], body: Any, expect: str
) -> None:
    from imgrag.indexing.config import Settings
    from imgrag.indexing.stores.elastic import open_elastic

    url = fake_server(lambda req: (status, headers, body))
    with pytest.raises(ImgragError) as err:
        # the fake answers from a thread of this process: a 5 s request timeout could run out on a
        # loaded box, and a timeout is a different error than the one the case expects
        open_elastic(Settings(home=tmp_path, es_url=url, es_max_retries=0, es_request_timeout=60))
    assert isinstance(err.value, BackendUnavailableError), err.value
    assert expect in str(err.value), str(err.value)
    assert url in str(err.value), case


def test_fusion_contributions_add_up_to_the_score(store: IndexStore, tmp_path: Path) -> None:
    """Each hit says what each route (and the region re-rank) added: the viewer's 'why it ranked'."""
    from imgrag.indexing.config import Settings
    from imgrag.indexing.runtime import Runtime
    from imgrag.indexing.search import Searcher, SearchRequest

    load(store, [Spec("A", text="alpha words"), Spec("B", text="beta words"), Spec("C", text="alpha beta")])
    searcher = Searcher(Runtime(Settings(home=tmp_path / "home"), store=store))
    for req in (SearchRequest(query="alpha", mode="keyword"), SearchRequest(similar_to="A")):
        hits = searcher.search(req, OPERATOR).hits
        assert hits
        for h in hits:
            assert set(h.contributions) - {"rerank"} == set(h.ranks), (h.ranks, h.contributions)
            assert sum(h.contributions.values()) == pytest.approx(h.score, abs=1e-5)
    top = searcher.search(SearchRequest(query="alpha", mode="keyword"), OPERATOR).hits[0]
    rrf_k = searcher.rt.settings.rrf_k
    assert top.contributions["bm25"] == pytest.approx(searcher.weights()["bm25"] / (rrf_k + 1), abs=1e-6)


def test_a_pictures_label_caption_is_weak_evidence_on_every_backend(store: IndexStore, tmp_path: Path) -> None:
    """Who wrote a caption is stored with the page on both backends, and a picture that answers the
    query only in the image model's labels gets IMGRAG_WEIGHT_LABEL_TEXT of its BM25 vote; the file's
    own caption and the picture's own words keep full votes (session 13: BM25 on label captions
    ranked a "hair dryer" drawing first for "apple", at 6x the image route's vote)."""
    from imgrag.indexing.config import Settings
    from imgrag.indexing.runtime import Runtime
    from imgrag.indexing.search import Searcher, SearchRequest

    labels = "hair dryer blower | 手摇鼓风机"
    load(store, [
        Spec("P", text="", quality="photo", caption=labels, caption_source="model"),  # the model's guess only
        Spec("F", text="", quality="photo", caption="hair dryer", caption_source="file"),  # the file says so
        Spec("O", text="dryer sticker", quality="photo", caption=labels, caption_source="model"),  # printed on it
        Spec("D", text="the dryer manual", caption=labels, caption_source="model"),  # a document: captions are no words there
    ])
    assert store.get_many(["P", "F"], OPERATOR)["P"].caption_source == "model"
    assert store.get_many(["P", "F"], OPERATOR)["F"].caption_source == "file"
    rrf_k = Settings().rrf_k
    for weak in (0.05, 1.0):
        searcher = Searcher(Runtime(Settings(home=tmp_path / "home", weight_label_text=weak), store=store))
        hits = {h.image_id: h for h in searcher.search(SearchRequest(query="dryer", mode="keyword", k=10), OPERATOR).hits}
        assert set(hits) == {"P", "F", "O", "D"}
        full = searcher.weights()["bm25"]
        for i, h in hits.items():
            want = full * (weak if i == "P" else 1.0) / (rrf_k + h.ranks["bm25"])
            assert h.contributions["bm25"] == pytest.approx(want, abs=1e-6), (weak, i, h.contributions)
        if weak < 1:
            assert list(hits)[-1] == "P"
    # a query naming a kind of picture is answered by what the page is: every vote counts
    searcher = Searcher(Runtime(Settings(home=tmp_path / "home", weight_label_text=0.05), store=store))
    hits = {h.image_id: h for h in searcher.search(SearchRequest(query="a photo of a dryer", mode="keyword", k=10), OPERATOR).hits}
    assert hits["P"].contributions["bm25"] == pytest.approx(searcher.weights()["bm25"] / (rrf_k + hits["P"].ranks["bm25"]), abs=1e-6)


# -- what the search caches rely on ----------------------------------------------------------------
def test_data_version_changes_with_every_change(store: IndexStore) -> None:
    """The search caches results under ``data_version``: every change that reads can see must
    change it, and reads alone must not. ``None`` (Elasticsearch) means nothing is cached."""
    first = store.data_version()
    load(store, [Spec("A", text="alpha words"), Spec("B", text="beta words")])
    v1 = store.data_version()
    if first is None:
        assert v1 is None
        return
    assert v1 != first
    store.commit("index", {"indexed": 2})
    v2 = store.data_version()
    visible_everywhere(store, OPERATOR, Filters())
    assert store.data_version() == v2, "reads changed the data version"
    seen = {first, v1, v2}
    steps: list[Callable[[], object]] = [
        lambda: store.update_metadata(["A"], MetadataUpdate(acl=["g1"])),
        lambda: store.soft_delete(["B"]),
        lambda: store.rollback(1),
        lambda: store.soft_delete(["B"]),
        lambda: store.purge(),
        lambda: store.write([make(Spec("C", text="gamma"))]),
    ]
    for n, step in enumerate(steps):
        step()
        v = store.data_version()
        assert v not in seen, f"step {n}: data version {v} seen before"
        seen.add(v)


class _QueryVectors:
    """Fixed query vectors for the test spaces (the contract's records carry hand-made vectors)."""

    def __init__(self, identity: str, dim: int, seed: int) -> None:
        self.identity, self.dim, self.seed = identity, dim, seed
        self.calls = 0

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([rand_unit(self.dim, self.seed + sum(map(ord, t))) for t in texts])


def _runtime(store: IndexStore, tmp_path: Path, **settings: Any) -> Any:
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings

    return SimpleNamespace(
        settings=Settings(home=tmp_path / "home", image_route_quality=[], **settings),
        store=store,
        image_embedder=_QueryVectors("test-joint", IMG, 1),
        text_embedder=_QueryVectors("test-text", TXT, 2),
    )


def test_concurrent_routes_rank_as_sequential_ones(store: IndexStore, tmp_path: Path) -> None:
    """Routes run on a thread pool; the fused hits, scores, evidence and ranks are those of the
    routes run one after the other."""
    from imgrag.indexing.search import Searcher, SearchRequest

    load(store, CORPUS)
    user = Principal(name="u1", groups=["g1"])
    reqs = [
        SearchRequest(query="common words", k=5),
        SearchRequest(query="alpha 合同", k=3, offset=1),
        SearchRequest(query="common", mode="vector", k=5),
        SearchRequest(query="words", filters=Filters(quality=["scanned"]), k=5),
        SearchRequest(similar_to="c1", k=4),
    ]
    one = Searcher(_runtime(store, tmp_path, search_threads=1, search_cache=0))  # type: ignore[arg-type]
    many = Searcher(_runtime(store, tmp_path, search_threads=4, search_cache=0))  # type: ignore[arg-type]
    for req in reqs:
        for who in (OPERATOR, user):
            a, b = one.search(req, who), many.search(req, who)
            assert a.model_dump(exclude={"timings_ms"}) == b.model_dump(exclude={"timings_ms"}), req
    res = many.search(SearchRequest(query="common words", k=5), OPERATOR)
    assert {"embed", "image", "bm25", "text_vector", "region_text", "region_tile", "fuse", "rerank", "total"} <= set(res.timings_ms)


def test_batched_reads_rank_as_separate_ones(store: IndexStore, tmp_path: Path) -> None:
    """A store that sends a search's independent reads together (Elasticsearch: one _msearch a
    round) answers each read as it answers it alone, and the fused search ranks, scores and quotes
    exactly as with a request per read, one-stage and two-stage; it does send fewer requests. A
    batched answer that failed is asked again alone."""
    from imgrag.indexing.search import Searcher, SearchRequest
    from imgrag.indexing.stores.base import Read

    if not hasattr(store, "read_many"):
        pytest.skip(f"{store.backend} reads in-process: nothing to batch")
    load(store, CORPUS + [
        Spec(f"S{i}", text=f"common words seal {i}", tags=["odd"] if i % 2 else [],
             tiles=[(f"t{j}", (j, 0, j + 1, 1), rand_unit(IMG, 100 * i + j)) for j in range(3)],
             blocks=[(f"b{j}", "block", (0, j, 5, j + 1), f"block {j} words", rand_unit(TXT, 100 * i + 10 + j)) for j in range(2)])
        for i in range(8)
    ])
    user = Principal(name="u1", groups=["g1"])
    q_img, q_txt = rand_unit(IMG, 7), rand_unit(TXT, 8)
    reads = [
        Read("knn", ("image", q_img, 5, Filters(), OPERATOR)),
        Read("knn", ("text", q_txt, 5, Filters(tags=["odd"]), user)),
        Read("bm25_records", ("common words", 6, Filters(), OPERATOR, (), 3)),
        Read("knn_regions", ("tile", q_img, 12, Filters(), OPERATOR)),
        Read("knn_regions", ("text", q_txt, 12, Filters(), OPERATOR, ["S1", "S2", "S5"])),
        Read("get_many", (["S3", "c1", "missing"], user)),
    ]
    alone = [getattr(store, r.method)(*r.args) for r in reads]
    together = store.read_many(reads)  # type: ignore[attr-defined]
    assert together == alone
    hits, recs = together[2]
    assert len(hits) == 6 and list(recs) == [h.image_id for h in hits[:3]]

    # BM25's records come with its hits: its query runs once a round, one search, not two in an _msearch
    sent_bodies: list[int] = []
    plain, multi = store.es.search, store.es.msearch  # type: ignore[attr-defined]

    def one(**kw: Any) -> Any:
        sent_bodies.append(1)
        return plain(**kw)

    def many(**kw: Any) -> Any:
        sent_bodies.append(len(kw["searches"]) // 2)
        return multi(**kw)

    store.es.search, store.es.msearch = one, many  # type: ignore[attr-defined]
    try:
        assert store.read_many([reads[2]]) == [alone[2]]  # type: ignore[attr-defined]
        assert store.bm25_records(*reads[2].args) == alone[2]  # type: ignore[attr-defined]
    finally:
        store.es.search, store.es.msearch = plain, multi  # type: ignore[attr-defined]
    # one body a round (a tie at BM25's cut-off may make it fetch again: another round of one)
    assert sent_bodies and set(sent_bodies) == {1}

    # an answer that failed inside the _msearch is asked again alone
    real = store.es.msearch  # type: ignore[attr-defined]

    def failing(**kw: Any) -> Any:
        res = real(**kw)
        res.body["responses"][0] = {"error": {"type": "test", "reason": "injected"}, "status": 500}
        return res

    store.es.msearch = failing  # type: ignore[attr-defined]
    try:
        assert store.read_many(reads) == alone  # type: ignore[attr-defined]
    finally:
        store.es.msearch = real  # type: ignore[attr-defined]

    calls = {"search": 0, "msearch": 0}
    search, msearch = store.es.search, store.es.msearch  # type: ignore[attr-defined]

    def count(name: str, fn: Any) -> Any:
        def wrapped(**kw: Any) -> Any:
            calls[name] += 1
            return fn(**kw)
        return wrapped

    store.es.search, store.es.msearch = count("search", search), count("msearch", msearch)  # type: ignore[attr-defined]
    base = store.settings  # type: ignore[attr-defined]
    try:
        reqs = [
            SearchRequest(query="common words", k=5),
            SearchRequest(query="seal words", k=3, offset=1),
            SearchRequest(query="common", mode="vector", k=5),
            SearchRequest(query="words", filters=Filters(tags=["odd"]), k=5),
            SearchRequest(query="block words", k=4, rerank=False),
        ]
        for two_stage in (0, 1):
            sent = {}
            results = {}
            for batched in (False, True):
                store.settings = base.model_copy(update={"es_msearch": batched})  # type: ignore[attr-defined]
                searcher = Searcher(_runtime(store, tmp_path, search_threads=4, search_cache=0, two_stage_pages=two_stage))  # type: ignore[arg-type]
                assert searcher._two_stage() == bool(two_stage)
                calls.update(search=0, msearch=0)
                results[batched] = [searcher.search(req, who).model_dump(exclude={"timings_ms"}) for req in reqs for who in (OPERATOR, user)]
                sent[batched] = dict(calls)
            assert results[True] == results[False], two_stage
            assert sent[False]["msearch"] == 0 and sent[True]["msearch"] > 0
            assert sum(sent[True].values()) < sum(sent[False].values()), sent
    finally:
        store.settings = base  # type: ignore[attr-defined]
        store.es.search, store.es.msearch = search, msearch  # type: ignore[attr-defined]


def test_repeated_search_is_cached_until_the_index_changes(store: IndexStore, tmp_path: Path) -> None:
    """A repeated search is answered from the result cache where the backend has a data version,
    and never after a change: an ACL taken away hides the page at once."""
    from imgrag.indexing.search import Searcher, SearchRequest

    load(store, [Spec("A", text="alpha words"), Spec("B", text="alpha beta")])
    store.commit("index", {"indexed": 2})  # builds the full-text index (LanceDB: a new table version)
    rt = _runtime(store, tmp_path)
    searcher = Searcher(rt)  # type: ignore[arg-type]
    user = Principal(name="u1")
    req = SearchRequest(query="alpha", k=5)
    first = searcher.search(req, user)
    calls = rt.text_embedder.calls
    again = searcher.search(req, user)
    assert again.model_dump(exclude={"timings_ms"}) == first.model_dump(exclude={"timings_ms"})
    cached = store.data_version() is not None
    assert ("cached" in again.timings_ms) == cached
    assert len(searcher._results.data) == (1 if cached else 0)
    again.hits.clear()  # a caller changing its copy does not change the cache
    assert searcher.search(req, user).model_dump(exclude={"timings_ms"}) == first.model_dump(exclude={"timings_ms"})
    assert rt.text_embedder.calls == calls  # the query was embedded once
    assert {h.image_id for h in first.hits} == {"A", "B"}
    store.update_metadata(["A"], MetadataUpdate(acl=["secret"]))
    assert {h.image_id for h in searcher.search(req, user).hits} == {"B"}
    assert {h.image_id for h in searcher.search(req, OPERATOR).hits} == {"A", "B"}
    store.soft_delete(["B"])
    assert {h.image_id for h in searcher.search(req, OPERATOR).hits} == {"A"}


def test_lance_purge_erases_the_rows_bytes_from_every_file(tmp_path: Path) -> None:
    """Purge is an erasure: one purged page among many must leave no trace on disk — not its text
    (data files, FTS index), not its vectors — and no deleted row may be left in a data file.
    Compaction's default rewrites a file only past 10 % deleted rows, which left such a page readable."""
    from imgrag.indexing.stores.lance import LanceStore

    secret = "zqxjvsecretmark"
    specs = [Spec(f"p{i}", text=f"common page{i}") for i in range(300)] + [Spec("gone", text=f"common {secret} words")]
    st = LanceStore(tmp_path / "store", ann_min_rows=10**9)
    load(st, [])
    st.write([make(s) for s in specs])
    st.commit("index", {"indexed": len(specs)})
    gone = make(specs[-1])
    marks = [secret.encode(), gone.vectors.feature.astype(np.float32).tobytes()] + [
        r.vector.astype(np.float32).tobytes() for r in gone.regions
    ]

    def on_disk() -> list[bytes]:
        blob = b"".join(f.read_bytes() for f in (tmp_path / "store").rglob("*") if f.is_file())
        return [m for m in marks if m in blob]

    assert on_disk(), "the marks must be findable before the purge, or this test proves nothing"
    assert st.soft_delete(["gone"]) == 1
    st.commit("delete", {"deleted": 1})
    assert st.purge() == 1
    st.commit("purge", {"purged": 1})
    assert on_disk() == []
    for table in (st._images, st._regions):
        ds = table.to_lance()
        assert sum(f.count_rows() for f in ds.get_fragments()) == ds.count_rows()
        assert all(f.metadata.deletion_file is None for f in ds.get_fragments())
    assert st.count(OPERATOR, Filters()) == 300
    assert [h.image_id for h in st.bm25("page7", 5, Filters(), OPERATOR)] == ["p7"]
    assert st.bm25(secret, 5, Filters(), OPERATOR) == []
    st.close()


def test_es_purge_expunges_the_deleted_documents_from_the_segments(es_store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Purge is an erasure on Elasticsearch too: a deleted document stays in its Lucene segment (and
    on disk) until a merge drops it, which the server does only past 10 % deleted documents a segment
    and once the retention lease has moved past the delete. After purge the index holds none."""
    load(es_store, [Spec(f"p{i}", text=f"common page{i}") for i in range(40)] + [Spec("gone", text="common zqxjvmark")])
    es_store.commit("index", {"indexed": 41})
    es_store.soft_delete(["gone"])
    es_store.commit("delete", {"deleted": 1})
    index = es_store._generation()[0]

    def deleted_docs() -> int:
        return int(es_store.es.indices.stats(index=index, metric="docs")["indices"][index]["total"]["docs"]["deleted"])

    assert es_store.purge() == 1
    assert deleted_docs() == 0
    assert es_store.count(OPERATOR, Filters()) == 40 and es_store.bm25("zqxjvmark", 5, Filters(), OPERATOR) == []
    # past the wait the purge still stands: logged, not raised
    es_store.settings = es_store.settings.model_copy(update={"es_merge_wait_s": 0.0})
    es_store.soft_delete(["p1"])
    with caplog.at_level(logging.WARNING):
        assert es_store.purge() == 1
    assert es_store.count(OPERATOR, Filters()) == 39
    assert any("still holds" in r.getMessage() for r in caplog.records) or deleted_docs() == 0


def test_es_search_after_a_pause_reads_the_live_generation_once(es_store: Any, tmp_path: Path) -> None:
    """Once the cached view of the live generation is stale (a pause of more than 2 s), a fused
    search re-reads it with one request, whatever the number of its threads (it sent an alias and a
    mapping request per thread and one more pair for the models' check), and the page count comes
    off the search's path; a switch to another generation is seen at once."""
    from imgrag.indexing.search import Searcher, SearchRequest

    load(es_store, [Spec("A", text="alpha words"), Spec("B", text="alpha beta")])
    sent: list[str] = []
    transport = es_store.es.transport
    perform = transport.perform_request

    def logged(method: str, target: str, **kw: Any) -> Any:
        sent.append(target.split("?")[0].rsplit("/", 1)[-1])
        return perform(method, target, **kw)

    transport.perform_request = logged
    try:
        searcher = Searcher(_runtime(es_store, tmp_path, search_threads=4, search_cache=0, two_stage_pages=1))
        first = searcher.search(SearchRequest(query="alpha", k=5), OPERATOR)
        for _ in range(2):
            es_store._live_cache = None  # as after a pause
            searcher._spaces = None
            searcher._pages = (searcher._pages[0] - 60.0, searcher._pages[1])
            sent.clear()
            again = searcher.search(SearchRequest(query="alpha", k=5), OPERATOR)
            assert again.model_dump(exclude={"timings_ms"}) == first.model_dump(exclude={"timings_ms"})
            assert sent.count("_mapping") == 1 and "_alias" not in sent, sent
    finally:
        transport.perform_request = perform
    es_store.start_generation(SPACES)
    assert es_store._live()[0].endswith("-g000002") and es_store.spaces() == SPACES
    assert es_store.count(OPERATOR, Filters()) == 0
