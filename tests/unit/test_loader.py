"""Loading: ids, pages, EXIF, and every kind of bad file giving one clear reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.loader import discover, load_file, load_page

LIMITS = {"max_pixels": 50_000_000, "pdf_dpi": 72}


def _png(path: Path, color: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_content_hash_is_stable_and_path_independent(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png")
    b = tmp_path / "sub" / "b.png"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    (pa,) = load_file(a, **LIMITS)
    (pb,) = load_file(b, **LIMITS)
    assert pa.image_id == pb.image_id == pa.doc_id
    assert pa.image.shape == (48, 64, 3) and pa.image.dtype == np.uint8
    other = _png(tmp_path / "c.png", color=(0, 0, 0))
    (pc,) = load_file(other, **LIMITS)
    assert pc.image_id != pa.image_id


def test_discover_recurses_and_reports_unknown(tmp_path: Path) -> None:
    _png(tmp_path / "x.png")
    (tmp_path / "d").mkdir()
    _png(tmp_path / "d" / "y.PNG")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".hidden.png").write_bytes(b"")
    files, problems = discover([tmp_path, tmp_path / "notes.txt", tmp_path / "missing.png"])
    assert sorted(f.name for f in files) == ["x.png", "y.PNG"]
    reasons = {Path(p.path).name: p.reason for p in problems}
    assert "not a supported file type" in reasons["notes.txt"]
    assert "no such file" in reasons["missing.png"]


def test_multipage_tiff_and_pdf_become_pages(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    tif = tmp_path / "multi.tiff"
    frames[0].save(tif, save_all=True, append_images=frames[1:])
    pages = list(load_file(tif, **LIMITS))
    assert [p.page for p in pages] == [1, 2, 3]
    assert len({p.image_id for p in pages}) == 3 and all(p.image_id.startswith(p.doc_id + "-p") for p in pages)
    assert pages[1].image[0, 0].tolist() == [0, 255, 0]

    pdf = tmp_path / "doc.pdf"
    frames[0].save(pdf, save_all=True, append_images=frames[1:2], resolution=72)
    pdf_pages = list(load_file(pdf, **LIMITS))
    assert [p.page for p in pdf_pages] == [1, 2] and all(p.n_pages == 2 for p in pdf_pages)
    only = load_page(pdf, 2, max_pixels=LIMITS["max_pixels"], pdf_dpi=72, doc_id=pdf_pages[0].doc_id)
    assert only.shape == pdf_pages[1].image.shape


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (60, 20), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 10, 20))  # black stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    (page,) = load_file(path, **LIMITS)
    assert page.image.shape[:2] == (60, 20)  # displayed upright: portrait
    assert page.image[:10, :, :].mean() < 80  # the stripe is now at the top


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("empty.png", b"", "empty file"),
        ("text.jpg", b"this is not a jpeg at all", "not an image"),
        ("bad.pdf", b"%PDF-1.4 garbage", "not a readable PDF"),
    ],
)
def test_bad_files_give_one_clear_reason(tmp_path: Path, name: str, content: bytes, expect: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImgragError) as e:
        list(load_file(p, **LIMITS))
    assert expect in str(e.value) and name in str(e.value)


def test_truncated_image(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(ImgragError, match="damaged or truncated"):
        list(load_file(cut, **LIMITS))


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("1", (12000, 10000)).save(p)  # 120 MP, a few KB on disk
    with pytest.raises(ImgragError, match="over the 50 MP limit"):
        list(load_file(p, **LIMITS))


def test_load_page_refuses_changed_file(tmp_path: Path) -> None:
    p = _png(tmp_path / "a.png")
    (page,) = load_file(p, **LIMITS)
    _png(p, color=(1, 2, 3))
    with pytest.raises(ImgragError, match="changed since it was indexed"):
        load_page(p, 1, max_pixels=LIMITS["max_pixels"], pdf_dpi=72, doc_id=page.doc_id)


@pytest.mark.parametrize(("mode", "scale"), [("I;16", 65535), ("I;16-12bit", 4095), ("I", 65535), ("F", 1.0)])
def test_deep_greys_keep_their_tones(tmp_path: Path, mode: str, scale: float) -> None:
    """A 16-bit (or 12-bit in 16, 32-bit, float) grey scan went through PIL's convert("RGB"), which
    clips everything above 255 to white (floats in [0, 1] to black): the page was indexed blank.
    Dark text (a quarter of the range) on a light background (three quarters) stays dark on light."""
    a = np.full((40, 60), 0.75 * scale)
    a[10:30, 10:50] = 0.25 * scale
    if mode == "F":
        img, path = Image.fromarray(a.astype(np.float32)), tmp_path / "f.tif"
    elif mode == "I":
        img, path = Image.fromarray(a.astype(np.int32)), tmp_path / "i.tif"
    else:
        img, path = Image.fromarray(a.astype(np.uint16)), tmp_path / "g.png"
    img.save(path)
    (pg,) = load_file(path, **LIMITS)
    ink, paper = pg.image[20, 30], pg.image[5, 5]
    assert pg.image.dtype == np.uint8 and pg.image.shape == (40, 60, 3)
    assert ink.max() < 20 and paper.min() > 235, (ink, paper)


def test_a_folder_too_deep_to_list_says_so_not_permissions(tmp_path: Path) -> None:
    """A folder whose path is over PATH_MAX (4096 bytes) cannot be listed: the line said "check its
    permissions", which is not the problem. A good file beside it is still found."""
    import os

    (tmp_path / "good.png").write_bytes(b"x")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 241 bytes: deeper than any path the system resolves
            os.mkdir("d" * 240, dir_fd=fd)
            nxt = os.open("d" * 240, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("deep.png", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    files, problems = discover([tmp_path])
    assert files == [(tmp_path / "good.png").resolve()]
    assert len(problems) == 1 and "cannot list this folder (File name too long)" in problems[0].reason
    assert "permissions" not in problems[0].reason and "PATH_MAX" in problems[0].reason


def test_a_folder_whose_name_is_not_utf8_is_one_line_that_names_it(tmp_path: Path) -> None:
    """A Latin-1 folder of scans gave one "the file name is not valid UTF-8 — rename the file" line
    per file in it: thousands of lines, each with a fix that does not help (the folder is the problem)."""
    import os

    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/scans_\xe9t\xe9"))
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "good.png").write_bytes(b"x")
    files, problems = discover([tmp_path])
    assert files == [(tmp_path / "good.png").resolve()]
    assert [(p.path, p.reason) for p in problems] == [
        (f"{tmp_path}/scans_\\udce9t\\udce9", "the folder name is not valid UTF-8 — rename the folder")
    ]
    _, named = discover([folder / "a.png"])
    assert [p.reason for p in named] == ["the name of the folder scans_\\udce9t\\udce9 above it is not valid UTF-8 — rename that folder"]


def test_a_file_swapped_for_a_named_pipe_after_its_check_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file replaced by a FIFO between the check of what it is and its opening blocked the whole
    run in open() (a pipe without a writer never opens). Opened without blocking, checked as opened."""
    import os
    import threading

    from imgrag.indexing import loader

    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    real_file = tmp_path / "real.png"
    real_file.write_bytes(b"x" * 100)
    real_stat = Path.stat

    def stat(self: Path, **kw: object) -> os.stat_result:  # the check ran while it was still a file
        return real_stat(real_file if self == fifo else self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)
    out: list[object] = []

    def run() -> None:
        try:
            list(loader.iter_pages(fifo, max_pixels=10**8, pdf_dpi=72))
        except Exception as e:  # noqa: BLE001  (the test reports whatever iter_pages raised)
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # let the blocked open() return so the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail("iter_pages blocked opening a named pipe")
    assert len(out) == 1 and "not a file" in str(out[0])
    with pytest.raises(OSError):
        loader.file_digest(fifo)  # the look-ahead's hash: refused, not blocked


def test_a_deep_grey_page_is_stretched_in_little_memory() -> None:
    """Stretching a 16-bit page to 8 bits took the whole page as float64, three times over: ~24
    bytes a pixel beside the 3 of the result (2.2 GB peak for an 80 MP scan, 0.8 GB now)."""
    import tracemalloc

    from imgrag.indexing.loader import _to_rgb

    h, w = 2400, 2000
    img = Image.fromarray((np.arange(h * w, dtype=np.uint32) % 65536).astype(np.uint16).reshape(h, w))
    tracemalloc.start()
    try:
        out = _to_rgb(img)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert peak < 10 * h * w, f"{peak / (h * w):.1f} bytes a pixel"


def test_an_empty_path_is_reported_not_taken_for_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`imgrag index "$DIR"` with DIR unset indexed the working folder (Path("") is "."), and an MCP
    index_images call with "" the whole index root."""
    from typer.testing import CliRunner

    import imgrag.cli.index as cli_index
    from imgrag.cli import app
    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(b"x")
    files, problems = discover(["", str(tmp_path / "a.png")])
    assert files == [(tmp_path / "a.png").resolve()]
    assert [(p.path, p.reason) for p in problems] == [("''", "an empty path — name a file or folder (. for the current folder)")]
    assert Imgrag(Settings(home=tmp_path / "home"), index_roots=[tmp_path]).check_paths(["", "a.png"]) == ["", str(tmp_path.resolve() / "a.png")]

    given: list[list[str]] = []

    class Facade:
        def index(self, paths: list[str], opts: object, progress: object) -> object:
            given.append(list(paths))
            raise KeyboardInterrupt  # enough: what the CLI handed over is recorded

    monkeypatch.setattr(cli_index, "facade", lambda: Facade())
    CliRunner().invoke(app, ["index", ""], prog_name="imgrag")
    assert given == [[""]]
