"""Emoji pictures with their CLDR names and keywords in English and Chinese: an image-text pair
source built from Debian packages only.

* pictures: ``fonts-noto-color-emoji`` (``NotoColorEmoji.ttf``, bitmap glyphs at 109 px, OFL 1.1),
  drawn with Pillow (raqm shaping, so ZWJ sequences and flags become one glyph) on white;
* text: ``unicode-cldr-core`` (``common/annotations`` and ``annotationsDerived``, Unicode licence):
  per emoji a short name (``type="tts"``: "grinning face" / "嘿嘿") and keywords
  ("face | grin" / "脸 | 笑"). The Chinese is CLDR's own, written by people, not a dictionary.

Skin-tone variants are left out (the same picture five times with the same words), and so is any
sequence the font does not draw as one glyph. Everything is deterministic: the same packages give
the same pictures and captions. ``python -m imgrag.evals.datasets.emoji OUT`` writes ``OUT/*.png``
and ``OUT/pairs.jsonl`` for ``imgrag align --pairs``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR = Path("/usr/share/unicode/cldr/common")
FONT_SIZE = 109  # the only strike NotoColorEmoji has
CANVAS = 160
_SKIN = re.compile("[\U0001F3FB-\U0001F3FF]")
_ANN = re.compile(r'<annotation cp="([^"]+)"( type="tts")?[^>]*>([^<]*)</annotation>')


class EmojiDepsMissing(RuntimeError):
    """The Debian packages are not installed; the message says which."""


@dataclass(frozen=True)
class Emoji:
    key: str  # "emoji-1f600" (code points in hex, joined by "-")
    text: str
    name_en: str
    name_zh: str
    keywords_en: tuple[str, ...]
    keywords_zh: tuple[str, ...]

    def captions(self) -> list[str]:
        """Training captions: the name and the keywords as one phrase, in each language."""
        caps = [self.name_en, self.name_zh]
        if self.keywords_en:
            caps.append(", ".join(self.keywords_en))
        if self.keywords_zh:
            caps.append("，".join(self.keywords_zh))
        return list(dict.fromkeys(c for c in caps if c))


def _annotations(lang: str) -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    for sub in ("annotations", "annotationsDerived"):
        path = CLDR / sub / f"{lang}.xml"
        if not path.is_file():
            raise EmojiDepsMissing(f"{path} is missing: apt-get install unicode-cldr-core")
        for cp, tts, body in _ANN.findall(path.read_text(encoding="utf-8")):
            cp, body = html.unescape(cp), html.unescape(body).strip()
            name, kws = out.get(cp, ("", []))
            if tts:
                name = body
            else:
                kws = [k.strip() for k in body.split("|") if k.strip()]
            out[cp] = (name, kws)
    return out


def annotations(lang: str) -> dict[str, tuple[str, list[str]]]:
    """CLDR ``{emoji: (short name, keywords)}`` in ``lang`` (also used by :mod:`evals.datasets.iconify`)."""
    return _annotations(lang)


def _is_emoji(cp: str) -> bool:
    return any(ord(c) >= 0x2300 for c in cp) and not _SKIN.search(cp)


@lru_cache(maxsize=1)
def _font():  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    if not FONT.is_file():
        raise EmojiDepsMissing(f"{FONT} is missing: apt-get install fonts-noto-color-emoji")
    return ImageFont.truetype(str(FONT), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)


def render(text: str) -> np.ndarray | None:
    """The emoji as one glyph on a white ``CANVAS``² RGB picture, or None when the font draws it
    as several glyphs (an unsupported sequence) or not at all."""
    from PIL import Image, ImageDraw

    font = _font()
    left, top, right, bottom = font.getbbox(text)
    if right - left <= 0 or right - left > 1.4 * FONT_SIZE:
        return None
    im = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 0))
    ImageDraw.Draw(im).text(((CANVAS - (right - left)) / 2 - left, (CANVAS - (bottom - top)) / 2 - top), text,
                            font=font, embedded_color=True)
    if im.getchannel("A").getbbox() is None:
        return None
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(bg, im).convert("RGB"))


def catalogue() -> list[Emoji]:
    """Every emoji with an English and a Chinese name that the font draws as one glyph, in code-point
    order."""
    en, zh = _annotations("en"), _annotations("zh")
    out = []
    for cp in sorted(en):
        if not _is_emoji(cp) or cp not in zh or not en[cp][0] or not zh[cp][0]:
            continue
        if render(cp) is None:
            continue
        key = "emoji-" + "-".join(f"{ord(c):x}" for c in cp if ord(c) != 0xFE0F)
        out.append(Emoji(key, cp, en[cp][0], zh[cp][0],
                         tuple(k for k in en[cp][1] if k != en[cp][0])[:5],
                         tuple(k for k in zh[cp][1] if k != zh[cp][0])[:5]))
    return out


def digest(items: list[Emoji]) -> str:
    return hashlib.sha256(json.dumps([(e.key, e.captions()) for e in items], ensure_ascii=False).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imgrag.evals.datasets.emoji", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the PNGs and pairs.jsonl")
    args = ap.parse_args(argv)
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    items = catalogue()
    with (args.out / "pairs.jsonl").open("w", encoding="utf-8") as f:
        for e in items:
            arr = render(e.text)
            assert arr is not None
            Image.fromarray(arr).save(args.out / f"{e.key}.png")
            f.write(json.dumps({"image": f"{e.key}.png", "caption": [c for c in e.captions() if not re.search(r"[\u3400-\u9fff]", c)],
                                "caption_zh": [c for c in e.captions() if re.search(r"[\u3400-\u9fff]", c)]},
                               ensure_ascii=False) + "\n")
    print(f"{len(items)} emoji written to {args.out} (captions digest {digest(items)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
