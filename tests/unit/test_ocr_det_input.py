"""The detector's input through imgrag's lookup table is byte for byte rapidocr's own."""

from __future__ import annotations

import numpy as np
import pytest
from imgrag.indexing import ocr

utils = pytest.importorskip("rapidocr.ch_ppocr_det.utils")


def _rapidocr_input(op: object, img: np.ndarray) -> np.ndarray:
    resized = op.resize(img)  # type: ignore[attr-defined]
    return np.expand_dims(op.permute(op.normalize(resized)), axis=0).astype(np.float32)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("h", "w", "side", "kind"), [(1754, 1240, 1600, "max"), (97, 131, 384, "max"), (300, 40, 736, "min")])
def test_the_table_gives_rapidocrs_bytes(h: int, w: int, side: int, kind: str) -> None:
    op = utils.DetPreProcess(side, kind, None, None)
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    got = ocr._det_input(op, img)
    want = _rapidocr_input(op, img)
    assert got is not None and got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape and np.array_equal(got, want)


def test_per_channel_constants_and_other_inputs_take_rapidocrs_own_arithmetic() -> None:
    op = utils.DetPreProcess(736, "max", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    img = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert np.array_equal(ocr._det_input(op, img), _rapidocr_input(op, img))
    flt = img.astype(np.float32)
    plain = utils.DetPreProcess(736, "max", None, None)
    assert np.array_equal(ocr._det_input(plain, flt), _rapidocr_input(plain, flt))


def test_the_patch_routes_rapidocrs_preprocessing_once() -> None:
    original = utils.DetPreProcess.__call__
    try:
        ocr.patch_det_input()
        first = utils.DetPreProcess.__call__
        ocr.patch_det_input()
        assert utils.DetPreProcess.__call__ is first and getattr(first, "__imgrag_lut__", False)
        op = utils.DetPreProcess(384, "max", None, None)
        img = np.random.default_rng(2).integers(0, 256, (200, 300, 3), dtype=np.uint8)
        assert np.array_equal(op(img), _rapidocr_input(op, img))
    finally:
        utils.DetPreProcess.__call__ = original
