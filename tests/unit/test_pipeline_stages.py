"""The pipeline's shortcuts: one text detection per page, no recogniser without text.
Fakes stand in for the models (the real ones: tests/integration/test_ocr.py)."""

from __future__ import annotations

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

