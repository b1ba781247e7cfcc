"""Seal detection on synthetic contract pages, clean and degraded, and its false positives."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgrag.indexing.detectors import detect_seals

RED = (215, 30, 40)
BLUE = (30, 60, 190)


def page(w: int = 1240, h: int = 1754, seed: int = 0) -> np.ndarray:
    """A4 at 150 dpi with lines of black text across the whole page (seals land on text)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for y in range(150, h - 100, 36):
        words = " ".join(rng.choice(["payment", "party", "contract", "seal", "the", "of", "2023"], 9))
        cv2.putText(img, words, (100, y), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * w / 1240, (20, 20, 20), 2, cv2.LINE_AA)
    return img


def stamp(img: np.ndarray, cx: int, cy: int, r: int, *, color=RED, shape: str = "round", ry: int | None = None):
    """Press a seal onto the page (multiplied like ink, over the text); returns (page, drawn bbox)."""
    h, w = img.shape[:2]
    layer = np.full((h, w, 3), 255, np.uint8)
    ry = ry or r
    th = max(3, r // 25)
    scale, thick = r / 60, max(2, r // 20)
    if shape in ("square", "filled"):
        filled = shape == "filled"
        cv2.rectangle(layer, (cx - r, cy - ry), (cx + r, cy + ry), color, -1 if filled else th)
        for i, ch in enumerate("WANG"):
            org = (cx - r // 2 + (i % 2) * r // 2 - r // 6, cy - ry // 6 + (i // 2) * ry // 2)
            cv2.putText(layer, ch, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255) if filled else color, thick)
    else:
        cv2.ellipse(layer, (cx, cy), (r, ry), 0, 0, 360, color, th, cv2.LINE_AA)
        text = "SHANGHAI EXAMPLE TRADING CO LTD CONTRACT SEAL"
        for i, ch in enumerate(text):  # company name along the inside of the ring
            a = np.radians(200 + i * 140 / len(text))
            org = (int(cx + 0.75 * r * np.cos(a)) - 6, int(cy + 0.75 * ry * np.sin(a)) + 6)
            cv2.putText(layer, ch, org, cv2.FONT_HERSHEY_SIMPLEX, r / 220, color, max(1, r // 60))
        star = [
            (cx + rr * np.cos(a), cy + rr * np.sin(a))
            for i in range(10)
            for rr, a in [((0.28 if i % 2 == 0 else 0.11) * min(r, ry), np.radians(-90 + 36 * i))]
        ]
        cv2.fillPoly(layer, [np.int32(star)], color, cv2.LINE_AA)
    out = img.astype(np.float32) * (0.15 + 0.85 * layer.astype(np.float32) / 255)
    return out.astype(np.uint8), (cx - r, cy - ry, cx + r + 1, cy + ry + 1)


def red_text(img: np.ndarray, text: str, size: int, y: int = 40) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((150, y), text, fill=RED, font=ImageFont.load_default(size=size))
    return np.asarray(im).copy()


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------------------------- seals


@pytest.mark.parametrize(
    ("kwargs", "color", "shape"),
    [
        ({"r": 118}, "red", "round"),
        ({"r": 60}, "red", "round"),
        ({"r": 150, "ry": 100}, "red", "oval"),
        ({"r": 80, "shape": "square"}, "red", "square"),
        ({"r": 50, "shape": "filled"}, "red", "square"),
        ({"r": 118, "color": BLUE}, "blue", "round"),
    ],
)
def test_seal_found(kwargs, color: str, shape: str) -> None:
    img, box = stamp(page(), 850, 1350, **kwargs)
    seals = detect_seals(img)
    assert len(seals) == 1, seals
    assert seals[0].color == color and seals[0].shape == shape
    assert iou(seals[0].bbox, box) > 0.7
    assert 0.5 < seals[0].confidence <= 1.0


def test_seal_on_noisy_greyish_scan_at_300_dpi() -> None:
    img, box = stamp(page(2480, 3508), 1700, 2700, 236)
    rng = np.random.default_rng(1)
    noisy = img.astype(np.float32) * 0.88 + rng.normal(0, 10, img.shape[:2])[..., None]
    seals = detect_seals(np.clip(noisy, 0, 255).astype(np.uint8))
    assert [s.color for s in seals] == ["red"]
    assert iou(seals[0].bbox, box) > 0.7


def test_two_seals_and_heading() -> None:
    img, a = stamp(red_text(page(), "PURCHASE CONTRACT", 70), 350, 1450, 110)
    img, b = stamp(img, 900, 1450, 110, color=BLUE)
    seals = detect_seals(img)
    assert sorted(s.color for s in seals) == ["blue", "red"]
    for s in seals:
        assert iou(s.bbox, a if s.color == "red" else b) > 0.7


@pytest.mark.parametrize(
    "make",
    [
        lambda: red_text(page(), "SERVICE AGREEMENT", 60),
        lambda: red_text(page(), "CONTRACT 0O8B DQ", 120),
        lambda: cv2.line(page(), (100, 300), (1100, 300), RED, 6),
        lambda: cv2.rectangle(page(), (100, 100), (1140, 1650), RED, 5),  # a red page frame
        lambda: cv2.circle(page(), (600, 600), 80, RED, -1),  # a solid red icon
        lambda: np.full((1754, 1240, 3), 255, np.uint8),
        page,
    ],
    ids=["heading", "big-heading", "rule", "frame", "solid-disc", "blank", "black-text"],
)
def test_no_seal_on_red_text_lines_or_plain_pages(make) -> None:
    assert detect_seals(make()) == []


def test_no_seal_on_photo_of_red_objects() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:1200].astype(np.float32)
    img = np.stack([90 + 60 * np.sin(xx / 150), 110 + 50 * np.cos(yy / 110), 70 + 40 * np.sin((xx + yy) / 200)], -1)
    cv2.circle(img, (600, 450), 120, (200, 20, 30), -1)  # a red ball
    cv2.circle(img, (300, 300), 90, (180, 10, 20), 12)  # a red ring (a tyre, a lifebuoy)
    cv2.ellipse(img, (900, 650), (70, 50), 0, 0, 360, (210, 40, 40), -1)
    img = cv2.GaussianBlur(img, (0, 0), 2) + rng.normal(0, 5, img.shape)
    assert detect_seals(np.clip(img, 0, 255).astype(np.uint8)) == []


def test_no_seal_for_a_stamp_like_logo_off_paper() -> None:
    """A ring with a star printed on a dark, colourful surface (a badge on a jacket) is no stamp."""
    rng = np.random.default_rng(2)
    background = cv2.GaussianBlur(rng.integers(20, 140, (900, 1200, 3)).astype(np.uint8), (0, 0), 4)
    logo, _ = stamp(np.full((900, 1200, 3), 255, np.uint8), 600, 450, 110)
    img = np.where(logo.min(axis=-1, keepdims=True) < 250, logo, background)
    assert detect_seals(img) == []


def test_two_seals_of_one_colour_side_by_side() -> None:
    """Party A's and Party B's stamps sit on one row; that is no row of red glyphs."""
    img, a = stamp(page(), 330, 1400, 115)
    img, b = stamp(img, 860, 1420, 112)
    seals = detect_seals(img)
    assert [s.color for s in seals] == ["red", "red"]
    for box in (a, b):
        assert max(iou(s.bbox, box) for s in seals) > 0.7


@pytest.mark.parametrize("pen", [(40, 60, 170), (20, 30, 110), (200, 30, 40)], ids=["blue-ink", "navy", "red-ink"])
@pytest.mark.parametrize("color", [RED, BLUE], ids=["red", "blue"])
def test_seal_crossed_by_a_signature(color, pen) -> None:
    """A pen stroke of any colour across the stamp (and beyond it) keeps the stamp's own box."""
    img, box = stamp(page(), 600, 1300, 118, color=color)
    xs = np.linspace(380, 900, 40)
    ys = 1330 + 40 * np.sin(xs / 25) + np.random.default_rng(0).normal(0, 4, 40)
    cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, pen, 3, cv2.LINE_AA)
    seals = detect_seals(img)
    assert len(seals) == 1 and seals[0].color == ("red" if color == RED else "blue")
    assert iou(seals[0].bbox, box) > 0.75


def test_faded_seal_on_a_tinted_colour_cast_jpeg() -> None:
    """Light, washed-out ink on yellowed paper, saved as a poor JPEG."""
    img, box = stamp(page(), 850, 1350, 118)
    f = img.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    f = (grey + 0.4 * (f - grey)) * np.array([1.0, 0.92, 0.78])  # faded ink, warm paper
    seals = detect_seals(jpeg(np.clip(f, 0, 255).astype(np.uint8), 30))
    assert [s.color for s in seals] == ["red"]
    assert iou(seals[0].bbox, box) > 0.7


def test_no_seal_on_red_callout_box_or_red_headed_document() -> None:
    """A red heading and rule (a 红头文件 masthead), a red word over black text, red underlines and a
    red-framed note with a red word inside: red, outlined, on paper, but no stamp."""
    img = red_text(page(), "NOTICE", 90, y=40)
    cv2.rectangle(img, (700, 1180), (1110, 1420), RED, 4)
    img = red_text(img, "NOTE", 80, y=1200)  # a red word, over black text
    cv2.putText(img, "NOTE", (760, 1320), cv2.FONT_HERSHEY_SIMPLEX, 2.5, RED, 6, cv2.LINE_AA)  # in the box
    cv2.rectangle(img, (110, 200), (1130, 206), RED, -1)
    for y in range(300, 1700, 140):  # red underlines under words
        cv2.line(img, (200 + y % 300, y + 12), (600 + y % 300, y + 12), RED, 3)
    assert detect_seals(img) == []


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


# ----------------------------------------------------------------- seals on generated contracts


def _score(pages: list[tuple[list[tuple[list[int], str]], list]]) -> tuple[float, float, int, list[str]]:
    """(recall, precision, wrong colours, misses) at IoU >= 0.5, greedy by confidence."""
    truths = tp = fp = wrong = 0
    misses: list[str] = []
    for truth, found in pages:
        used: set[int] = set()
        truths += len(truth)
        for s in sorted(found, key=lambda s: -s.confidence):
            scores = [(iou(s.bbox, box), j) for j, (box, _) in enumerate(truth) if j not in used]
            best, j = max(scores, default=(0.0, -1))
            if best >= 0.5:
                used.add(j)
                tp += 1
                wrong += s.color != truth[j][1]
            else:
                fp += 1
                misses.append(f"false positive {s}")
        misses += [f"missed {truth[j]}" for j in range(len(truth)) if j not in used]
    return tp / max(truths, 1), tp / max(tp + fp, 1), wrong, misses


@pytest.fixture(scope="module")
def contracts(tmp_path_factory):
    """8 generated pages (zh + en; scan variants with JPEG, noise, blur, skew, 90/180/270 turns; an
    oval and blue seals; several pages with two seals on one row) and their ground truth."""
    from imgrag.evals.datasets.contracts import make_contracts

    out = tmp_path_factory.mktemp("contracts")
    specs = make_contracts(out, n=8, seed=5, variants=True)
    return [(s, np.asarray(Image.open(out / s.file).convert("RGB"))) for s in specs]


def _truth(spec) -> list[tuple[list[int], str]]:
    return [(sl.bbox, sl.colour) for sl in spec.seals]


def test_seals_on_generated_contracts(contracts) -> None:
    assert {s.seals[0].colour for s, _ in contracts} == {"red", "blue"}
    assert any(sl.shape == "oval" for s, _ in contracts for sl in s.seals)
    recall, precision, wrong, misses = _score([(_truth(s), detect_seals(img)) for s, img in contracts])
    assert recall >= 0.9 and precision >= 0.9, misses
    assert wrong == 0


def test_seals_on_preprocessed_contracts_map_back(contracts) -> None:
    """What the pipeline does: detect on ``preprocess`` output (upscaled to ~2400 px, turned upright,
    deskewed, denoised) and map the boxes back to the file's pixels."""
    from imgrag.indexing.preprocess import preprocess

    pages = []
    for s, img in contracts:
        pre = preprocess(img, None, orientation=lambda _, r=s.rotation: r)  # the true turn, without OCR
        assert max(pre.image.shape[:2]) > 2000
        found = [f.model_copy(update={"bbox": pre.box_to_original(f.bbox)}) for f in detect_seals(pre.image)]
        pages.append((_truth(s), found))
    recall, precision, wrong, misses = _score(pages)
    assert recall >= 0.9 and precision >= 0.9, misses
    assert wrong == 0


@pytest.mark.parametrize(
    "degrade",
    [
        lambda img: jpeg(_fade(img, 0.5), 30),
        lambda img: jpeg(np.clip(img * np.array([1.0, 0.9, 0.76]), 0, 255).astype(np.uint8), 50),
        lambda img: jpeg(cv2.GaussianBlur(_fade(img, 0.6), (0, 0), 2.0), 25),
    ],
    ids=["faded-jpeg30", "warm-cast", "faded-blur2-jpeg25"],
)
def test_seals_on_degraded_contracts(contracts, degrade) -> None:
    """Harder copies than the generator makes: washed-out ink, a colour cast, heavy blur and JPEG."""
    recall, precision, wrong, misses = _score([(_truth(s), detect_seals(degrade(img))) for s, img in contracts])
    assert recall >= 0.9 and precision >= 0.9, misses
    assert wrong == 0


def test_seals_on_a_75_dpi_copy(contracts) -> None:
    pages = []
    for s, img in contracts:
        small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        pages.append(([([v / 2 for v in box], c) for box, c in _truth(s)], detect_seals(jpeg(small, 50))))
    recall, precision, wrong, misses = _score(pages)
    assert recall >= 0.9 and precision >= 0.9, misses
    assert wrong == 0


def _fade(img: np.ndarray, keep: float) -> np.ndarray:
    f = img.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    return np.clip(grey + keep * (f - grey), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina"])
def test_no_seal_in_photos(name: str) -> None:
    """Red, orange and blue things in photos: a flag and a space suit, coffee, a cat, a rocket,
    stained cells, a retina. Raw and as ``preprocess`` leaves them."""
    from imgrag.indexing.preprocess import preprocess

    skdata = pytest.importorskip("skimage.data")
    img = getattr(skdata, name)()
    assert detect_seals(img) == []
    assert detect_seals(preprocess(img, None).image) == []


def test_no_seal_on_documentation_pages(tmp_path) -> None:
    """Debian Reference pages (en + zh): blue links and code, tables, headings; raw and preprocessed."""
    from imgrag.evals.datasets.docpages import have_doc_deps, make_doc_pages
    from imgrag.indexing.preprocess import preprocess

    if not have_doc_deps():
        pytest.skip("needs bash evals/datasets/system_deps.sh")
    files = make_doc_pages(tmp_path, 4, dpi=150, pdf_lang=None, sidecar=None)
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        assert detect_seals(img) == [], f.name
        assert detect_seals(preprocess(img, None).image) == [], f.name
