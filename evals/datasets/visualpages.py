"""Scanned-looking document pages whose subject is something they *show*: a bar, pie or line chart,
a floor plan, a handwritten note, a photo of a machine, a round stamp, a logo — beside pages with the
same kind of text and nothing to see. The printed text never names the visual ("Quarterly figures",
not "bar chart"), so only the image routes can find a page by what it looks like.

Used by :mod:`evals.golden.visual`. Deterministic for a seed.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .fonts import load_font

W, H = 1240, 1754  # A4 at 150 dpi
KINDS = ["bar_chart", "pie_chart", "line_chart", "floor_plan", "handwritten", "photo_machine", "stamp", "logo", "text"]
_BODY = [
    "The figures below summarise the results of the last four quarters for the regional offices.",
    "Please review the attached material before the next meeting of the steering committee.",
    "Questions about this document can be sent to the office of the administrative director.",
    "This page forms part of the annual report and should be read together with the notes.",
]


def _text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, title: str, y0: int = 120) -> int:
    font, _ = load_font("en", 44, bold=True)
    body, _ = load_font("en", 26)
    draw.text((110, y0), title, fill=(20, 20, 20), font=font)
    y = y0 + 90
    for line in rng.permutation(_BODY)[:3]:
        draw.text((110, y), str(line), fill=(30, 30, 30), font=body)
        y += 44
    return y + 30


def _chart(kind: str, rng: np.random.Generator) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    vals = rng.integers(10, 100, 5)
    labels = ["North", "South", "East", "West", "Central"]
    if kind == "bar_chart":
        ax.bar(labels, vals, color=["#4472c4", "#ed7d31", "#a5a5a5", "#ffc000", "#5b9bd5"])
    elif kind == "pie_chart":
        ax.pie(vals, labels=labels)
    else:
        for _ in range(3):
            ax.plot(range(12), np.cumsum(rng.normal(0, 1, 12)), marker="o")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _floor_plan(rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (1000, 700), "white")
    d = ImageDraw.Draw(img)
    font, _ = load_font("en", 24)
    d.rectangle((20, 20, 980, 680), outline="black", width=8)
    xs = sorted(rng.integers(250, 750, 2).tolist())
    d.line((xs[0], 20, xs[0], 680), fill="black", width=6)
    d.line((xs[1], 350, 980, 350), fill="black", width=6)
    d.line((20, 400, xs[0], 400), fill="black", width=6)
    for (x, y), name in zip([(60, 200), (60, 520), (xs[0] + 40, 300), (xs[1] + 40, 150), (xs[1] + 40, 500)],
                            ["Kitchen", "Bath", "Living", "Bedroom", "Study"], strict=True):
        d.text((x, y), name, fill="black", font=font)
    for x in (xs[0] - 60, xs[1] + 60):  # door arcs
        d.arc((x - 50, 300, x + 50, 400), 0, 90, fill="black", width=3)
    return img


def _handwriting(rng: np.random.Generator) -> Image.Image:
    """Cursive-like pen strokes on ruled paper: wobbly connected loops, no printed words."""
    img = Image.new("RGB", (1000, 800), (250, 247, 230))
    d = ImageDraw.Draw(img)
    for y in range(80, 800, 70):
        d.line((0, y, 1000, y), fill=(170, 190, 230), width=2)
    for row in range(9):
        y, x = 60 + row * 70, 60 + int(rng.integers(0, 40))
        pts = []
        while x < 900:
            for t in np.linspace(0, 2 * math.pi, 14):
                pts.append((x + 9 * t + 6 * math.sin(t * 2), y + 14 * math.sin(t) + rng.normal(0, 1.5)))
            x += 60 + int(rng.integers(0, 30))
            if rng.random() < 0.3:
                d.line(pts, fill=(20, 30, 110), width=3)
                pts, x = [], x + 25
        if pts:
            d.line(pts, fill=(20, 30, 110), width=3)
    return img


def _photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.rocket()).convert("RGB")


def _stamp(rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGBA", (420, 420), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    red = (200, 30, 30, 230)
    d.ellipse((10, 10, 410, 410), outline=red, width=14)
    d.ellipse((45, 45, 375, 375), outline=red, width=4)
    cx = cy = 210
    pts = [(cx + 80 * math.cos(a) * (1 if i % 2 == 0 else 0.4), cy + 80 * math.sin(a) * (1 if i % 2 == 0 else 0.4))
           for i, a in enumerate(np.linspace(-math.pi / 2, 1.5 * math.pi, 11)[:-1])]
    d.polygon(pts, fill=red)
    return img


def _logo(rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (600, 300), "white")
    d = ImageDraw.Draw(img)
    colours = [(0, 114, 198), (255, 185, 0), (0, 164, 80), (229, 20, 0)]
    for i, c in enumerate(colours):
        d.rectangle((20 + (i % 2) * 110, 20 + (i // 2) * 110, 120 + (i % 2) * 110, 120 + (i // 2) * 110), fill=c)
    d.ellipse((300, 40, 560, 260), fill=(0, 114, 198))
    d.polygon([(430, 70), (520, 230), (340, 230)], fill="white")
    return img


def _scan(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A photocopy look: greyish paper, noise, blur, a small skew."""
    img = img.rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(235, 233, 228))
    arr = np.asarray(img).astype(np.float32) * 0.92 + 12
    arr += rng.normal(0, 9, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


TITLES = {
    "bar_chart": "Quarterly figures by region", "pie_chart": "Share of the budget", "line_chart": "Trend of the last year",
    "floor_plan": "Apartment 4B, second floor", "handwritten": "Note from the site visit", "photo_machine": "Equipment inspection",
    "stamp": "Certificate of approval", "logo": "Northwind Partners", "text": "Minutes of the committee",
}  # fmt: skip


def make_visual_pages(out_dir: Path, per_kind: int = 2, seed: int = 20261204) -> list[dict[str, str]]:
    """Render ``per_kind`` pages of each kind into ``out_dir``; returns [{"file", "kind"}] and writes
    it to ``out_dir/../meta/visualpages.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    made = []
    for kind in KINDS:
        for n in range(per_kind):
            page = Image.new("RGB", (W, H), "white")
            y = _text(ImageDraw.Draw(page), rng, TITLES[kind])
            visual: Image.Image | None = {
                "bar_chart": lambda: _chart("bar_chart", rng), "pie_chart": lambda: _chart("pie_chart", rng),
                "line_chart": lambda: _chart("line_chart", rng), "floor_plan": lambda: _floor_plan(rng),
                "handwritten": lambda: _handwriting(rng), "photo_machine": _photo, "logo": lambda: _logo(rng),
                "stamp": lambda: None, "text": lambda: None,
            }[kind]()  # fmt: skip
            if visual is not None:
                visual.thumbnail((1000, 1100))
                page.paste(visual, ((W - visual.width) // 2, y))
                y += visual.height + 40
            body, _ = load_font("en", 26)
            draw = ImageDraw.Draw(page)
            for line in rng.permutation(_BODY):
                if y < H - 120:
                    draw.text((110, y), str(line), fill=(30, 30, 30), font=body)
                    y += 44
            if kind == "stamp":
                st = _stamp(rng)
                page.paste(st, (W - 560, H - 620), st)
            name = f"visual_{kind}_{n}.png"
            _scan(page, rng).save(out_dir / name)
            made.append({"file": name, "kind": kind})
    meta = out_dir.parent / "meta" / "visualpages.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(made, indent=1), encoding="utf-8")
    return made
