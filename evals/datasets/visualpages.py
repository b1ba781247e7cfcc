"""Scanned-looking document pages whose subject is something they *show*: a bar, pie or line chart,
a floor plan, a map, a flow diagram, a table, a handwritten note, a photo, a round stamp, a logo —
beside pages with the same kind of text and nothing to see. Pages are English or Chinese. The
printed text never names the visual ("Quarterly figures", not "bar chart"; no title says "floor" or
"note"), so a page is found by what it looks like, not by its words.

Used by :mod:`evals.golden.visual`. Deterministic for a seed; the ``dev`` and ``heldout`` corpora
are two seeds (:data:`SEEDS`), each drawing its own chart styles, photos and titles.

    python -m imgrag.evals.datasets.visualpages OUT_DIR dev|dev2|heldout
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .fonts import load_font

W, H = 1240, 1754  # A4 at 150 dpi
KINDS = [
    "bar_chart", "pie_chart", "line_chart", "floor_plan", "map", "diagram", "table", "handwritten",
    "photo", "stamp", "logo", "text",
]  # fmt: skip
SEEDS = {"dev": 20261204, "heldout": 20261299, "dev2": 20261207}  # dev2: a second tuning corpus
Lang = Literal["en", "zh"]
_BODY = {
    "en": [
        "The figures below summarise the results of the last four quarters for the regional offices.",
        "Please review the attached material before the next meeting of the steering committee.",
        "Questions about this document can be sent to the office of the administrative director.",
        "This page forms part of the annual report and should be read together with the notes.",
    ],
    "zh": [
        "以下内容汇总了各地区办公室过去四个季度的工作结果。",
        "请在下一次指导委员会会议之前审阅所附材料。",
        "有关本文件的问题请联系行政主管办公室。",
        "本页是年度报告的一部分，应与附注一并阅读。",
    ],
}
# Titles say what the page is about, never what it shows (no "chart", "plan", "floor", "note", "map").
TITLES: dict[str, dict[str, list[str]]] = {
    "bar_chart": {"en": ["Quarterly figures by region", "Sales per office"], "zh": ["各地区季度数据", "各办事处销售额"]},
    "pie_chart": {"en": ["Share of the budget", "Where the money went"], "zh": ["预算分配", "经费去向"]},
    "line_chart": {"en": ["Trend of the last year", "Monthly development"], "zh": ["过去一年的走势", "每月变化"]},
    "floor_plan": {"en": ["Apartment 4B", "Unit 12, Harbour Road"], "zh": ["4B单元", "海港路12号"]},
    "map": {"en": ["Delivery area", "Branches in the region"], "zh": ["配送范围", "本区域的分支机构"]},
    "diagram": {"en": ["How a request is handled", "Approval procedure"], "zh": ["申请的处理流程", "审批程序"]},
    "table": {"en": ["Figures at a glance", "Staff per department"], "zh": ["数据一览", "各部门人数"]},
    "handwritten": {"en": ["Site visit, 12 March", "Remarks after the inspection"], "zh": ["三月十二日现场", "检查后的意见"]},
    "photo": {"en": ["Equipment inspection", "Item received"], "zh": ["设备检查", "收到的物品"]},
    "stamp": {"en": ["Certificate of approval", "Confirmation of receipt"], "zh": ["批准证明", "收货确认"]},
    "logo": {"en": ["Northwind Partners", "Bluebird Trading"], "zh": ["北风合伙公司", "青鸟贸易"]},
    "text": {"en": ["Minutes of the committee", "General conditions"], "zh": ["委员会会议记录", "一般条款"]},
}
_LABELS = {"en": ["North", "South", "East", "West", "Central"], "zh": ["北区", "南区", "东区", "西区", "中区"]}
_PALETTES = [
    ["#4472c4", "#ed7d31", "#a5a5a5", "#ffc000", "#5b9bd5"],
    ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"],
    ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51"],
]
_PHOTOS = ("rocket", "astronaut", "coffee", "chelsea", "hubble_deep_field")


def _text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, title: str, lang: Lang, y0: int = 120) -> int:
    font, stroke = load_font(lang, 44, bold=True)
    body, _ = load_font(lang, 26)
    draw.text((110, y0), title, fill=(20, 20, 20), font=font, stroke_width=stroke, stroke_fill=(20, 20, 20))
    y = y0 + 90
    for line in rng.permutation(_BODY[lang])[:3]:
        draw.text((110, y), str(line), fill=(30, 30, 30), font=body)
        y += 44
    return y + 30


def _chart(kind: str, rng: np.random.Generator, lang: Lang) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    from .fonts import find_face

    fp = FontProperties(fname=str(find_face(lang).path), size=11)
    colours = _PALETTES[int(rng.integers(len(_PALETTES)))]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    vals = rng.integers(10, 100, 5)
    labels = _LABELS[lang]
    if kind == "bar_chart":
        if rng.random() < 0.5:
            ax.bar(range(5), vals, color=colours)
            ax.set_xticks(range(5), labels, fontproperties=fp)
        else:
            ax.barh(range(5), vals, color=colours)
            ax.set_yticks(range(5), labels, fontproperties=fp)
    elif kind == "pie_chart":
        ax.pie(vals, labels=labels, colors=colours, textprops={"fontproperties": fp},
               explode=[0.06 * (rng.random() < 0.3) for _ in vals], startangle=float(rng.uniform(0, 360)))
    else:
        for i in range(int(rng.integers(1, 4))):
            ax.plot(range(12), np.cumsum(rng.normal(0, 1, 12)), marker="o" if rng.random() < 0.5 else None, color=colours[i])
        if rng.random() < 0.5:
            ax.grid(True, alpha=0.4)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _floor_plan(rng: np.random.Generator, lang: Lang) -> Image.Image:
    img = Image.new("RGB", (1000, 700), "white")
    d = ImageDraw.Draw(img)
    font, _ = load_font(lang, 24)
    d.rectangle((20, 20, 980, 680), outline="black", width=8)
    xs = sorted(rng.integers(250, 750, 2).tolist())
    d.line((xs[0], 20, xs[0], 680), fill="black", width=6)
    d.line((xs[1], 350, 980, 350), fill="black", width=6)
    d.line((20, 400, xs[0], 400), fill="black", width=6)
    rooms = {"en": ["Kitchen", "Bath", "Living", "Bedroom", "Study"], "zh": ["厨房", "浴室", "客厅", "卧室", "书房"]}[lang]
    for (x, y), name in zip([(60, 200), (60, 520), (xs[0] + 40, 300), (xs[1] + 40, 150), (xs[1] + 40, 500)], rooms, strict=True):
        d.text((x, y), name, fill="black", font=font)
    for x in (xs[0] - 60, xs[1] + 60):  # door arcs
        d.arc((x - 50, 300, x + 50, 400), 0, 90, fill="black", width=3)
    return img


def _map(rng: np.random.Generator, lang: Lang) -> Image.Image:
    """Sea, a wobbly coastline, roads and towns with names."""
    img = Image.new("RGB", (1000, 760), (170, 205, 235))
    d = ImageDraw.Draw(img)
    font, _ = load_font(lang, 22)
    n = 40
    cx, cy = 500 + rng.integers(-60, 60), 380 + rng.integers(-40, 40)
    radii = 300 + np.cumsum(rng.normal(0, 14, n))
    land = [(cx + r * math.cos(2 * math.pi * i / n) * 1.3, cy + r * math.sin(2 * math.pi * i / n)) for i, r in enumerate(radii)]
    d.polygon(land, fill=(225, 230, 200), outline=(90, 110, 80))
    towns = [(int(cx + rng.integers(-300, 300)), int(cy + rng.integers(-200, 200))) for _ in range(5)]
    for a, b in zip(towns, towns[1:]):
        d.line((*a, *b), fill=(200, 80, 60), width=5)
    names = {"en": ["Ashford", "Brockley", "Carden", "Dunmore", "Elston"], "zh": ["东港", "西岭", "南湾", "北山", "中镇"]}[lang]
    for (x, y), name in zip(towns, names, strict=True):
        d.ellipse((x - 9, y - 9, x + 9, y + 9), fill="black")
        d.text((x + 14, y - 12), name, fill="black", font=font)
    return img


def _diagram(rng: np.random.Generator, lang: Lang) -> Image.Image:
    """Boxes joined by arrows, top to bottom."""
    img = Image.new("RGB", (900, 900), "white")
    d = ImageDraw.Draw(img)
    font, _ = load_font(lang, 26)
    steps = {"en": ["Request", "Review", "Decision", "Reply"], "zh": ["提交申请", "审核", "决定", "答复"]}[lang]
    fill = [(230, 240, 255), (255, 245, 220), (235, 250, 235)][int(rng.integers(3))]
    for i, name in enumerate(steps):
        y = 40 + i * 210
        d.rounded_rectangle((250, y, 650, y + 120), radius=18, fill=fill, outline="black", width=4)
        d.text((290, y + 45), name, fill="black", font=font)
        if i < len(steps) - 1:
            d.line((450, y + 120, 450, y + 200), fill="black", width=4)
            d.polygon([(435, y + 185), (465, y + 185), (450, y + 208)], fill="black")
    return img


def _table(rng: np.random.Generator, lang: Lang) -> Image.Image:
    img = Image.new("RGB", (1000, 520), "white")
    d = ImageDraw.Draw(img)
    font, _ = load_font(lang, 24)
    head = {"en": ["Office", "Q1", "Q2", "Q3"], "zh": ["办公室", "一季度", "二季度", "三季度"]}[lang]
    rows = [head] + [[_LABELS[lang][i], *(str(int(v)) for v in rng.integers(10, 999, 3))] for i in range(5)]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x, y = 20 + c * 240, 20 + r * 80
            d.rectangle((x, y, x + 240, y + 80), outline="black", width=2)
            d.text((x + 20, y + 25), cell, fill="black", font=font)
    return img


def _handwriting(rng: np.random.Generator) -> Image.Image:
    """Cursive-like pen strokes on ruled paper: wobbly connected loops, no printed words."""
    img = Image.new("RGB", (1000, 800), (250, 247, 230))
    d = ImageDraw.Draw(img)
    for y in range(80, 800, 70):
        d.line((0, y, 1000, y), fill=(170, 190, 230), width=2)
    ink = [(20, 30, 110), (25, 25, 25)][int(rng.integers(2))]
    for row in range(9):
        y, x = 60 + row * 70, 60 + int(rng.integers(0, 40))
        pts = []
        while x < 900:
            for t in np.linspace(0, 2 * math.pi, 14):
                pts.append((x + 9 * t + 6 * math.sin(t * 2), y + 14 * math.sin(t) + rng.normal(0, 1.5)))
            x += 60 + int(rng.integers(0, 30))
            if rng.random() < 0.3:
                d.line(pts, fill=ink, width=3)
                pts, x = [], x + 25
        if pts:
            d.line(pts, fill=ink, width=3)
    return img


def _photo(rng: np.random.Generator) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, _PHOTOS[int(rng.integers(len(_PHOTOS)))])()).convert("RGB")


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
    colours = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in _PALETTES[int(rng.integers(len(_PALETTES)))]]
    if rng.random() < 0.5:
        for i, c in enumerate(colours[:4]):
            d.rectangle((20 + (i % 2) * 110, 20 + (i // 2) * 110, 120 + (i % 2) * 110, 120 + (i // 2) * 110), fill=c)
    else:
        d.ellipse((20, 20, 240, 240), fill=colours[0])
        d.ellipse((80, 80, 180, 180), fill=colours[1])
    d.ellipse((300, 40, 560, 260), fill=colours[2])
    d.polygon([(430, 70), (520, 230), (340, 230)], fill="white")
    return img


def _scan(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A photocopy look: greyish paper, noise, blur, a small skew."""
    img = img.rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(235, 233, 228))
    arr = np.asarray(img).astype(np.float32) * 0.92 + 12
    arr += rng.normal(0, 9, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


def make_visual_pages(out_dir: Path, split: str = "dev", langs: tuple[Lang, ...] = ("en", "zh")) -> list[dict[str, str]]:
    """Render one page per kind and language of ``split``'s seed into ``out_dir``; returns
    [{"file", "kind", "lang"}] and writes it to ``out_dir/../meta/visualpages.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEEDS[split])
    made = []
    for kind in KINDS:
        for n, lang in enumerate(langs):
            page = Image.new("RGB", (W, H), "white")
            titles = TITLES[kind][lang]
            y = _text(ImageDraw.Draw(page), rng, titles[int(rng.integers(len(titles)))], lang)
            visual: Image.Image | None = {
                "bar_chart": lambda: _chart("bar_chart", rng, lang), "pie_chart": lambda: _chart("pie_chart", rng, lang),
                "line_chart": lambda: _chart("line_chart", rng, lang), "floor_plan": lambda: _floor_plan(rng, lang),
                "map": lambda: _map(rng, lang), "diagram": lambda: _diagram(rng, lang), "table": lambda: _table(rng, lang),
                "handwritten": lambda: _handwriting(rng), "photo": lambda: _photo(rng), "logo": lambda: _logo(rng),
                "stamp": lambda: None, "text": lambda: None,
            }[kind]()  # fmt: skip
            if visual is not None:
                visual.thumbnail((1000, 1000) if kind not in ("logo",) else (int(rng.integers(300, 600)), 400))
                page.paste(visual, ((W - visual.width) // 2, y))
                y += visual.height + 40
            body, _ = load_font(lang, 26)
            draw = ImageDraw.Draw(page)
            for line in rng.permutation(_BODY[lang]):
                if y < H - 120:
                    draw.text((110, y), str(line), fill=(30, 30, 30), font=body)
                    y += 44
            if kind == "stamp":
                st = _stamp(rng)
                page.paste(st, (W - 560, H - 620), st)
            name = f"visual_{split}_{kind}_{n}_{lang}.png"
            _scan(page, rng).save(out_dir / name)
            made.append({"file": name, "kind": kind, "lang": lang})
    meta = out_dir.parent / "meta" / "visualpages.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(made, indent=1, ensure_ascii=False), encoding="utf-8")
    return made


if __name__ == "__main__":  # pragma: no cover - a build script
    if len(sys.argv) != 3 or sys.argv[2] not in SEEDS:
        raise SystemExit("usage: python -m imgrag.evals.datasets.visualpages OUT_DIR dev|dev2|heldout")
    print(f"{len(make_visual_pages(Path(sys.argv[1]), sys.argv[2]))} pages → {sys.argv[1]}")
