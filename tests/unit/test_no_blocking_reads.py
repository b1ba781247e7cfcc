"""A sidecar, a ``.imgrag-case`` marker or a file sniffed for DICOM that is swapped for a named pipe
between a check and the open never blocks the run: each is opened without blocking and checked as
opened (``open_regular``). The swap is simulated by an ``is_file`` that still says "file"."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from imgrag.indexing import links
from imgrag.indexing.dicom import is_dicom

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")


def _call(fn: Callable[[], Any], fifo: Path) -> tuple[bool, Any]:
    """(whether ``fn`` blocked for 5 s, what it returned); a blocked call is released by opening
    the pipe for writing and closing it (end of file)."""
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(5)
    blocked = t.is_alive()
    if blocked:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
    return blocked, box.get("v")


@pytest.fixture
def swapped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(Path, "is_file", lambda self: True)  # checked as a file, then swapped
    links._case_of.cache_clear()
    yield
    links._case_of.cache_clear()


def test_a_sidecar_swapped_for_a_pipe_does_not_block(tmp_path: Path, swapped: None) -> None:
    img = tmp_path / "x.png"
    img.write_bytes(b"x")
    fifo = tmp_path / "x.png.imgrag.json"
    os.mkfifo(fifo)
    blocked, keys = _call(lambda: links.file_keys(img), fifo)
    assert not blocked
    assert keys == {}


def test_a_case_marker_swapped_for_a_pipe_does_not_block(tmp_path: Path, swapped: None) -> None:
    (tmp_path / links.CASE_MARKER).write_text("CASE-1\n", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    fifo = sub / links.CASE_MARKER
    os.mkfifo(fifo)
    blocked, keys = _call(lambda: links.file_keys(sub / "x.png"), fifo)
    assert not blocked
    assert keys == {"case": "CASE-1"}  # the pipe is no marker: the one above counts


def test_dicom_sniffing_a_pipe_does_not_block(tmp_path: Path, swapped: None) -> None:
    fifo = tmp_path / "IM0001"
    os.mkfifo(fifo)
    blocked, found = _call(lambda: is_dicom(fifo), fifo)
    assert not blocked
    assert found is False


def test_sidecars_and_markers_still_read(tmp_path: Path) -> None:
    links._case_of.cache_clear()
    (tmp_path / links.CASE_MARKER).write_text("CASE-2\n", encoding="utf-8")
    img = tmp_path / "y.png"
    img.write_bytes(b"x")
    (tmp_path / "y.png.imgrag.json").write_text('{"part": "BRK-1"}', encoding="utf-8")
    (tmp_path / "z.png.imgrag.json").mkdir()  # a folder named like a sidecar is none
    assert links.file_keys(img) == {"case": "CASE-2", "part": "BRK-1"}
    assert links.file_keys(tmp_path / "z.png") == {"case": "CASE-2"}
    links._case_of.cache_clear()
