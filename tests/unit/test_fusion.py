"""Fusion: the RRF arithmetic, standout votes and which routes a query takes."""

from __future__ import annotations

from imgrag.indexing.search import rrf


def test_rrf_weights_and_ranks() -> None:
    scores = rrf({"bm25": ["a", "b"], "image": ["b", "c"]}, {"bm25": 1.0, "image": 0.5}, k=60)
    assert scores["a"] == 1 / 61
    assert scores["b"] == 1 / 62 + 0.5 / 61
    assert scores["c"] == 0.5 / 62
    assert max(scores, key=scores.__getitem__) == "b"  # found by both routes


def test_standout_votes_follow_the_score_distribution() -> None:
    from imgrag.indexing.search import standout

    flat = {f"d{i}": 0.80 + 0.001 * i for i in range(10)}
    spike = dict(flat, hit=0.86)
    f = standout(spike, 2.0)
    assert f["hit"] == 1.0
    assert max(v for d, v in f.items() if d != "hit") < 0.6
    assert standout({"a": 0.9, "b": 0.1}, 2.0) == {"a": 1.0, "b": 1.0}  # too few to judge
    assert set(standout(spike, 0.0).values()) == {1.0}  # off
    scores = rrf({"image": ["hit", "d1"]}, {"image": 1.0}, 60, {"image": {"d1": 0.0}})
    assert scores == {"hit": 1 / 61, "d1": 0.0}


def test_image_routes_search_only_picture_pages() -> None:
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.search import Searcher
    from imgrag.indexing.stores.base import Filters

    def filters_for(allowed: str, user: Filters) -> Filters | None:
        rt = SimpleNamespace(settings=Settings(image_route_quality=allowed))
        return Searcher(rt)._picture_filters(user)  # type: ignore[arg-type]

    assert filters_for("photo", Filters(tags=["x"])) == Filters(tags=["x"], quality=["photo"])
    # the user's own quality filter narrows it; nothing left means the image routes do not run
    assert filters_for("photo,scanned", Filters(quality=["scanned", "born_digital"])) == Filters(quality=["scanned"])
    assert filters_for("photo", Filters(quality=["born_digital"])) is None
    # empty: every page, the user's filters untouched
    assert filters_for("", Filters(quality=["born_digital"])) == Filters(quality=["born_digital"])


def test_visual_queries_reach_document_pages() -> None:
    """A query naming what a page shows lets the image routes search scans; an entity or clause
    query does not."""
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.search import Searcher
    from imgrag.indexing.stores.base import Filters
    from imgrag.indexing.visual import is_visual_query

    for q in ["a bar chart", "a floor plan", "a handwritten note", "a page with a photo of a machine", "the company logo",
              "where is the seal", "一张柱状图", "手写的便条", "盖章的页面", "地图"]:
        assert is_visual_query(q), q
    for q in ["Who is Party A of agreement HT-1?", "合同编号HT-1的甲方是谁", "termination clause", "payment within 30 days",
              "chartered accountant", "mapping rules"]:
        assert not is_visual_query(q), q
    rt = SimpleNamespace(settings=Settings(image_route_quality="photo", visual_query_all_pages=True))
    user = Filters(tags=["x"])
    assert Searcher(rt)._picture_filters(user, "a bar chart") == user  # type: ignore[arg-type]
    assert Searcher(rt)._picture_filters(user, "payment terms") == Filters(tags=["x"], quality=["photo"])  # type: ignore[arg-type]
    # a seal, a table or handwriting is found by the page's marks, not by the image space
    for q in ["where is the seal on contract 5", "合同5的公章在哪里", "a table of fees", "handwriting"]:
        assert Searcher(rt)._picture_filters(user, q) == Filters(tags=["x"], quality=["photo"]), q  # type: ignore[arg-type]
    off = SimpleNamespace(settings=Settings(image_route_quality="photo"))  # the default
    assert Searcher(off)._picture_filters(user, "a bar chart") == Filters(tags=["x"], quality=["photo"])  # type: ignore[arg-type]
    # the user's own quality filter still binds a visual query
    scans = Filters(quality=["scanned"])
    assert Searcher(rt)._picture_filters(scans, "a bar chart") == scans  # type: ignore[arg-type]


def test_a_photos_caption_is_its_words_for_the_rerank() -> None:
    """"a cat": the photo captioned "tabby cat" covers the query as fully as a page's OCR line with
    the command `cat`, so the re-rank does not favour the page; documents ignore captions."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.models import OcrLine
    from imgrag.indexing.search import Searcher
    from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord, RegionHit

    now = datetime.now(timezone.utc)
    photo = ImageRecord(image_id="p", doc_id="p", path="/c/cat.png", format="png", width=400, height=300,
                        quality="photo", caption="tiger cat, tabby cat | 虎斑猫", indexed_at=now)
    page = ImageRecord(image_id="d", doc_id="d", path="/c/doc.png", format="png", width=800, height=1000,
                       quality="born_digital", caption="web site", indexed_at=now,
                       ocr_lines=[OcrLine(text="cat a binary file", bbox=(10, 10, 300, 40), confidence=0.9)])
    scan = page.model_copy(update={"image_id": "s", "ocr_lines": [], "caption": "tabby cat"})
    tile = RegionHit(region_id="p:t2-0-0", image_id="p", kind="tile", label="t2-0-0", bbox=(0, 0, 200, 150), text="", score=0.3)
    ev = Searcher(SimpleNamespace(settings=Settings()))._evidence(  # type: ignore[arg-type]
        "a cat", ["p", "d", "s"], {"p": photo, "d": page, "s": scan}, [tile], OPERATOR, Filters())
    assert ev["p"][2] == 1.0 and ev["p"][0] is not None and ev["p"][0].bbox == (0, 0, 200, 150)
    assert ev["d"][2] == 1.0 and ev["d"][1] == "cat a binary file"
    assert ev["s"][2] == 0.0  # a document's caption is not its words


def test_a_picture_answering_only_in_its_labels_is_label_only() -> None:
    """Its own words (OCR, marks, tags, metadata) must hold half the query; stray OCR off a drawing
    holding one character of the query's translation does not make the labels printed words."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.search import Searcher, _is_cjk, label_only
    from imgrag.indexing.text import query_terms
    from imgrag.indexing.stores.base import ImageRecord

    now = datetime.now(timezone.utc)
    pic = ImageRecord(image_id="p", doc_id="p", path="/c/p.png", format="png", width=10, height=10, quality="photo",
                      caption="hair dryer | 手摇鼓风机", caption_source="model", indexed_at=now)
    def weak(rec: ImageRecord, query: str = "hair dryer") -> bool:
        cover = Searcher(SimpleNamespace(settings=Settings()))._coverage(query)  # type: ignore[arg-type]
        return label_only(rec, cover, frozenset(t for t in query_terms(query) if not (len(t) == 1 and _is_cjk(t))))

    assert weak(pic)
    assert not weak(pic.model_copy(update={"caption_source": "file"}))  # the file's caption
    assert not weak(pic.model_copy(update={"caption_source": ""}))  # indexed before it was stored
    assert not weak(pic.model_copy(update={"quality": "scanned"}))  # a document
    assert not weak(pic.model_copy(update={"ocr_text": "Hair dryer 2000 W"}))  # printed on it
    assert not weak(pic.model_copy(update={"tags": ["dryer"]}))
    assert weak(pic.model_copy(update={"ocr_text": "Storage AAAAAA"}))  # stray OCR holds none of it
    assert weak(pic.model_copy(update={"ocr_text": "m 圓 貝 三立 机"}), "吹风机")  # one character of the query by chance
    # a photo's lot and station in its metadata are its words, however long the question around them
    lot = pic.model_copy(update={"file_meta": {"lot": "L2402-00316", "station": "CAM-03"}})
    assert not weak(lot, "CAM-03工位拍摄的批次L2402-00316零件的检验作业指导书")
    assert weak(lot, "a part photographed at another station")


def test_a_bad_setting_is_one_error_naming_it(monkeypatch) -> None:
    import pytest

    from imgrag.indexing.config import get_settings
    from imgrag.indexing.errors import ImgragError

    monkeypatch.setenv("IMGRAG_IMAGE_ROUTE_QUALITY", "photos")
    get_settings.cache_clear()
    try:
        with pytest.raises(ImgragError, match="IMGRAG_IMAGE_ROUTE_QUALITY='photos'"):
            get_settings()
    finally:
        monkeypatch.delenv("IMGRAG_IMAGE_ROUTE_QUALITY")
        get_settings.cache_clear()
    monkeypatch.setenv("IMGRAG_WEIGHT_LABEL_TEXT", "2")
    try:
        with pytest.raises(ImgragError, match="IMGRAG_WEIGHT_LABEL_TEXT"):
            get_settings()
    finally:
        monkeypatch.delenv("IMGRAG_WEIGHT_LABEL_TEXT")
        get_settings.cache_clear()


def test_a_query_is_embedded_once_for_the_text_and_the_joint_space() -> None:
    """The label bridge and an adapter encode a query with the text model first: the search runs
    that model once and derives the joint-space vector from its output (the same numbers)."""
    from types import SimpleNamespace

    import numpy as np

    from imgrag.indexing.config import Settings
    from imgrag.indexing.embedders.bridge import LabelBridgeEmbedder
    from imgrag.indexing.search import Searcher

    class Text:
        identity, dim, calls = "text-model", 4, 0

        def embed_queries(self, texts: list[str]) -> np.ndarray:
            Text.calls += 1
            return np.tile(np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), (len(texts), 1))

    text = Text()
    bridge = LabelBridgeEmbedder.__new__(LabelBridgeEmbedder)  # no backbone: only the query path is used
    bridge.text = text  # type: ignore[assignment]
    s = Searcher(SimpleNamespace(settings=Settings(), text_embedder=text, image_embedder=bridge))  # type: ignore[arg-type]
    vecs = {"text": s._q_text("a cat"), "image": s._q_image("a cat")}
    assert Text.calls == 1
    assert np.array_equal(vecs["image"], bridge.embed_queries(["a cat"])[0]) and np.array_equal(vecs["text"], vecs["image"])
    # another text model behind the joint space: embedded on its own
    other = SimpleNamespace(identity="clip", embed_queries=lambda t: np.ones((len(t), 2), np.float32))
    s2 = Searcher(SimpleNamespace(settings=Settings(), text_embedder=text, image_embedder=other))  # type: ignore[arg-type]
    assert s2._q_image("a dog").shape == (2,)


def test_a_page_in_the_other_language_is_scored_by_its_reading(monkeypatch) -> None:
    """A Chinese question about an English page: the re-rank reads the page against the question's
    English reading, and the concept coverage counts the city, which only the English page prints,
    over words every candidate shares."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    import imgrag.indexing.translate as T
    import pytest
    from imgrag.indexing.config import Settings
    from imgrag.indexing.models import OcrLine
    from imgrag.indexing.search import Searcher, concept_coverage
    from imgrag.indexing.stores.base import ImageRecord

    d = T.Dictionary.from_entries([
        {"simplified": "合同", "definitions": ["contract"]},
        {"simplified": "价格", "definitions": ["price"]},
        {"simplified": "杭州", "definitions": ["Hangzhou city in Zhejiang"]},
        {"simplified": "北京", "definitions": ["Beijing capital of China"]},
    ])
    monkeypatch.setattr(T, "_DICT", d)
    for f in (T.readings, T.concepts):
        f.cache_clear()
    try:
        now = datetime.now(timezone.utc)

        def page(i: str, *lines: str) -> ImageRecord:
            ocr = [OcrLine(text=t, bbox=(10, 10 + 40 * n, 500, 40 + 40 * n), confidence=0.9) for n, t in enumerate(lines)]
            return ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=800, height=1000,
                               quality="born_digital", indexed_at=now, ocr_lines=ocr, ocr_text="\n".join(lines))

        en = page("en", "Contract price: USD 100", "Signed in Hangzhou")
        zh = page("zh", "合同价格：人民币100元", "签订地点：北京")
        zh2 = page("zh2", "合同价格", "北京")
        q = "在杭州签订的合同价格"
        s = Searcher(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]
        assert s._coverage(q)("Contract price: USD 100") == pytest.approx(Settings().weight_translated * 2 / 3)  # 2 of "hangzhou contract price"
        off = Searcher(SimpleNamespace(settings=Settings(translate_query=False)))  # type: ignore[arg-type]
        assert off._coverage(q)("Contract price: USD 100") == 0.0
        cc = concept_coverage(q, [en, zh, zh2], None)
        assert cc["en"] == 1.0 and cc["zh"] == cc["zh2"] < 0.5  # the city decides; 合同 / 价格 are on every page
        assert concept_coverage("contract price in Beijing", [en, zh], None)["zh"] == 1.0  # and the reverse
        # A photo whose lot and station come from its sidecar says them as a page prints them; a
        # personal value (a patient's name) is never a word of the page.
        photo = page("photo").model_copy(update={"quality": "photo", "file_meta": {"lot": "L2510-01253", "station": "VIS-12",
                                                                                    "patient_name": "DOE JANE"}})
        sop = page("sop", "Inspection SOP", "Part No: GR-8532")
        cc = concept_coverage("inspection SOP for the part photographed at station VIS-12, lot L2510-01253", [photo, sop], None)
        assert cc["photo"] > cc["sop"], cc
        assert concept_coverage("Doe Jane", [photo, sop], None).get("photo", 0.0) == 0.0
    finally:
        for f in (T.readings, T.concepts):
            f.cache_clear()


def test_an_english_concept_counts_by_what_a_chinese_page_means(monkeypatch) -> None:
    """An English question about a Chinese page: "development" is 发展 in the reversed dictionary,
    but the page prints 开发 (develop by its third sense); the page's meanings decide. A Chinese
    question's word is not matched by a Chinese page's meanings: 纽约 ("new york") must not meet a
    page that prints 新型 ("new type")."""
    from datetime import UTC, datetime

    import imgrag.indexing.search as S
    import imgrag.indexing.translate as T
    from imgrag.indexing.search import concept_coverage
    from imgrag.indexing.stores.base import ImageRecord

    d = T.Dictionary.from_entries([
        {"simplified": "合同", "definitions": ["contract"]},
        {"simplified": "软件", "definitions": ["software"]},
        {"simplified": "开发", "definitions": ["to exploit (a resource)", "to open up", "to develop"]},
        {"simplified": "发展", "definitions": ["development", "growth"]},
        {"simplified": "北京", "definitions": ["Beijing capital of China"]},
        {"simplified": "纽约", "definitions": ["New York"]},
        {"simplified": "新型", "definitions": ["new type", "new kind"]},
    ])
    monkeypatch.setattr(T, "_DICT", d)
    for f in (T.readings, T.concepts, S._page_meanings):
        f.cache_clear()
    try:
        now = datetime.now(UTC)

        def page(i: str, text: str) -> ImageRecord:
            return ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=800, height=1000,
                               quality="born_digital", indexed_at=now, ocr_text=text)

        dev = page("dev", "软件开发合同 签订地点：北京")
        other = page("other", "软件采购合同 签订地点：北京")
        en = page("en", "Software Purchase Contract, signed in New York")
        cc = concept_coverage("software development contract signed in Beijing", [dev, other, en], None)
        assert cc["dev"] > max(cc["other"], cc["en"]), cc  # without the meanings, dev == other
        cc = concept_coverage("纽约签的合同", [page("new", "新型合同"), en], None)
        assert cc.get("new", 0.0) < cc["en"], cc
    finally:
        for f in (T.readings, T.concepts, S._page_meanings):
            f.cache_clear()


def test_standout_is_the_per_hit_formula_bit_for_bit() -> None:
    """One array operation gives each hit exactly what ``clip(((s - mean) / sd + 1) / (full_at + 1), 0, 1)``
    gave it hit by hit (the fused scores, and so the rankings, stay the same)."""
    import numpy as np

    from imgrag.indexing.search import standout

    rng = np.random.default_rng(7)
    for n in (5, 17, 200):
        scores = {f"d{i}": float(np.float32(rng.normal(0.8, 0.05))) for i in range(n)}
        values = np.fromiter(scores.values(), dtype=np.float64)
        mu, sd = float(values.mean()), float(values.std())
        want = {d: float(np.clip(((s - mu) / sd + 1.0) / (1.5 + 1.0), 0.0, 1.0)) for d, s in scores.items()}
        got = standout(scores, 1.5)
        assert list(got) == list(want) and all(type(v) is float and v == want[d] for d, v in got.items())


def _fake_runtime(threads: int):  # type: ignore[no-untyped-def]
    """A runtime whose store answers every route with fixed lists and counts the records it is asked for."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    import numpy as np

    from imgrag.indexing.config import Settings
    from imgrag.indexing.models import OcrLine
    from imgrag.indexing.stores.base import ImageRecord, RouteHit

    now = datetime.now(timezone.utc)

    class Store:
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        def spaces(self) -> None:
            return None

        def data_version(self) -> None:
            return None

        def bm25(self, keywords, n, filters, principal, extra=()):  # type: ignore[no-untyped-def]
            return [RouteHit(image_id=f"b{i}", score=20.0 - i / 2) for i in range(n)]

        def knn(self, field, vec, n, filters, principal):  # type: ignore[no-untyped-def]
            return [RouteHit(image_id=f"v{i}" if i % 2 else f"b{i}", score=0.9 - i / 200) for i in range(n)]

        def knn_regions(self, field, vec, n, filters, principal):  # type: ignore[no-untyped-def]
            return []

        def get_many(self, ids, principal):  # type: ignore[no-untyped-def]
            self.asked.append(list(ids))
            lines = {i: [OcrLine(text=f"the lease agreement of {i}" if int(i[1:]) % 3 else f"page {i}",
                                 bbox=(0, 0, 5, 5), confidence=0.9)] for i in ids}
            return {i: ImageRecord(image_id=i, doc_id=i, path=f"/c/{i}.png", format="png", width=10, height=10,
                                   quality="born_digital", indexed_at=now, ocr_lines=lines[i]) for i in ids if i != "b3"}

    text = SimpleNamespace(identity="t", dim=2, embed_queries=lambda t: np.ones((len(t), 2), np.float32))
    settings = Settings(search_threads=threads, translate_query=False, search_cache=0)
    return SimpleNamespace(settings=settings, store=Store(), text_embedder=text, image_embedder=text)


def test_the_bm25_top_records_are_read_while_the_query_is_embedded() -> None:
    """With a search pool, BM25's top window of records is read on it as soon as BM25 answers (the
    query is still being embedded), with the evidence of the pages whose own words answer; rank()
    then reads only the rest of its window, and the hits, scores, snippets and candidates are those
    of a search that read the whole window at the end."""
    from imgrag.indexing.search import Searcher, SearchRequest
    from imgrag.indexing.stores.base import OPERATOR

    req = SearchRequest(query="lease agreement", k=10, routes=["bm25", "text_vector"])
    one, pooled = _fake_runtime(1), _fake_runtime(4)
    a = Searcher(one).search(req, OPERATOR)  # type: ignore[arg-type]
    b = Searcher(pooled).search(req, OPERATOR)  # type: ignore[arg-type]
    assert a.model_dump(exclude={"timings_ms"}) == b.model_dump(exclude={"timings_ms"})
    assert "b3" not in [h.image_id for h in b.hits]  # a record the caller may not read stays out
    assert len(one.store.asked) == 1 and len(one.store.asked[0]) == 30
    first, rest = pooled.store.asked
    assert first == [f"b{i}" for i in range(30)]  # BM25's top window, in its order
    assert set(rest) & set(first) == {"b3"} and len(rest) > 1  # then only what that read did not return
    assert "records" in b.timings_ms and "records" not in a.timings_ms
    rec = Searcher(pooled).recall(req, OPERATOR)  # type: ignore[arg-type]
    assert len(rec.records) == 29
    lexical = {f"b{i}" for i in range(30) if i % 3 and i != 3}
    assert set(rec.evidence) == lexical  # the others wait for the region hits
    assert all(rec.evidence[d][1] == f"the lease agreement of {d}" for d in lexical)
    Searcher(pooled).rank(req, OPERATOR, rec)  # type: ignore[arg-type]
    assert rec.records == {}  # taken by rank: a recall kept for tuning does not hold them
    # the query's vectors cached: no embedding to overlap, so rank reads its window itself
    searcher = Searcher(pooled)  # type: ignore[arg-type]
    searcher.search(req, OPERATOR)
    pooled.store.asked.clear()
    again = searcher.search(req.model_copy(update={"k": 9}), OPERATOR)
    assert len(pooled.store.asked) == 1 and "records" not in again.timings_ms


def test_the_exemplar_term_leaves_a_page_with_unusable_statistics_alone() -> None:
    """A page whose stored statistics are not finite numbers with a positive spread (a value read
    back from a store column that did not validate comes as {}) keeps its image-route score, and no
    score becomes NaN (a NaN would leave the sorted list in no order at all)."""
    import math

    from imgrag.indexing.search import add_exemplar
    from imgrag.indexing.stores.base import RouteHit

    hits = [RouteHit(image_id=i, score=s) for i, s in (("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6))]
    ex = [RouteHit(image_id=i, score=s) for i, s in (("d", 0.5), ("c", 0.4), ("b", 0.3), ("a", 0.2))]
    good = {"exemplar_mean": 0.3, "exemplar_sd": 0.1}
    stats = {"a": {"exemplar_mean": float("nan"), "exemplar_sd": 0.1}, "b": {"exemplar_mean": 0.3, "exemplar_sd": float("inf")},
             "c": {}, "d": good}
    out = {h.image_id: h.score for h in add_exemplar(hits, ex, stats, 0.5, 10)}
    assert all(math.isfinite(v) for v in out.values())
    assert (out["a"], out["b"], out["c"]) == (0.9, 0.8, 0.7)
    assert out["d"] == 0.6 + 0.5 * (0.5 - 0.3) / 0.1
