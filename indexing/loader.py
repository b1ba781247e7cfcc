"""Find image files, decode them safely and split documents into page records.

"Original-image coordinates" everywhere in imgrag mean the pixels of the page as loaded here:
EXIF orientation applied (as every viewer shows it), PDF pages rendered at ``pdf_dpi``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from .errors import ImgragError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
DOC_EXTS = {".pdf"}
SUPPORTED_EXTS = IMAGE_EXTS | DOC_EXTS

# We check width × height against IMGRAG_MAX_PIXELS ourselves, from the header, before decoding;
# PIL's fixed global limit would otherwise override the user's setting.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class Page:
    """One decoded page or single image, ready for the pipeline."""

    image_id: str
    doc_id: str
    path: str
    page: int
    n_pages: int
    format: str
    image: np.ndarray  # RGB uint8
    dpi: float | None
    file_size: int
    mtime: float


@dataclass
class Skipped:
    path: str
    reason: str


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def page_id(doc_id: str, page: int, n_pages: int) -> str:
    """Single images keep the content hash as id; pages of a document get ``-p<n>``."""
    return doc_id if n_pages == 1 else f"{doc_id}-p{page}"


def outside_roots(path: Path, roots: Sequence[Path] | None) -> bool:
    """Whether ``path``'s real location (symbolic links followed) lies outside every root; None: no roots."""
    if roots is None:
        return False
    real = path.resolve()
    return not any(real == r or r in real.parents for r in roots)


def discover(paths: Iterable[str | Path], roots: Sequence[Path] | None = None) -> tuple[list[Path], list[Skipped]]:
    """Expand folders recursively; named files of unknown type are reported, not silently dropped.

    With ``roots`` (resolved folders a remote caller may index), a file whose real path leaves
    every root — a symbolic link to elsewhere — is reported under the name it was found by and
    never opened.
    """
    found: list[Path] = []
    problems: list[Skipped] = []

    def add(f: Path) -> None:
        try:
            if outside_roots(f, roots):
                problems.append(Skipped(str(f), "a link to a file outside the folders this server may index: skipped, not read"))
            else:
                found.append(f.resolve())
        except (OSError, RuntimeError) as e:  # a symbolic link loop
            problems.append(Skipped(str(f), f"cannot resolve the path ({e.__class__.__name__}): skipped, not read"))

    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            problems.append(Skipped(str(p), "no such file or folder — check the path"))
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    f = Path(root) / name
                    if f.suffix.lower() in SUPPORTED_EXTS and not name.startswith("."):
                        add(f)
        elif p.suffix.lower() in SUPPORTED_EXTS:
            add(p)
        else:
            problems.append(
                Skipped(str(p), f"not a supported file type ({', '.join(sorted(SUPPORTED_EXTS))})")
            )
    unique = list(dict.fromkeys(found))
    return unique, problems


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _check_pixels(w: int, h: int, max_pixels: int, path: Path) -> None:
    if w <= 0 or h <= 0:
        raise ImgragError(f"{path}: image has no pixels ({w}x{h})", "the file is damaged; re-export it")
    if w * h > max_pixels:
        raise ImgragError(
            f"{path}: {w}x{h} = {w * h / 1e6:.0f} MP is over the {max_pixels / 1e6:.0f} MP limit",
            "downscale the image, or raise IMGRAG_MAX_PIXELS if you trust the file",
        )


def _dpi(img: Image.Image) -> float | None:
    dpi = img.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else None
    except (TypeError, ValueError, IndexError):
        return None
    return value if value and 20 <= value <= 2400 else None


def load_file(
    path: Path, *, max_pixels: int, pdf_dpi: int, max_file_mb: int = 512, only_page: int | None = None
) -> Iterator[Page]:
    """Yield the pages of one file (or just ``only_page``); raise ImgragError naming the problem."""
    try:
        st = path.stat()
    except OSError as e:
        raise ImgragError(f"{path}: cannot read ({e.strerror})", "check the path and its permissions") from e
    if st.st_size == 0:
        raise ImgragError(f"{path}: empty file (0 bytes)", "remove it or replace it with the real file")
    if st.st_size > max_file_mb * 1024 * 1024:
        raise ImgragError(
            f"{path}: {st.st_size / 2**20:.0f} MiB is over the {max_file_mb} MiB limit",
            "split the document, or raise IMGRAG_MAX_FILE_MB",
        )
    doc_id = file_digest(path)
    if path.suffix.lower() == ".pdf":
        yield from _load_pdf(path, doc_id, st, max_pixels=max_pixels, dpi=pdf_dpi, only_page=only_page)
    else:
        yield from _load_image(path, doc_id, st, max_pixels=max_pixels, only_page=only_page)


def _load_image(
    path: Path, doc_id: str, st: os.stat_result, *, max_pixels: int, only_page: int | None
) -> Iterator[Page]:
    try:
        img = Image.open(path)
        _check_pixels(img.width, img.height, max_pixels, path)
        n = getattr(img, "n_frames", 1) if img.format in ("TIFF", "GIF", "WEBP") else 1
        if img.format in ("GIF", "WEBP"):
            n = 1  # animations: the first frame stands for the image
        fmt = (img.format or path.suffix.lstrip(".")).lower()
        frames = ImageSequence.Iterator(img) if n > 1 else [img]
        for i, frame in enumerate(frames, start=1):
            if only_page is not None and i != only_page:
                continue
            _check_pixels(frame.width, frame.height, max_pixels, path)
            frame.load()
            upright = ImageOps.exif_transpose(frame) if n == 1 else frame
            yield Page(
                image_id=page_id(doc_id, i, n),
                doc_id=doc_id,
                path=str(path),
                page=i,
                n_pages=n,
                format=fmt,
                image=_to_rgb(upright),
                dpi=_dpi(frame),
                file_size=st.st_size,
                mtime=st.st_mtime,
            )
    except ImgragError:
        raise
    except UnidentifiedImageError as e:
        raise ImgragError(f"{path}: not an image PIL can decode", "check the file type; re-export it as PNG/JPEG") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImgragError(f"{path}: damaged or truncated image ({e})", "re-export or re-copy the file") from e


def _load_pdf(
    path: Path, doc_id: str, st: os.stat_result, *, max_pixels: int, dpi: int, only_page: int | None
) -> Iterator[Page]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        raise ImgragError(f"{path}: not a readable PDF ({e})", "check that the file is a complete, unencrypted PDF") from e
    try:
        n = len(pdf)
        if n == 0:
            raise ImgragError(f"{path}: PDF has no pages", "re-export the document")
        scale = dpi / 72.0
        for i in range(n) if only_page is None else [only_page - 1] if 0 < only_page <= n else []:
            page = pdf[i]
            w, h = page.get_size()
            _check_pixels(int(w * scale), int(h * scale), max_pixels, path)
            try:
                bitmap = page.render(scale=scale)
                arr = _to_rgb(bitmap.to_pil())
            except pdfium.PdfiumError as e:
                raise ImgragError(f"{path}: page {i + 1} cannot be rendered ({e})", "re-export the PDF") from e
            yield Page(
                image_id=page_id(doc_id, i + 1, n),
                doc_id=doc_id,
                path=str(path),
                page=i + 1,
                n_pages=n,
                format="pdf",
                image=arr,
                dpi=float(dpi),
                file_size=st.st_size,
                mtime=st.st_mtime,
            )
    finally:
        pdf.close()


def load_page(path: str | Path, page: int, *, max_pixels: int, pdf_dpi: int, doc_id: str | None = None) -> np.ndarray:
    """Re-open one page of an indexed file (for crops); refuse if the file changed since indexing."""
    p = Path(path)
    if not p.is_file():
        raise ImgragError(f"the original file {p} is gone", "restore it or re-index the folder it moved to")
    if doc_id is not None and file_digest(p) != doc_id:
        raise ImgragError(f"{p} changed since it was indexed", f"run `imgrag index {p}` again")
    for pg in load_file(p, max_pixels=max_pixels, pdf_dpi=pdf_dpi, only_page=page):
        if pg.page == page:
            return pg.image
    raise ImgragError(f"{p} has no page {page}", "check the page number")
