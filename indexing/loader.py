"""Find image files, decode them safely and split documents into page records.

"Original-image coordinates" everywhere in imgrag mean the pixels of the page as loaded here:
EXIF orientation applied (as every viewer shows it), PDF pages rendered at ``pdf_dpi``.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import DICOM_EXTS, DicomError, DicomFile, is_dicom, looks_like_dicom
from .errors import ImgragError
from .logs import shown_path
from .models import FileInfo
from .regular import NotRegularFile, _kind, open_regular

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
DOC_EXTS = {".pdf"}
SUPPORTED_EXTS = IMAGE_EXTS | DOC_EXTS | DICOM_EXTS
# The decoders PIL may use, whatever the file is called: never EPS (it runs Ghostscript) or the
# dozens of rarely audited formats PIL would otherwise try on unknown bytes. (JPEG covers MPO, the
# multi-picture JPEG of some cameras.)
PIL_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "DIB", "GIF")
MIN_SIDE = 8  # px: below, there is nothing to read or recognise (and the grid tiles would be empty)
MAX_ASPECT = 100  # a longer strip is no page; models would resize it into gigapixels
_GREY_BAND = 512  # rows of a deep grey image stretched to 8 bits at a time (see _to_rgb)

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
    info: FileInfo | None = None  # what the file says about itself (DICOM tags)


@dataclass
class Skipped:
    path: str
    reason: str


class BadFileError(ImgragError):
    """A file (or one page of it) that cannot be indexed. ``reason`` and ``hint`` do not repeat the
    path, so a run's report names each file once; ``str()`` names it, for use on its own."""

    def __init__(self, path: str | Path, reason: str, hint: str = "", page: int | None = None) -> None:
        super().__init__(f"{shown_path(path)}: {reason}", hint)
        self.path = shown_path(path)
        self.reason = reason
        self.page = page

    def __str__(self) -> str:
        where = f"{self.path}#page={self.page}" if self.page is not None else self.path
        return f"{where}: {self.detail}"

    @property
    def detail(self) -> str:
        """Why, and what to do, without the path."""
        return f"{self.reason} — {self.hint}" if self.hint else self.reason


def file_digest(source: Path | BinaryIO) -> str:
    """Content id: the same bytes anywhere are the same document."""
    h = hashlib.sha256()
    if isinstance(source, Path):
        f, _ = open_regular(source)
        with f:
            return file_digest(f)
    for chunk in iter(lambda: source.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()[:20]


def page_id(doc_id: str, page: int, n_pages: int) -> str:
    """Single images keep the content hash as id; pages of a document get ``-p<n>``."""
    return doc_id if n_pages == 1 else f"{doc_id}-p{page}"


def outside_roots(path: Path, roots: Sequence[Path] | None) -> bool:
    """Whether ``path``'s real location (symbolic links followed, even dangling ones) lies outside
    every root; None: no roots. A link loop has no location: ``discover`` reports it as a loop."""
    if roots is None:
        return False
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return False
    return not any(real == r or r in real.parents for r in roots)


def _resolve(p: Path) -> Path | Skipped:
    """The real file behind ``p``, or why there is none (a link loop or a dangling link)."""
    try:
        return p.resolve(strict=True)
    except RuntimeError:  # Python 3.11-3.12 report a symlink loop this way
        return Skipped(shown_path(p), "symbolic link loop — fix or remove the link")
    except FileNotFoundError:
        return Skipped(shown_path(p), f"broken symbolic link (to {shown_path(os.readlink(p))}) — fix or remove the link")
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Skipped(shown_path(p), "symbolic link loop — fix or remove the link")
        return Skipped(shown_path(p), f"cannot read ({e.strerror or e}) — check the path and its permissions")


def _utf8_name(p: Path, what: str = "file") -> Skipped | None:
    """Why ``p`` cannot be indexed by its name: the name, or a folder above it, is not valid UTF-8
    (reported as such: renaming the file would not help)."""
    if _encodes(p):
        return None
    if not _encodes(p.parent):
        folder = next(a for a in reversed([p.parent, *p.parent.parents]) if not _encodes(a))
        return Skipped(shown_path(p), f"the name of the folder {shown_path(folder.name)} above it is not valid UTF-8 — rename that folder")
    return Skipped(shown_path(p), f"the {what} name is not valid UTF-8 — rename the {what}")


def _encodes(p: Path) -> bool:
    try:
        str(p).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def discover(paths: Iterable[str | Path], roots: Sequence[Path] | None = None) -> tuple[list[Path], list[Skipped]]:
    """Expand folders recursively; named files of unknown type are reported, not silently dropped,
    and so is anything that cannot be listed or followed (unreadable folder, link loop, broken link).

    With ``roots`` (resolved folders a remote caller may index), a file whose real path leaves
    every root — a symbolic link to elsewhere, dangling or not — is reported under the name it was
    found by, without its target, and never opened.
    """
    found: list[Path] = []
    problems: list[Skipped] = []

    def add(p: Path) -> None:
        if outside_roots(p, roots):
            problems.append(Skipped(shown_path(p), "a link to a file outside the folders this server may index: skipped, not read"))
            return
        target = _resolve(p)
        if isinstance(target, Skipped):
            problems.append(target)
        elif (bad := _utf8_name(p) or _utf8_name(target)) is not None:
            problems.append(bad)
        elif (kind := _kind_of(target)) is not None:  # a pipe would block the run, a device never end
            via = f" ({shown_path(target)})" if target != p.absolute() else ""
            problems.append(Skipped(shown_path(p), f"{kind}{via}, not a file — index regular files only"))
        else:
            found.append(target)

    for raw in paths:
        if str(raw) == "":  # Path("") is ".": an empty variable in a script indexed the working folder
            problems.append(Skipped("''", "an empty path — name a file or folder (. for the current folder)"))
            continue
        p = Path(raw).expanduser()
        if p.is_symlink() and not p.exists():  # exists() is False for a loop or a dangling link
            problems.append(r if isinstance(r := _resolve(p), Skipped) else Skipped(shown_path(p), "cannot follow the link"))
        elif not p.exists():
            problems.append(Skipped(shown_path(p), "no such file or folder — check the path"))
        elif p.is_dir() and outside_roots(p, roots):  # a link to a folder elsewhere: not even listed
            problems.append(Skipped(shown_path(p), "a link to a folder outside the folders this server may index: skipped, not read"))
        elif p.is_dir():

            def unreadable(e: OSError) -> None:
                fix = (
                    "the path is longer than the system allows (PATH_MAX); move the folder higher up or shorten its names"
                    if e.errno == errno.ENAMETOOLONG else "check its permissions" if e.errno in (errno.EACCES, errno.EPERM)
                    else "check the folder and the disk"
                )
                problems.append(Skipped(shown_path(e.filename), f"cannot list this folder ({e.strerror}) — {fix}"))

            for root, dirs, files in os.walk(p, onerror=unreadable):
                if not _encodes(Path(root)):  # one line for the folder, not one for each file in it
                    problems.append(_utf8_name(Path(root), "folder"))  # type: ignore[arg-type]
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    f = Path(root) / name
                    if name.startswith("."):
                        continue
                    # an extensionless file is DICOM if its marker says so; one outside the roots is not opened to look
                    if f.suffix.lower() in SUPPORTED_EXTS or (not f.suffix and not outside_roots(f, roots) and is_dicom(f)):
                        add(f)
        elif p.suffix.lower() in SUPPORTED_EXTS or outside_roots(p, roots) or is_dicom(p):
            add(p)
        else:
            problems.append(
                Skipped(shown_path(p), f"not a supported file type ({', '.join(sorted(SUPPORTED_EXTS))})")
            )
    unique = list(dict.fromkeys(found))
    return unique, problems


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit, 32-bit and float greys (scanners, microscopes, TIFF exports): PIL's conversion
        # clips every value above 255 to white (and floats in [0, 1] to black), so a 16-bit scan
        # was indexed as a blank page. Stretched from its own range to 8 bits instead.
        # In bands of rows: the whole page as float64 was 8 bytes a pixel, three times over (2.2 GB
        # for an 80 MP 16-bit scan, 1.5 GB for the same page in RGB); same values, band by band.
        a = np.asarray(img)
        bands = [slice(r, r + _GREY_BAND) for r in range(0, a.shape[0], _GREY_BAND)]

        def band(b: slice) -> np.ndarray:
            return np.nan_to_num(a[b].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)

        ranges = [(float(x.min()), float(x.max())) for x in map(band, bands) if x.size]  # each band converted once here
        lo, hi = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0.0, 0.0)
        grey = np.zeros(a.shape[:2], np.uint8)
        if hi > lo:
            for b in bands:
                grey[b] = ((band(b) - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _check_pixels(w: int, h: int, max_pixels: int, path: Path) -> None:
    """Refuse, from the header and before decoding, what the models cannot use or the machine cannot hold."""
    if w <= 0 or h <= 0:
        raise BadFileError(path, f"image has no pixels ({w}x{h})", "the file is damaged; re-export it")
    if w * h > max_pixels:
        raise BadFileError(
            path,
            f"{w}x{h} = {w * h / 1e6:.0f} MP is over the {max_pixels / 1e6:g} MP limit",
            "downscale the image, or raise IMGRAG_MAX_PIXELS if you trust the file",
        )
    if min(w, h) < MIN_SIDE:
        raise BadFileError(
            path, f"{w}x{h} px is too small to analyse (the shorter side must be at least {MIN_SIDE} px)",
            "nothing to index in it; remove it or re-export it larger",
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise BadFileError(
            path, f"{w}x{h} px is a strip over {MAX_ASPECT} times as long as it is wide",
            "crop or split it into pages",
        )


def _check_pages(n: int, max_pages: int, path: Path) -> None:
    if n > max_pages:
        raise BadFileError(
            path, f"{n} pages is over the limit of {max_pages}", "split the document, or raise IMGRAG_MAX_PAGES"
        )


def _dpi(img: Image.Image) -> float | None:
    dpi = img.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else None
    except (TypeError, ValueError, IndexError):
        return None
    return value if value and 20 <= value <= 2400 else None


@functools.cache
def _quiet_libtiff() -> None:
    """libtiff prints its complaints about damaged files ("Using code not yet in table") straight
    to stderr, from C. The same damage raises in PIL, which we report as one line; so its handlers
    go (Linux: found among the loaded libraries; elsewhere nothing changes)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            libs = {p for p in (line.split()[-1] for line in maps) if p.startswith("/") and "libtiff" in Path(p).name}
    except OSError:
        return
    for lib in libs:
        try:
            tiff = ctypes.CDLL(lib)
            tiff.TIFFSetErrorHandler(None)
            tiff.TIFFSetWarningHandler(None)
        except (OSError, AttributeError):
            log.debug("cannot silence %s", lib)


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Decoder warnings (corrupt EXIF, odd palettes) go to the debug log, not the user's terminal,
    and any decoder failure on hostile bytes becomes one BadFileError naming the file (and page)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            yield
        except ImgragError:
            raise
        except UnidentifiedImageError as e:
            raise BadFileError(
                path, "not an image imgrag can decode (" + ", ".join(sorted(SUPPORTED_EXTS)) + ")",
                "check the file type; re-export it as PNG, JPEG or PDF",
            ) from e
        except MemoryError as e:
            raise BadFileError(path, "too large to decode in memory", "downscale it or lower IMGRAG_MAX_PIXELS") from e
        except Exception as e:  # hostile bytes reach every corner of a decoder: one bad file, not a crash
            log.debug("cannot decode %s", path, exc_info=True)
            raise BadFileError(path, f"damaged or truncated ({type(e).__name__}: {e})", "re-export or re-copy the file") from e
        finally:
            for w in seen:
                log.debug("%s: %s", path, w.message)


def _kind_of(path: Path) -> str | None:
    try:
        return _kind(path.stat().st_mode)
    except OSError:
        return None  # load_file says why it cannot be read


def load_file(path: Path, **limits: Any) -> Iterator[Page]:
    """Yield the pages of one file (or just ``only_page``); raise BadFileError naming the problem,
    the first broken page included. ``limits``: the keyword arguments of :func:`iter_pages`."""
    for item in iter_pages(path, **limits):
        if isinstance(item, BadFileError):
            raise item
        yield item


def iter_pages(
    path: Path,
    *,
    max_pixels: int,
    pdf_dpi: int,
    max_file_mb: int = 512,
    max_pages: int = 1000,
    only_page: int | None = None,
) -> Iterator[Page | BadFileError]:
    """Like :func:`load_file`, but a page that cannot be decoded is yielded as its error and the
    other pages of the document still come; a problem with the whole file is raised."""
    try:
        st = path.stat()
    except OSError as e:
        raise BadFileError(path, f"cannot read ({e.strerror or e})", "check the path and its permissions") from e
    kind = _kind(st.st_mode)
    if kind is not None:  # never opened (opening some devices does something)
        raise BadFileError(path, f"{kind}, not a file", "index regular files only")
    try:
        f, st = open_regular(path)  # the status of what was opened: it may have changed since
    except NotRegularFile as e:
        raise BadFileError(path, f"{e.kind}, not a file", "index regular files only") from e
    except OSError as e:
        raise BadFileError(path, f"cannot read ({e.strerror or e})", "check its permissions (ls -l)") from e
    with f:
        if st.st_size == 0:
            raise BadFileError(path, "empty file (0 bytes)", "remove it or replace it with the real file")
        if st.st_size > max_file_mb * 1024 * 1024:
            raise BadFileError(
                path, f"{st.st_size / 2**20:.0f} MiB is over the {max_file_mb} MiB limit",
                "split the document, or raise IMGRAG_MAX_FILE_MB",
            )
        try:
            doc_id = file_digest(f)
            f.seek(0)
            head = f.read(1024)
            f.seek(0)
        except OSError as e:
            raise BadFileError(path, f"cannot read ({e.strerror or e})", "check the disk and the file") from e
        # The content decides, not the name: a PDF saved as .png is read as a PDF, a PNG saved as .pdf as an image.
        if b"%PDF-" in head:
            yield from _load_pdf(path, f, doc_id, st, max_pixels=max_pixels, dpi=pdf_dpi, max_pages=max_pages, only_page=only_page)
        elif looks_like_dicom(head, path):
            yield from _load_dicom(path, f, doc_id, st, max_pixels=max_pixels, max_pages=max_pages, only_page=only_page)
        else:
            yield from _load_image(path, f, doc_id, st, max_pixels=max_pixels, max_pages=max_pages, only_page=only_page)


def _load_image(
    path: Path, f: BinaryIO, doc_id: str, st: os.stat_result, *, max_pixels: int, max_pages: int, only_page: int | None
) -> Iterator[Page | BadFileError]:
    with _decoding(path):
        img = Image.open(f, formats=PIL_FORMATS)
        if img.format == "TIFF":
            _quiet_libtiff()  # PIL loaded libtiff by now
        _check_pixels(img.width, img.height, max_pixels, path)
        n = getattr(img, "n_frames", 1) if img.format == "TIFF" else 1  # GIF, WebP, MPO: the first frame stands for the image
        if only_page is None:
            _check_pages(n, max_pages, path)
        fmt = (img.format or path.suffix.lstrip(".")).lower()
        fmt = "jpeg" if fmt == "mpo" else fmt
    for i in range(1, n + 1):
        if only_page is not None and i != only_page:
            continue
        try:
            with _decoding(path):
                if n > 1:
                    img.seek(i - 1)
                _check_pixels(img.width, img.height, max_pixels, path)
                img.load()
                upright = ImageOps.exif_transpose(img) if n == 1 else img
                arr = _to_rgb(upright)
                dpi = _dpi(img)
        except BadFileError as e:
            if n == 1:
                raise
            e.page = i
            yield e
            continue
        yield Page(
            image_id=page_id(doc_id, i, n), doc_id=doc_id, path=str(path), page=i, n_pages=n, format=fmt,
            image=arr, dpi=dpi, file_size=st.st_size, mtime=st.st_mtime,
        )


def _load_dicom(
    path: Path, f: BinaryIO, doc_id: str, st: os.stat_result, *, max_pixels: int, max_pages: int, only_page: int | None
) -> Iterator[Page | BadFileError]:
    """Every frame of a DICOM image is a page. A frame that cannot be decoded is reported as a page
    error, a run of frames failing for one reason as one error (a truncated 900-frame file is one
    line, not 900); a reason that holds for the whole file (no decoder) stops at the first frame."""
    try:
        dcm = DicomFile(f, path)
        n = dcm.n_frames
        if only_page is None:
            _check_pages(dcm.declared_frames, max_pages, path)
        _check_pixels(dcm.cols, dcm.rows, max_pixels, path)
    except DicomError as e:
        raise BadFileError(path, e.message, e.hint) from e
    failed: tuple[int, DicomError] | None = None  # the first frame of a run failing for one reason

    def flush(last: int) -> BadFileError:
        first, err = failed  # type: ignore[misc]
        which = f"frame {first}" if first == last else f"frames {first}-{last}"
        return BadFileError(path, f"{which}: {err.message}" if n > 1 else err.message, err.hint, page=first if n > 1 else None)

    for i, image in dcm.frames(only_page):
        if isinstance(image, DicomError):
            if n == 1 or image.whole_file:
                raise BadFileError(path, image.message, image.hint) from image
            if failed is not None and failed[1].message != image.message:
                yield flush(i - 1)
                failed = None
            failed = failed or (i, image)
            continue
        if failed is not None:
            yield flush(i - 1)
            failed = None
        yield Page(
            image_id=page_id(doc_id, i, n), doc_id=doc_id, path=str(path), page=i, n_pages=n,
            format="dicom", image=image, dpi=None, file_size=st.st_size, mtime=st.st_mtime, info=dcm.info,
        )
    if failed is not None:
        yield flush(only_page or n)
    if only_page is None and dcm.declared_frames > n:
        yield BadFileError(
            path, f"frames {n + 1}-{dcm.declared_frames}: the pixel data holds {n} of the {dcm.declared_frames} frames the header declares",
            "re-copy or re-export the file", page=n + 1,
        )


def _load_pdf(
    path: Path, f: BinaryIO, doc_id: str, st: os.stat_result, *, max_pixels: int, dpi: int, max_pages: int, only_page: int | None
) -> Iterator[Page | BadFileError]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(f)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise BadFileError(path, "encrypted PDF (it needs a password)", "save an unencrypted copy (e.g. qpdf --decrypt)") from e
        raise BadFileError(path, f"not a readable PDF ({e})", "check that the file is a complete PDF; re-export it") from e
    except Exception as e:
        raise BadFileError(path, f"not a readable PDF ({type(e).__name__}: {e})", "re-export the document") from e
    try:
        n = len(pdf)
        if n == 0:
            raise BadFileError(path, "PDF has no pages", "re-export the document")
        if only_page is None:
            _check_pages(n, max_pages, path)
        scale = dpi / 72.0
        for i in range(n) if only_page is None else [only_page - 1] if 0 < only_page <= n else []:
            try:
                with _decoding(path):
                    page = pdf[i]
                    w, h = page.get_size()
                    _check_pixels(int(w * scale), int(h * scale), max_pixels, path)
                    bitmap = page.render(scale=scale)
                    arr = _to_rgb(bitmap.to_pil())
            except BadFileError as e:
                if n == 1:
                    raise
                e.page = i + 1
                yield e
                continue
            yield Page(
                image_id=page_id(doc_id, i + 1, n), doc_id=doc_id, path=str(path), page=i + 1, n_pages=n,
                format="pdf", image=arr, dpi=float(dpi), file_size=st.st_size, mtime=st.st_mtime,
            )
    finally:
        pdf.close()


def load_page(path: str | Path, page: int, *, max_pixels: int, pdf_dpi: int, doc_id: str | None = None) -> np.ndarray:
    """Re-open one page of an indexed file (for crops); refuse if the file changed since indexing."""
    p = Path(path)
    if not p.is_file():
        raise ImgragError(f"the original file {shown_path(p)} is gone", "restore it or re-index the folder it moved to")
    try:
        changed = doc_id is not None and file_digest(p) != doc_id
    except OSError as e:
        raise BadFileError(p, f"cannot read ({e.strerror or e})", "check its permissions (ls -l)") from e
    if changed:
        raise ImgragError(f"{shown_path(p)} changed since it was indexed", f"run `imgrag index {shown_path(p)}` again")
    for pg in load_file(p, max_pixels=max_pixels, pdf_dpi=pdf_dpi, only_page=page):
        if pg.page == page:
            return pg.image
    raise ImgragError(f"{p} has no page {page}", "check the page number")
