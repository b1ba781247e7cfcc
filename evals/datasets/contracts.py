"""Synthetic contract pages in Chinese and English with company seals, plus exact ground truth.

`make_contracts(out_dir, n, seed)` renders A4 pages at 150 dpi (1240x1754) with PIL and real system
fonts: title, contract number, Party A / Party B (甲方 / 乙方) with addresses and representatives, the
signing date (2023年5月12日 / May 12, 2023), the amount in figures and in words (大写), numbered clauses
and a signature block with hand-drawn-looking signatures. A company seal (red, double ring, star,
name set along the ring; sometimes oval or blue) is stamped near the signature block so it overlaps
the text, as real ones do. A share of the pages get scanned-looking variants (paper tint, skew, blur,
noise, JPEG artefacts, 90/180/270 degree rotation).

Every page gets a line in `contracts.jsonl` (in `out_dir`) with its ground truth: parties, ISO date,
amount, seal boxes in the pixel coordinates of the saved file (after skew/rotation), the variant ops,
the text lines with their boxes, and QA pairs ("甲方是谁", "合同签订日期", "where is the seal", ...).

Output is a pure function of (seed, page index, installed fonts, library versions): the same seed
gives the same bytes, and page i is the same whatever n is.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field

from .fonts import load_font
from .sidecar import read_sidecar, write_sidecar

W, H = 1240, 1754  # A4 at 150 dpi
DPI = 150
MARGIN_X = 130
TEXT_RGB = (28, 28, 30)
SIGN_RGB = (30, 34, 78)
SEAL_RGB = {"red": (214, 38, 46), "blue": (38, 74, 196)}
SIDECAR = "contracts.jsonl"

# --------------------------------------------------------------------------- data model


class TextBox(BaseModel):
    text: str
    bbox: list[int]  # [x0, y0, x1, y1] in the saved file's pixels
    size: int  # font size in pixels, as drawn (before any scan transform)
    bold: bool = False


class SealSpec(BaseModel):
    bbox: list[int]  # [x0, y0, x1, y1] in the saved file's pixels, covering all of the ink
    colour: Literal["red", "blue"]
    shape: Literal["round", "oval"]
    owner: Literal["party_a", "party_b"]
    text: str  # the company name set along the ring
    center_text: str  # horizontal text under the star (合同专用章 / CONTRACT SEAL)


class QAPair(BaseModel):
    query: str
    lang: Literal["zh", "en"]
    field: str  # which ground-truth field answers it
    answer: str | None = None
    answer_aliases: list[str] = Field(default_factory=list)
    answer_bbox: list[int] | None = None  # for "where" questions: the (first) box
    answer_bboxes: list[list[int]] | None = None  # all boxes that answer it


class ContractSpec(BaseModel):
    file: str
    index: int
    seed: int
    lang: Literal["zh", "en"]
    width: int
    height: int
    format: Literal["png", "jpeg"]
    dpi: int = DPI
    contract_type: str
    title: str
    contract_no: str
    party_a: str
    party_a_aliases: list[str]
    party_b: str
    party_b_aliases: list[str]
    representative_a: str
    representative_b: str
    city: str
    sign_date: str  # ISO yyyy-mm-dd
    sign_date_text: str  # as printed
    amount: float
    currency: str
    amount_text: str  # as printed in figures, e.g. 人民币120,000.00元 / USD 120,000.00
    amount_words: str  # 大写 / words, as printed
    seals: list[SealSpec]
    seal_bbox: list[int]  # Party A's seal (the first), for convenience
    seal_colour: Literal["red", "blue"]
    scanned: bool
    variant_ops: list[dict[str, Any]]
    rotation: int  # degrees counter-clockwise the content was turned (0/90/180/270); undo with -rotation
    skew_deg: float  # small rotation, degrees counter-clockwise (positive = CCW as in PIL/cv2)
    clauses: list[str]  # every numbered clause as printed (第一条…, 1. Scope. …), in order
    fields: dict[str, TextBox]  # party_a, party_b, sign_date, amount, title, ... (exact substrings)
    lines: list[TextBox]  # every printed text line
    qa: list[QAPair]


# --------------------------------------------------------------------------- pools

ZH_CITIES: dict[str, tuple[str, ...]] = {
    "北京": ("海淀区", "朝阳区", "东城区", "丰台区"),
    "上海": ("浦东新区", "徐汇区", "静安区", "闵行区"),
    "深圳": ("南山区", "福田区", "宝安区", "龙岗区"),
    "广州": ("天河区", "越秀区", "海珠区", "番禺区"),
    "杭州": ("西湖区", "滨江区", "余杭区", "拱墅区"),
    "南京": ("鼓楼区", "玄武区", "建邺区", "江宁区"),
    "成都": ("武侯区", "锦江区", "高新区", "青羊区"),
    "武汉": ("洪山区", "江汉区", "武昌区", "汉阳区"),
    "苏州": ("工业园区", "姑苏区", "吴中区", "相城区"),
    "西安": ("雁塔区", "碑林区", "未央区", "长安区"),
    "天津": ("和平区", "南开区", "河西区", "滨海新区"),
    "重庆": ("渝中区", "江北区", "南岸区", "沙坪坝区"),
    "厦门": ("思明区", "湖里区", "集美区", "海沧区"),
    "青岛": ("市南区", "崂山区", "黄岛区", "李沧区"),
}
ZH_ROADS = ("中山路", "人民路", "建设大道", "解放路", "科技园路", "长江路", "和平街", "学院路", "滨河大道",
            "光明路", "振华路", "金融街", "创新大道", "新华路")
ZH_TRADE = ("华信", "鼎盛", "恒远", "博达", "瑞丰", "金桥", "星辰", "远航", "嘉禾", "汇通", "宏图", "德润",
            "安泰", "天成", "云帆", "明阳", "启航", "盛世", "锦程", "东方", "鑫源", "润泽", "长城", "中联",
            "海川", "睿智", "万象", "永信", "卓越", "同创")
ZH_INDUSTRY = ("科技", "贸易", "建设工程", "物流", "信息技术", "医疗器械", "文化传媒", "机械制造", "新材料",
               "电子", "软件", "环保科技", "商贸", "实业")
ZH_SUFFIX = ("有限公司", "有限公司", "股份有限公司", "有限责任公司")
ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"
ZH_GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
            "超", "秀英", "华", "平", "建国", "海燕", "志强", "晓东", "文博", "雪梅", "国庆", "子涵", "浩然")
ZH_NUMS = "一二三四五六七八九十"

# contract type -> (role of A, role of B, subject of the contract (…事宜), what B provides, deliverable)
ZH_TYPES: dict[str, tuple[str, str, str, str, str]] = {
    "技术服务合同": ("委托方", "受托方", "信息系统运维及技术支持服务", "信息系统运维及技术支持服务", "服务"),
    "采购合同": ("买方", "卖方", "办公设备及配套耗材的采购", "办公设备及配套耗材", "货物"),
    "设备租赁合同": ("承租方", "出租方", "工程机械设备租赁", "工程机械设备", "租赁设备"),
    "软件开发合同": ("委托方", "开发方", "企业管理软件的定制开发", "企业管理软件定制开发服务", "软件成果"),
    "咨询服务合同": ("委托方", "服务方", "企业管理咨询服务", "企业管理咨询服务", "咨询报告"),
    "货物买卖合同": ("买方", "卖方", "原材料的供应", "原材料", "货物"),
}

EN_TRADE = ("Northwind", "Bluewater", "Silverline", "Redwood", "Summit", "Harborview", "Evergreen",
            "Ironbridge", "Brightstone", "Oakridge", "Crescent", "Pioneer", "Granite", "Maple Leaf",
            "Lakeside", "Sterling", "Westfield", "Riverbend", "Highland", "Cobalt", "Larkspur", "Meridian",
            "Falcon", "Orchard", "Beacon", "Kestrel", "Aurora", "Stonegate")
EN_INDUSTRY = ("Trading", "Technologies", "Logistics", "Engineering", "Consulting", "Manufacturing",
               "Software", "Medical Supplies", "Media", "Materials", "Electronics", "Holdings")
EN_SUFFIX = ("Co., Ltd.", "Inc.", "LLC", "Limited", "Ltd.", "Corporation")
EN_FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
            "Elizabeth", "William", "Susan", "Richard", "Jessica", "Thomas", "Sarah", "Daniel", "Karen",
            "Emily", "Oliver", "Grace", "Henry", "Sophie", "Lucas")
EN_LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Wilson",
           "Anderson", "Taylor", "Moore", "Martin", "Clark", "Lewis", "Walker", "Hall", "Young", "King",
           "Chen", "Wang", "Patel", "Murphy", "Evans")
EN_TITLES = ("Chief Executive Officer", "Managing Director", "General Manager", "President", "Director")
EN_CITIES: dict[str, tuple[str, ...]] = {
    "New York": ("Madison Avenue", "Broadway", "Park Avenue"),
    "London": ("King's Road", "Fleet Street", "Baker Street"),
    "Singapore": ("Orchard Road", "Raffles Place", "Cecil Street"),
    "Toronto": ("Bay Street", "King Street West", "Yonge Street"),
    "Sydney": ("George Street", "Pitt Street", "Kent Street"),
    "Chicago": ("Michigan Avenue", "Wacker Drive", "State Street"),
    "Boston": ("Boylston Street", "Federal Street", "Atlantic Avenue"),
    "Seattle": ("Pine Street", "Union Street", "Westlake Avenue"),
    "Dublin": ("Grafton Street", "Baggot Street", "Harcourt Road"),
    "Manchester": ("Deansgate", "Oxford Road", "Portland Street"),
}
# contract type -> what Party B provides to Party A
EN_TYPES: dict[str, str] = {
    "SERVICE AGREEMENT": "IT operation and maintenance services",
    "PURCHASE AGREEMENT": "office equipment and related consumables",
    "EQUIPMENT LEASE AGREEMENT": "construction equipment on lease",
    "SOFTWARE DEVELOPMENT AGREEMENT": "custom business management software",
    "CONSULTING AGREEMENT": "management consulting services",
    "SUPPLY AGREEMENT": "raw materials",
}
CURRENCIES = {"USD": "US Dollars", "EUR": "Euros", "GBP": "Pounds Sterling"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")

DATE_MIN, DATE_MAX = date(2019, 1, 1), date(2025, 12, 31)

# --------------------------------------------------------------------------- numbers in words

_CN_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_CN_UNITS = ("", "拾", "佰", "仟")
_CN_GROUPS = ("", "万", "亿", "万亿")


def cny_uppercase(amount: Decimal | int | float | str) -> str:
    """Chinese financial uppercase (大写) for an amount of yuan: 120000 -> 壹拾贰万元整,
    100500 -> 壹拾万零伍佰元整, 1234.05 -> 壹仟贰佰叁拾肆元零伍分."""
    d = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if d < 0:
        raise ValueError("negative amount")
    yuan = int(d)
    cents = int((d - yuan) * 100)
    jiao, fen = divmod(cents, 10)
    out = ""
    if yuan == 0:
        out = "零元" if cents == 0 else ""
    else:
        groups: list[int] = []
        n = yuan
        while n:
            groups.append(n % 10000)
            n //= 10000
        if len(groups) > len(_CN_GROUPS):
            raise ValueError("amount too large")
        zero_pending = False
        for gi in range(len(groups) - 1, -1, -1):
            g = groups[gi]
            if g == 0:
                zero_pending = bool(out)
                continue
            if out and (zero_pending or g < 1000):
                out += "零"
            part, inner_zero, started = "", False, False
            for pos in range(3, -1, -1):
                digit = (g // 10**pos) % 10
                if digit == 0:
                    inner_zero = started
                    continue
                if inner_zero:
                    part += "零"
                part += _CN_DIGITS[digit] + _CN_UNITS[pos]
                inner_zero, started = False, True
            out += part + _CN_GROUPS[gi]
            zero_pending = False
        out += "元"
    if cents == 0:
        return out + "整"
    if jiao:
        out += _CN_DIGITS[jiao] + "角"
    elif yuan:
        out += "零"
    if fen:
        out += _CN_DIGITS[fen] + "分"
    else:
        out += "整"
    return out


_EN_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
             "fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _en_below_1000(n: int) -> str:
    words = []
    if n >= 100:
        words.append(_EN_SMALL[n // 100] + " hundred")
        n %= 100
    if n >= 20:
        words.append(_EN_TENS[n // 10] + ("-" + _EN_SMALL[n % 10] if n % 10 else ""))
    elif n:
        words.append(_EN_SMALL[n])
    return " ".join(words)


def number_to_words(n: int) -> str:
    """English words for a non-negative integer: 120000 -> 'One Hundred Twenty Thousand'."""
    if n == 0:
        return "Zero"
    parts = []
    for value, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (1, "")):
        if n >= value:
            parts.append((_en_below_1000(n // value) + " " + name).strip())
            n %= value
    return " ".join(parts).title()


def _fmt_money(x: float) -> str:
    return f"{x:,.2f}"


# --------------------------------------------------------------------------- helpers


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _zh_person(rng: np.random.Generator) -> str:
    return _pick(rng, ZH_SURNAMES) + _pick(rng, ZH_GIVEN)


def _en_person(rng: np.random.Generator) -> str:
    return f"{_pick(rng, EN_FIRST)} {_pick(rng, EN_LAST)}"


def _zh_company(rng: np.random.Generator, avoid: str = "") -> tuple[str, list[str], str]:
    while True:
        city = _pick(rng, list(ZH_CITIES))
        trade = _pick(rng, ZH_TRADE)
        if trade not in avoid:
            break
    industry = _pick(rng, ZH_INDUSTRY)
    name = f"{city}{trade}{industry}{_pick(rng, ZH_SUFFIX)}"
    district = _pick(rng, ZH_CITIES[city])
    addr = f"{city}市{district}{_pick(rng, ZH_ROADS)}{int(rng.integers(1, 300))}号"
    return name, [f"{trade}{industry}", f"{city}{trade}{industry}", f"{city}{trade}"], addr


def _en_company(rng: np.random.Generator, avoid: str = "") -> tuple[str, list[str], str]:
    while True:
        trade = _pick(rng, EN_TRADE)
        if trade not in avoid:
            break
    industry = _pick(rng, EN_INDUSTRY)
    suffix = _pick(rng, EN_SUFFIX)
    name = f"{trade} {industry} {suffix}"
    city = _pick(rng, list(EN_CITIES))
    addr = f"{int(rng.integers(1, 900))} {_pick(rng, EN_CITIES[city])}, {city}"
    return name, [f"{trade} {industry}", trade], addr


def _random_date(rng: np.random.Generator) -> date:
    return DATE_MIN + timedelta(days=int(rng.integers((DATE_MAX - DATE_MIN).days + 1)))


def _random_amount(rng: np.random.Generator) -> float:
    mag = int(rng.integers(4, 8))  # 10^4 .. 10^7
    base = int(rng.integers(1, 100)) * 10 ** (mag - 2)
    if rng.random() < 0.3:
        base += int(rng.integers(1, 100)) * 10 ** max(mag - 4, 2)
    if rng.random() < 0.1:
        return base + 0.5
    return float(base)


def _zh_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _en_date_us(d: date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _en_date_uk(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def _date_aliases(d: date) -> list[str]:
    return [
        _zh_date(d),
        f"{d.year}年{d.month:02d}月{d.day:02d}日",
        f"{d.year}/{d.month:02d}/{d.day:02d}",
        f"{d.year}.{d.month:02d}.{d.day:02d}",
        _en_date_us(d),
        _en_date_uk(d),
        f"{d.month:02d}/{d.day:02d}/{d.year}",
    ]


def _amount_aliases(amount: float, printed: list[str]) -> list[str]:
    out = list(printed)
    if amount == int(amount):
        out.append(str(int(amount)))
        out.append(f"{int(amount):,}")
    out.append(f"{amount:.2f}")
    out.append(_fmt_money(amount))
    seen: list[str] = []
    for a in out:
        if a not in seen:
            seen.append(a)
    return seen


# --------------------------------------------------------------------------- page drawing

_NO_LINE_START = "，。、；：）”！？％"


class _Page:
    """A page being drawn: keeps every line's text and box."""

    def __init__(self, lang: str, rng: np.random.Generator):
        self.lang = lang
        self.rng = rng
        self.img = Image.new("RGB", (W, H), (255, 255, 255))
        self.draw = ImageDraw.Draw(self.img)
        self.lines: list[TextBox] = []
        self.fields: dict[str, TextBox] = {}

    def font(self, size: int, bold: bool = False) -> tuple[ImageFont.FreeTypeFont, int]:
        return load_font(self.lang, size, bold)  # type: ignore[arg-type]

    def text(self, xy: tuple[float, float], s: str, size: int, bold: bool = False,
             fields: dict[str, str] | None = None, anchor_right: bool = False,
             center: bool = False) -> tuple[int, int, int, int]:
        font, stroke = self.font(size, bold)
        x, y = xy
        width = font.getlength(s)
        if anchor_right:
            x = x - width
        elif center:
            x = x - width / 2
        x, y = round(x), round(y)
        self.draw.text((x, y), s, font=font, fill=TEXT_RGB, stroke_width=stroke, stroke_fill=TEXT_RGB)
        bbox = self.draw.textbbox((x, y), s, font=font, stroke_width=stroke)
        bbox = (math.floor(bbox[0]), math.floor(bbox[1]), math.ceil(bbox[2]), math.ceil(bbox[3]))
        self.lines.append(TextBox(text=s, bbox=list(bbox), size=size, bold=bold))
        for name, sub in (fields or {}).items():
            i = s.index(sub)
            sx0 = x + font.getlength(s[:i])
            sb = self.draw.textbbox((sx0, y), sub, font=font, stroke_width=stroke)
            box = [math.floor(sb[0]), math.floor(sb[1]), math.ceil(sb[2]), math.ceil(sb[3])]
            self.fields[name] = TextBox(text=sub, bbox=box, size=size, bold=bold)
        return bbox

    def wrap(self, s: str, size: int, width: float, bold: bool = False) -> list[str]:
        font, _ = self.font(size, bold)
        out: list[str] = []
        if self.lang == "zh":
            line = ""
            for ch in s:
                if not line and out and ch in _NO_LINE_START:
                    out[-1] += ch  # never start a line with closing punctuation (避头点)
                    continue
                if font.getlength(line + ch) > width and line:
                    # keep closing punctuation on the line it closes (避头点)
                    if ch in _NO_LINE_START:
                        out.append(line + ch)
                        line = ""
                        continue
                    out.append(line)
                    line = ch
                else:
                    line += ch
            if line:
                out.append(line)
        else:
            line = ""
            for word in s.split(" "):
                cand = f"{line} {word}" if line else word
                if font.getlength(cand) > width and line:
                    out.append(line)
                    line = word
                else:
                    line = cand
            if line:
                out.append(line)
        return out

    def paragraph(self, y: float, s: str, size: int, indent: float = 0, leading: float = 1.62,
                  fields: dict[str, str] | None = None, x0: float = MARGIN_X,
                  x1: float = W - MARGIN_X) -> float:
        lines = self.wrap(s, size, x1 - x0 - indent)
        for k, ln in enumerate(lines):
            f = {name: sub for name, sub in (fields or {}).items() if sub in ln}
            self.text((x0 + (indent if k == 0 else 0), y), ln, size, fields=f)
            y += size * leading
        return y

    def signature(self, x: float, y: float, w: float, h: float) -> None:
        """A cursive-looking scribble: a smooth random curve with a few loops."""
        rng = self.rng
        n = 160
        t = np.linspace(0, 1, n)
        loops = int(rng.integers(2, 5))
        xs = x + w * t + (h * 0.35) * np.sin(t * loops * 2 * np.pi + rng.random() * 6)
        ys = (y + h * 0.5 + (h * 0.35) * np.cos(t * loops * 2 * np.pi * 1.03 + rng.random() * 6)
              + (h * 0.15) * np.sin(t * 3 * np.pi))
        pts = list(zip(xs.round(1).tolist(), ys.round(1).tolist(), strict=True))
        self.draw.line(pts, fill=SIGN_RGB, width=int(rng.integers(2, 4)), joint="curve")
        # a final underline flourish
        fx = x + w * (0.6 + 0.3 * rng.random())
        self.draw.line([(x + w * 0.05, y + h * 0.92), (fx, y + h * 0.8)], fill=SIGN_RGB, width=2)


# --------------------------------------------------------------------------- seals

SS = 3  # supersampling factor for seal drawing


def _text_on_ring(layer: Image.Image, text: str, font: ImageFont.FreeTypeFont, cx: float, cy: float,
                  a: float, b: float, span_deg: float) -> None:
    """Set `text` clockwise across the top of the ellipse (semi-axes a, b) centred on (cx, cy), each
    glyph upright along the outward normal. Angles: 0 = +x, -90 = top (image y points down)."""
    n = len(text)
    if n == 0:
        return
    step = span_deg / max(n - 1, 1) if n > 1 else 0.0
    start = -90.0 - span_deg / 2 if n > 1 else -90.0
    for k, ch in enumerate(text):
        if ch == " ":
            continue
        th = math.radians(start + k * step)
        px, py = cx + a * math.cos(th), cy + b * math.sin(th)
        # outward normal of the ellipse at this point
        nx, ny = math.cos(th) / a, math.sin(th) / b
        normal_deg = math.degrees(math.atan2(ny, nx))
        rot = -(normal_deg + 90.0)  # PIL rotates counter-clockwise
        bb = font.getbbox(ch)
        gw, gh = bb[2] - bb[0], bb[3] - bb[1]
        size = int(max(gw, gh) * 1.6) + 4
        glyph = Image.new("L", (size, size), 0)
        ImageDraw.Draw(glyph).text((size / 2, size / 2), ch, font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(rot, resample=Image.Resampling.BICUBIC, expand=True)
        layer.paste(255, (round(px - glyph.width / 2), round(py - glyph.height / 2)), glyph)


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.382
        th = math.radians(-90 + k * 36)
        pts.append((cx + rr * math.cos(th), cy + rr * math.sin(th)))
    draw.polygon(pts, fill=255)


def _draw_seal(lang: str, name: str, center_text: str, shape: str, rng: np.random.Generator,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (shape_mask, ink_alpha) float32 arrays in [0, 1], already rotated to a random angle.
    shape_mask is the full extent of the stamp; ink_alpha has the texture of uneven ink."""
    if shape == "round":
        a = b = 112.0 + float(rng.integers(0, 14))  # ~38-42 mm diameter at 150 dpi
    else:
        a, b = 130.0 + float(rng.integers(0, 12)), 88.0 + float(rng.integers(0, 8))
    pad = 12
    cw, ch = int(2 * a + 2 * pad), int(2 * b + 2 * pad)
    big = Image.new("L", (cw * SS, ch * SS), 0)
    d = ImageDraw.Draw(big)
    cx, cy = cw * SS / 2, ch * SS / 2
    A, B = a * SS, b * SS
    ring = max(5.0, a * 0.055) * SS
    d.ellipse([cx - A, cy - B, cx + A, cy + B], outline=255, width=round(ring))
    inner = 0.86
    d.ellipse([cx - A * inner, cy - B * inner, cx + A * inner, cy + B * inner], outline=255,
              width=max(2, round(1.4 * SS)))
    star_r = min(A, B) * (0.24 if shape == "round" else 0.2)
    star_cy = cy - (0.02 * B if shape == "round" else 0.12 * B)
    _star(d, cx, star_cy, star_r)
    # name along the ring
    if lang == "zh":
        glyph_px = min(A, B) * (0.25 if len(name) <= 12 else 0.22)
        span = min(250.0, 20.0 * len(name) + 20)
        ring_text = name
    else:
        glyph_px = min(A, B) * (0.19 if len(name) <= 22 else 0.16)
        span = min(290.0, 10.5 * len(name) + 30)
        ring_text = name.upper()
    if shape == "oval":
        span = min(span + 20, 300.0)
    font_ring, _ = load_font(lang, int(glyph_px), bold=True)  # type: ignore[arg-type]
    text_r = inner - 0.2
    _text_on_ring(big, ring_text, font_ring, cx, cy, A * text_r, B * text_r, span)
    font_c, _ = load_font(lang, int(min(A, B) * (0.17 if lang == "zh" else 0.13)), bold=True)  # type: ignore[arg-type]
    d.text((cx, cy + B * (0.42 if shape == "round" else 0.38)), center_text, font=font_c, fill=255,
           anchor="mm")
    tilt = float(rng.uniform(-25, 25))
    big = big.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True)
    mask = big.resize((big.width // SS, big.height // SS), Image.Resampling.BOX)
    shape_mask = np.asarray(mask, dtype=np.float32) / 255.0
    # uneven ink: low-frequency pressure field plus speckle, never quite solid
    hh, ww = shape_mask.shape
    low = rng.random((max(2, hh // 24), max(2, ww // 24))).astype(np.float32)
    low = cv2.resize(low, (ww, hh), interpolation=cv2.INTER_CUBIC)
    speck = rng.random((hh, ww)).astype(np.float32)
    pressure = np.clip(0.62 + 0.5 * low, 0.0, 1.0)
    pressure[speck < 0.05] *= 0.45
    ink = shape_mask * pressure * float(rng.uniform(0.85, 0.97))
    return shape_mask, ink


# --------------------------------------------------------------------------- one page


def _layout_zh(p: _Page, rng: np.random.Generator, g: dict[str, Any]) -> dict[str, Any]:
    ctype = g["contract_type"]
    role_a, role_b, subject, provided, deliverable = ZH_TYPES[ctype]
    body = 22
    y = 118.0
    p.text((W / 2, y), ctype, 46, bold=True, center=True, fields={"title": ctype})
    y += 92
    p.text((W - MARGIN_X, y), f"合同编号：{g['contract_no']}", 20, anchor_right=True,
           fields={"contract_no": g["contract_no"]})
    y += 52
    s = f"甲方（{role_a}）：{g['party_a']}"
    p.text((MARGIN_X, y), s, body, bold=True, fields={"party_a": g["party_a"]})
    y += body * 1.62
    p.text((MARGIN_X, y), f"地址：{g['addr_a']}", body)
    y += body * 1.62
    p.text((MARGIN_X, y), f"法定代表人：{g['rep_a']}　　联系电话：{g['phone_a']}", body,
           fields={"representative_a": g["rep_a"]})
    y += body * 2.1
    s = f"乙方（{role_b}）：{g['party_b']}"
    p.text((MARGIN_X, y), s, body, bold=True, fields={"party_b": g["party_b"]})
    y += body * 1.62
    p.text((MARGIN_X, y), f"地址：{g['addr_b']}", body)
    y += body * 1.62
    p.text((MARGIN_X, y), f"法定代表人：{g['rep_b']}　　联系电话：{g['phone_b']}", body,
           fields={"representative_b": g["rep_b"]})
    y += body * 2.1
    p.text((MARGIN_X, y), f"签订日期：{g['date_text']}　　签订地点：{g['city']}市", body,
           fields={"sign_date": g["date_text"]})
    y += body * 2.1
    y = p.paragraph(y, f"甲乙双方本着平等自愿、诚实信用的原则，经友好协商，就{subject}事宜达成如下协议，"
                       "以资共同遵守：", body, indent=2 * body)
    y += 8
    amount_printed, words = g["amount_text"], g["amount_words"]
    days = int(rng.integers(2, 13)) * 5
    clauses = [
        ("合同标的", f"乙方按照本合同约定向甲方提供{provided}，{deliverable}的具体内容、规格及验收标准"
                  "详见本合同附件，附件为本合同不可分割的组成部分。"),
        ("合同金额", f"本合同总金额为{amount_printed}（大写：{words}），该金额已包含税费及"
                  "乙方履行本合同所需的全部费用。"),
        ("付款方式", f"甲方应于本合同签订之日起{days}个工作日内支付合同总金额的"
                  f"{int(rng.integers(2, 6)) * 10}%，余款在验收合格后{days}日内付清。"),
        ("履行期限", f"本合同自{g['date_text']}起生效，有效期{int(rng.integers(1, 4))}年。期满前三十日内，"
                  "双方可协商续签。"),
        ("保密条款", "双方对在履行本合同过程中知悉的对方商业秘密负有保密义务，未经对方书面同意不得向任何"
                  "第三方披露。"),
        ("违约责任", f"任何一方违反本合同约定的，应向守约方支付合同总金额{int(rng.integers(1, 4)) * 5}%"
                  "的违约金；违约金不足以弥补损失的，还应赔偿守约方的实际损失。"),
        ("争议解决", f"因本合同引起的争议，双方应友好协商解决；协商不成的，任何一方均可向{g['city']}市"
                  "有管辖权的人民法院提起诉讼。"),
        ("其他", "本合同一式两份，甲乙双方各执一份，具有同等法律效力，自双方签字并盖章之日起生效。"),
    ]
    sig_top = H - 400
    no = 0
    for head, text in clauses:
        s = f"第{ZH_NUMS[no]}条　{head}：{text}"
        need = len(p.wrap(s, body, W - 2 * MARGIN_X - 2 * body)) * body * 1.62
        if y + need > sig_top - 20 and head not in ("合同标的", "合同金额"):
            continue  # page full: drop optional clauses, keep numbering consecutive
        f = {"amount": amount_printed} if head == "合同金额" else None
        y = p.paragraph(y, s, body, indent=2 * body, fields=f)
        y += 6
        g.setdefault("clauses", []).append(s)
        no += 1
    # signature block
    y = max(y + 30, float(sig_top))
    col = [MARGIN_X, W / 2 + 30]
    lines_y: dict[str, float] = {}
    for who, x in (("a", col[0]), ("b", col[1])):
        yy = y
        label = "甲方" if who == "a" else "乙方"
        p.text((x, yy), f"{label}（盖章）：", body, bold=True)
        yy += body * 1.7
        p.text((x, yy), g[f"party_{who}"], body)
        lines_y[who] = yy
        yy += body * 2.4
        p.text((x, yy), "法定代表人（签字）：", body)
        p.signature(x + p.font(body)[0].getlength("法定代表人（签字）：") + 4, yy - 14, 150, 46)
        yy += body * 2.6
        p.text((x, yy), f"日期：{g['date_text']}", body)
    return {"name_line_y": lines_y, "cols": col, "body": body}


def _layout_en(p: _Page, rng: np.random.Generator, g: dict[str, Any]) -> dict[str, Any]:
    ctype = g["contract_type"]
    subject = EN_TYPES[ctype]
    body = 21
    y = 112.0
    p.text((W / 2, y), ctype, 40, bold=True, center=True, fields={"title": ctype})
    y += 74
    p.text((W / 2, y), f"dated {g['date_text']}", 22, center=True, fields={"sign_date": g["date_text"]})
    y += 44
    p.text((W - MARGIN_X, y), f"Agreement No. {g['contract_no']}", 19, anchor_right=True,
           fields={"contract_no": g["contract_no"]})
    y += 48
    kind = ctype.title().replace("Agreement", "Agreement")
    y = p.paragraph(y, f'This {kind} (the "Agreement") is made and entered into as of {g["date_text"]} '
                       f'(the "Effective Date") in {g["city"]} by and between:', body)
    y += 10
    for who, label in (("a", "Party A"), ("b", "Party B")):
        s = f"{label}: {g[f'party_{who}']}"
        p.text((MARGIN_X, y), s, body, bold=True, fields={f"party_{who}": g[f"party_{who}"]})
        y += body * 1.6
        p.text((MARGIN_X + 40, y), f"Address: {g[f'addr_{who}']}", body)
        y += body * 1.6
        p.text((MARGIN_X + 40, y), f"Represented by: {g[f'rep_{who}']}, {g[f'title_{who}']}", body,
               fields={f"representative_{who}": g[f"rep_{who}"]})
        y += body * 2.0
    amount_printed, words = g["amount_text"], g["amount_words"]
    days = int(rng.integers(2, 13)) * 5
    clauses = [
        ("Scope", f"Party B shall provide Party A with {subject} as specified in Schedule 1, which forms "
                  "an integral part of this Agreement."),
        ("Contract Price", f"The total contract price is {amount_printed} ({words}), inclusive of all "
                           "taxes and expenses."),
        ("Payment", f"Party A shall pay {int(rng.integers(2, 6)) * 10}% of the contract price within "
                    f"{days} days after the Effective Date and the balance within {days} days after "
                    "acceptance."),
        ("Term", f"This Agreement takes effect on the Effective Date and remains in force for "
                 f"{int(rng.integers(1, 4)) * 12} months unless terminated earlier in accordance herewith."),
        ("Confidentiality", "Each party shall keep confidential all information received from the "
                            "other party and shall not disclose it to any third party without prior "
                            "written consent."),
        ("Liability", "A party in breach shall pay liquidated damages of "
                      f"{int(rng.integers(1, 4)) * 5}% of the contract price and compensate the other "
                      "party for any further loss."),
        ("Governing Law", f"This Agreement is governed by the laws of the place of signing. Disputes "
                          f"shall be submitted to the competent courts of {g['city']}."),
        ("Counterparts", "This Agreement is executed in two counterparts, each party holding one, both "
                         "of equal force."),
    ]
    sig_top = H - 420
    no = 0
    for head, text in clauses:
        s = f"{no + 1}. {head}. {text}"
        need = len(p.wrap(s, body, W - 2 * MARGIN_X)) * body * 1.6
        if y + need > sig_top - 20 and head not in ("Scope", "Contract Price"):
            continue
        f = {"amount": amount_printed} if head == "Contract Price" else None
        y = p.paragraph(y, s, body, leading=1.6, fields=f)
        y += 8
        g.setdefault("clauses", []).append(s)
        no += 1
    y = max(y + 30, float(sig_top))
    col = [MARGIN_X, W / 2 + 30]
    lines_y: dict[str, float] = {}
    for who, x in (("a", col[0]), ("b", col[1])):
        yy = y
        p.text((x, yy), "PARTY A" if who == "a" else "PARTY B", body, bold=True)
        yy += body * 1.7
        p.text((x, yy), g[f"party_{who}"], body)
        lines_y[who] = yy
        yy += body * 2.4
        p.text((x, yy), "Signature:", body)
        p.signature(x + p.font(body)[0].getlength("Signature:") + 10, yy - 14, 160, 46)
        yy += body * 2.6
        p.text((x, yy), f"Name: {g[f'rep_{who}']}", body)
        yy += body * 1.7
        p.text((x, yy), f"Date: {g['date_text']}", body)
    return {"name_line_y": lines_y, "cols": col, "body": body}


def _page_genes(lang: str, rng: np.random.Generator, index: int) -> dict[str, Any]:
    d = _random_date(rng)
    amount = _random_amount(rng)
    g: dict[str, Any] = {"date": d, "amount": amount}
    if lang == "zh":
        g["contract_type"] = _pick(rng, list(ZH_TYPES))
        g["party_a"], g["aliases_a"], g["addr_a"] = _zh_company(rng)
        g["party_b"], g["aliases_b"], g["addr_b"] = _zh_company(rng, avoid=g["party_a"])
        g["rep_a"], g["rep_b"] = _zh_person(rng), _zh_person(rng)
        g["phone_a"] = f"1{int(rng.integers(3, 9))}{int(rng.integers(0, 10**9)):09d}"
        g["phone_b"] = f"1{int(rng.integers(3, 9))}{int(rng.integers(0, 10**9)):09d}"
        g["city"] = _pick(rng, list(ZH_CITIES))
        g["date_text"] = _zh_date(d)
        g["currency"] = "CNY"
        g["amount_text"] = f"人民币{_fmt_money(amount)}元"
        g["amount_words"] = "人民币" + cny_uppercase(amount)
        g["contract_no"] = f"HT-{d:%Y%m%d}-{int(rng.integers(1, 1000)):03d}"
    else:
        g["contract_type"] = _pick(rng, list(EN_TYPES))
        g["party_a"], g["aliases_a"], g["addr_a"] = _en_company(rng)
        g["party_b"], g["aliases_b"], g["addr_b"] = _en_company(rng, avoid=g["party_a"])
        g["rep_a"], g["rep_b"] = _en_person(rng), _en_person(rng)
        g["title_a"], g["title_b"] = _pick(rng, EN_TITLES), _pick(rng, EN_TITLES)
        g["city"] = _pick(rng, list(EN_CITIES))
        g["date_text"] = _en_date_us(d) if rng.random() < 0.7 else _en_date_uk(d)
        cur = _pick(rng, ("USD", "USD", "USD", "EUR", "GBP"))
        g["currency"] = cur
        g["amount_text"] = f"{cur} {_fmt_money(amount)}"
        cents = round((amount - int(amount)) * 100)
        g["amount_words"] = f"{number_to_words(int(amount))} {CURRENCIES[cur]}" + (
            f" and {cents:02d}/100" if cents else "")
        g["contract_no"] = f"AG-{d:%Y%m%d}-{int(rng.integers(1, 1000)):03d}"
    return g


def _seal_plan(index: int, rng: np.random.Generator) -> tuple[str, str, bool]:
    """(colour, shape, second seal for Party B?) — cycles so small sets still cover every kind."""
    colour = "blue" if index % 6 == 5 else "red"
    shape = "oval" if index % 6 == 4 or (index % 6 == 5 and rng.random() < 0.5) else "round"
    second = bool(rng.random() < 0.5)
    return colour, shape, second


def _scan_plan(j: int, rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of the j-th scanned-looking page; profiles cycle so every kind appears early."""
    profile = j % 5
    plan: dict[str, Any] = {
        "tint": True,
        "skew": float(np.round(rng.uniform(0.6, 3.0) * (1 if rng.random() < 0.5 else -1), 2)),
        "blur": 0.0,
        "noise": 0.0,
        "rot": 0,
        "jpeg": 0,
    }
    if profile == 0:
        plan.update(noise=float(np.round(rng.uniform(4, 9), 1)), jpeg=int(rng.integers(40, 70)))
    elif profile == 1:
        plan.update(blur=float(np.round(rng.uniform(0.6, 1.2), 2)))
    elif profile == 2:
        plan.update(skew=0.0, rot=90 if rng.random() < 0.5 else 270,
                    noise=float(np.round(rng.uniform(3, 7), 1)), jpeg=int(rng.integers(45, 75)))
    elif profile == 3:
        plan.update(rot=180, blur=float(np.round(rng.uniform(0.5, 1.0), 2)),
                    noise=float(np.round(rng.uniform(3, 8), 1)), jpeg=int(rng.integers(35, 65)))
    else:
        plan.update(tint=True, blur=float(np.round(rng.uniform(0.7, 1.4), 2)), jpeg=int(rng.integers(30, 50)))
    return plan


def _affine_pts(M: np.ndarray, box: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)
    q = pts @ M.T
    return [float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max())]


def _clip_box(b: Sequence[float], w: int, h: int, pad: float = 0.0) -> list[int]:
    return [max(0, math.floor(b[0] - pad)), max(0, math.floor(b[1] - pad)),
            min(w, math.ceil(b[2] + pad)), min(h, math.ceil(b[3] + pad))]


def _mask_bbox(m: np.ndarray, thr: float = 0.02) -> list[int]:
    ys, xs = np.nonzero(m > thr)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@dataclass
class Scanned:
    """A drawn page after :func:`scan_page`, with what was done to it."""

    page: np.ndarray  # float32 (h, w, 3), 0..255, not yet clipped
    masks: list[np.ndarray]  # the input masks, moved with the page
    M: np.ndarray  # 3x3: drawn-page pixels -> saved-file pixels
    ops: list[dict[str, Any]]
    rotation: int = 0
    skew: float = 0.0
    blur_pad: float = 0.0
    fmt: str = "png"
    jpeg_q: int = 0


def scan_page(page: np.ndarray, masks: list[np.ndarray], scan_index: int | None, rng: np.random.Generator,
              noise_seed: Sequence[int]) -> Scanned:
    """Make a drawn W x H page (float32 RGB) scanned-looking with the `scan_index`-th profile
    (paper tint, skew, blur, noise, 90/180/270 rotation, JPEG); `None` leaves it clean. `masks`
    (same size as the page) are moved along; `M` maps drawn-page boxes to the saved file's."""
    ops: list[dict[str, Any]] = []
    M = np.eye(3)
    rotation, skew = 0, 0.0
    blur_pad = 0.0
    fmt = "png"
    jpeg_q = 0
    if scan_index is not None:
        plan = _scan_plan(scan_index, rng)
        paper = np.array([float(rng.uniform(228, 242)), float(rng.uniform(224, 238)),
                          float(rng.uniform(210, 230))], dtype=np.float32)
        if plan["tint"]:
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
            gx, gy = float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))
            grad = 1.0 - 0.05 * ((xx / W - 0.5) * gx + (yy / H - 0.5) * gy)
            page = page * (paper / 255.0)[None, None, :] * grad[..., None]
            ops.append({"op": "paper_tint", "rgb": [round(float(v)) for v in paper]})
        if plan["skew"]:
            skew = plan["skew"]
            R = cv2.getRotationMatrix2D((W / 2, H / 2), skew, 1.0)
            page = cv2.warpAffine(page, R, (W, H), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=tuple(float(v) for v in paper))
            masks = [cv2.warpAffine(m, R, (W, H), flags=cv2.INTER_LINEAR) for m in masks]
            M = np.vstack([R, [0, 0, 1]]) @ M
            ops.append({"op": "skew", "degrees": skew})
        if plan["blur"]:
            sigma = plan["blur"]
            page = cv2.GaussianBlur(page, (0, 0), sigma)
            blur_pad = math.ceil(2 * sigma)
            ops.append({"op": "gaussian_blur", "sigma": sigma})
        if plan["noise"]:
            nrng = np.random.default_rng(list(noise_seed))
            page = page + nrng.normal(0.0, plan["noise"], page.shape).astype(np.float32)
            ops.append({"op": "gaussian_noise", "sigma": plan["noise"]})
        if plan["rot"]:
            rotation = plan["rot"]
            k = rotation // 90
            hh, ww = page.shape[:2]
            page = np.ascontiguousarray(np.rot90(page, k))
            masks = [np.ascontiguousarray(np.rot90(m, k)) for m in masks]
            # continuous coordinates, counter-clockwise turns
            if k == 1:
                T = np.array([[0, 1, 0], [-1, 0, ww], [0, 0, 1]], dtype=np.float64)
            elif k == 2:
                T = np.array([[-1, 0, ww], [0, -1, hh], [0, 0, 1]], dtype=np.float64)
            else:
                T = np.array([[0, -1, hh], [1, 0, 0], [0, 0, 1]], dtype=np.float64)
            M = T @ M
            ops.append({"op": "rotate", "degrees": rotation, "direction": "ccw"})
        if plan["jpeg"]:
            fmt = "jpeg"
            jpeg_q = plan["jpeg"]
            ops.append({"op": "jpeg", "quality": jpeg_q})
    return Scanned(page=page, masks=masks, M=M, ops=ops, rotation=rotation, skew=skew, blur_pad=blur_pad,
                   fmt=fmt, jpeg_q=jpeg_q)


def encode_page(page: np.ndarray, fmt: str, jpeg_q: int = 0) -> bytes:
    """The file bytes of a float page (PNG, or JPEG at `jpeg_q`), tagged DPI dpi."""
    img = Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=jpeg_q, dpi=(DPI, DPI))
    else:
        img.save(buf, "PNG", dpi=(DPI, DPI), optimize=False, compress_level=6)
    return buf.getvalue()


def map_box(M: np.ndarray, box: Sequence[float], w: int, h: int, pad: float = 0.0) -> list[int]:
    """A drawn-page box in the saved file's pixels (the bounding box of its moved corners)."""
    return _clip_box(_affine_pts(M, box), w, h, pad)


def render_contract(index: int, seed: int, lang: str, scan_index: int | None
                    ) -> tuple[bytes, ContractSpec]:
    """Render one page. `scan_index` is None for a clean page, else the ordinal among scanned pages
    (selects the variant profile). Returns (encoded file bytes, spec with file name filled in)."""
    rng = np.random.default_rng([seed, index, 0 if lang == "zh" else 1])
    g = _page_genes(lang, rng, index)
    p = _Page(lang, rng)
    layout = (_layout_zh if lang == "zh" else _layout_en)(p, rng, g)

    # --- seals (multiply-blended onto the page, overlapping the signature block's text)
    colour, shape, second = _seal_plan(index, rng)
    body = layout["body"]
    owners = ["party_a"] + (["party_b"] if second else [])
    page = np.asarray(p.img, dtype=np.float32)
    seal_masks: list[np.ndarray] = []
    seals_meta: list[dict[str, Any]] = []
    ink_rgb = np.array(SEAL_RGB[colour], dtype=np.float32) / 255.0
    for owner in owners:
        who = owner[-1]
        name = g[owner]
        center_text = "合同专用章" if lang == "zh" else _pick(rng, ("CONTRACT SEAL", "OFFICIAL SEAL"))
        shape_m, ink = _draw_seal(lang, name, center_text, shape, rng)
        font, _ = p.font(body)
        col_x = layout["cols"][0 if who == "a" else 1]
        name_w = min(font.getlength(name), W / 2 - 60)
        cx = col_x + name_w * float(rng.uniform(0.35, 0.8))
        cy = layout["name_line_y"][who] + body / 2 + float(rng.uniform(-40, 50))
        sh, sw = shape_m.shape
        x0 = int(round(min(max(cx - sw / 2, 10), W - sw - 10)))
        y0 = int(round(min(max(cy - sh / 2, 10), H - sh - 10)))
        full = np.zeros((H, W), np.float32)
        full[y0:y0 + sh, x0:x0 + sw] = shape_m
        seal_masks.append(full)
        region = page[y0:y0 + sh, x0:x0 + sw]
        a = ink[..., None]
        region *= 1.0 - a * (1.0 - ink_rgb)  # multiply blend: text stays dark under the ink
        seals_meta.append({"colour": colour, "shape": shape, "owner": owner,
                           "text": name if lang == "zh" else name.upper(), "center_text": center_text})

    # --- scanned-looking variants
    sc = scan_page(page, seal_masks, scan_index, rng, noise_seed=[seed, index, 7])
    page, seal_masks, M, ops = sc.page, sc.masks, sc.M, sc.ops
    rotation, skew, blur_pad, fmt = sc.rotation, sc.skew, sc.blur_pad, sc.fmt
    scanned = scan_index is not None
    data = encode_page(page, fmt, sc.jpeg_q)
    hh, ww = page.shape[:2]

    def tb(b: TextBox) -> TextBox:
        return b.model_copy(update={"bbox": map_box(M, b.bbox, ww, hh)})

    seals = []
    for meta, m in zip(seals_meta, seal_masks, strict=True):
        bb = _mask_bbox(m)
        seals.append(SealSpec(bbox=_clip_box(bb, ww, hh, pad=blur_pad + 1), **meta))
    ext = "jpg" if fmt == "jpeg" else "png"
    fname = f"contract_{index:04d}_{lang}{'_scan' if scanned else ''}.{ext}"
    fields = {k: tb(v) for k, v in p.fields.items()}
    lines = [tb(b) for b in p.lines]
    d: date = g["date"]
    iso = d.isoformat()
    amount = float(g["amount"])
    seal_boxes = [s.bbox for s in seals]
    if lang == "zh":
        qa = [
            QAPair(query="甲方是谁", lang="zh", field="party_a", answer=g["party_a"],
                   answer_aliases=g["aliases_a"]),
            QAPair(query="乙方是谁", lang="zh", field="party_b", answer=g["party_b"],
                   answer_aliases=g["aliases_b"]),
            QAPair(query="合同签订日期", lang="zh", field="sign_date", answer=iso,
                   answer_aliases=_date_aliases(d)),
            QAPair(query="合同金额是多少", lang="zh", field="amount", answer=g["amount_text"],
                   answer_aliases=_amount_aliases(amount, [g["amount_words"],
                                                           g["amount_words"].removeprefix("人民币")])),
            QAPair(query="印章在哪里", lang="zh", field="seals", answer_bbox=seal_boxes[0],
                   answer_bboxes=seal_boxes),
            QAPair(query="where is the seal", lang="en", field="seals", answer_bbox=seal_boxes[0],
                   answer_bboxes=seal_boxes),
        ]
    else:
        qa = [
            QAPair(query="who is Party A", lang="en", field="party_a", answer=g["party_a"],
                   answer_aliases=g["aliases_a"]),
            QAPair(query="who is Party B", lang="en", field="party_b", answer=g["party_b"],
                   answer_aliases=g["aliases_b"]),
            QAPair(query="when was the agreement signed", lang="en", field="sign_date", answer=iso,
                   answer_aliases=_date_aliases(d)),
            QAPair(query="what is the contract price", lang="en", field="amount", answer=g["amount_text"],
                   answer_aliases=_amount_aliases(amount, [g["amount_words"]])),
            QAPair(query="where is the seal", lang="en", field="seals", answer_bbox=seal_boxes[0],
                   answer_bboxes=seal_boxes),
            QAPair(query="合同签订日期", lang="zh", field="sign_date", answer=iso,
                   answer_aliases=_date_aliases(d)),
        ]
    spec = ContractSpec(
        file=fname, index=index, seed=seed, lang=lang, width=ww, height=hh, format=fmt,  # type: ignore[arg-type]
        contract_type=g["contract_type"], title=g["contract_type"], contract_no=g["contract_no"],
        party_a=g["party_a"], party_a_aliases=g["aliases_a"], party_b=g["party_b"],
        party_b_aliases=g["aliases_b"], representative_a=g["rep_a"], representative_b=g["rep_b"],
        city=g["city"], sign_date=iso, sign_date_text=g["date_text"], amount=amount,
        currency=g["currency"], amount_text=g["amount_text"], amount_words=g["amount_words"],
        seals=seals, seal_bbox=seals[0].bbox, seal_colour=colour, scanned=scanned,  # type: ignore[arg-type]
        variant_ops=ops, rotation=rotation, skew_deg=skew, clauses=g["clauses"], fields=fields, lines=lines,
        qa=qa,
    )
    return data, spec


def _scan_schedule(n: int, ratio: float, n_langs: int) -> list[int | None]:
    """Which pages are scanned-looking, and their ordinal among scanned pages (selects the profile).

    Each language gets round(count * ratio) scanned pages spread evenly (phase-shifted per language so
    both languages share the load); page i's status depends only on i, never on n."""
    out: list[int | None] = []
    j = 0
    for i in range(n):
        s, t = i % n_langs, i // n_langs
        phase = s / n_langs
        if math.floor((t + 1) * ratio + phase + 1e-9) > math.floor(t * ratio + phase + 1e-9):
            out.append(j)
            j += 1
        else:
            out.append(None)
    return out


def make_contracts(out_dir: str | Path, n: int, seed: int = 0, variants: bool = True, *,
                   scan_ratio: float = 0.5, langs: Sequence[str] = ("zh", "en"),
                   sidecar: str | Path | None = SIDECAR) -> list[ContractSpec]:
    """Render `n` contract pages into `out_dir`, languages alternating over `langs` (page i is
    langs[i % len(langs)]). With `variants`, a `scan_ratio` share of pages, spread evenly, is made
    scanned-looking (tint, skew, blur, noise, JPEG, 90/180/270 rotation; profiles cycle).

    Writes `contracts.jsonl` (one ContractSpec per line, in page order) into `out_dir` unless
    `sidecar` is None; a relative `sidecar` is taken relative to `out_dir`. Returns the specs.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 <= scan_ratio <= 1.0:
        raise ValueError("scan_ratio must be in [0, 1]")
    for lang in langs:
        if lang not in ("zh", "en"):
            raise ValueError(f"unknown lang {lang!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schedule = _scan_schedule(n, scan_ratio if variants else 0.0, len(langs))
    specs: list[ContractSpec] = []
    for i in range(n):
        data, spec = render_contract(i, seed, langs[i % len(langs)], schedule[i])
        (out / spec.file).write_bytes(data)
        specs.append(spec)
    if sidecar is not None:
        write_sidecar(out, sidecar, specs)
    return specs


def read_contracts(path: str | Path) -> list[ContractSpec]:
    """Read a contracts.jsonl sidecar (or the folder holding one) back into specs."""
    return read_sidecar(path, SIDECAR, ContractSpec)
