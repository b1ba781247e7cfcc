"""Named pictures from Iconify icon sets (npm ``@iconify-json/<set>``): an image-text pair source built
from registry packages only.

Each set's ``icons.json`` holds SVG bodies under kebab-case names ("red-apple", "battle-axe"); emoji
sets also map code points to names (``chars.json``), which gives each emoji its CLDR short name and
keywords in English **and Chinese written by people** (Debian ``unicode-cldr-core``, as
:mod:`evals.datasets.emoji`). A name without a code point is its own English caption ("3d glasses"),
with a word-by-word dictionary translation as the Chinese one (machine-made).

Pictures are drawn with cairosvg on white (``ICON`` px inside a ``CANVAS`` px square); aliases
(the same body under another name), hidden icons and skin-tone copies are left out. Install::

    npm install --prefix DIR @iconify-json/openmoji @iconify-json/twemoji ...   # see SETS
    export IMGRAG_ICONIFY_DIR=DIR/node_modules/@iconify-json   # default DIR: ~/.cache/imgrag/iconify

(``evals/transfer_memory.sh`` does both, with the pinned versions the shipped memory was built from.)

``python -m imgrag.evals.datasets.iconify`` prints what is installed and how many pictures each set gives.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Sets with drawn objects (not UI glyphs); the emoji sets share concepts with evals.datasets.emoji,
# so an emoji-held-out test must not train on them (``EMOJI_SETS``).
EMOJI_SETS = ("openmoji", "twemoji", "fluent-emoji-flat", "fluent-emoji", "fluent-emoji-high-contrast", "noto", "noto-v1",
              "emojione", "emojione-v1", "fxemoji", "streamline-emojis")
OTHER_SETS = ("game-icons", "flat-color-icons", "healthicons", "maki", "map", "medical-icon", "meteocons",
              "streamline-freehand-color", "streamline-ultimate-color")
# Country and region flags (flag-icons: "se-4x3", "gb-eng-1x1"): named by ISO code, so each takes the flag
# emoji's CLDR names ("flag: Sweden", "旗: 瑞典") through :func:`flag_emoji`; a flag has no concept an emoji
# set shares with clip art beyond the flag itself.
FLAG_SETS = ("flag",)
SETS = EMOJI_SETS + OTHER_SETS + FLAG_SETS
_FLAG_NAME = re.compile(r"^([a-z]{2})(?:-([a-z]{2,3}))?-(?:1x1|4x3)$")


def flag_emoji(name: str) -> str:
    """The emoji of a flag-icons name: "se-4x3" → 🇸🇪 (regional indicators), "gb-eng-1x1" → 🏴 + tag
    letters (England); "" for a name that is no ISO code ("arab-4x3", "asean-1x1")."""
    m = _FLAG_NAME.match(name)
    if not m:
        return ""
    cc, sub = m.groups()
    if sub:
        return "\U0001F3F4" + "".join(chr(0xE0000 + ord(c)) for c in cc + sub) + "\U000E007F"
    return "".join(chr(0x1F1E6 + ord(c) - ord("a")) for c in cc)
ICON = 208
CANVAS = 240
_NAMELESS = re.compile(r"^abstract-|\d{3}")  # "abstract-097": a name that says nothing
_SKIN = re.compile(r"(light|medium-light|medium|medium-dark|dark)-skin-tone|-tone\d?$|-tone-\d")
# "firefighter-dark" in an emoji set without chars.json (fluent-emoji): a skin-tone copy when "firefighter" is in
# the set too ("traffic-light" is not); sets with chars.json name their tone copies by code point already
_TONE_SUFFIX = re.compile(r"-(light|medium-light|medium|medium-dark|dark)$")


class IconifyMissing(RuntimeError):
    """No Iconify set is installed where :func:`root` looks; the message says how to install one."""


def root() -> Path:
    env = os.environ.get("IMGRAG_ICONIFY_DIR", "").strip()  # empty or blank = unset (not the working folder)
    return Path(env).expanduser() if env else Path("~/.cache/imgrag/iconify/node_modules/@iconify-json").expanduser()


@dataclass(frozen=True)
class Icon:
    key: str  # "<set>:<name>"
    set: str
    name: str
    svg: str
    chars: str  # the emoji it draws ("" when none)

    @property
    def words(self) -> str:
        return re.sub(r"\s+", " ", self.name.replace("-", " ")).strip()


def _svg(body: str, left: float, top: float, width: float, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{left} {top} {width} {height}" width="{width}" height="{height}" style="color:#000">'
            f"{body}</svg>")


def load_set(name: str, base: Path | None = None) -> list[Icon]:
    d = (base or root()) / name
    path = d / "icons.json"
    if not path.is_file():
        raise IconifyMissing(f"{path} is missing: npm install @iconify-json/{name} and set IMGRAG_ICONIFY_DIR")
    j = json.loads(path.read_text(encoding="utf-8"))
    chars: dict[str, str] = {}
    if (d / "chars.json").is_file():
        for hexs, icon in json.loads((d / "chars.json").read_text(encoding="utf-8")).items():
            chars.setdefault(icon, "".join(chr(int(h, 16)) for h in hexs.split("-")))
    w0, h0 = j.get("width", 16), j.get("height", 16)
    out = []
    if name in FLAG_SETS:
        chars = {n: flag_emoji(n) for n in j["icons"] if flag_emoji(n)}
    for n, ic in sorted(j["icons"].items()):
        if name in FLAG_SETS and n not in chars:
            continue
        if name not in FLAG_SETS and (ic.get("hidden") or _SKIN.search(n) or not re.search(r"[a-z]{3}", n) or _NAMELESS.search(n)):
            continue
        if name in EMOJI_SETS and not chars and _TONE_SUFFIX.search(n) and _TONE_SUFFIX.sub("", n) in j["icons"]:
            continue
        svg = _svg(ic["body"], ic.get("left", 0), ic.get("top", 0), ic.get("width", w0), ic.get("height", h0))
        out.append(Icon(f"{name}:{n}", name, n, svg, chars.get(n, "")))
    return out


def installed(sets: tuple[str, ...] = SETS, base: Path | None = None) -> list[str]:
    return [s for s in sets if ((base or root()) / s / "icons.json").is_file()]


def render(icon: Icon) -> np.ndarray:
    """The icon drawn at ``ICON`` px (aspect kept) centred on a white ``CANVAS``² RGB picture."""
    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(bytestring=icon.svg.encode(), output_width=ICON, output_height=ICON)
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    bg = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 255))
    bg.alpha_composite(im, ((CANVAS - im.width) // 2, (CANVAS - im.height) // 2))
    return np.asarray(bg.convert("RGB"))


@lru_cache(maxsize=1)
def _cldr() -> dict[str, tuple[str, str, list[str], list[str]]]:
    from imgrag.evals.datasets.emoji import annotations

    en, zh = annotations("en"), annotations("zh")
    return {cp.replace("\ufe0f", ""): (en[cp][0], zh.get(cp, ("", []))[0], en[cp][1], zh.get(cp, ("", []))[1])
            for cp in en}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@lru_cache(maxsize=1)
def _cldr_by_name() -> dict[str, str]:
    """CLDR English short name as a kebab-case slug ("hear-no-evil-monkey") → its emoji."""
    out: dict[str, str] = {}
    for cp, (name_en, *_rest) in _cldr().items():
        out.setdefault(_slug(name_en), cp)
    return out


def emoji_of(icon: Icon) -> str:
    """The emoji an icon draws: its set's ``chars.json``, else the emoji whose CLDR English name is
    the icon's name (emojione, noto-v1 and streamline-emojis ship no ``chars.json`` but name their
    icons after CLDR: "deciduous-tree", "flag-for-haiti", "cactus-2"); "" when none."""
    if icon.chars:
        return icon.chars.replace("\ufe0f", "")
    if icon.set not in EMOJI_SETS:  # "anchor" in game-icons is a drawing of its own, not the emoji
        return ""
    by_name = _cldr_by_name()
    for name in (icon.name, re.sub(r"^flag-for-", "flag-", icon.name), re.sub(r"-\d+$", "", icon.name)):
        if name in by_name:
            return by_name[name]
    return ""


def captions(icon: Icon, glossary: object | None) -> list[str]:
    """English: the CLDR name + keywords of the emoji it draws (:func:`emoji_of`), else its own name;
    Chinese: CLDR's (human) when the emoji has one, else the dictionary translation of the name."""
    caps: list[str] = []
    cp = emoji_of(icon)
    c = _cldr().get(cp) if cp else None
    if icon.set in FLAG_SETS and not c:
        return []  # "xx-4x3" (an unknown flag), a region CLDR does not name: its code is no caption
    if c:
        name_en, name_zh, kw_en, kw_zh = c
        caps += [name_en] if icon.set in FLAG_SETS else [name_en, icon.words]  # "se 4x3" says nothing
        if kw_en:
            caps.append(", ".join(k for k in kw_en if k != name_en)[:200])
        if name_zh:
            caps.append(name_zh)
        if kw_zh:
            caps.append("，".join(k for k in kw_zh if k != name_zh)[:200])
    else:
        caps.append(icon.words)
        zh = glossary.phrase(icon.words) if glossary is not None else None  # type: ignore[attr-defined]
        if zh:
            caps.append(zh)
    return list(dict.fromkeys(x for x in caps if x))


def digest(icons: list[Icon]) -> str:
    return hashlib.sha256("\n".join(f"{i.key}\t{hashlib.sha1(i.svg.encode()).hexdigest()}" for i in icons)
                          .encode()).hexdigest()[:16]


def package_versions(sets: list[str], base: Path | None = None) -> dict[str, str]:
    out = {}
    for s in sets:
        p = (base or root()) / s / "package.json"
        out[s] = json.loads(p.read_text())["version"] if p.is_file() else "?"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imgrag.evals.datasets.iconify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", default=None, help="icon set (repeatable; default: every installed one)")
    args = ap.parse_args(argv)
    sets = args.set or installed()
    if not sets:
        print(f"no Iconify set under {root()}: npm install @iconify-json/<set> and set IMGRAG_ICONIFY_DIR", file=sys.stderr)
        return 2
    vers = package_versions(sets)
    for s in sets:
        icons = load_set(s)
        print(f"{s} {vers[s]}: {len(icons)} pictures ({sum(bool(i.chars) for i in icons)} emoji), digest {digest(icons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
