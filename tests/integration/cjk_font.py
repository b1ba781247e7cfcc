"""The font the OCR and layout tests render Chinese pages with: Noto Sans CJK SC when installed (the
layout model reads its headings more reliably than WenQuanYi's), else any Simplified Chinese face."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from PIL import ImageFont


@lru_cache(maxsize=1)
def cjk_font() -> tuple[str, int] | None:
    """(file, face index) of an installed font with Simplified Chinese glyphs, preferring Noto Sans CJK SC."""
    if shutil.which("fc-list"):
        out = subprocess.run(
            ["fc-list", ":lang=zh", "--format", "%{file}|%{index}|%{family}\n"],
            capture_output=True, text=True, check=False,
        ).stdout
        faces = []
        for row in out.splitlines():
            parts = row.split("|")
            if len(parts) == 3 and Path(parts[0]).is_file():
                faces.append((parts[0], int(parts[1] or 0), parts[2]))
        if faces:
            file, index, _ = min(faces, key=lambda f: ("Sans CJK SC" not in f[2], "Bold" in f[0], "Mono" in f[2]))
            return file, index
    for path in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",):
        if Path(path).is_file():
            return path, 2
    return None


def font(size: int) -> ImageFont.FreeTypeFont:
    found = cjk_font()
    if found is None:
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk) — cannot render Chinese test pages")
    return ImageFont.truetype(found[0], size, index=found[1])
