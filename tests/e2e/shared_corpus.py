"""The corpus most MCP end-to-end modules share, indexed ONCE per pytest session.

Files (generated): two contract-like pages for group ``legal`` (``legal/contract.png``, ``legal/invoice.png``),
an HR memo and a photo (scikit-image's cat) for group ``hr``, and a public notice in ``extra/`` that is
*not* indexed (tests index it themselves). Text is drawn with a CJK font when fontconfig has one.

The index is built by the real CLI with real models (``imgrag index legal --acl legal --meta note=<XSS>
--tag contracts``, then ``imgrag index hr --acl hr``: versions 1 and 2) into a pristine home that no
test opens. The ``shared_corpus`` fixture (tests/conftest.py) builds it; every module takes its own
writable copy of the home with :func:`copy_index` (a copytree of a few MB, instead of minutes of OCR
and embedding). Users: test_mcp_e2e / test_mcp_niceties, test_web_viewer, test_recipes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from imgrag.indexing.loader import file_digest

from mcp_http import imgrag_cmd

SMALL_PRINT = "Ref. No. QX-4827-5519 valid until 2024-12-31"
# stored as metadata of the legal pages: the web viewer must show it as text, never as markup
XSS = '<img src=x onerror="document.title=\'pwned\'">'
# (folder, flags) in indexing order: version 1 is legal, version 2 is hr
SHARED_RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("legal", ("--acl", "legal", "--meta", f"note={XSS}", "--tag", "contracts")),
    ("hr", ("--acl", "hr")),
)


def _cjk_font() -> str | None:
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}\t%{family}", "Noto Sans CJK SC"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path, _, family = out.partition("\t")
    return path if "CJK" in family and Path(path).is_file() else None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _cjk_font()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def _page(path: Path, size: tuple[int, int], lines: list[tuple[str, int, tuple[int, int]]]) -> dict[str, tuple[int, int, int, int]]:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    boxes = {}
    for text, px, (x, y) in lines:
        f = _font(px)
        d.text((x, y), text, fill=(20, 20, 20), font=f)
        boxes[text] = tuple(int(v) for v in d.textbbox((x, y), text, font=f))
    img.save(path)
    return boxes  # type: ignore[return-value]


def build_corpus(root: Path) -> dict[str, Any]:
    cjk = _cjk_font() is not None
    zh = (lambda a, b: a) if cjk else (lambda a, b: b)
    (root / "legal").mkdir(parents=True)
    (root / "hr").mkdir()
    (root / "extra").mkdir()
    boxes = _page(
        root / "legal" / "contract.png",
        (1200, 900),
        [
            (zh("服务合同 SERVICE CONTRACT", "SERVICE CONTRACT"), 40, (80, 60)),
            (zh("甲方：北京星河科技有限公司", "Party A: Xinghe Technology Co."), 28, (80, 170)),
            (zh("乙方：上海蓝海贸易有限公司", "Party B: Lanhai Trading Co."), 28, (80, 230)),
            (zh("签订日期：2023年5月17日", "Signed on 2023-05-17"), 28, (80, 290)),
            ("Total amount: 128,000 RMB", 28, (80, 350)),
            (SMALL_PRINT, 9, (80, 700)),
        ],
    )
    _page(
        root / "legal" / "invoice.png",
        (1000, 700),
        [
            (zh("发票 INVOICE", "INVOICE"), 40, (60, 60)),
            ("Invoice number: INV-2023-0042", 28, (60, 170)),
            ("Amount due: 56,400 RMB", 28, (60, 230)),
            ("Payment terms: 30 days", 28, (60, 290)),
        ],
    )
    _page(
        root / "hr" / "memo.png",
        (1000, 700),
        [
            (zh("员工手册 EMPLOYEE HANDBOOK", "EMPLOYEE HANDBOOK"), 40, (60, 60)),
            ("Annual leave: 15 days per year", 28, (60, 170)),
            (zh("工作时间：周一至周五 9:00-18:00", "Office hours: Monday to Friday 9:00-18:00"), 28, (60, 230)),
        ],
    )
    from skimage import data

    Image.fromarray(data.chelsea()).save(root / "hr" / "cat.jpg", quality=92)
    _page(root / "extra" / "notice.png", (900, 500), [("NOTICE: office closed on 2023-10-01", 30, (50, 80))])
    files = {
        "contract": root / "legal" / "contract.png",
        "invoice": root / "legal" / "invoice.png",
        "memo": root / "hr" / "memo.png",
        "cat": root / "hr" / "cat.jpg",
        "notice": root / "extra" / "notice.png",
    }
    return {
        "root": root,
        "ids": {k: file_digest(p) for k, p in files.items()},
        "sizes": {k: Image.open(p).size for k, p in files.items()},
        "small_print_box": boxes[SMALL_PRINT],
    }


def server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
    env.update(IMGRAG_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def index_shared_corpus(work: Path) -> dict[str, Any]:
    """Build the files under ``work/files`` and index them into ``work/home`` (see the module docstring)."""
    corpus = build_corpus(work / "files")
    home = work / "home"
    env = server_env(home)
    for folder, flags in SHARED_RUNS:
        r = subprocess.run(
            [*imgrag_cmd(), "index", str(corpus["root"] / folder), *flags, "--json"],
            env=env, cwd=work, capture_output=True, text=True, timeout=1200,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout)["indexed"] == 2, r.stdout
    corpus["home"] = home
    return corpus


def copy_index(shared: dict[str, Any], work: Path) -> dict[str, Any]:
    """A private copy of the shared index for one module: the home (index, audit log, caches) is copied
    into ``work/home``, the files stay where they are (read-only: no test changes them)."""
    home = work / "home"
    shutil.copytree(shared["home"], home, symlinks=True)
    return {**shared, "home": home, "env": server_env(home), "work": work}


def fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """Every file under ``folder`` with its size and modification time: the same list means untouched."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
