"""Defect photos and the SOP sheets that cover them: generated product photos (a bracket, a gear, a
circuit board, a flange, ... on a conveyor) with one defect drawn in (scratch, dent, missing part,
crack, corrosion, burr), and for each part its visual-inspection SOP page (zh or en) with a part
number, a defect table and the rework steps.

    make_defects(out_dir, n, seed) -> list[DefectSpec]   # out_dir/corpus/{photos,sops}, out_dir/meta/defects.jsonl

A photo is tied to its SOP by the part number, either printed on a label in the photo ("P/N: ...",
read by OCR) or given in a sidecar ``<photo>.imgrag.json`` (with its lot and inspection station);
the SOP prints it after "Part No." / "零件号". Each photo has a lot and a station no other photo
has, each SOP a rework instruction no other SOP has, so a query quoting either has one answer.
Output is a pure function of (seed, n, installed fonts, library versions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel

from .contracts import MARGIN_X
from .contracts import _Page as TextPage  # the contract generator's text-page drawer
from .fonts import load_font
from .sidecars import read_sidecar, write_sidecar

SIDECAR = "defects.jsonl"


class DefectSpec(BaseModel):
    part_id: str
    lang: Literal["zh", "en"]
    link: Literal["label", "sidecar"]
    part_number: str
    part_en: str
    part_zh: str
    material_en: str
    material_zh: str
    defect_code: str
    defect_en: str
    defect_zh: str
    lot: str
    station: str
    rework_en: str
    rework_zh: str
    photo: str  # relative to the corpus folder
    sop: str


# name en, name zh, material en, material zh, shape, colour (BGR)
_PARTS = [
    ("mounting bracket", "安装支架", "aluminium 6061-T6", "6061-T6铝合金", "bracket", (190, 190, 185)),
    ("spur gear", "直齿轮", "steel C45", "45号钢", "gear", (150, 155, 160)),
    ("control board", "控制板", "FR-4 laminate", "FR-4覆铜板", "pcb", (60, 120, 40)),
    ("pipe flange", "管道法兰", "stainless steel 304", "304不锈钢", "flange", (175, 178, 182)),
    ("heat sink", "散热器", "extruded aluminium 6063", "6063挤压铝", "heatsink", (200, 200, 200)),
    ("door hinge", "门铰链", "zinc alloy ZA-8", "ZA-8锌合金", "hinge", (160, 165, 150)),
    ("bearing cover", "轴承盖", "grey cast iron HT250", "HT250灰铸铁", "cover", (95, 95, 100)),
    ("connector housing", "连接器外壳", "nylon PA66 GF30", "PA66加纤尼龙", "housing", (40, 40, 40)),
    ("drive shaft", "传动轴", "alloy steel 40Cr", "40Cr合金钢", "shaft", (140, 140, 150)),
    ("bottle cap", "瓶盖", "polypropylene", "聚丙烯", "cap", (40, 90, 200)),
]
_PREFIX = {"bracket": "BRK", "gear": "GR", "pcb": "PCB", "flange": "FLG", "heatsink": "HS", "hinge": "HNG",
           "cover": "BC", "housing": "CH", "shaft": "SFT", "cap": "CAP"}
# code, en, zh, acceptance en, acceptance zh
_DEFECTS = [
    ("S", "scratch", "划痕", "no scratch longer than 5 mm on a visible face", "外观面不允许有长度超过5毫米的划痕"),
    ("D", "dent", "凹坑", "no dent deeper than 0.2 mm", "不允许有深度超过0.2毫米的凹坑"),
    ("M", "missing part", "缺件", "all screws and components present", "螺钉及元件必须齐全"),
    ("C", "crack", "裂纹", "no crack of any length", "不允许有任何裂纹"),
    ("R", "corrosion", "锈蚀", "no rust or corrosion spots", "不允许有锈斑或腐蚀点"),
    ("B", "burr", "毛刺", "edges free of burrs over 0.1 mm", "边缘不允许有超过0.1毫米的毛刺"),
]
_ACTIONS = [("polish with {grit}-grit paper and re-anodize on line {line}", "用{grit}目砂纸打磨后在{line}号线重新阳极氧化"),
            ("replace the part and quarantine lot for {hours} hours", "更换零件并将该批次隔离{hours}小时"),
            ("deburr with a {grit}-grit file and re-inspect at gate {line}", "用{grit}目锉刀去毛刺后在{line}号检验口复检"),
            ("send to the MRB board within {hours} hours for scrap review", "{hours}小时内提交MRB评审是否报废"),
            ("refit the missing screws to {torque} N·m and re-test on bench {line}", "补装缺失螺钉至{torque}牛·米并在{line}号台复测"),
            ("apply rust inhibitor {grit} and re-coat on line {line}", "涂{grit}号防锈剂后在{line}号线重新涂装")]
_STATIONS = ["AOI", "VIS", "CAM", "QC", "INS"]


def _part_image(shape: str, colour: tuple[int, int, int], rng: np.random.Generator, defect: str) -> np.ndarray:
    """A 640x480 product photo: a part on a conveyor, lit from the top left, with one defect."""
    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    belt = 70 + 25 * (xx / w) + rng.normal(0, 6, (h, w))
    img = np.repeat(belt[..., None], 3, axis=2)
    mask = np.zeros((h, w), np.uint8)
    cx, cy = w // 2 + int(rng.integers(-30, 30)), h // 2 + int(rng.integers(-20, 20))
    holes: list[tuple[int, int, int]] = []
    if shape in ("gear", "flange", "cover", "cap"):
        r = 150
        cv2.circle(mask, (cx, cy), r, 255, -1)
        if shape == "gear":
            for k in range(18):
                a = 2 * np.pi * k / 18
                cv2.circle(mask, (int(cx + r * np.cos(a)), int(cy + r * np.sin(a))), 16, 255, -1)
        hole_r = 45 if shape != "cap" else 0
        if hole_r:
            holes.append((cx, cy, hole_r))
        if shape in ("flange", "cover"):
            holes += [(int(cx + 105 * np.cos(a)), int(cy + 105 * np.sin(a)), 12) for a in np.linspace(0, 2 * np.pi, 7)[:-1]]
    elif shape == "shaft":
        cv2.rectangle(mask, (cx - 260, cy - 45), (cx + 260, cy + 45), 255, -1)
        cv2.rectangle(mask, (cx - 300, cy - 30), (cx + 300, cy + 30), 255, -1)
    elif shape == "heatsink":
        cv2.rectangle(mask, (cx - 200, cy + 60), (cx + 200, cy + 110), 255, -1)
        for k in range(9):
            x = cx - 190 + k * 47
            cv2.rectangle(mask, (x, cy - 130), (x + 16, cy + 60), 255, -1)
    else:  # bracket, pcb, hinge, housing: plates
        cv2.rectangle(mask, (cx - 200, cy - 130), (cx + 200, cy + 130), 255, -1)
        holes += [(cx - 170, cy - 100, 12), (cx + 170, cy - 100, 12), (cx - 170, cy + 100, 12), (cx + 170, cy + 100, 12)]
    for x, y, r in holes:
        cv2.circle(mask, (x, y), r, 0, -1)
    m = mask.astype(np.float32) / 255.0
    shade = 0.75 + 0.45 * (1 - (xx + yy) / (w + h))  # lit from the top left
    part = np.array(colour, np.float32)[None, None, :] * shade[..., None] + rng.normal(0, 4, (h, w, 1))
    shadow = cv2.GaussianBlur(np.roll(np.roll(m, 12, 0), 12, 1), (0, 0), 8)
    img = img * (1 - 0.45 * shadow[..., None])
    img = img * (1 - m[..., None]) + part * m[..., None]
    if shape == "pcb":  # components and traces
        for _ in range(14):
            x, y = int(rng.integers(cx - 170, cx + 150)), int(rng.integers(cy - 110, cy + 90))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(15, 45)), y + int(rng.integers(10, 30))), (30, 30, 30), -1)
        for _ in range(10):
            y = int(rng.integers(cy - 120, cy + 120))
            cv2.line(img, (cx - 195, y), (cx + 195, y), (90, 170, 190), 2)
    screws = [(cx - 170, cy - 100), (cx + 170, cy - 100), (cx - 170, cy + 100), (cx + 170, cy + 100)]
    missing = int(rng.integers(4)) if defect == "M" else -1
    if shape in ("bracket", "pcb", "hinge", "housing"):
        for i, (x, y) in enumerate(screws):
            if i != missing:
                cv2.circle(img, (x, y), 11, (120, 120, 125), -1)
                cv2.line(img, (x - 7, y), (x + 7, y), (60, 60, 60), 2)
    ys, xs = np.nonzero(mask)
    k = int(rng.integers(len(xs)))
    px, py = int(xs[k]), int(ys[k])
    if defect == "S":
        a = rng.uniform(0, np.pi)
        cv2.line(img, (px, py), (int(px + 90 * np.cos(a)), int(py + 90 * np.sin(a))), (235, 235, 235), 2)
    elif defect == "D":
        cv2.ellipse(img, (px, py), (22, 14), float(rng.uniform(0, 180)), 0, 360, (40, 40, 40), -1)
        cv2.ellipse(img, (px - 4, py - 4), (14, 8), 0, 200, 340, (240, 240, 240), 2)
    elif defect == "C":
        pts = [(px, py)]
        for _ in range(8):
            pts.append((pts[-1][0] + int(rng.integers(-6, 14)), pts[-1][1] + int(rng.integers(-12, 12))))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (15, 15, 15), 2)
    elif defect == "R":
        for _ in range(12):
            cv2.circle(img, (px + int(rng.integers(-25, 25)), py + int(rng.integers(-25, 25))), int(rng.integers(3, 10)), (30, 70, 140), -1)
    elif defect == "B":
        for i in range(6):
            cv2.line(img, (px + i * 6, py), (px + i * 6 + 3, py - 12), (220, 220, 220), 2)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), 0.8)
    return img[..., ::-1].copy()  # BGR drawing → RGB


def _label(img: np.ndarray, lines: list[str]) -> np.ndarray:
    """A white inspection label stuck on the belt, bottom right."""
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    font, _ = load_font("en", 22, bold=True)
    width = max(font.getlength(s) for s in lines) + 24
    x0, y0 = pil.width - width - 16, pil.height - 30 * len(lines) - 30
    d.rectangle((x0, y0, pil.width - 16, pil.height - 16), fill=(248, 248, 244), outline=(90, 90, 90))
    for i, s in enumerate(lines):
        d.text((x0 + 12, y0 + 10 + 30 * i), s, fill=(15, 15, 15), font=font)
    return np.asarray(pil)


def render_sop(spec: DefectSpec, path: Path, rng: np.random.Generator, defect_rows: list[tuple[str, str, str, str, str]]) -> None:
    """The SOP page: title, document and part numbers, material, a defect table, the steps."""
    zh = spec.lang == "zh"
    p = TextPage(spec.lang, rng)
    wpage = p.img.width
    y = 90.0
    title = f"外观检验作业指导书 — {spec.part_zh}" if zh else f"Visual Inspection SOP — {spec.part_en.title()}"
    p.text((wpage / 2, y), title, 36, bold=True, center=True)
    y += 80
    size = 26
    doc_no = f"SOP-QC-{int(rng.integers(100, 999))}"
    p.text((MARGIN_X, y), f"文件编号：{doc_no}    版本：B" if zh else f"Document No: {doc_no}    Revision: B", size)
    y += 50
    p.text((MARGIN_X, y), f"零件号：{spec.part_number}" if zh else f"Part No: {spec.part_number}", size)
    y += 50
    p.text((MARGIN_X, y), f"材料：{spec.material_zh}" if zh else f"Material: {spec.material_en}", size)
    y += 70
    heads = ["缺陷代码", "缺陷", "判定标准"] if zh else ["Defect code", "Defect", "Acceptance criterion"]
    cols = [MARGIN_X, MARGIN_X + 190, MARGIN_X + 360, wpage - MARGIN_X]
    row_h = 48
    rows = [heads] + [[code, dz if zh else de, az if zh else ae] for code, de, dz, ae, az in defect_rows]
    for r, row in enumerate(rows):
        top = y + r * row_h
        for c in range(3):
            p.draw.rectangle((cols[c], top, cols[c + 1], top + row_h), outline=(40, 40, 40), width=2)
            text = row[c]
            font_size = 22
            while p.font(font_size)[0].getlength(text) > cols[c + 1] - cols[c] - 16 and font_size > 14:
                font_size -= 1
            p.text((cols[c] + 8, top + (row_h - font_size) / 2 - 2), text, font_size, bold=r == 0)
    y += row_h * len(rows) + 50
    p.text((MARGIN_X, y), "作业步骤：" if zh else "Procedure:", size, bold=True)
    y += 48
    steps = (["在标准光源下目视检查所有外观面。", "对照上表判定缺陷并记录缺陷代码。", f"返工：{spec.rework_zh}。"] if zh else
             ["Inspect every visible face under the standard light.", "Classify defects against the table and record the code.",
              f"Rework: {spec.rework_en}."])
    for i, s in enumerate(steps, 1):
        y = p.paragraph(y, f"{i}. {s}", size)
        y += 4
    y += 60
    img = p.img.crop((0, 0, wpage, min(p.img.height, int(y))))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def plan_defects(n: int, seed: int) -> list[DefectSpec]:
    rng = np.random.default_rng(seed)
    specs: list[DefectSpec] = []
    used: set[str] = set()
    numbers: set[str] = set()
    for k in range(n):
        name_en, name_zh, mat_en, mat_zh, shape, _colour = _PARTS[k % len(_PARTS)]
        while True:
            pn = f"{_PREFIX[shape]}-{int(rng.integers(1000, 9999))}"
            if pn not in numbers:
                numbers.add(pn)
                break
        code, d_en, d_zh, _ae, _az = _DEFECTS[int(rng.integers(len(_DEFECTS)))]
        for _ in range(1000):
            tpl_en, tpl_zh = _ACTIONS[int(rng.integers(len(_ACTIONS)))]
            slots = {"grit": int(rng.choice([120, 180, 240, 320, 400, 600, 800])), "line": int(rng.integers(1, 13)),
                     "hours": int(rng.choice([12, 24, 36, 48, 72])), "torque": float(rng.choice([1.2, 2.5, 3.0, 4.5]))}
            rework_en, rework_zh = tpl_en.format(**slots), tpl_zh.format(**slots)
            if rework_en not in used:
                used.add(rework_en)
                break
        else:
            raise ValueError("no unique rework instruction left")
        lang: Literal["zh", "en"] = "zh" if k % 2 == 0 else "en"
        link: Literal["label", "sidecar"] = "label" if (k // 2) % 2 == 0 else "sidecar"
        pid = f"D{k + 1:03d}"
        specs.append(DefectSpec(
            part_id=pid, lang=lang, link=link, part_number=pn, part_en=name_en, part_zh=name_zh,
            material_en=mat_en, material_zh=mat_zh, defect_code=f"DF-{code}{k % 3 + 1:02d}", defect_en=d_en, defect_zh=d_zh,
            lot=f"L{24 + k % 2}{int(rng.integers(1, 13)):02d}-{k + 1:03d}{int(rng.integers(10, 99))}",
            station=f"{_STATIONS[k % len(_STATIONS)]}-{k + 1:02d}",
            rework_en=rework_en, rework_zh=rework_zh,
            photo=f"photos/{pid.lower()}_{shape}.jpg", sop=f"sops/sop_{pn.lower()}.png",
        ))
    return specs


def make_defects(out_dir: str | Path, n: int = 20, seed: int = 20240915, *, corpus: Path | None = None,
                 sidecar: Path | None = None) -> list[DefectSpec]:
    """Write ``n`` defect photos and their SOP pages under ``out_dir/corpus`` (or ``corpus``), ground
    truth in ``out_dir/meta`` (or ``sidecar``); paths in it are relative to the corpus folder."""
    out = Path(out_dir)
    corpus = corpus or out / "corpus"
    specs = plan_defects(n, seed)
    for i, spec in enumerate(specs):
        rng = np.random.default_rng([seed, i])
        _n, _z, _m, _mz, shape, colour = _PARTS[i % len(_PARTS)]
        img = _part_image(shape, colour, rng, spec.defect_code[3])
        photo = corpus / spec.photo
        photo.parent.mkdir(parents=True, exist_ok=True)
        if spec.link == "label":
            img = _label(img, [f"P/N: {spec.part_number}", f"LOT: {spec.lot}", f"STN: {spec.station}"])
        else:
            side = {"part_number": spec.part_number, "lot": spec.lot, "station": spec.station}
            photo.with_name(photo.name + ".imgrag.json").write_text(json.dumps(side), encoding="utf-8")
        Image.fromarray(img).save(photo, quality=92)
        own = next(d for d in _DEFECTS if d[0] == spec.defect_code[3])
        others = [d for d in _DEFECTS if d[0] != own[0]]
        picks = [others[int(j)] for j in rng.choice(len(others), 2, replace=False)]
        rows = [(f"DF-{c}{(i + j) % 3 + 1:02d}" if c != own[0] else spec.defect_code, de, dz, ae, az)
                for j, (c, de, dz, ae, az) in enumerate([own, *picks])]
        rows = [rows[int(j)] for j in rng.permutation(len(rows))]
        render_sop(spec, corpus / spec.sop, rng, rows)
    write_sidecar(sidecar or out / "meta" / SIDECAR, specs)
    return specs


def read_defects(path: str | Path) -> list[DefectSpec]:
    return read_sidecar(path, DefectSpec)


if __name__ == "__main__":  # python -m imgrag.evals.datasets.defects OUT_DIR [N]
    import sys

    made = make_defects(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
    print(f"{len(made)} parts in {sys.argv[1]}")
