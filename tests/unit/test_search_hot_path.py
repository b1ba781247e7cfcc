"""The cheaper forms of a search's hot path compute what the plain forms did: region hits built
without ``model_construct``, the page forms of the concept re-rank, the FTS check once per table
version, the record fetch and its version in one round trip, the result cache kept as JSON, and the
start-up objects frozen out of the garbage collector, whose youngest generation is larger (docs/performance.md, session 9)."""

from __future__ import annotations

import gc
import random
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from imgrag.indexing import search as search_mod
from imgrag.indexing.app import GC_YOUNG_THRESHOLD, settle_gc
from imgrag.indexing.config import Settings
from imgrag.indexing.models import LayoutBlock, OcrLine
from imgrag.indexing.search import Searcher, SearchRequest, concept_coverage
from imgrag.indexing.stores import lance
from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord, ImageVectors, Indexed, ModelSpaces, RegionHit, RegionRecord
from imgrag.indexing.stores.lance import LanceStore
from imgrag.indexing.text import latin_words, normalize, squash, tokens
from imgrag.indexing.translate import stem

DIM = 8
TEXTS = [
    "甲方（盖章）：北京某某科技有限公司 签订日期：2023年5月6日",
    "The Party B shall pay the invoice total of USD 1,234.50 within 30 days; signed, sealed.",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ 123 and it's v2.0.1 — co-operation, e.g. apt-get install",
    "软件包 Debian package management: dpkg -i foo_1.0.deb 备份与恢复",
    "",
    "   \n\t  ",
    "合同编号 HT-2023-0042 第3条 违约责任 governing law of the P.R.C.",
]


def test_unvalidated_region_hits_are_model_construct_hits() -> None:
    values = {"region_id": "p1:r0", "image_id": "p1", "kind": "block", "label": "text", "bbox": (1.0, 2.0, 3.0, 4.0),
              "text": "甲方", "score": 0.75, "pii_kinds": ["email"]}
    fast, slow = lance._unvalidated_region_hit(dict(values)), RegionHit.model_construct(**values)
    assert fast == slow and fast.__dict__ == slow.__dict__
    assert fast.model_fields_set == slow.model_fields_set == set(RegionHit.model_fields)
    assert fast.__pydantic_extra__ is None and fast.__pydantic_private__ is None
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_copy(deep=True) == slow
    other = lance._unvalidated_region_hit(dict(values))
    other.text = "changed"  # instances share no state
    assert fast.text == "甲方" and fast.model_fields_set is not other.model_fields_set


def test_region_hits_from_columns() -> None:
    tbl = pa.table({
        "region_id": ["a:v0", "a:r1"], "image_id": ["a", "a"], "kind": ["block", "tile"], "label": ["v0", "tile 1"],
        "bbox": [[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]], "text": ["bar chart", ""], "pii_kinds": [None, ["email"]],
    })
    hits = lance._region_hits(tbl, [0.5, 0.25])
    assert hits == [
        RegionHit.model_construct(region_id="a:v0", image_id="a", kind="label", label="v0", bbox=(0.0, 0.0, 1.0, 1.0),
                                  text="bar chart", score=0.5, pii_kinds=[]),  # a legacy mark row reads as a label
        RegionHit.model_construct(region_id="a:r1", image_id="a", kind="tile", label="tile 1", bbox=(1.0, 1.0, 2.0, 2.0),
                                  text="", score=0.25, pii_kinds=["email"]),
    ]


def test_latin_words_are_the_latin_tokens() -> None:
    rng = random.Random(7)
    pool = "abc XYZ 12 3.5 甲方合同 ，。、 it's e.g. ﾃｽﾄ Ａ1 -_/ \n"
    texts = TEXTS + ["".join(rng.choice(pool) for _ in range(rng.randint(0, 80))) for _ in range(500)]
    for t in texts:
        assert latin_words(normalize(t)) == [w for w in tokens(t) if not "\u3400" <= w[0] <= "\ufaff"], t


def test_page_forms_answer_every_latin_lookup_as_before() -> None:
    for t in TEXTS:
        squashed, stems = search_mod._page_forms(t)
        before = frozenset(stem(w) for w in tokens(t))
        assert squashed == squash(t)
        # a latin form is looked up among the stems, a CJK one in the squashed text (concept_coverage)
        assert stems == {s for s in before if not "\u3400" <= s[0] <= "\ufaff"}


def _record(image_id: str, text: str, **kw: Any) -> ImageRecord:
    lines = [OcrLine(text=ln, bbox=(0, 10 * i, 100, 10 * i + 9)) for i, ln in enumerate(text.split("。")) if ln]
    return ImageRecord(
        image_id=image_id, doc_id=image_id, path=f"/x/{image_id}.png", format="png", width=100, height=100,
        quality=kw.pop("quality", "born_digital"), ocr_lines=lines, ocr_text=text,
        layout=[LayoutBlock(kind="text", bbox=(0, 0, 100, 100), text=text)], indexed_at=datetime.now(timezone.utc), **kw,
    )


def test_concept_coverage_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = [_record(f"p{i}", t, caption="a red seal" if i % 2 else "") for i, t in enumerate(TEXTS)]
    queries = ["甲方 盖章 日期", "payment of the invoice total", "软件包 backup", "governing law 违约责任", "signed contract"]
    new = [concept_coverage(q, recs, None) for q in queries]
    search_mod._page_forms.cache_clear()
    monkeypatch.setattr(search_mod, "_page_forms", lambda text: (squash(text), frozenset(stem(w) for w in tokens(text))))
    assert [concept_coverage(q, recs, None) for q in queries] == new
    assert any(v > 0 for cc in new for v in cc.values())  # the comparison compared something


def test_settle_gc() -> None:
    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > before
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
        assert gc.isenabled()  # later objects are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


# -- a real embedded store ------------------------------------------------------------------------
def _indexed(rec: ImageRecord, seed: int) -> Indexed:
    rng = np.random.default_rng(seed)
    v = lambda: (x := rng.normal(size=DIM).astype(np.float32)) / np.linalg.norm(x)
    return Indexed(
        record=rec, vectors=ImageVectors(image=v(), feature=v(), text=v()),
        regions=[RegionRecord(region_id=f"{rec.image_id}:b0", image_id=rec.image_id, kind="block", label="text",
                              bbox=(0, 0, 100, 100), text=rec.ocr_text, vector=v())],
    )


@pytest.fixture
def store(tmp_path: Path) -> LanceStore:
    st = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    st.ensure_spaces(ModelSpaces(image="fake-joint", image_dim=DIM, feature="fake-feat", feature_dim=DIM, text="fake-text", text_dim=DIM))
    st.write([_indexed(_record("p1", "payment terms of the contract"), 1), _indexed(_record("p2", "a cat on a mat"), 2)])
    st.commit("index", {})
    return st


def test_fts_is_checked_once_per_table_version_and_new_rows_are_found(store: LanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[int] = []
    ensure = LanceStore._ensure_fts
    monkeypatch.setattr(LanceStore, "_ensure_fts", lambda self, table: (checks.append(1), ensure(self, table))[1])
    for _ in range(3):
        assert [h.image_id for h in store.bm25("payment", 10, Filters(), OPERATOR)] == ["p1"]
    assert len(checks) == 1
    # another version: checked again, and a page written without a commit is found (the index is rebuilt)
    store.write([_indexed(_record("p3", "payment in full upon delivery"), 3)])
    assert sorted(h.image_id for h in store.bm25("payment", 10, Filters(), OPERATOR)) == ["p1", "p3"]
    assert len(checks) == 2


def test_record_fetch_and_data_version(store: LanceStore) -> None:
    assert store.data_version() == f"{store._images.version}.{store._regions.version}"
    got = store.get_many(["p2", "p1", "nope"], OPERATOR)
    assert sorted(got) == ["p1", "p2"] and got["p1"].ocr_text == "payment terms of the contract"
    assert store._fetched.peek((store._images.version, OPERATOR.model_dump_json(), "nope")) is lance._ABSENT
    before = store.data_version()
    store.write([_indexed(_record("p1", "payment terms, amended"), 4)])  # a new version: nothing stale
    assert store.data_version() != before
    assert store.get_many(["p1"], OPERATOR)["p1"].ocr_text == "payment terms, amended"
    records, version = store._records_then_version([("image_id IN ('p1', 'p2')", 2), ("image_id = 'p2'", 1)])
    assert [r.image_id for r in records].count("p2") == 2 and version == store._images.version


class _Embedder:
    dim = DIM

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [np.full(DIM, DIM**-0.5, np.float32) for _ in texts]


def _searcher(store: LanceStore, **settings: Any) -> Searcher:
    rt = SimpleNamespace(settings=Settings(translate_query=False, **settings), store=store,
                         text_embedder=_Embedder("fake-text"), image_embedder=_Embedder("fake-joint"))
    return Searcher(rt)  # type: ignore[arg-type]


def test_a_search_reads_the_index_version_once(store: LanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its route threads included; a write is read by the next search, and a record read after a
    write that lands inside a pin is not remembered under the pinned version."""
    reads: list[str] = []
    table_cls = type(store._images)
    version = table_cls.version
    monkeypatch.setattr(table_cls, "version", property(lambda t: (reads.append("table"), version.fget(t))[1]))
    versions = LanceStore._versions
    monkeypatch.setattr(LanceStore, "_versions", lambda self: (reads.append("both"), versions(self))[1])
    searcher = _searcher(store, search_threads=4, search_cache=0)
    req = SearchRequest(query="payment terms", k=2)
    first = searcher.search(req, OPERATOR)
    assert first.hits and reads == ["both"]  # before: the pages table's version ~8 times a search
    store.write([_indexed(_record("p1", "payment terms, amended"), 4)])
    reads.clear()
    snippets = {h.image_id: h.snippet for h in searcher.search(req, OPERATOR).hits}
    assert "amended" in snippets["p1"] and reads == ["both"]
    with store.pinned() as pinned:
        assert pinned == f"{version.fget(store._images)}.{version.fget(store._regions)}"
        with store.pinned() as inner:  # nested: the same pin, no second read
            assert inner == pinned
        store.write([_indexed(_record("p1", "payment terms, amended twice"), 5)])
        store.get_many(["p1"], OPERATOR)
    assert store.get_many(["p1"], OPERATOR)["p1"].ocr_text == "payment terms, amended twice"
    assert lance._PINNED.get() is None


def test_cached_result_is_the_same_and_a_copy_of_its_own(store: LanceStore) -> None:
    searcher = _searcher(store, search_threads=1)
    req = SearchRequest(query="payment terms", k=2)
    first = searcher.search(req, OPERATOR)
    again = searcher.search(req, OPERATOR)
    assert "cached" in again.timings_ms and "cached" not in first.timings_ms
    assert again.model_dump(exclude={"timings_ms"}) == first.model_dump(exclude={"timings_ms"}) and first.hits
    again.hits[0].snippet = "changed by a caller"
    third = searcher.search(req, OPERATOR)
    assert third.hits[0].snippet == first.hits[0].snippet != "changed by a caller"


def test_transfer_image_query_takes_a_chinese_querys_english_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """``IMGRAG_IMAGE_QUERY_TRANSLATION`` (session 13): with an image embedder that asks for it, a query
    with Chinese in it gets w x the text vector of its English reading added to its image vector
    (normalised); an English query, w 0, translation off or another embedder keep the typed vector."""
    import imgrag.indexing.search as S

    monkeypatch.setattr(S, "english_reading", lambda q, cache_dir=None: "red apple" if q == "红苹果" else "")
    basis = {"红苹果": 0, "red apple": 1, "pear": 2}

    class Text:
        identity, dim = "fake-text", DIM

        def embed_queries(self, texts: list[str]) -> np.ndarray:
            return np.stack([np.eye(DIM, dtype=np.float32)[basis[t]] for t in texts])

    class Joint:
        identity, dim, mixes_query_translation = "fake-transfer", DIM, True

        def __init__(self, mixes: bool = True) -> None:
            self.text, self.mixes_query_translation = Text(), mixes

        def queries_from_text(self, v: np.ndarray) -> np.ndarray:
            return v

        def embed_queries(self, texts: list[str]) -> np.ndarray:
            return self.text.embed_queries(texts)

    def q_image(q: str, mixes: bool = True, **settings: Any) -> np.ndarray:
        rt = SimpleNamespace(settings=Settings(search_threads=1, **settings), text_embedder=Text(), image_embedder=Joint(mixes))
        return Searcher(rt)._q_image(q)  # type: ignore[arg-type]

    e = np.eye(DIM, dtype=np.float32)
    np.testing.assert_allclose(q_image("红苹果"), (e[0] + e[1]) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(q_image("红苹果", image_query_translation=3.0), (e[0] + 3 * e[1]) / np.sqrt(10), atol=1e-6)
    for off in ({"image_query_translation": 0.0}, {"translate_query": False}):
        np.testing.assert_allclose(q_image("红苹果", **off), e[0])
    np.testing.assert_allclose(q_image("红苹果", mixes=False), e[0])  # the bridge: its labels are English and Chinese
    np.testing.assert_allclose(q_image("pear"), e[2])
    # the evaluation's batched query embedding makes the same image vectors as the search
    from imgrag.evals.retrieval import prime_cache
    from imgrag.indexing.search import _LRU

    rt = SimpleNamespace(settings=Settings(search_threads=1), text_embedder=Text(), image_embedder=Joint())
    cache = _LRU(size=100)
    prime_cache(rt, cache, ["红苹果", "pear"])
    for q in ("红苹果", "pear"):
        np.testing.assert_allclose(cache.data[("image", q)], q_image(q), atol=1e-6)


NO_SPACE = ("lance error: LanceError(IO): No space left on device (os error 28), "
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/lance-file-13.0.0/src/writer/structural.rs:258:9")


def test_a_full_disk_leaves_bm25_on_the_index_there(store: LanceStore, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """`imgrag index` stopped by a full disk (a real 40 MB tmpfs as IMGRAG_HOME) leaves pages outside
    the FTS index; every search then tried to rebuild it, failed on the same full disk, and ended in
    LanceDB's traceback: the index before the run was not searchable until space was freed. Now the
    search uses the index there (LanceDB's flat pass finds the newer rows), says so once, and does
    not retry the rebuild on every search."""
    store.write([_indexed(_record("p3", "payment in full upon delivery"), 3)])  # not in the FTS index
    builds: list[int] = []

    def full(self: LanceStore, table: Any) -> None:
        builds.append(1)
        raise RuntimeError(NO_SPACE)

    monkeypatch.setattr(LanceStore, "_build_fts", full)
    for _ in range(3):
        assert sorted(h.image_id for h in store.bm25("payment", 10, Filters(), OPERATOR)) == ["p1", "p3"]
    assert len(builds) == 1  # not one rebuild per search
    warned = [r for r in caplog.records if "full-text index" in r.getMessage()]
    assert len(warned) == 1 and "No space left on device" in warned[0].getMessage() and not warned[0].exc_info
    assert ".cargo" not in warned[0].getMessage()
