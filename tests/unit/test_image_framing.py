"""IMGRAG_IMAGE_FRAMING / IMGRAG_IMAGE_BACKBONE: what the backbone sees and what the identities record
(no model is loaded: the framing is pixels, the identities are strings)."""

from __future__ import annotations

import numpy as np
import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.embedders.bridge import (
    ARCHS,
    LabelBridgeEmbedder,
    content_square,
    preprocess,
)
from imgrag.indexing.errors import ImgragError
from PIL import Image


class FakeText:
    identity, dim = "fake-text", 8

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 8), np.float32) / np.sqrt(8)

    embed_queries = embed_passages


def _disc(canvas: tuple[int, int], centre: tuple[int, int], r: int = 30, bg: int = 255) -> np.ndarray:
    h, w = canvas
    img = np.full((h, w, 3), bg, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r] = (200, 30, 30)
    return img


def test_a_drawing_is_framed_the_same_wherever_it_sits_on_its_canvas() -> None:
    corner = _disc((300, 440), (40, 40))  # a disc in the corner of a wide white canvas
    alone = _disc((100, 100), (50, 50))  # the same disc on a small one
    a, b = content_square(corner, 224), content_square(alone, 224)
    assert a.shape == (3, 224, 224) and a.dtype == np.float32
    assert np.array_equal(a, b)
    # a canvas over twice the input's side is searched at that size: the same picture to resampling
    big = np.full((1200, 1800, 3), 255, np.uint8)
    big[900:1200, 1400:1700] = np.asarray(Image.fromarray(_disc((100, 100), (50, 50))).resize((300, 300), Image.Resampling.NEAREST))
    assert np.abs(content_square(big, 224) - b).mean() < 0.03
    # the centre crop sees two different pictures (the corner disc is cropped away entirely)
    assert not np.allclose(preprocess(corner), preprocess(alone), atol=0.1)
    assert (preprocess(corner) > 0.99).all()  # all white: nothing of the drawing left
    red = (a[0] > 0.3) & (a[1] < -0.5)
    assert 0.4 < red.mean() < 0.9  # the disc fills the square, with a margin


def test_a_wide_drawing_keeps_both_ends() -> None:
    img = np.full((100, 900, 3), 255, np.uint8)
    img[30:70, 10:60] = (0, 0, 200)  # far left
    img[30:70, 840:890] = (0, 160, 0)  # far right
    x = content_square(img, 224)
    blue, green = (x[2] > 0.3) & (x[0] < -0.5), (x[1] > 0.0) & (x[0] < -0.5)
    assert blue[:, :112].any() and green[:, 112:].any()
    centre = preprocess(img)
    assert not ((centre[2] > 0.3) & (centre[0] < -0.5)).any()  # the centre crop loses both


def test_padding_takes_the_border_colour_and_a_blank_picture_stays_blank() -> None:
    dark = _disc((120, 200), (60, 100), bg=0)
    x = content_square(dark, 64)
    assert x[:, 0, :].max() < -0.99 and x[:, -1, :].max() < -0.99  # padded with black, not white
    blank = np.full((50, 80, 3), 255, np.uint8)
    assert (content_square(blank, 32) > 0.99).all()
    grey = np.full((50, 80), 128, np.uint8)  # greyscale and RGBA go through the usual conversion
    assert content_square(grey, 32).shape == (3, 32, 32)
    assert content_square(np.zeros((10, 10, 4), np.uint8), 16).min() > 0.99  # transparent -> white
    assert np.array_equal(preprocess(dark, 64, 73, framing="content"), x)


def test_identities_name_backbone_and_framing_and_the_default_is_unchanged(tmp_path) -> None:
    default = LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path)  # type: ignore[arg-type]
    assert default.feature_identity.endswith("/pool1280/bicubic256-center224-pm1")  # every existing index's
    assert "efficientnet-lite0-in1k" in default.feature_identity
    content = LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, framing="content")  # type: ignore[arg-type]
    lite2 = LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, backbone="lite2")  # type: ignore[arg-type]
    assert "content-square224" in content.feature_identity and "content-square224" in content.identity
    assert "efficientnet-lite2-in1k" in lite2.feature_identity and "center260" in lite2.feature_identity
    ids = {e.feature_identity for e in (default, content, lite2)} | {e.identity for e in (default, content, lite2)}
    assert len(ids) == 6
    assert (lite2.input_size, content.input_size) == (260, 224)
    with pytest.raises(ImgragError, match="IMGRAG_IMAGE_FRAMING"):
        LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, framing="fill")  # type: ignore[arg-type]
    with pytest.raises(ImgragError, match="IMGRAG_IMAGE_BACKBONE"):
        LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, backbone="lite4")  # type: ignore[arg-type]
    assert set(ARCHS) == {"lite0", "lite2"}


def test_the_settings_reach_the_embedder(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from imgrag.indexing import embedders
    from imgrag.indexing.runtime import Runtime

    seen: list[dict[str, object]] = []

    def fake(**opts: object) -> object:
        seen.append(opts)
        return object()

    monkeypatch.setitem(embedders._IMAGE_TEXT_EMBEDDERS, "bridge", fake)
    monkeypatch.setattr(embedders, "_INSTANCES", {})
    monkeypatch.setenv("IMGRAG_IMAGE_EMBEDDER", "bridge")
    for env, want in (({}, None), ({"IMGRAG_IMAGE_FRAMING": "content"}, ("lite0", "content")),
                      ({"IMGRAG_IMAGE_BACKBONE": "lite2"}, ("lite2", "centre"))):
        for k in ("IMGRAG_IMAGE_FRAMING", "IMGRAG_IMAGE_BACKBONE"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        rt = Runtime(Settings(home=tmp_path))
        rt.__dict__["text_embedder"] = FakeText()  # no model: the attribute is built once, here by hand
        _ = rt.image_embedder
        opts = seen[-1]
        got = (opts["backbone"], opts["framing"]) if "backbone" in opts else None
        assert got == want, (env, opts)
    monkeypatch.setenv("IMGRAG_IMAGE_FRAMING", "fill")
    with pytest.raises(Exception, match="framing"):
        Settings(home=tmp_path)


def test_a_very_wide_picture_is_framed_without_a_canvas_of_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20000 x 200 strip with a bar at each end: the square would be 22,400 px a side (1.5 GB) at
    full resolution; it is built at twice the input's size instead (an attacker picks the aspect)."""
    img = np.full((200, 20000, 3), 255, np.uint8)
    img[:, :300] = 0
    img[:, -300:] = 0
    biggest: list[int] = []
    real_empty = np.empty

    def watch(shape, *a, **k):
        biggest.append(int(np.prod(shape)))
        return real_empty(shape, *a, **k)

    monkeypatch.setattr(np, "empty", watch)
    x = content_square(img, 224)
    assert x.shape == (3, 224, 224) and max(biggest) <= (2 * 224 * 1.2) ** 2 * 3
    dark = x[0] < 0.0
    assert dark[:, :40].any() and dark[:, -40:].any() and not dark[:, 60:-60].any()  # both ends kept


def _photo(shape: tuple[int, int] = (200, 300)) -> np.ndarray:
    rng = np.random.default_rng(0)
    h, w = shape
    ramp = np.linspace(0, 255, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    return np.clip(ramp + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def test_auto_framing_frames_a_drawing_by_content_and_a_photo_centre(tmp_path) -> None:
    """IMGRAG_IMAGE_FRAMING=auto: a drawing on a flat background (peak_mass >= 0.3, the quality
    classifier's statistic) is framed content, a photo centre; the identity is a third one."""
    from imgrag.indexing.embedders.bridge import DRAWING_PEAK_MASS, whole_framing
    from imgrag.indexing.preprocess import classify_quality, peak_mass

    drawing, photo = _disc((120, 300), (60, 250)), _photo()
    for img in (drawing, photo):
        assert peak_mass(img) == classify_quality(img)[1]["peak_mass"]  # the statistic indexing stores
    assert peak_mass(drawing) >= DRAWING_PEAK_MASS > peak_mass(photo)
    assert whole_framing(drawing, "auto") == "content" and whole_framing(photo, "auto") == "centre"
    assert whole_framing(photo, "content") == "content" and whole_framing(drawing, "centre") == "centre"
    assert np.array_equal(preprocess(drawing, framing="auto"), preprocess(drawing, framing="content"))
    assert np.array_equal(preprocess(photo, framing="auto"), preprocess(photo, framing="centre"))
    assert not np.array_equal(preprocess(drawing, framing="auto"), preprocess(drawing, framing="centre"))
    auto = LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, framing="auto")  # type: ignore[arg-type]
    others = [LabelBridgeEmbedder(FakeText(), cache_dir=tmp_path, framing=f) for f in ("centre", "content")]  # type: ignore[arg-type]
    assert auto.feature_identity not in {e.feature_identity for e in others}
    assert "auto-peak0.3" in auto.feature_identity and auto.whole_framing(drawing) == "content"
    assert Settings(home=tmp_path, image_framing="auto").image_framing == "auto"
