"""The emoji pair source: CLDR names in both languages, one glyph per picture, no skin-tone copies."""

from __future__ import annotations

import numpy as np
import pytest

from imgrag.evals.datasets import emoji as E

pytestmark = pytest.mark.skipif(not (E.FONT.is_file() and (E.CLDR / "annotations" / "zh.xml").is_file()),
                                reason="apt-get install fonts-noto-color-emoji unicode-cldr-core")


def test_cldr_names_and_keywords_in_both_languages() -> None:
    en, zh = E._annotations("en"), E._annotations("zh")
    assert en["😀"][0] == "grinning face" and "grin" in en["😀"][1]
    assert zh["🍎"][0] and all("\u4e00" <= ch <= "\u9fff" for ch in zh["🍎"][0])
    assert "flag: Germany" in {en[cp][0] for cp in en if cp.startswith("🇩")}  # derived annotations are read too


def test_render_draws_one_glyph_on_white() -> None:
    arr = E.render("🍎")
    assert arr is not None and arr.shape == (E.CANVAS, E.CANVAS, 3) and arr.dtype == np.uint8
    assert (arr[0, 0] == 255).all() and (arr < 200).any()  # white corners, a coloured glyph
    zwj = E.render("\U0001F469\u200d\U0001F4BB")  # woman technologist: one glyph through raqm shaping
    assert zwj is not None
    assert E.render("\U0001F600\U0001F600\U0001F600") is None  # several glyphs: not one picture


def test_skin_tones_and_symbols_are_not_pictures() -> None:
    assert not E._is_emoji("\U0001F44D\U0001F3FD")  # thumbs up: medium skin tone
    assert not E._is_emoji("©") and E._is_emoji("\U0001F44D")
    e = E.Emoji("emoji-1f34e", "🍎", "red apple", "红苹果", ("apple", "fruit"), ("水果",))
    assert e.captions() == ["red apple", "红苹果", "apple, fruit", "水果"]
