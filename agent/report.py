"""Exporting an answer: a Markdown table report, or a PDF that shows each cited crop next to its quote.

The crops come from the server's ``crop_region`` tool, like everything else the agent sees, so a
report made against a remote server needs no access to the image files. The PDF uses a CJK font
found through fontconfig (``fc-match``); without one it still renders, with Chinese replaced by
``?`` and a note on the first page saying which package to install.
"""

from __future__ import annotations

import io
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imgrag.indexing.logs import shown_path

from .mcp_client import ToolClient, ToolError
from .schemas import Answer, Citation

CJK_FONT_PATTERNS = ("Noto Sans CJK SC", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", ":lang=zh-cn")
NO_FONT_NOTE = (
    "No CJK font was found (fc-match ':lang=zh-cn'), so Chinese text is shown as '?'. "
    "Install one, e.g. `sudo apt-get install fonts-noto-cjk`, and export again."
)


@dataclass
class FontChoice:
    path: Path
    index: int
    family: str


def find_cjk_font() -> FontChoice | None:
    """A font that covers Simplified Chinese, via fontconfig; None if there is none (or no fc-match)."""
    for pattern in CJK_FONT_PATTERNS:
        try:
            out = subprocess.run(
                ["fc-match", "-f", "%{file}\\t%{index}\\t%{family}\\t%{lang}", pattern],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        parts = out.split("\t")
        if len(parts) < 4 or not parts[0]:
            continue
        path, index, family, langs = parts[0], parts[1], parts[2].split(",")[0], parts[3]
        if "zh-cn" not in langs.split("|") or not Path(path).is_file():
            continue
        if not path.lower().endswith((".ttf", ".otf", ".ttc")):
            continue
        return FontChoice(Path(path), int(index or 0), family)
    return None


def _pad(bbox: tuple[float, float, float, float], pad: float = 0.6) -> list[float]:
    """The cited line with some context around it, so the crop shows the line, not just its glyphs."""
    x0, y0, x1, y1 = bbox
    h = max(10.0, y1 - y0)
    return [max(0.0, x0 - pad * h * 2), max(0.0, y0 - pad * h), x1 + pad * h * 2, y1 + pad * h]


async def fetch_crops(tools: ToolClient, answer: Answer, scale: float = 2.0) -> dict[int, bytes]:
    """PNG crops of each citation (1-based index → bytes) through ``crop_region``; a citation
    without a box gets the whole page, scaled down by the server's size cap."""
    crops: dict[int, bytes] = {}
    for n, cit in enumerate(answer.citations, 1):
        box = _pad(cit.bbox) if cit.bbox else [0.0, 0.0, 1.0, 1.0]
        try:
            if cit.bbox:
                view = await tools.crop_region(cit.image_id, box, scale=scale)
            else:
                view = await tools.crop_region(cit.image_id, box, scale=1.0, units="relative")
        except ToolError:
            continue
        if view.png:
            crops[n] = view.png
    return crops


# -- Markdown -----------------------------------------------------------------------------------
def _cell(text: str) -> str:
    """One table cell: whitespace collapsed, and the control characters that remain (ESC, C1, bidi
    overrides) escaped as ``imgrag ask``'s plain format does, so a hostile file name or snippet
    neither breaks the table nor reaches the terminal."""
    return shown_path(re.sub(r"\s+", " ", text)).replace("|", "\\|").strip()


def _bbox_text(c: Citation) -> str:
    box = "[" + ", ".join(f"{v:.0f}" for v in c.bbox) + "]" if c.bbox else "—"
    if c.kind == "linked":
        return f"linked ({_cell(c.why)}) {box}"
    return f"seal {box}" if c.kind == "seal" else box


def checks_line(a: Answer) -> str:
    ch = a.checks
    status = "passed" if ch.passed else "FAILED"
    parts = [
        f"self-check {status}",
        f"{ch.claims_passed}/{ch.claims_total} claims kept",
        f"{ch.citations_passed}/{ch.citations_checked} citations verified",
        f"{ch.retries} retr{'y' if ch.retries == 1 else 'ies'}",
    ]
    if ch.llm_verified:
        parts.append(f"{ch.llm_verified} claim(s) LLM-verified")
    return " · ".join(parts)


def usage_line(a: Answer) -> str:
    u = a.usage
    tools = ", ".join(f"{k} {v}" for k, v in sorted(u.tool_calls.items())) or "none"
    llm = f"{u.total_tokens} tokens ({u.prompt_tokens} prompt + {u.completion_tokens} completion) in {u.llm_calls} LLM call(s)"
    if u.llm_repairs or u.llm_failures:
        llm += f", {u.llm_repairs} repaired, {u.llm_failures} unusable"
    return f"{llm} · tool calls: {tools}"


def to_markdown(a: Answer, crop_links: dict[int, str] | None = None) -> str:
    """The answer as Markdown: the text, a claims table, a citations table (with crop images when
    ``crop_links`` maps citation numbers to image paths), checks and usage."""
    lines = [
        "# imgrag answer",
        "",
        f"**Question:** {a.question}  ",
        f"**Mode:** {a.mode} · {checks_line(a)}  ",
        f"**Generated:** {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        "## Answer",
        "",
        a.answer,
        "",
    ]
    if a.claims:
        lines += ["## Claims", "", "| # | claim | citations |", "|---|---|---|"]
        for n, cl in enumerate(a.claims, 1):
            refs = " ".join(f"[{a.citations.index(c) + 1}]" for c in cl.citations if c in a.citations)
            lines.append(f"| {n} | {_cell(cl.text)} | {refs} |")
        lines.append("")
    if a.citations:
        lines += ["## Citations", "", "| # | image id | file | page | bbox | snippet |", "|---|---|---|---|---|---|"]
        for n, c in enumerate(a.citations, 1):
            lines.append(f"| {n} | `{c.image_id}` | {_cell(c.path)} | {c.page} | {_bbox_text(c)} | {_cell(c.snippet)} |")
        lines.append("")
        for n, link in sorted((crop_links or {}).items()):
            lines.append(f"**[{n}]** ![crop {n}]({link})")
            lines.append("")
    if a.checks.failures:
        lines += ["## Self-check failures", "", "| check | claim | reason |", "|---|---|---|"]
        for f in a.checks.failures:
            lines.append(f"| {f.check} | {_cell(f.claim[:80])} | {_cell(f.reason)} |")
        lines.append("")
    lines += ["## Usage", "", usage_line(a), ""]
    if a.timings_ms:
        lines += ["Node timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in a.timings_ms.items()), ""]
    return "\n".join(lines)


def write_markdown(a: Answer, path: Path, crops: dict[int, bytes] | None = None) -> Path:
    """Write the Markdown report; crops go next to it in ``<stem>_crops/`` and are linked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    links: dict[int, str] = {}
    if crops:
        folder = path.parent / f"{path.stem}_crops"
        folder.mkdir(exist_ok=True)
        for n, png in crops.items():
            (folder / f"{n}.png").write_bytes(png)
            links[n] = f"{folder.name}/{n}.png"
    path.write_text(to_markdown(a, links), encoding="utf-8")
    return path


# -- PDF ----------------------------------------------------------------------------------------
def write_pdf(a: Answer, path: Path, crops: dict[int, bytes], font: FontChoice | None = None) -> list[str]:
    """Write the PDF report embedding the crops; returns notes (e.g. the missing-font note)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos
    from PIL import Image

    notes: list[str] = []
    font = font if font is not None else find_cjk_font()
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title("imgrag answer")
    pdf.set_creator("imgrag")
    family = "helvetica"
    if font is not None:
        try:
            pdf.add_font("cjk", "", str(font.path), collection_font_number=font.index)
            pdf.add_font("cjk", "B", str(font.path), collection_font_number=font.index)  # table headings
            family = "cjk"
        except Exception as e:  # a font fontconfig lists may still be one fpdf2 cannot embed
            notes.append(f"could not embed {font.path} ({type(e).__name__}); {NO_FONT_NOTE}")
            font = None
    else:
        notes.append(NO_FONT_NOTE)

    def txt(s: str) -> str:
        if family == "cjk":
            return s
        return s.encode("latin-1", "replace").decode("latin-1")

    def para(s: str, size: float = 10, h: float = 5.5) -> None:
        pdf.set_font(family, size=size)
        pdf.multi_cell(0, h, txt(s), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.add_page()
    pdf.set_font(family, size=16)
    pdf.cell(0, 10, txt("imgrag answer"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for n in notes:
        pdf.set_text_color(170, 30, 30)
        para(n, 9, 4.5)
        pdf.set_text_color(0, 0, 0)
    para(f"Question: {a.question}", 11, 6)
    para(f"Mode: {a.mode} · {checks_line(a)}", 9, 5)
    pdf.ln(2)
    para(a.answer, 11, 6)
    pdf.ln(3)
    if a.citations:
        pdf.set_font(family, size=12)
        pdf.cell(0, 8, txt("Citations"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(family, size=8)
        with pdf.table(col_widths=(8, 34, 40, 10, 34, 64), text_align="LEFT", line_height=4.5) as table:
            header = table.row()
            for h in ("#", "image id", "file", "page", "bbox", "snippet"):
                header.cell(h)
            for n, c in enumerate(a.citations, 1):
                row = table.row()
                for v in (str(n), c.image_id, Path(c.path).name, str(c.page), _bbox_text(c), c.snippet):
                    row.cell(txt(v))
        pdf.ln(4)
        for n, c in enumerate(a.citations, 1):
            png = crops.get(n)
            para(f"[{n}] {Path(c.path).name} p{c.page} {_bbox_text(c)}: \u201c{c.snippet}\u201d", 9, 5)
            if png:
                with Image.open(io.BytesIO(png)) as im:
                    w_px, h_px = im.size
                width = min(pdf.epw, w_px * 25.4 / 150)
                height = width * h_px / max(1, w_px)
                if height > 90:
                    height, width = 90.0, 90.0 * w_px / max(1, h_px)
                if pdf.get_y() + height > pdf.h - pdf.b_margin:
                    pdf.add_page()
                pdf.image(io.BytesIO(png), x=pdf.l_margin, y=pdf.get_y(), w=width, h=height)
                pdf.set_y(pdf.get_y() + height + 3)
            else:
                para("(no crop available)", 8, 4)
    pdf.ln(2)
    para(usage_line(a), 8, 4.5)
    if a.timings_ms:
        para("Node timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in a.timings_ms.items()), 8, 4.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return notes


async def write_report(tools: ToolClient, a: Answer, path: Path) -> list[str]:
    """Write ``path`` as Markdown (``.md``) or PDF (``.pdf``), with crops fetched over MCP."""
    crops = await fetch_crops(tools, a)
    if path.suffix.lower() == ".pdf":
        return write_pdf(a, path, crops)
    write_markdown(a, path, crops)
    return []
