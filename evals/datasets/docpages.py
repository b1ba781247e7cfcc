"""Document pages from Debian documentation PDFs (English and Simplified Chinese), rasterised with
poppler's `pdftoppm`.

Source: the Debian Reference manual, version 2.100 in bookworm, packages `debian-reference-en`
(261 A4 pages) and `debian-reference-zh-cn` (251 pages); install them with
`evals/datasets/system_deps.sh`. Both are real typeset books (LaTeX via xdvipdfmx) with embedded
fonts, headings, body text, tables and code blocks.

`make_doc_pages` writes PNG pages plus `docpages.jsonl` (file, lang, source PDF, page number, the
page's text from `pdftotext`, so golden questions can be written against text that is really printed
on the page) and, optionally, one small real PDF cut from the same book so the indexer's PDF loader
is exercised.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel

from .sidecar import read_sidecar, write_sidecar

SIDECAR = "docpages.jsonl"

# lang -> (package, path of the PDF it installs, stem used in output names)
DOC_PDFS: dict[str, tuple[str, Path, str]] = {
    "en": ("debian-reference-en", Path("/usr/share/debian-reference/debian-reference.en.pdf"),
           "debian-reference.en"),
    "zh": ("debian-reference-zh-cn", Path("/usr/share/debian-reference/debian-reference.zh-cn.pdf"),
           "debian-reference.zh-cn"),
}


class DocDepsMissing(RuntimeError):
    """A system package the doc-page builder needs is missing; the message names it."""


class DocPage(BaseModel):
    file: str
    lang: Literal["en", "zh"]
    kind: Literal["page", "pdf"]
    source_pdf: str
    package: str
    page: int  # 1-based page number in the source PDF (first page for kind == "pdf")
    pages: int = 1  # pages in this file
    dpi: int | None = None
    width: int | None = None
    height: int | None = None
    text: str  # pdftotext output for the page(s), whitespace-normalised


def _need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DocDepsMissing(
            f"`{name}` not found: install poppler with `sudo apt-get install -y poppler-utils "
            "poppler-data` (or run `bash evals/datasets/system_deps.sh`)"
        )
    return path


def find_doc_pdfs() -> dict[str, Path]:
    """{'en': Path, 'zh': Path} of the Debian Reference PDFs; raises DocDepsMissing naming the
    packages to install when any is absent."""
    missing = [pkg for pkg, path, _ in DOC_PDFS.values() if not path.is_file()]
    if missing:
        raise DocDepsMissing(
            f"Debian documentation PDFs missing: `sudo apt-get install -y --no-install-recommends "
            f"{' '.join(missing)}` (or run `bash evals/datasets/system_deps.sh`)"
        )
    return {lang: path for lang, (_, path, _) in DOC_PDFS.items()}


def have_doc_deps() -> bool:
    try:
        find_doc_pdfs()
        _need_tool("pdftoppm")
        _need_tool("pdftotext")
    except DocDepsMissing:
        return False
    return True


def _run(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=600).stdout


def pdf_page_count(pdf: Path) -> int:
    out = _run([_need_tool("pdfinfo"), str(pdf)])
    m = re.search(r"^Pages:\s+(\d+)", out, re.M)
    if not m:
        raise RuntimeError(f"pdfinfo could not read {pdf}")
    return int(m.group(1))


def _page_texts(pdf: Path, first: int, last: int) -> list[str]:
    """Text of pages first..last (1-based, inclusive), one string per page."""
    out = _run([_need_tool("pdftotext"), "-enc", "UTF-8", "-f", str(first), "-l", str(last), str(pdf), "-"])
    pages = out.split("\f")
    return [pages[i] if i < len(pages) else "" for i in range(last - first + 1)]


def _norm(text: str) -> str:
    return "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())


def body_start(pdf: Path, scan: int = 80) -> int:
    """First page of the body (after title, copyright and table of contents): the page whose footer
    reads '1 / N'. Falls back to the first page with text."""
    last = min(scan, pdf_page_count(pdf))
    texts = _page_texts(pdf, 1, last)
    for i, t in enumerate(texts):
        if re.search(r"(^|\n)\s*1 / \d+\s*(\n|$)", t):
            return i + 1
    for i, t in enumerate(texts):
        if t.strip():
            return i + 1
    return 1


_PDF_ID = re.compile(rb"/ID\s*\[\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*\]")


def cut_pdf(src: Path, dst: Path, first: int, last: int) -> Path:
    """Write pages first..last (1-based, inclusive) of `src` as a new PDF at `dst`, with pypdfium2.

    PDFium writes the current time as /CreationDate and a random file /ID; they are replaced (same
    length, so xref offsets hold) by the source's creation time and a hash of the content, which makes
    the output reproducible byte for byte."""
    import hashlib
    import io

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(src))
    try:
        created = re.sub(r"\D", "", doc.get_metadata_dict().get("CreationDate", ""))[:14]
        new = pdfium.PdfDocument.new()
        new.import_pages(doc, list(range(first - 1, last)))
        buf = io.BytesIO()
        new.save(buf)
        new.close()
    finally:
        doc.close()
    data = buf.getvalue()
    stamp = (created if len(created) == 14 else "20000101000000").encode()
    data = re.sub(rb"(/CreationDate\s*\(D:)\d{14}", lambda m: m.group(1) + stamp, data)

    def fixed_id(m: re.Match[bytes]) -> bytes:
        blank = _PDF_ID.sub(b"", data)
        digest = hashlib.sha256(blank).hexdigest().upper().encode()
        a = digest[: len(m.group(1))].ljust(len(m.group(1)), b"0")
        b = digest[: len(m.group(2))].ljust(len(m.group(2)), b"0")
        return m.group(0).replace(m.group(1), a, 1).replace(m.group(2), b, 1)

    data = _PDF_ID.sub(fixed_id, data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    return dst


def make_doc_pages(out_dir: str | Path, max_pages_per_pdf: int, dpi: int = 100, *,
                   langs: tuple[str, ...] = ("en", "zh"), skip_front_matter: bool = True,
                   pdf_lang: str | None = "zh", pdf_pages: int = 2,
                   sidecar: str | Path | None = SIDECAR) -> list[Path]:
    """Rasterise up to `max_pages_per_pdf` pages of each Debian Reference PDF (`langs`) into
    `out_dir` as PNG (`pdftoppm -r DPI -png`), named `<stem>-p<page>.png`.

    With `skip_front_matter` (default) pages start at the body (the blank first page, title,
    copyright and table of contents are skipped); otherwise at page 1. With `pdf_lang`, one real PDF
    of `pdf_pages` pages cut from that language's book (the pages right after the rasterised ones) is
    written too, so the PDF loader gets exercised. Writes `docpages.jsonl` (a DocPage per file) unless
    `sidecar` is None. Returns the files written, PNGs first, in order.
    """
    if max_pages_per_pdf < 0:
        raise ValueError("max_pages_per_pdf must be >= 0")
    pdfs = find_doc_pdfs()
    pdftoppm = _need_tool("pdftoppm")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    records: list[DocPage] = []
    for lang in langs:
        if lang not in pdfs:
            raise ValueError(f"unknown lang {lang!r}: expected one of {sorted(pdfs)}")
        package, pdf, stem = DOC_PDFS[lang]
        total = pdf_page_count(pdf)
        first = body_start(pdf) if skip_front_matter else 1
        last = min(total, first + max_pages_per_pdf - 1)
        if max_pages_per_pdf > 0 and first <= last:
            texts = _page_texts(pdf, first, last)
            with tempfile.TemporaryDirectory() as td:
                _run([pdftoppm, "-r", str(dpi), "-png", "-f", str(first), "-l", str(last), str(pdf),
                      f"{td}/p"])
                rendered = sorted(Path(td).glob("p-*.png"))
                if len(rendered) != last - first + 1:
                    raise RuntimeError(f"pdftoppm wrote {len(rendered)} pages of {pdf}, expected "
                                       f"{last - first + 1}")
                for k, src in enumerate(rendered):
                    page_no = first + k
                    dst = out / f"{stem}-p{page_no:03d}.png"
                    shutil.move(str(src), dst)
                    with Image.open(dst) as im:
                        w, h = im.size
                    files.append(dst)
                    records.append(DocPage(file=dst.name, lang=lang, kind="page", source_pdf=str(pdf),  # type: ignore[arg-type]
                                           package=package, page=page_no, dpi=dpi, width=w, height=h,
                                           text=_norm(texts[k])))
    if pdf_lang is not None:
        package, pdf, stem = DOC_PDFS[pdf_lang]
        total = pdf_page_count(pdf)
        start = body_start(pdf) if skip_front_matter else 1
        start = min(total, start + max_pages_per_pdf)  # pages not already rasterised
        end = min(total, start + max(pdf_pages, 1) - 1)
        dst = cut_pdf(pdf, out / f"{stem}-p{start:03d}-{end:03d}.pdf", start, end)
        files.append(dst)
        records.append(DocPage(file=dst.name, lang=pdf_lang, kind="pdf", source_pdf=str(pdf),  # type: ignore[arg-type]
                               package=package, page=start, pages=end - start + 1,
                               text=_norm("\n".join(_page_texts(pdf, start, end)))))
    if sidecar is not None:
        write_sidecar(out, sidecar, records)
    return files


def read_doc_pages(path: str | Path) -> list[DocPage]:
    return read_sidecar(path, SIDECAR, DocPage)
