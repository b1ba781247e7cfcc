"""Locate the system fonts the corpus builders render with, through fontconfig (`fc-match`).

The preferred families are the ones `evals/datasets/system_deps.sh` installs, in a fixed order, so
that every machine that ran the script renders with the same font (and so the same bytes for a seed):

- zh: WenQuanYi Zen Hei (`fonts-wqy-zenhei`), then Noto Sans/Serif CJK SC (`fonts-noto-cjk`), then any
  font fontconfig says covers `zh-cn`.
- en: DejaVu Serif (`fonts-dejavu-core`), then Liberation Serif, then any font covering `en`.

Families without a bold face (WenQuanYi Zen Hei) are emboldened synthetically: `load_font` returns the
stroke width to draw with.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import ImageFont

Lang = Literal["zh", "en"]

_PREFERRED: dict[str, tuple[str, ...]] = {
    "zh": ("WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Serif CJK SC", "WenQuanYi Micro Hei"),
    "en": ("DejaVu Serif", "Liberation Serif", "DejaVu Sans"),
}
_FC_LANG = {"zh": "zh-cn", "en": "en"}
_PACKAGE = {"zh": "fonts-wqy-zenhei", "en": "fonts-dejavu-core"}
_FMT = "%{file}\\t%{index}\\t%{family}\\t%{style}\\t%{embolden}\\t%{lang}\\n"


class FontNotFoundError(RuntimeError):
    """No usable font for a language; the message names the Debian package to install."""


@dataclass(frozen=True)
class FontFace:
    path: Path
    index: int  # face index inside a .ttc collection
    family: str
    synthetic_bold: bool  # bold was asked for but the family has no bold face


def _install_hint(lang: str) -> str:
    return (
        f"install one with `sudo apt-get install -y {_PACKAGE[lang]}` "
        "(or run `bash evals/datasets/system_deps.sh`, which installs every system package the "
        "corpus builders need)"
    )


def _fc_match(pattern: str) -> dict[str, str] | None:
    try:
        out = subprocess.run(
            ["fc-match", "-f", _FMT, pattern], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.rstrip("\n").split("\t")
    if len(parts) != 6 or not parts[0]:
        return None
    keys = ("file", "index", "family", "style", "embolden", "lang")
    return dict(zip(keys, parts, strict=True))


def _to_face(m: dict[str, str], bold: bool) -> FontFace:
    is_bold_face = "bold" in m["style"].lower() or "heavy" in m["style"].lower()
    synthetic = bold and (m["embolden"].lower() == "true" or not is_bold_face)
    return FontFace(
        path=Path(m["file"]),
        index=int(m["index"] or 0),
        family=m["family"].split(",")[0],
        synthetic_bold=synthetic,
    )


@functools.cache
def find_face(lang: Lang, bold: bool = False) -> FontFace:
    """The font face to render `lang` text with; raises FontNotFoundError naming the package."""
    if lang not in _PREFERRED:
        raise ValueError(f"unknown lang {lang!r}: expected 'zh' or 'en'")
    if shutil.which("fc-match") is None:
        raise FontNotFoundError(
            "fc-match (fontconfig) is not installed: `sudo apt-get install -y fontconfig`, then "
            + _install_hint(lang)
        )
    weight = ":weight=200" if bold else ""  # 200 = FC_WEIGHT_BOLD
    for family in _PREFERRED[lang]:
        m = _fc_match(f"{family}{weight}")
        families = [f.strip().lower() for f in m["family"].split(",")] if m else []
        if m and family.lower() in families and Path(m["file"]).is_file():
            return _to_face(m, bold)
    fc_lang = _FC_LANG[lang]
    m = _fc_match(f":lang={fc_lang}{weight}")
    if m and fc_lang in m["lang"].split("|") and Path(m["file"]).is_file():
        return _to_face(m, bold)
    what = "Chinese (zh-cn)" if lang == "zh" else "English"
    raise FontNotFoundError(f"no {what} font found by fc-match; " + _install_hint(lang))


def find_font(lang: Lang, bold: bool = False) -> Path:
    """Path of the font file (.ttf/.ttc/.otf) for `lang`, found with fc-match.

    For a .ttc collection use `find_face(...).index` (or `load_font`) to pick the right face.
    Raises FontNotFoundError, whose message names the apt package to install.
    """
    return find_face(lang, bold).path


@functools.lru_cache(maxsize=256)
def load_font(lang: Lang, size: int, bold: bool = False) -> tuple[ImageFont.FreeTypeFont, int]:
    """A PIL font for `lang` at pixel `size`, and the stroke width that emboldens it (0 unless the
    family has no bold face and bold was asked for). Uses the basic layout engine so that output
    doesn't depend on whether libraqm is present."""
    face = find_face(lang, bold)
    font = ImageFont.truetype(
        str(face.path), size=size, index=face.index, layout_engine=ImageFont.Layout.BASIC
    )
    stroke = max(1, round(size / 30)) if face.synthetic_bold else 0
    return font, stroke


def have_font(lang: Lang) -> bool:
    try:
        find_face(lang)
    except FontNotFoundError:
        return False
    return True
