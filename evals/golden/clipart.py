"""`clipart`: text → image retrieval over openclipart, on the held-out split only.

Debian's ``openclipart-png`` holds ~8,100 PNGs and ``openclipart-svg`` the same pictures as SVG with
Dublin Core metadata: a title (``dc:title``) and keywords (``dc:subject``). The held-out split is
:func:`evals.splits.is_heldout` of the file name, so the image-text alignment work can train on the
other split without ever seeing these pictures.

Titles are noisy (``Lemon SVG theme`` on a whole icon set, ``Aircraft3``, Italian names), so only
titles that describe one picture are used: 1–6 words of letters, used by at most 3 files of the whole
collection. Each chosen image gets its title as a query (relevant: every chosen image with the same
title); a few keywords shared by 3–25 chosen images become multi-relevant queries ("flag", "fruit").
Pictures are flattened onto white and scaled to at most 512 px (what OCR and the embedder see; it
keeps indexing affordable) and saved as ``<original name>.png``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, Field

from imgrag.evals.splits import is_heldout

from . import GoldenItem

NAME = "clipart"
PNG_ROOT = Path("/usr/share/openclipart/png")
SVG_ROOT = Path("/usr/share/openclipart/svg")
MAX_SIDE = 512
GENERIC_KEYWORDS = frozenset(
    "unsorted symbol symbols icon icons hash theme special clip art clipart image picture svg remix "
    "signs_and_symbols media other misc drawing black white color colour subnational webpage menu work "
    "computer office recreation buttons geography".split()
) | {"signs and symbols"}


class ClipartDepsMissing(RuntimeError):
    """openclipart-png/-svg are not installed; the message says how to install them."""


class ClipartRecipe(BaseModel):
    images: int = 240
    keyword_queries: int = 30
    max_side: int = MAX_SIDE


class ClipartMeta(BaseModel):
    file: str  # name in the corpus folder
    source_png: str  # path relative to PNG_ROOT
    title: str
    keywords: list[str] = Field(default_factory=list)
    split: str = "heldout"


_WORK = re.compile(rb"<cc:Work\b.*?</cc:Work>", re.S)
_TITLE = re.compile(rb"<dc:title>(.*?)</dc:title>", re.S)
_SUBJECT = re.compile(rb"<dc:subject>(.*?)</dc:subject>", re.S)
_LI = re.compile(rb"<rdf:li>(.*?)</rdf:li>", re.S)


def svg_metadata(svg: Path) -> tuple[str, list[str]]:
    """(title, keywords) from an openclipart SVG's RDF metadata (``cc:Work``); empty when absent."""
    data = svg.read_bytes()[:200_000]
    work = _WORK.search(data)
    block = work.group(0) if work else data
    t = _TITLE.search(block)
    title = html.unescape(t.group(1).decode("utf-8", "replace")).strip() if t else ""
    subj = _SUBJECT.search(block)
    kws = [html.unescape(k.decode("utf-8", "replace")).strip().lower() for k in _LI.findall(subj.group(1))] if subj else []
    return re.sub(r"\s+", " ", title), [k for k in kws if k]


def good_title(title: str) -> bool:
    words = title.split()
    return 1 <= len(words) <= 6 and 3 <= len(title) <= 50 and bool(re.fullmatch(r"[A-Za-z][A-Za-z '\-]*[A-Za-z]", title))


def find_pngs() -> list[Path]:
    if not PNG_ROOT.is_dir() or not SVG_ROOT.is_dir():
        raise ClipartDepsMissing(
            "openclipart is not installed: run `bash evals/datasets/system_deps.sh --openclipart` "
            "(or `sudo apt-get install -y --no-install-recommends openclipart-png openclipart-svg`)"
        )
    return sorted(PNG_ROOT.rglob("*.png"))


def collect(recipe: ClipartRecipe) -> list[ClipartMeta]:
    """The chosen held-out pictures, in a fixed order (by split hash)."""
    pngs = find_pngs()
    first: dict[str, Path] = {}
    for p in pngs:  # the same picture is filed under several categories with one name
        first.setdefault(p.name, p)
    metas: list[ClipartMeta] = []
    title_count: Counter[str] = Counter()
    for name, png in sorted(first.items()):
        svg = SVG_ROOT / png.relative_to(PNG_ROOT).with_suffix(".svg")
        if not svg.is_file():
            continue
        title, kws = svg_metadata(svg)
        title_count[title.lower()] += 1
        if is_heldout(name):
            metas.append(ClipartMeta(file=name, source_png=str(png.relative_to(PNG_ROOT)), title=title, keywords=kws))
    ok = [m for m in metas if good_title(m.title) and title_count[m.title.lower()] <= 3]
    ok.sort(key=lambda m: hashlib.sha256(m.file.encode()).hexdigest())
    return ok[: recipe.images]


def flatten(src: Path, dst: Path, max_side: int) -> None:
    """Composite onto white (transparent clip art would otherwise be black for the models) and
    shrink so the longer side is at most ``max_side``."""
    with Image.open(src) as im:
        im.load()
        rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, rgba).convert("RGB")
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.save(dst, "PNG", compress_level=6)


def items_from_meta(metas: list[ClipartMeta], keyword_queries: int) -> list[GoldenItem]:
    by_title: dict[str, list[str]] = {}
    for m in metas:
        by_title.setdefault(m.title.lower(), []).append(m.file)
    items: list[GoldenItem] = []
    done: set[str] = set()
    for m in metas:
        key = m.title.lower()
        if key in done:
            continue
        done.add(key)
        items.append(GoldenItem(id=f"{NAME}/title/{Path(m.file).stem}", query=m.title, relevant=by_title[key],
                                lang="en", kind="title"))
    kw_files: dict[str, list[str]] = {}
    for m in metas:
        for k in dict.fromkeys(m.keywords):
            k2 = k.replace("_", " ").strip()
            if k2 and k2 not in GENERIC_KEYWORDS and len(k2.split()) <= 2 and re.fullmatch(r"[a-z][a-z '\-]*", k2):
                kw_files.setdefault(k2, []).append(m.file)
    common = sorted(((len(v), k) for k, v in kw_files.items() if 3 <= len(v) <= 40), key=lambda t: (-t[0], t[1]))
    for _, k in common[:keyword_queries]:
        items.append(GoldenItem(id=f"{NAME}/keyword/{k.replace(' ', '_')}", query=k, relevant=kw_files[k], lang="en", kind="keyword"))
    return items


def build_corpus(out_dir: str | Path, recipe: ClipartRecipe) -> None:
    """Copy the chosen pictures into ``out_dir/corpus``; titles in ``out_dir/meta/clipart.jsonl``."""
    out = Path(out_dir)
    metas = collect(recipe)
    for m in metas:
        flatten(PNG_ROOT / m.source_png, out / "corpus" / m.file, recipe.max_side)
    meta_path = out / "meta" / "clipart.jsonl"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text("".join(json.dumps(m.model_dump(), ensure_ascii=False) + "\n" for m in metas), encoding="utf-8")


def golden(out_dir: str | Path, recipe: ClipartRecipe | None = None) -> list[GoldenItem]:
    """The golden items of a built corpus (from its metadata sidecar)."""
    r = recipe or ClipartRecipe()
    return items_from_meta(read_meta(out_dir), r.keyword_queries)


def read_meta(out_dir: str | Path) -> list[ClipartMeta]:
    p = Path(out_dir) / "meta" / "clipart.jsonl"
    return [ClipartMeta.model_validate_json(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
