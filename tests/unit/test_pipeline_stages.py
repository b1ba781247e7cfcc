"""The pipeline's shortcuts: one text detection per page, no recogniser without text.
Fakes stand in for the models (the real ones: tests/integration/test_ocr.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgrag.indexing import pipeline
from imgrag.indexing.models import OcrLine
from imgrag.indexing.ocr import DetectsFirst, TextDetection


class FakeEngine:
    """Detects a box unless the page is blank; says the page must turn ``turn`` degrees until it did."""

    name = "fake"

    def __init__(self, turn: int = 0) -> None:
        self.turn = turn
        self.calls: list[str] = []

    def detect(self, img: np.ndarray) -> TextDetection:
        self.calls.append("detect")
        found = [img[:4, :4]] if img.min() < 128 else []
        return TextDetection(bgr=img, size=(img.shape[1], img.shape[0]), crops=found)

    def read(self, det: TextDetection) -> list[OcrLine]:
        self.calls.append("read")
        return [OcrLine(text="x", bbox=(0, 0, 4, 4), confidence=1.0)] if not det.empty else []

    def orientation(self, det: TextDetection) -> int:
        self.calls.append("orientation")
        turn, self.turn = self.turn, 0
        return turn

    def recognize(self, img: np.ndarray) -> list[OcrLine]:  # pragma: no cover - not the fast path
        raise AssertionError("the fast path must not call recognize")

    def recognize_batch(self, imgs):  # noqa: ANN001, ANN201  # pragma: no cover
        raise AssertionError


def page(h: int = 300, w: int = 200) -> np.ndarray:
    img = np.full((h, w, 3), 255, np.uint8)
    for y in range(40, 260, 20):
        img[y : y + 8, 20:180] = 0
    return img


@pytest.fixture(autouse=True)
def as_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars are no text to the classifier: call every test page a document (orientation is for those)."""
    real = pipeline.preprocess
    monkeypatch.setattr(pipeline, "preprocess", lambda img, dpi, **kw: real(img, dpi, **{**kw, "quality": kw.get("quality") or "born_digital"}))


def test_upright_page_is_detected_once() -> None:
    eng = FakeEngine()
    assert isinstance(eng, DetectsFirst)
    _, lines = pipeline._ocr_page(page(), 150, eng)
    assert eng.calls == ["detect", "orientation", "read"]
    assert [ln.text for ln in lines] == ["x"]


def test_page_that_must_turn_is_enhanced_and_detected_again() -> None:
    eng = FakeEngine(turn=90)
    pre, _ = pipeline._ocr_page(page(), 150, eng)
    assert eng.calls == ["detect", "orientation", "detect", "read"]
    assert pre.applied[0].name == "rotate90" and pre.applied[0].params["degrees"] == 90


def test_blank_page_reads_nothing() -> None:
    eng = FakeEngine()
    _, lines = pipeline._ocr_page(np.full((300, 200, 3), 255, np.uint8), 150, eng)
    assert lines == []
    assert "orientation" not in eng.calls



class GatedEngine(FakeEngine):
    """A FakeEngine with the cheap look for text: ``score`` lines found on the small copy."""

    def __init__(self, score: int) -> None:
        super().__init__()
        self.score = score

    def text_score(self, img: np.ndarray, side: int) -> int:
        self.calls.append(f"text_score@{side}")
        return self.score


def test_photo_without_text_skips_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pipeline.preprocess
    monkeypatch.setattr(pipeline, "preprocess", lambda img, dpi, **kw: real(img, dpi, quality="photo"))
    eng = GatedEngine(score=0)
    _, lines = pipeline._ocr_page(page(), None, eng, gate=320)
    assert (eng.calls, lines) == (["text_score@320"], [])
    eng = GatedEngine(score=2)  # the look finds text: the full detector and recogniser run as before
    _, lines = pipeline._ocr_page(page(), None, eng, gate=320)
    assert eng.calls == ["text_score@320", "detect", "read"] and [ln.text for ln in lines] == ["x"]
    eng = GatedEngine(score=0)  # gate off: every photo is detected in full
    pipeline._ocr_page(page(), None, eng, gate=0)
    assert eng.calls == ["detect", "read"]


def test_documents_are_never_gated() -> None:
    eng = GatedEngine(score=0)
    _, lines = pipeline._ocr_page(page(), 150, eng, gate=320)
    assert eng.calls == ["detect", "orientation", "read"] and lines


def test_tile_cells_are_weighted_by_the_share_they_cover() -> None:
    from imgrag.indexing.embedders.bridge import cell_weights

    # a 320 x 240 input has a 10 x 8 map (its last row of cells holds 16 px, not 32)
    whole = cell_weights((0, 0, 320, 240), (320, 240), (8, 10))
    assert whole.shape == (8, 10) and whole[0, 0] == 32 * 32 and whole[7, 0] == 32 * 16
    assert whole.sum() == 320 * 240
    third = cell_weights((320 / 3, 0, 640 / 3, 80), (320, 240), (8, 10))
    assert third[:, :3].sum() == 0 and third[:, 7:].sum() == 0 and third[3:].sum() == 0
    assert np.isclose(third.sum(), 320 / 3 * 80)
    assert np.isclose(third[0, 3], (128 - 320 / 3) * 32)  # a cell cut by the box's edge counts in part


def test_settings_that_change_index_content_change_the_eval_index_key() -> None:
    """An eval cache built with another page head, look or tile side is not reused (INDEX_KEYS)."""
    from imgrag.evals.standard import index_key
    from imgrag.indexing.config import Settings

    base = Settings()
    for name, value in (("page_text_tokens", 512), ("region_text_tokens", 512), ("photo_text_gate", 0), ("tile_side", 0),
                        ("photo_one_pass", False), ("image_backbone", "lite2"), ("image_framing", "content"),
                        ("transfer_memory", "/tmp/memory-content.npz"), ("ocr_int8", True)):
        assert index_key(base.model_copy(update={name: value})) != index_key(base), name
    # keyed only when set: every index built before these settings existed keeps its key
    from imgrag.evals import standard

    with_defaults = index_key(base)
    saved, standard.INDEX_KEYS_IF_SET = standard.INDEX_KEYS_IF_SET, {}
    try:
        assert index_key(base) == with_defaults
    finally:
        standard.INDEX_KEYS_IF_SET = saved


def test_page_head_leaves_text_to_an_embedder_that_counts_no_tokens() -> None:
    assert pipeline.page_head(object(), "a page's words", 16) == "a page's words"


class FakeImageEmbedder:
    """Row = (x0 + x1, y0 + y1) of each pooled box, (-1, n) for the n-th image embedded alone."""

    dim = 2

    def __init__(self) -> None:
        self.alone: list[tuple[int, ...]] = []
        self.pooled: list[list[tuple[float, ...]]] = []

    def _emb(self, rows: list[list[float]]):
        from imgrag.indexing.embedders import ImageEmbeddings

        v = np.asarray(rows, np.float32).reshape(-1, 2)
        return ImageEmbeddings(vectors=v, features=v * 10, captions=[f"c{r[0]:g},{r[1]:g}" for r in v.tolist()])

    def embed_images(self, imgs):
        self.alone += [im.shape for im in imgs]
        return self._emb([[-1, len(self.alone) - len(imgs) + i] for i in range(len(imgs))])

    def embed_regions(self, imgs, boxes, long_side=320):
        self.pooled += [[tuple(b) for b in bs] for bs in boxes]
        return self._emb([[b[0] + b[2], b[1] + b[3]] for bs in boxes for b in bs])


def _analysed(quality: str, figure: bool = False):
    from types import SimpleNamespace

    img = np.zeros((30, 60, 3), np.uint8)
    tiles = [(s, box, box) for s, box in pipeline.tile_boxes(60, 30, (2,))]
    if figure:
        tiles.append(("f0", (0, 0, 10, 10), np.zeros((10, 10, 3), np.uint8)))
    return SimpleNamespace(image=img, tiles=tiles, record=SimpleNamespace(quality=quality))


@pytest.mark.parametrize("one_pass", [True, False])
def test_a_photo_is_one_backbone_pass_for_its_whole_image_and_grid_tiles(one_pass: bool) -> None:
    """IMGRAG_PHOTO_ONE_PASS: the whole photo is the first box pooled from the tiles' pass; a figure
    tile is still a crop of its own; a document page is embedded whole and its tiles cropped."""
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings

    ie = FakeImageEmbedder()
    rt = SimpleNamespace(image_embedder=ie, settings=Settings(photo_one_pass=one_pass))
    ix = pipeline.Indexer(rt)  # type: ignore[arg-type]
    batch = [_analysed("photo", figure=True), _analysed("born_digital"), _analysed("photo")]
    whole, tiles = ix._image_vectors(batch)
    grid = [(0.0, 0.0, 30.0, 15.0), (30.0, 0.0, 60.0, 15.0), (0.0, 15.0, 30.0, 30.0), (30.0, 15.0, 60.0, 30.0)]
    head = [(0.0, 0.0, 60.0, 30.0)] if one_pass else []
    assert ie.pooled == [head + grid, head + grid]
    assert [t.shape for t in tiles] == [(5, 2), (4, 2), (4, 2)]
    np.testing.assert_array_equal(tiles[0][:4], [[30, 15], [90, 15], [30, 45], [90, 45]])  # pooled grid
    assert tiles[0][4][0] == -1 and tiles[1][:, 0].tolist() == [-1] * 4  # the figure and the document's tiles: crops
    if one_pass:
        assert whole[0][0].tolist() == [60, 30] and whole[2][0].tolist() == [60, 30] and whole[0][2] == "c60,30"
        np.testing.assert_array_equal(whole[0][1], [600, 300])
        assert whole[1][0][0] == -1  # the document page: its own pass
    else:
        assert [w[0][0] for w in whole] == [-1, -1, -1]
    # pages embedded whole, then the crops (the document's 4 tiles and the photo's figure), in order
    assert ie.alone[: 1 if one_pass else 3] == [(30, 60, 3)] * (1 if one_pass else 3)
    assert ie.alone[-5:] == [(10, 10, 3), (15, 30, 3), (15, 30, 3), (15, 30, 3), (15, 30, 3)]


def test_content_framing_gives_a_photo_its_own_whole_image_pass() -> None:
    """IMGRAG_IMAGE_FRAMING=content: the tiles' pass sees the uncropped photo, another framing than the
    memory's and the index's whole-image vectors, so the whole photo is embedded on its own."""
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings

    ie = FakeImageEmbedder()
    ie.framing = "content"  # type: ignore[attr-defined]
    ix = pipeline.Indexer(SimpleNamespace(image_embedder=ie, settings=Settings()))  # type: ignore[arg-type]
    whole, tiles = ix._image_vectors([_analysed("photo")])
    assert ie.pooled == [[(0.0, 0.0, 30.0, 15.0), (30.0, 0.0, 60.0, 15.0), (0.0, 15.0, 30.0, 30.0), (30.0, 15.0, 60.0, 30.0)]]
    assert whole[0][0][0] == -1 and ie.alone == [(30, 60, 3)] and tiles[0].shape == (4, 2)


def test_auto_framing_pools_only_the_photos_it_frames_centre() -> None:
    """IMGRAG_IMAGE_FRAMING=auto: a photo page framed centre (most photos) keeps the one-pass whole
    vector; a drawing-like one, framed by content, is embedded whole on its own."""
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings

    ie = FakeImageEmbedder()
    ie.framing = "auto"  # type: ignore[attr-defined]
    drawing = _analysed("photo")
    drawing.image = np.full((30, 60, 3), 255, np.uint8)  # the fake below calls a white page a drawing
    ie.whole_framing = lambda img: "content" if img.min() == 255 else "centre"  # type: ignore[attr-defined]
    ix = pipeline.Indexer(SimpleNamespace(image_embedder=ie, settings=Settings()))  # type: ignore[arg-type]
    whole, _ = ix._image_vectors([_analysed("photo"), drawing])
    assert whole[0][0].tolist() == [60, 30]  # pooled: the first box of the tiles' pass
    assert whole[1][0][0] == -1 and ie.alone == [(30, 60, 3)]  # the drawing: a pass of its own
    assert len(ie.pooled[0]) == 5 and len(ie.pooled[1]) == 4  # the drawing's tiles are still pooled


def test_tile_side_zero_embeds_every_whole_image_and_tile_alone() -> None:
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings

    ie = FakeImageEmbedder()
    ix = pipeline.Indexer(SimpleNamespace(image_embedder=ie, settings=Settings(tile_side=0)))  # type: ignore[arg-type]
    whole, tiles = ix._image_vectors([_analysed("photo")])
    assert ie.pooled == [] and whole[0][0][0] == -1 and tiles[0].shape == (4, 2)


class WordEmbedder:
    """e5's contract in words: ``fit`` keeps the first ``max_tokens`` words; a vector is (words, 1)."""

    dim = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def fit(self, text: str, is_query: bool = False, max_tokens: int | None = None) -> str:
        return " ".join(text.split()[: max_tokens or 512])

    def embed_passages(self, texts):
        self.seen += list(texts)
        return np.asarray([[len(t.split()), 1.0] for t in texts], np.float32)


def test_a_region_vector_embeds_the_head_of_its_words_and_the_region_keeps_them_all() -> None:
    """IMGRAG_REGION_TEXT_TOKENS: a long block's vector is its first n tokens (a clause block was a
    third of a contract page's e5 time); its stored text, which BM25, the re-rank and quotes read, is whole."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from imgrag.indexing.config import Settings
    from imgrag.indexing.stores.base import ImageRecord

    te = WordEmbedder()
    rt = SimpleNamespace(image_embedder=FakeImageEmbedder(), text_embedder=te, model_identities=dict,
                         settings=Settings(region_text_tokens=16, page_text_tokens=64))
    clause = " ".join(f"w{i}" for i in range(40))
    a = _analysed("born_digital")
    a.record = ImageRecord(image_id="p1", doc_id="d", path="/x.png", format="png", width=60, height=30,
                           quality="born_digital", ocr_text="title\n" + clause, indexed_at=datetime.now(timezone.utc))
    a.text_regions = [("b0", "block", "title", (0, 0, 60, 5)), ("b1", "block", clause, (0, 5, 60, 30))]
    out = pipeline.Indexer(rt)._embed([a])  # type: ignore[arg-type]
    assert te.seen == ["title " + " ".join(clause.split()[:63]), "title", " ".join(clause.split()[:16])]
    blocks = [r for r in out[0].regions if r.kind == "block"]
    assert [r.text for r in blocks] == ["title", clause]
    assert [r.vector[0] for r in blocks] == [1, 16]


def test_the_eval_index_key_follows_the_transfer_memorys_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key hashed IMGRAG_TRANSFER_MEMORY's path: a memory rebuilt in place kept its key (one eval
    index rebuilt back and forth, or on Elasticsearch an error), and ./m.npz beside /abs/m.npz built
    the same index twice. Now the memory's bytes key it; an index keyed by path is reused once."""
    from imgrag.evals.standard import PreparedSet, eval_settings, index_key
    from imgrag.indexing.config import Settings

    monkeypatch.setenv("IMGRAG_EVAL_CACHE", str(tmp_path / "cache"))
    mem = tmp_path / "m.npz"
    mem.write_bytes(b"memory one")
    mem.with_suffix(".json").write_text('{"k": 10}')
    base = Settings(home=tmp_path / "home")
    one = index_key(base.model_copy(update={"transfer_memory": mem}))
    monkeypatch.chdir(tmp_path)
    assert index_key(base.model_copy(update={"transfer_memory": Path("m.npz")})) == one  # the same file
    mem.with_suffix(".json").write_text('{"k": 20}')  # rebuilt in place: another index
    two = index_key(base.model_copy(update={"transfer_memory": mem}))
    assert two != one
    mem.write_bytes(b"memory two")
    assert index_key(base.model_copy(update={"transfer_memory": mem})) not in (one, two)
    # an index built before (keyed by the path) is taken over, not rebuilt
    s = base.model_copy(update={"transfer_memory": mem})
    root = tmp_path / "set"
    old = root / f"index-{index_key(s, by_path=True)}"
    (old / "index").mkdir(parents=True)
    home = eval_settings(s, PreparedSet(name="x", root=root, golden=root / "golden.jsonl")).home
    assert home == root / f"index-{index_key(s)}" and (home / "index").is_dir() and not old.exists()
