"""One bad file never stops a run: a hostile corpus of 50+ kinds of broken, mislabelled, enormous,
unreadable and impossible inputs, mixed with good files, indexed in ONE run of the real CLI on the
real models and the embedded store.

Expected: every good file (and every good page of a partly broken document) is indexed; every bad
one is reported on exactly one stderr line that names it and says why; no traceback, no warning
from a library, exit status 0 (something was indexed); the index is intact afterwards (versions,
search, a re-run that changes nothing). The corpus is built here, from bytes, by hand where no
library writes such a file; each kind says what its one line must contain.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow

IMGRAG = [sys.executable, "-m", "imgrag"]
ROOT = Path(__file__).resolve().parents[2]


# -- building blocks -------------------------------------------------------------------------
def text_image(words: str, size: tuple[int, int] = (480, 200), mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(words.split("|")):
        draw.text((20, 20 + 40 * i), line, fill=(0, 0, 0), font_size=28)
    return img.convert(mode) if mode != "RGB" else img


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims ``w`` x ``h`` pixels and holds almost nothing: refused from its header."""
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")


def pdf_bytes(pages: int, size: tuple[float, float] = (595, 842), text: str = "", **encryption: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format=size)
    if encryption:
        pdf.set_encryption(**encryption)
    pdf.set_font("helvetica", size=24)
    for i in range(pages):
        pdf.add_page()
        if text:
            pdf.text(60, 120, f"{text} page {i + 1}")
    return bytes(pdf.output())


def hand_pdf(objects: list[bytes]) -> bytes:
    """A PDF written object by object (for structures no library writes: no pages, say)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def tiff_with_tag(img: Image.Image, tag: int, value: int) -> bytes:
    """An uncompressed little-endian TIFF with one SHORT/LONG tag of its first IFD overwritten."""
    data = bytearray(encoded(img, "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    (n,) = struct.unpack_from("<H", data, ifd)
    for i in range(n):
        at = ifd + 2 + 12 * i
        t, typ, _count = struct.unpack_from("<HHI", data, at)
        if t == tag:
            struct.pack_into("<H" if typ == 3 else "<I", data, at + 8, value)
            return bytes(data)
    raise AssertionError(f"tag {tag} not in the TIFF")


def tiff_ifd_loop(img: Image.Image) -> bytes:
    """A TIFF whose first IFD names itself as the next one: a frame counter that never ends."""
    data = bytearray(encoded(img, "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    (n,) = struct.unpack_from("<H", data, ifd)
    struct.pack_into("<I", data, ifd + 2 + 12 * n, ifd)
    return bytes(data)


def patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def jpeg_with_size(w: int, h: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``w`` x ``h``."""
    data = encoded(text_image("x", (64, 64)), "JPEG")
    sof = data.index(b"\xff\xc0")
    return patch(data, sof + 5, ">HH", h, w)


@dataclass
class Case:
    name: str  # path under the corpus folder
    expect: str  # what its one stderr line must contain (regex)


GOOD_WORDS = {
    "good.png": "Quarterly report|Lakeside Logistics",
    "png_named.jpg": "Mislabelled PNG|saved as jpg",
    "jpeg_named.png": "Mislabelled JPEG|saved as png",
    "png_named.pdf": "A PNG with a|pdf extension",
    "palette_transparency.png": "Palette with|transparency bytes",
    "corrupt_exif.jpg": "Broken EXIF|still a photo",
    "cmyk.jpg": "CMYK scan|printing house",
    "gray16.png": "Sixteen bit|grayscale",
    "weird [bold] name.png": "Markup in|the file name",
    "new\nline.png": "Newline in|the file name",
}


def build(root: Path) -> tuple[dict[str, int], list[Case]]:
    """The corpus: good files (name -> pages expected indexed) and bad ones (each with its reason)."""
    root.mkdir(parents=True, exist_ok=True)
    good: dict[str, int] = {}
    bad: list[Case] = []

    def put(name: str, data: bytes) -> Path:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    # -- good files, some with hostile names or odd but valid encodings -----------------------
    put("good.png", encoded(text_image(GOOD_WORDS["good.png"]), "PNG"))
    put("png_named.jpg", encoded(text_image(GOOD_WORDS["png_named.jpg"]), "PNG"))
    put("jpeg_named.png", encoded(text_image(GOOD_WORDS["jpeg_named.png"]), "JPEG"))
    put("png_named.pdf", encoded(text_image(GOOD_WORDS["png_named.pdf"]), "PNG"))
    put("pdf_named.png", pdf_bytes(1, (420, 300), "A PDF saved as png"))
    put("good.pdf", pdf_bytes(2, (420, 300), "Two page agreement"))
    pal = text_image(GOOD_WORDS["palette_transparency.png"]).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    put("palette_transparency.png", encoded(pal, "PNG", transparency=bytes([0] + [255] * 7)))
    jpeg = encoded(text_image(GOOD_WORDS["corrupt_exif.jpg"]), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f")
    put("corrupt_exif.jpg", jpeg)
    put("cmyk.jpg", encoded(text_image(GOOD_WORDS["cmyk.jpg"], mode="CMYK"), "JPEG"))
    g16 = Image.fromarray((np.asarray(text_image(GOOD_WORDS["gray16.png"]).convert("L"), np.uint16) * 257))
    put("gray16.png", encoded(g16, "PNG"))
    put("weird [bold] name.png", encoded(text_image(GOOD_WORDS["weird [bold] name.png"]), "PNG"))
    put("new\nline.png", encoded(text_image(GOOD_WORDS["new\nline.png"]), "PNG"))
    good.update({n: 1 for n in GOOD_WORDS} | {"pdf_named.png": 1, "good.pdf": 2})
    # a two-page TIFF whose second page is cut short: page 1 indexed, page 2 reported
    frames = [text_image("Page one survives|the damage"), Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (300, 480, 3), dtype=np.uint8))]
    tif = encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    put("second_page_broken.tif", _break_second_page(tif))
    good["second_page_broken.tif"] = 1
    bad.append(Case("second_page_broken.tif#page=2", r"damaged or truncated"))

    # -- empty, wrong and unknown bytes ---------------------------------------------------------
    for name in ("empty.png", "empty.pdf", "empty.tif"):
        put(name, b"")
        bad.append(Case(name, r"empty file \(0 bytes\)"))
    for name, data in {
        "text.jpg": b"this is not a jpeg at all",
        "html.png": b"<!doctype html><html><body>404 not found</body></html>",
        "svg.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>',
        "zip.pdf": b"PK\x03\x04" + os.urandom(200),
        "random.webp": os.urandom(4096),
        "eps_named.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n",
        "ico_named.png": encoded(text_image("ico", (64, 64)), "ICO"),
        "psd_named.jpg": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 100, 100, 8, 3) + b"\x00" * 64,
        "jpeg2000_named.jpg": encoded(text_image("j2k", (64, 64)), "JPEG2000"),
        "garbage_after_soi.jpg": b"\xff\xd8" + os.urandom(3000),
        "riff_not_webp.webp": b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8 " + os.urandom(92),
    }.items():
        put(name, data)
        bad.append(Case(name, r"not an image imgrag can decode|damaged or truncated"))

    # -- truncated files of every supported format ---------------------------------------------
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif")):
        data = encoded(noise, fmt)
        put(f"truncated.{ext}", data[: len(data) // 3])
        bad.append(Case(f"truncated.{ext}", r"damaged or truncated|not an image imgrag can decode"))
    broken_png = bytearray(encoded(noise, "PNG"))
    broken_png[29] ^= 0xFF  # the IHDR CRC
    put("bad_crc.png", bytes(broken_png))
    bad.append(Case("bad_crc.png", r"damaged or truncated|not an image imgrag can decode"))
    ztxt = zlib.compress(b"A" * (64 * 2**20))  # 64 MiB of text in a few KB
    png = encoded(noise, "PNG")
    put("ztxt_bomb.png", png[:33] + png_chunk(b"zTXt", b"Comment\x00\x00" + ztxt) + png[33:])
    bad.append(Case("ztxt_bomb.png", r"damaged or truncated"))
    put("unknown_compression.tif", tiff_with_tag(text_image("compression", (64, 64)), 259, 60000))
    bad.append(Case("unknown_compression.tif", r"damaged or truncated|not an image imgrag can decode"))
    put("ifd_loop.tif", tiff_ifd_loop(text_image("Endless frames", (240, 64))))
    good["ifd_loop.tif"] = 1  # PIL sees the loop: one page, no hang
    # a bad file whose path is rich markup ("[/x]" closes a tag never opened): printed verbatim
    put("markup [/x] [bold]/bad.png", b"not a png")
    bad.append(Case("markup [/x] [bold]/bad.png", r"not an image imgrag can decode"))

    # -- PDFs: broken, encrypted, empty, endless, enormous --------------------------------------
    full = pdf_bytes(3, text="Truncated")
    put("truncated.pdf", full[: len(full) // 4])
    bad.append(Case("truncated.pdf", r"not a readable PDF|PDF has no pages|damaged"))
    put("header_only.pdf", b"%PDF-1.7\n%garbage garbage garbage\n")
    bad.append(Case("header_only.pdf", r"not a readable PDF"))
    put("encrypted.pdf", pdf_bytes(1, text="Secret", owner_password="owner", user_password="user"))
    bad.append(Case("encrypted.pdf", r"encrypted PDF"))
    put("no_pages.pdf", hand_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]))
    bad.append(Case("no_pages.pdf", r"PDF has no pages|not a readable PDF"))
    put("lying_count.pdf", hand_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 100000 >>"]))
    bad.append(Case("lying_count.pdf", r"PDF has no pages|not a readable PDF|over the limit|damaged"))
    put("too_many_pages.pdf", pdf_bytes(1001))
    bad.append(Case("too_many_pages.pdf", r"1001 pages is over the limit of 1000 .*IMGRAG_MAX_PAGES"))
    put("huge_page.pdf", pdf_bytes(1, (14400, 14400)))
    bad.append(Case("huge_page.pdf", r"MP limit"))
    sparse = root / "over_size_limit.pdf"
    with sparse.open("wb") as f:
        f.write(b"%PDF-1.4\n")
        f.truncate(600 * 2**20)  # sparse: 600 MiB long, nothing on disk
    bad.append(Case("over_size_limit.pdf", r"600 MiB is over the 512 MiB limit .*IMGRAG_MAX_FILE_MB"))

    # -- bombs and impossible geometry, refused from the header -----------------------------------
    put("bomb.png", encoded(Image.new("1", (12_000, 9_000)), "PNG"))
    put("bomb_header.png", png_header_only(100_000, 100_000))
    put("bomb.jpg", jpeg_with_size(60_000, 60_000))
    put("bomb.tif", encoded(Image.new("1", (10_000, 10_000)), "TIFF", compression="group4"))
    gif = encoded(text_image("g", (64, 64)).convert("P"), "GIF")
    put("bomb.gif", patch(patch(gif, 6, "<HH", 65_535, 65_535), gif.index(b"\x2c") + 5, "<HH", 65_535, 65_535))
    bmp = encoded(text_image("b", (64, 64)), "BMP")
    put("bomb.bmp", patch(bmp, 18, "<ii", 50_000, 50_000))
    for name in ("bomb.png", "bomb_header.png", "bomb.jpg", "bomb.tif", "bomb.gif", "bomb.bmp"):
        bad.append(Case(name, r"MP limit|damaged or truncated"))
    put("too_many_frames.tif", encoded(Image.new("L", (8, 8)), "TIFF", save_all=True,
                                       append_images=[Image.new("L", (8, 8))] * 1000))
    bad.append(Case("too_many_frames.tif", r"1001 pages is over the limit of 1000"))
    put("one_pixel.png", encoded(Image.new("RGB", (1, 1)), "PNG"))
    put("strip_1x10000.png", encoded(Image.new("RGB", (1, 10_000)), "PNG"))
    put("strip_10000x1.png", encoded(Image.new("RGB", (10_000, 1)), "PNG"))
    put("strip_1x79M.png", png_header_only(1, 79_000_000))  # under the 80 MP limit
    for name in ("one_pixel.png", "strip_1x10000.png", "strip_10000x1.png", "strip_1x79M.png"):
        bad.append(Case(name, r"too small to analyse"))
    put("long_strip.png", encoded(Image.new("RGB", (8, 2_000), (255, 255, 255)), "PNG"))
    bad.append(Case("long_strip.png", r"strip over 100 times as long as it is wide"))
    put("zero_width.gif", patch(gif, gif.index(b"\x2c") + 5, "<HH", 0, 64))
    bad.append(Case("zero_width.gif", r"no pixels|damaged or truncated|too small"))

    # -- the file system: links, pipes, devices, sockets, permissions, names --------------------
    os.symlink("loop_b.png", root / "loop_a.png")
    os.symlink("loop_a.png", root / "loop_b.png")
    os.symlink("self_loop.png", root / "self_loop.png")
    os.symlink(root / "gone.png", root / "dangling.png")
    bad += [Case("loop_a.png", r"symbolic link loop"), Case("loop_b.png", r"symbolic link loop"),
            Case("self_loop.png", r"symbolic link loop"), Case("dangling.png", r"broken symbolic link")]
    os.mkfifo(root / "fifo.png")
    bad.append(Case("fifo.png", r"named pipe \(FIFO\), not a file"))
    os.symlink("/dev/zero", root / "dev_zero.png")
    bad.append(Case("dev_zero.png", r"a character device \(/dev/zero\), not a file"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "socket.png"))
        bad.append(Case("socket.png", r"a socket, not a file"))
    except OSError:  # a path too long for a socket: this kind is then left out
        pass
    finally:
        sock.close()
    put("unreadable.png", encoded(text_image("locked"), "PNG")).chmod(0)
    bad.append(Case("unreadable.png", r"cannot read \(Permission denied\)"))
    locked = root / "locked_folder"
    put("locked_folder/inside.png", encoded(text_image("inside"), "PNG"))
    locked.chmod(0)
    bad.append(Case("locked_folder", r"cannot list this folder \(Permission denied\)"))
    (root / os.fsdecode(b"latin1_\xe9t\xe9.png")).write_bytes(encoded(text_image("latin"), "PNG"))
    bad.append(Case("latin1_\\udce9t\\udce9.png", r"not valid UTF-8"))
    return good, bad


def _break_second_page(tif: bytes) -> bytes:
    """Cut the compressed strips of a two-page TIFF's second page short (its IFD stays readable)."""
    two = Image.open(io.BytesIO(tif))
    two.seek(1)
    offsets = two.tag_v2[273]
    counts = two.tag_v2[279]
    start = offsets[0]
    end = offsets[-1] + counts[-1]
    data = bytearray(tif)
    data[start:end] = b"\xff" * (end - start)  # garbage LZW codes
    return bytes(data)


def run(home: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for k in ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_DEBUG", "IMGRAG_CONFIG", "IMGRAG_BACKEND"):
        env.pop(k, None)
    cmd = [*IMGRAG, *args]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # root reads any file: drop the capabilities that let it, so chmod 000 means what it means for a user
        cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
               "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[Case]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    good, bad = build(root)
    yield root, good, bad
    (root / "locked_folder").chmod(0o755)  # let pytest clean up


def test_hostile_corpus_has_at_least_50_kinds(corpus: tuple[Path, dict[str, int], list[Case]]) -> None:
    _, good, bad = corpus
    assert len(bad) >= 50, len(bad)
    assert len(good) >= 10


def test_one_run_indexes_every_good_file_and_reports_each_bad_one_once(
    corpus: tuple[Path, dict[str, int], list[Case]], tmp_path: Path
) -> None:
    root, good, bad = corpus
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.fail("running as root without setpriv: chmod 000 cannot be tested", pytrace=False)
    home = tmp_path / "home"
    named = [str(root / "loop_a.png"), str(root / "missing.png"), str(root / "notes.txt")]
    (root / "notes.txt").write_text("not an image")
    p = run(home, "index", str(root), *named, "--json")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "Warning" not in p.stderr, p.stderr
    summary = json.loads(p.stdout)

    # every good page is indexed
    indexed = {Path(r.split("#")[0]).name for r in (f["path"] for f in summary["failed"])}
    assert summary["indexed"] == sum(good.values()), (summary["indexed"], summary["failed"])
    for name in good:
        assert name.replace("\n", "\\n") not in indexed or name == "second_page_broken.tif", name

    # every bad file or page: one stderr line naming it and why, and the same in the summary
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("skipped ") for ln in lines), "\n".join(ln for ln in lines if not ln.startswith("skipped "))
    expected = [*bad, Case("loop_a.png", r"symbolic link loop"), Case("missing.png", r"no such file or folder"),
                Case("notes.txt", r"not a supported file type")]
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    for case in expected:
        path = f"{root}/{case.name}"
        hits = [ln for ln in lines if ln.startswith(f"skipped {path}: ")]
        assert hits, f"{case.name}: no line in\n{p.stderr}"
        assert re.search(case.expect, hits[0]), f"{case.name}: {hits[0]!r} lacks {case.expect!r}"
        assert hits[0].count(path) == 1, f"the path is printed twice: {hits[0]!r}"
        assert re.search(case.expect, failed[path]), (case.name, failed[path])
    # the named loop is reported twice (found in the folder and named); everything else once
    assert len(lines) == len(expected), "\n".join(lines)
    assert len(summary["failed"]) == len(expected)

    # the index is intact: one version, searchable, and a re-run changes nothing
    versions = json.loads(run(home, "versions", "--json").stdout)
    assert [v["op"] for v in versions] == ["index"]
    hits = json.loads(run(home, "search", "Lakeside Logistics quarterly report", "--json", "-k", "3").stdout)["hits"]
    assert hits and Path(hits[0]["path"]).name == "good.png"
    again = run(home, "index", str(root), "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["indexed"], second["unchanged"], second["version"]) == (0, sum(good.values()), None)


def test_a_run_where_every_file_fails_exits_2(corpus: tuple[Path, dict[str, int], list[Case]], tmp_path: Path) -> None:
    root, _, _ = corpus
    p = run(tmp_path / "home", "index", str(root / "one_pixel.png"), str(root / "truncated.png"))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("skipped ")]) == 2
    assert "Traceback" not in p.stderr
