"""OCR engines on the real bundled PP-OCR models: recognition, boxes, reading order, orientation, errors."""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from cjk_font import font
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.models import OcrLine
from imgrag.indexing.ocr import (
    OcrEngine,
    PaddleOcrEngine,
    RapidOcrEngine,
    _is_junk,
    detect_orientation,
    get_ocr_engine,
    reading_order,
    rotate_cw,
)
from PIL import Image, ImageDraw

# --------------------------------------------------------------------------------------------------
# rendering helpers




def norm(text: str) -> str:
    """Compare text loosely: NFKC (full-width → ASCII), no whitespace, lower case."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def text_image(rows: list[tuple[tuple[int, int], str, int]], size=(1000, 400)) -> tuple[np.ndarray, dict[str, tuple]]:
    """White RGB image with each text drawn at its (x, y); returns the drawn bbox per text."""
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    where = {}
    for (x, y), text, px in rows:
        f = font(px)
        d.text((x, y), text, font=f, fill="black")
        where[text] = d.textbbox((x, y), text, font=f)
    return np.array(im), where


PARA_ZH = "甲方应当在合同签订后三十日内向乙方支付全部货款，乙方应保证交付货物的质量符合国家标准。"
PARA_EN = "The supplier shall deliver the goods within thirty days after signing this agreement."


def a4_page() -> np.ndarray:
    """A4 at 150 dpi: a heading and several paragraphs of Chinese and English."""
    w, h = 1240, 1754
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    d.text((120, 110), "采购合同 Purchase Agreement", font=font(56), fill="black")
    body = font(26)
    y = 250
    for para in (PARA_ZH, PARA_EN, PARA_ZH, PARA_EN, PARA_ZH):
        line = ""
        for ch in (para.split(" ") if para.isascii() else list(para)):
            cand = (line + " " + ch).strip() if para.isascii() else line + ch
            if d.textlength(cand, font=body) > w - 240:
                d.text((120, y), line, font=body, fill="black")
                y += 40
                line = ch
            else:
                line = cand
        d.text((120, y), line, font=body, fill="black")
        y += 80
    return np.array(im)


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    return a4_page()


# --------------------------------------------------------------------------------------------------
# recognition


def test_english_and_chinese_recognised_with_boxes(engine: RapidOcrEngine) -> None:
    img, where = text_image(
        [
            ((50, 40), "INVOICE 2023-05-18", 44),
            ((50, 160), "甲方盖章日期：二〇二三年五月", 40),
            ((50, 280), "Total amount 12,345.00", 40),
        ]
    )
    lines = engine.recognize(img)
    joined = norm(" ".join(ln.text for ln in lines))
    assert "invoice2023-05-18" in joined
    assert norm("甲方盖章日期") in joined
    assert "totalamount12,345.00" in joined
    assert all(0.5 <= ln.confidence <= 1.0 for ln in lines)

    # the line holding INVOICE is where it was drawn
    hit = next(ln for ln in lines if "invoice" in norm(ln.text))
    x0, y0, x1, y1 = where["INVOICE 2023-05-18"]
    bx0, by0, bx1, by1 = hit.bbox
    inter = max(0, min(x1, bx1) - max(x0, bx0)) * max(0, min(y1, by1) - max(y0, by0))
    union = (x1 - x0) * (y1 - y0) + (bx1 - bx0) * (by1 - by0) - inter
    assert inter / union > 0.6, (hit.bbox, where["INVOICE 2023-05-18"])
    assert len(hit.polygon) == 4
    for px, py in hit.polygon:
        assert bx0 - 1 <= px <= bx1 + 1 and by0 - 1 <= py <= by1 + 1


def test_reading_order_rows_then_columns(engine: RapidOcrEngine) -> None:
    # Drawn out of order; "Bravo" sits 6 px lower than "Alpha" but is on the same row.
    img, _ = text_image(
        [
            ((620, 246), "Delta 4", 40),
            ((60, 40), "Alpha 1", 40),
            ((620, 46), "Bravo 2", 40),
            ((60, 240), "Charlie 3", 40),
        ]
    )
    texts = [norm(ln.text) for ln in engine.recognize(img)]
    assert texts == ["alpha1", "bravo2", "charlie3", "delta4"]


def test_full_page_in_order(engine: RapidOcrEngine, page: np.ndarray) -> None:
    lines = engine.recognize(page)
    assert len(lines) >= 8
    assert "purchaseagreement" in norm(lines[0].text)
    tops = [ln.bbox[1] for ln in lines]
    assert tops == sorted(tops)
    text = norm("".join(ln.text for ln in lines))
    assert norm("三十日内向乙方支付全部货款") in text
    assert norm("deliver the goods within thirty days") in text
    h, w = page.shape[:2]
    assert all(0 <= ln.bbox[0] < ln.bbox[2] <= w and 0 <= ln.bbox[1] < ln.bbox[3] <= h for ln in lines)


def test_small_crop_is_upscaled_and_read(engine: RapidOcrEngine) -> None:
    img, _ = text_image([((8, 8), "Seal 2024", 16)], size=(120, 36))
    lines = engine.recognize(img)
    assert lines and "seal2024" in norm(lines[0].text)
    assert lines[0].bbox[2] <= 120 and lines[0].bbox[3] <= 36


def test_gray_and_rgba_inputs_and_batch(engine: RapidOcrEngine) -> None:
    img, _ = text_image([((40, 40), "Hello World", 48)], size=(500, 140))
    gray = img.mean(axis=2).astype(np.uint8)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    out = engine.recognize_batch([gray, rgba])
    assert len(out) == 2
    assert all(o and "helloworld" in norm(o[0].text) for o in out)


def test_quick_look_for_text_finds_a_label_and_nothing_on_a_plain_photo(engine: RapidOcrEngine) -> None:
    """The pipeline's gate for photos (IMGRAG_PHOTO_TEXT_GATE): a part-number label on a product
    photo shows at 320 px, a photo without text shows nothing."""
    from imgrag.evals.datasets.defects import _label

    skdata = pytest.importorskip("skimage.data")
    coffee = skdata.coffee()
    assert engine.text_score(coffee, 320) == 0
    labelled = _label(np.ascontiguousarray(coffee[:480, :600]), ["P/N: BRK-4471", "LOT: L2403-117"])
    assert engine.text_score(labelled, 320) >= 1
    assert engine.text_score(np.full((1, 1, 3), 255, np.uint8), 320) == 0


def test_blank_image_gives_no_lines(engine: RapidOcrEngine) -> None:
    assert engine.recognize(np.full((300, 400, 3), 255, np.uint8)) == []


def test_min_confidence_is_applied() -> None:
    img, _ = text_image([((40, 40), "Hello World", 48)], size=(500, 140))
    assert RapidOcrEngine(min_confidence=1.01).recognize(img) == []


def test_junk_filter() -> None:
    assert _is_junk("") and _is_junk("  ") and _is_junk("—|·") and _is_junk("...")
    assert not _is_junk("甲") and not _is_junk("a.") and not _is_junk("3")


def test_reading_order_helper() -> None:
    def ln(x0: float, y0: float, x1: float, y1: float) -> OcrLine:
        return OcrLine(text="", bbox=(x0, y0, x1, y1))

    lines = [ln(300, 102, 400, 122), ln(10, 100, 100, 120), ln(10, 10, 100, 30), ln(10, 200, 100, 220)]
    assert reading_order(lines) == [2, 1, 0, 3]
    assert reading_order([]) == []


# --------------------------------------------------------------------------------------------------
# orientation


@pytest.mark.parametrize("applied", [0, 90, 180, 270])
def test_detect_orientation(page: np.ndarray, applied: int) -> None:
    rotated = rotate_cw(page, applied)
    assert detect_orientation(rotated) == (360 - applied) % 360


def test_detect_orientation_on_blank_page_is_zero() -> None:
    assert detect_orientation(np.full((800, 600, 3), 255, np.uint8)) == 0


def test_rotate_cw_convention() -> None:
    a = np.arange(6).reshape(2, 3)
    assert rotate_cw(a, 90).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_cw(rotate_cw(a, 90), 270).tolist() == a.tolist()
    with pytest.raises(ValueError):
        rotate_cw(a, 45)


# --------------------------------------------------------------------------------------------------
# engines and errors


def test_factory_and_identity() -> None:
    eng = get_ocr_engine("rapidocr")
    assert isinstance(eng, RapidOcrEngine) and isinstance(eng, OcrEngine)
    assert eng.name.startswith("rapidocr-3.") and "det" in eng.name and "rec" in eng.name
    assert isinstance(get_ocr_engine("RapidOCR", min_confidence=0.7), RapidOcrEngine)


def test_unknown_engine_lists_choices() -> None:
    with pytest.raises(ImgragError) as err:
        get_ocr_engine("tesseract")
    assert "tesseract" in err.value.message
    assert "rapidocr" in err.value.hint and "paddleocr" in err.value.hint
    assert " — " in str(err.value)


def test_bad_option_is_a_clear_error() -> None:
    with pytest.raises(ImgragError):
        get_ocr_engine("rapidocr", no_such_option=1)


def test_paddle_without_model_dirs_is_a_clear_error() -> None:
    with pytest.raises(ImgragError) as err:
        get_ocr_engine("paddleocr")
    assert "model" in err.value.message and "IMGRAG_PADDLE_MODEL_DIR" in err.value.hint


def test_paddle_with_missing_dir_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope_det"
    with pytest.raises(ImgragError) as err:
        PaddleOcrEngine(det_model_dir=missing, rec_model_dir=tmp_path)
    assert str(missing) in err.value.message


@pytest.mark.skipif(importlib.util.find_spec("paddleocr") is not None, reason="paddleocr is installed here")
def test_paddle_not_installed_is_a_clear_error(tmp_path: Path) -> None:
    for sub in ("PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"):
        (tmp_path / sub).mkdir()
    with pytest.raises(ImgragError) as err:
        PaddleOcrEngine(model_dir=tmp_path)
    assert "not installed" in err.value.message and "pip install" in err.value.hint


# --------------------------------------------------------------------------------------------------
# the pipeline's one-detection path (detect, read the orientation off the boxes, recognise)


def _count_detector_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from rapidocr.ch_ppocr_det import TextDetector

    calls: list[int] = []
    real = TextDetector.__call__

    def counted(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(TextDetector, "__call__", counted)
    return calls


@pytest.mark.parametrize("applied", [0, 90, 180, 270])
def test_page_ocr_detects_once_and_reads_like_before(
    engine: RapidOcrEngine, page: np.ndarray, applied: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgrag.indexing.pipeline import _ocr_page
    from imgrag.indexing.preprocess import preprocess

    rotated = rotate_cw(page, applied)
    before_pre = preprocess(rotated, 150, orientation=detect_orientation)
    before = engine.recognize(before_pre.image)
    calls = _count_detector_runs(monkeypatch)
    pre, lines = _ocr_page(rotated, 150, engine)
    # upright: one detector run (it used to be two); a page that must turn is detected again once turned
    assert len(calls) == (1 if applied == 0 else 2)
    assert [e.name for e in pre.applied] == [e.name for e in before_pre.applied]
    assert [ln.text for ln in lines] == [ln.text for ln in before]
    assert [ln.bbox for ln in lines] == [ln.bbox for ln in before]
    assert any("Purchase" in ln.text for ln in lines)


def test_no_text_detected_skips_the_recogniser(engine: RapidOcrEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidocr.ch_ppocr_rec import TextRecognizer

    from imgrag.indexing.pipeline import _ocr_page

    rng = np.random.default_rng(0)
    photo = (rng.normal(128, 20, (480, 640, 3)).clip(0, 255)).astype(np.uint8)  # smooth noise, no strokes
    det = engine.detect(photo)
    assert det.empty
    monkeypatch.setattr(TextRecognizer, "__call__", lambda *a, **k: pytest.fail("recogniser ran on an empty page"))
    _, lines = _ocr_page(photo, None, engine)
    assert lines == []


def test_a_page_worker_reads_with_its_own_one_thread_sessions_exactly_like_the_shared_ones(
    engine: RapidOcrEngine, page: np.ndarray
) -> None:
    """indexing.threads.worker_slots: workers get their own OCR and layout sessions (1 thread each on
    2 cores) instead of queueing for shared ones; the lines, boxes and blocks must not change."""
    from concurrent.futures import ThreadPoolExecutor

    from imgrag.indexing import layout, ocr, threads

    shared = engine.read(engine.detect(page))
    shared_blocks = layout.LayoutAnalyzer().detect(page)
    per, init = threads.worker_slots(2)

    def in_worker(_: int) -> tuple[object, object, list[OcrLine], list]:
        own, _lock = engine._engine()
        lay, _lock2 = layout._get_layout(0.5, 0.5, None)
        return own, lay, engine.read(engine.detect(page)), layout.LayoutAnalyzer().detect(page)

    with ThreadPoolExecutor(1, initializer=init) as pool:
        own, lay, lines, blocks = pool.submit(in_worker, 0).result()
    assert own is not engine._engine()[0] and lay is not layout._get_layout(0.5, 0.5, None)[0]
    key = (engine.det_max_side, None, engine.rec_batch, engine.use_cls, None, threads.arena_enabled(), per, 0)  # None: the float recogniser
    assert own is ocr._RAPID_CACHE[key][0]
    assert [(ln.text, ln.bbox) for ln in lines] == [(ln.text, ln.bbox) for ln in shared]
    assert [(b.kind, b.bbox) for b in blocks] == [(b.kind, b.bbox) for b in shared_blocks]


def test_sessions_with_the_memory_arena_read_exactly_like_those_without(
    engine: RapidOcrEngine, page: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMGRAG_ORT_ARENA (indexing.threads.arena_enabled): imgrag's OCR and layout sessions keep ONNX
    Runtime's memory arena (no page faults for every run's activations); a bare ``RapidOCR()`` keeps
    rapidocr's default (none). Only the allocator changes: the lines, boxes and blocks must not."""
    from rapidocr import RapidOCR

    from imgrag.indexing import layout

    def sessions(rapid: RapidOCR) -> list[bool]:
        rapid._load_det_model(), rapid._load_rec_model()
        return [m.session.session.get_session_options().enable_cpu_mem_arena for m in (rapid.text_det, rapid.text_rec)]

    out = {}
    for arena in ("1", "0"):
        monkeypatch.setenv("IMGRAG_ORT_ARENA", arena)
        rapid, _lock = engine._engine()
        lay, _lock2 = layout._get_layout(0.5, 0.5, None)
        assert sessions(rapid) == [arena == "1"] * 2
        assert lay.session.session.get_session_options().enable_cpu_mem_arena is (arena == "1")
        lines = engine.read(engine.detect(page))
        out[arena] = ([(ln.text, ln.bbox) for ln in lines], [(b.kind, b.bbox) for b in layout.LayoutAnalyzer().detect(page)])
    assert out["1"] == out["0"] and out["1"][0]
    assert sessions(RapidOCR(params={"Global.log_level": "error"})) == [False, False]


# --------------------------------------------------------------------------------------------------
# the int8 recogniser (IMGRAG_OCR_INT8)


def test_int8_recogniser_is_derived_once_deterministically_and_reads_a_page(tmp_path: Path, page: np.ndarray) -> None:
    pytest.importorskip("onnxruntime.quantization")
    from imgrag.indexing import ocr_int8

    first = ocr_int8.int8_model(tmp_path / "a")
    again = ocr_int8.int8_model(tmp_path / "b")
    assert first.name == f"{ocr_int8.identity()}.onnx" and first.read_bytes() == again.read_bytes()
    assert first.stat().st_size < ocr_int8.float_model_path().stat().st_size / 2  # int8 weights
    mtime = first.stat().st_mtime_ns
    assert ocr_int8.int8_model(tmp_path / "a") == first and first.stat().st_mtime_ns == mtime  # reused, not rewritten

    eng = RapidOcrEngine(int8_cache=tmp_path / "a")
    assert eng.name.startswith(RapidOcrEngine().name + "+rec-int8-")
    text = " ".join(ln.text for ln in eng.recognize(page))
    assert "Purchase Agreement" in text and "deliver the goods within thirty days" in text
    assert "甲方应当在合同签订后" in text


def test_int8_refuses_ranges_made_for_another_float_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from imgrag.indexing import ocr_int8

    doc = json.loads(ocr_int8.RANGES_FILE.read_text())
    doc["float_sha256"] = "0" * 64
    other = tmp_path / "ranges.json"
    other.write_text(json.dumps(doc))
    monkeypatch.setattr(ocr_int8, "RANGES_FILE", other)
    ocr_int8.recipe.cache_clear()
    with pytest.raises(ImgragError, match="re-calibrate"):
        ocr_int8.int8_model(tmp_path / "cache")
    ocr_int8.recipe.cache_clear()


def test_int8_with_paddleocr_is_one_clear_error() -> None:
    from imgrag.indexing.config import Settings
    from imgrag.indexing.runtime import Runtime

    rt = Runtime(Settings(ocr_engine="paddleocr", ocr_int8=True))
    with pytest.raises(ImgragError, match="IMGRAG_OCR_INT8 is for the rapidocr engine"):
        _ = rt.ocr
