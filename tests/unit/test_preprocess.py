"""Preprocessing on synthetic pages whose geometry we know exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgrag.indexing.models import Enhancement
from imgrag.indexing.preprocess import Preprocessed, classify_quality, preprocess, shrink

WORDS = (
    "the parties agree that payment shall be made within thirty days of invoice date contract "
    "seller buyer amount total signature clause delivery goods service"
).split()
MARK = (0, 200, 0)  # pure green: appears nowhere else on the pages


def text_page(w: int = 1240, h: int = 1754, size: int = 22, seed: int = 0) -> np.ndarray:
    """A born-digital A4 page at 150 dpi: black anti-aliased text on pure white."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=size)
    d.text((120, 60), "SERVICE AGREEMENT No. 2023-117", fill="black", font=ImageFont.load_default(size=int(size * 1.5)))
    y = 60 + 3 * size
    while y < h - 150:
        words: list[str] = []
        while font.getlength(" ".join([*words, w_ := WORDS[rng.integers(len(WORDS))]])) < w - 260:
            words.append(w_)
        d.text((120, y), " ".join(words), fill="black", font=font)
        y += int(size * 1.6) + (size if rng.random() < 0.12 else 0)
    return np.asarray(im).copy()


def rotate(img: np.ndarray, angle: float, border: int = 255) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the centre, same canvas."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(border,) * 3)


def scanned(img: np.ndarray, angle: float = 1.2, sigma: float = 8.0, paper: int = 222, seed: int = 0) -> np.ndarray:
    """Grey paper, dark-grey ink, a slight skew, scanner blur, sensor noise and speckle."""
    rng = np.random.default_rng(seed)
    x = img.astype(np.float32)
    x = paper * x / 255.0 + 15.0 * (1.0 - x / 255.0)
    x = rotate(x, angle, border=paper)
    x = cv2.GaussianBlur(x, (0, 0), 0.7)
    x += rng.normal(0, sigma, x.shape[:2])[..., None]
    x[rng.random(x.shape[:2]) < 0.002] = 40
    return np.clip(x, 0, 255).astype(np.uint8)


def handwritten(w: int = 1240, h: int = 1754, seed: int = 0, ink: tuple[int, int, int] = (20, 40, 150)) -> np.ndarray:
    """Cursive-like pen scribbles: wavy, slanted strokes of varying width on wandering baselines."""
    rng = np.random.default_rng(seed)
    im = np.full((h, w, 3), 255, np.uint8)
    y = 150.0
    while y < h - 150:
        x, base = 100 + rng.uniform(0, 40), y
        while x < w - 200:
            wl = rng.uniform(60, 180)
            t = np.linspace(0, 1, int(wl / 2))
            freq, amp = rng.uniform(8, 14), rng.uniform(8, 18)
            xs = x + t * wl + rng.uniform(3, 8) * np.sin(2 * np.pi * freq * t + 1.3)
            ys = base - amp * (0.5 + 0.5 * np.sin(2 * np.pi * freq * t)) + 4 * np.sin(3 * t)
            ys += rng.normal(0, 0.8, t.size)
            for i in range(t.size - 1):
                th = int(np.clip(rng.normal(2.5, 1.0), 1, 5))
                cv2.line(im, (int(xs[i]), int(ys[i])), (int(xs[i + 1]), int(ys[i + 1])), ink, th, cv2.LINE_AA)
            x += wl + rng.uniform(20, 40)
            base += rng.uniform(-4, 4)
        y += rng.uniform(50, 70)
    return im


def photo(w: int = 2000, h: int = 1500, seed: int = 0) -> np.ndarray:
    """Natural-ish image: smooth colour gradients, overlapping blobs, no paper, sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 80 * np.sin(xx / 180), 90 + 70 * np.cos(yy / 130), 100 + 60 * np.sin((xx + yy) / 250)], -1)
    for _ in range(25):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, c, int(rng.integers(20, 150)), tuple(float(v) for v in rng.integers(0, 255, 3)), -1)
    img = cv2.GaussianBlur(img, (0, 0), 3) + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def marked_page() -> np.ndarray:
    page = text_page()
    cv2.rectangle(page, (700, 500), (899, 619), MARK, -1)
    return page


def mark_box(img: np.ndarray) -> tuple[float, float, float, float]:
    m = np.all(np.abs(img.astype(np.int16) - np.array(MARK)) < 60, axis=-1)
    ys, xs = np.nonzero(m)
    assert xs.size > 100, "marker not found"
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def names(p: Preprocessed) -> list[str]:
    return [e.name for e in p.applied]


UNROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
"""Turns an upright page into one that needs ``key`` degrees clockwise to be upright again."""


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (text_page, "born_digital"),
        (lambda: text_page(w=850, h=1100, size=13, seed=3), "born_digital"),
        (lambda: scanned(text_page()), "scanned"),
        (lambda: scanned(text_page(), sigma=3, paper=240), "scanned"),
        (handwritten, "handwritten"),
        (lambda: handwritten(ink=(30, 30, 30), seed=2), "handwritten"),
        (photo, "photo"),
    ],
)
def test_classify_quality(make, expected) -> None:
    quality, stats = classify_quality(make())
    assert quality == expected, stats
    assert all(isinstance(v, float) and np.isfinite(v) for v in stats.values())


def test_classify_accepts_grey_and_rejects_float() -> None:
    grey = cv2.cvtColor(text_page(), cv2.COLOR_RGB2GRAY)
    assert classify_quality(grey)[0] == "born_digital"
    with pytest.raises(ValueError, match="uint8"):
        classify_quality(grey.astype(np.float32))


@pytest.mark.parametrize("angle", [-9.0, -2.5, 1.5, 4.0, 12.0])
def test_deskew_recovers_angle(angle: float) -> None:
    p = preprocess(scanned(text_page(), angle=angle))
    deskew = [e for e in p.applied if e.name == "deskew"]
    assert deskew, names(p)
    assert deskew[0].params["angle"] == pytest.approx(-angle, abs=0.5)


def test_tiny_skew_is_left_alone() -> None:
    p = preprocess(rotate(text_page(), 0.1))
    assert "deskew" not in names(p)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_orientation_callback_rotates_upright(degrees: int) -> None:
    page = marked_page()
    upright = preprocess(page)
    seen: list[tuple[int, ...]] = []

    def orientation(img: np.ndarray) -> int:
        seen.append(img.shape)
        return degrees

    turned = cv2.rotate(page, UNROTATE[degrees])
    p = preprocess(turned, orientation=orientation)
    assert seen == [turned.shape]
    assert p.applied[0] == Enhancement(name="rotate90", params={"degrees": degrees})
    assert p.image.shape == upright.image.shape
    assert np.abs(p.image.astype(np.int16) - upright.image.astype(np.int16)).mean() < 2.0
    assert iou(p.box_to_original(mark_box(p.image)), mark_box(turned)) > 0.9


def test_orientation_must_be_multiple_of_90() -> None:
    with pytest.raises(ValueError, match="multiple of 90"):
        preprocess(text_page(), orientation=lambda img: 45)


@pytest.mark.parametrize(("angle", "degrees"), [(4.0, 90), (-3.0, 0), (7.5, 270)])
def test_box_to_original_through_rotation_deskew_and_scale(angle: float, degrees: int) -> None:
    page = scanned(rotate(marked_page(), angle), angle=0, sigma=4)
    if degrees:
        page = cv2.rotate(page, UNROTATE[degrees])
    p = preprocess(page, orientation=lambda img: degrees)
    assert {"deskew", "scale"} <= set(names(p))
    truth = mark_box(page)
    back = p.box_to_original(mark_box(p.image))
    assert iou(back, truth) > 0.8, (back, truth)
    # The marker's centre must land within a pixel: catches half-pixel and canvas-offset errors.
    mask = np.all(np.abs(p.image.astype(np.int16) - np.array(MARK)) < 60, axis=-1)
    ys, xs = np.nonzero(mask)
    (cx, cy), = p.points_to_original([(xs.mean() + 0.5, ys.mean() + 0.5)])
    ys0, xs0 = np.nonzero(np.all(np.abs(page.astype(np.int16) - np.array(MARK)) < 60, axis=-1))
    assert abs(cx - (xs0.mean() + 0.5)) < 1.0 and abs(cy - (ys0.mean() + 0.5)) < 1.0


def test_box_to_original_clamps_and_bounds_corners() -> None:
    p = Preprocessed(
        image=np.zeros((200, 200, 3), np.uint8), quality="scanned", quality_stats={}, applied=[],
        to_original=np.array([[0.5, 0.0, -10.0], [0.0, 0.5, 5.0], [0.0, 0.0, 1.0]]), original_size=(80, 90),
    )
    assert p.box_to_original((40, 20, 100, 60)) == (10.0, 15.0, 40.0, 35.0)
    assert p.box_to_original((0, 0, 200, 200)) == (0.0, 5.0, 80.0, 90.0)
    assert p.points_to_original([(0, 0), (400, 10)]) == [(0.0, 5.0), (80.0, 10.0)]


def test_text_height_normalisation() -> None:
    small = preprocess(text_page(w=600, h=800, size=13, seed=3), target_text_height=32)
    scale = next(e for e in small.applied if e.name == "scale")
    assert scale.params["basis"] == "text_height" and scale.params["factor"] == pytest.approx(2.5)
    assert small.image.shape[:2] == (2000, 1500)

    big = preprocess(text_page(w=1400, h=1000, size=80, seed=4), target_text_height=32)
    scale = next(e for e in big.applied if e.name == "scale")
    assert scale.params["factor"] < 0.9
    assert big.text_height is not None
    assert big.text_height * scale.params["factor"] == pytest.approx(32, rel=0.05)

    skewed = preprocess(rotate(text_page(w=1400, h=1000, size=80, seed=4), 3.0))
    assert names(skewed) == ["scale", "deskew"]
    f = skewed.applied[0].params["factor"]
    a = np.radians(3.0)
    canvas = (f * (1000 * np.cos(a) + 1400 * np.sin(a)), f * (1400 * np.cos(a) + 1000 * np.sin(a)))
    assert skewed.image.shape[:2] == pytest.approx(canvas, abs=2)

    capped = preprocess(text_page(), max_side=2000)
    assert max(capped.image.shape[:2]) <= 2000


def test_noisy_scan_is_denoised_and_paper_lifted() -> None:
    p = preprocess(scanned(text_page(), sigma=12))
    assert names(p)[:2] == ["denoise", "levels"]
    gray = cv2.cvtColor(p.image, cv2.COLOR_RGB2GRAY)
    assert np.median(gray) > 245


def test_clean_page_gets_no_denoise_or_sharpen() -> None:
    p = preprocess(text_page())
    assert names(p) == ["scale"]


def test_blurry_page_is_sharpened() -> None:
    blurry = cv2.GaussianBlur(scanned(text_page(), sigma=2), (0, 0), 2.0)
    p = preprocess(blurry)
    assert p.quality_stats["edge_width"] > 2.5
    assert names(p)[-1] == "sharpen"


def test_photo_only_resized() -> None:
    img = photo()
    before = img.copy()
    p = preprocess(img)
    assert p.quality == "photo"
    assert names(p) == ["scale"] and p.image.shape == (1200, 1600, 3)
    assert p.box_to_original((0, 0, 1600, 1200)) == (0.0, 0.0, 2000.0, 1500.0)
    assert np.array_equal(img, before)


def test_original_untouched_and_copy_returned() -> None:
    page = scanned(text_page(), angle=3.0)
    before = page.copy()
    p = preprocess(page)
    assert np.array_equal(page, before)
    assert not np.shares_memory(p.image, page)
    tiny = np.full((40, 60, 3), 255, np.uint8)
    q = preprocess(tiny, quality="born_digital")
    assert q.applied == [] and not np.shares_memory(q.image, tiny)


def test_dpi_fallback_when_no_text() -> None:
    blank = np.full((800, 600, 3), 250, np.uint8)
    p = preprocess(blank, dpi=200, quality="scanned")
    scale = next(e for e in p.applied if e.name == "scale")
    assert scale.params["basis"] == "dpi"
    assert scale.params["factor"] == pytest.approx(32 / (200 * 10 / 72 * 0.6), rel=1e-3)


def test_shrink_is_integer_and_exact() -> None:
    img = np.zeros((1001, 2003, 3), np.uint8)
    small, k = shrink(img, 800)
    assert k == 3 and small.shape == (333, 667, 3)
    assert shrink(img, 5000)[1] == 1


def test_printed_chinese_page_is_not_handwritten(tmp_path) -> None:
    """CJK print has many diagonal strokes; it must not be mistaken for handwriting."""
    from PIL import Image

    from imgrag.evals.datasets.contracts import make_contracts

    for spec in make_contracts(tmp_path, n=3, seed=5, variants=True, langs=("zh",)):
        q, _ = classify_quality(np.asarray(Image.open(tmp_path / spec.file).convert("RGB")))
        assert q in ("born_digital", "scanned"), (spec.file, q)


def test_percentile_of_counts_is_numpys_percentile_bit_for_bit() -> None:
    """The histogram percentile gives np.percentile's float32 bits on float32 arrays of small
    integers: every q the quality class uses and the edges (one value, all equal, q 0 / 100)."""
    from imgrag.indexing.preprocess import _percentile_of_counts

    rng = np.random.default_rng(7)
    arrays = [np.array([5.0], np.float32), np.full(37, 9.0, np.float32)]
    for n in (2, 3, 10, 101, 1000, 147_000):
        arrays.append(rng.integers(0, 256, n).astype(np.float32))
        arrays.append(np.minimum(rng.geometric(0.3, n), 255).astype(np.float32))  # skewed, many ties
    for a in arrays:
        counts = np.bincount(a.astype(np.int64), minlength=256)
        for q in (99.5, 90.0, 50.0, 2.0, 0.0, 100.0, 33.3):
            want = np.percentile(a, q)
            got = _percentile_of_counts(counts, q)
            assert isinstance(got, np.float32) and want.dtype == np.float32
            assert got.tobytes() == want.tobytes(), (a.size, q, got, want)


def test_quality_statistics_sort_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """classify_quality's edge width takes its 99.5th percentile from a histogram: the same value
    np.percentile gave on the float array, without np.percentile's partition for it."""
    import imgrag.indexing.preprocess as pp

    rng = np.random.default_rng(3)
    img = np.full((300, 400, 3), 235, np.uint8)
    img[100:140, 50:350] = 20  # dark bars: ink, contrast > 40
    img[200:210, 60:300] = 40
    img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    _, stats = pp.classify_quality(img)
    assert stats["edge_width"] > 0
    calls: list[float] = []
    real = np.percentile
    monkeypatch.setattr(pp.np, "percentile", lambda a, q, *x, **k: calls.append(q) or real(a, q, *x, **k))
    _, again = pp.classify_quality(img)
    assert again == stats and 99.5 not in calls


def test_edge_cut_is_the_percentile_or_40() -> None:
    """``_edge_cut`` skips the 90th percentile's partition when it cannot exceed 40: the same value
    as ``max(40, np.percentile(mag, 90))`` on both sides of that line, ties included."""
    from imgrag.indexing.preprocess import _edge_cut

    rng = np.random.default_rng(5)
    arrays = [np.zeros(10, np.float32), np.full(100, 40.0, np.float32), np.full(100, 41.0, np.float32)]
    for n in (1, 2, 11, 1000, 147_456):
        for hi in (30, 45, 60, 400):
            arrays.append((rng.random(n) * hi).astype(np.float32))
            arrays.append(np.where(rng.random(n) < 0.88, 0, 1020).astype(np.float32))  # a flat drawing's steps
    for a in arrays:
        assert _edge_cut(a) == max(40.0, float(np.percentile(a, 90))), (a.size, a.max())


def test_axis_alignment_of_straight_edges_at_the_percentile() -> None:
    """Vertical stripes: every edge one magnitude, the 90th percentile itself. They count as
    aligned (main's exact-magnitude path found no edge over the cut and said 0.0, the handwriting
    side of the class rule)."""
    from imgrag.indexing.preprocess import _axis_alignment

    g = np.full((200, 200), 255, np.uint8)
    for x in range(0, 200, 20):
        g[:, x : x + 10] = 0
    assert _axis_alignment(g) > 0.9
    assert _axis_alignment(np.ascontiguousarray(g.T)) > 0.9

