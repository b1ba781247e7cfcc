"""One writer per embedded index, checked with two real processes: a second writer is refused with
a message naming the first, readers keep working meanwhile, and a writer killed with SIGKILL
leaves neither a stale lock nor changes without a version (no models: synthetic records)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.stores.base import OPERATOR, Filters
from imgrag.indexing.stores.lance import LanceStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from test_store_contract import SPACES, Spec, make  # noqa: E402

HOLDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store_contract import SPACES, Spec, make
from imgrag.indexing.stores.lance import LanceStore

store = LanceStore(Path(sys.argv[1]), ann_min_rows=10**9)
store.ensure_spaces(SPACES)
with store.writer():
    store.write([make(Spec("held", text="written by the holder"))])
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A real second process that writes one page into the index and holds the writer lock."""
    path = tmp_path / "index"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(tests=str(Path(__file__).parent)), str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "holding", proc.stderr.read() if proc.stderr else ""
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_second_writer_is_refused_naming_the_first(holder: tuple[Path, subprocess.Popen[str]]) -> None:
    path, proc = holder
    store = LanceStore(path, ann_min_rows=10**9)
    try:
        # readers are not blocked, and see what the writer wrote so far
        assert store.live_ids(["held"]) == {"held"}
        assert store.count(OPERATOR, Filters()) == 1
        assert store.versions() == []  # the holder is alive: its work is not taken over
        for attempt in (
            lambda: store.write([make(Spec("mine", text="second writer"))]),
            lambda: store.soft_delete(["held"]),
            lambda: store.commit("index", {}),
        ):
            with pytest.raises(ImgragError) as e:
                attempt()
            msg = str(e.value)
            assert f"another imgrag process is writing to the index at {path} (pid {proc.pid}:" in msg
            assert "wait for it to finish" in msg and "\n" not in msg
        assert store.live_ids(["mine", "held"]) == {"held"}
    finally:
        store.close()


def test_a_killed_writer_leaves_no_lock_and_its_pages_get_a_version(holder: tuple[Path, subprocess.Popen[str]]) -> None:
    path, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = LanceStore(path, ann_min_rows=10**9)  # the next open records what the killed writer left
    try:
        assert [(v.version, v.op) for v in store.versions()] == [(0, "empty"), (1, "recovered")]
        assert store.live_ids(["held"]) == {"held"}
        store.write([make(Spec("next", text="the next writer"))])  # no stale lock
        assert store.commit("index", {"indexed": 1}).version == 2
        store.rollback(0)
        assert store.count(OPERATOR, Filters()) == 0
    finally:
        store.close()


def test_a_torn_version_log_line_is_skipped(tmp_path: Path) -> None:
    """A crash in the middle of appending a version leaves half a line: the versions around it count."""
    store = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    try:
        store.ensure_spaces(SPACES)
        store.write([make(Spec("a", text="alpha"))])
        store.commit("index", {"indexed": 1})
        with (tmp_path / "index" / "versions.jsonl").open("a") as f:
            f.write('{"version": {"version": 2, "time": "2026-')  # torn
        assert [v.version for v in store.versions()] == [1]
        store.write([make(Spec("b", text="beta"))])
        assert store.commit("index", {"indexed": 1}).version == 2
        store.rollback(1)
        assert store.live_ids(["a", "b"]) == {"a"}
        assert [v.op for v in LanceStore(tmp_path / "index").versions()] == ["index", "index", "rollback to 1"]
    finally:
        store.close()
