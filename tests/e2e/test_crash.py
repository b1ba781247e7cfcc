"""A killed indexer: ``kill -9`` a real ``python -m imgrag index`` (real models, embedded store)
at several moments and check that the index opens, nothing acknowledged is lost, what the killed
run wrote is versioned (so ``imgrag rollback`` undoes it), a second writer meanwhile is refused
naming the first, and a re-run completes without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow

IMGRAG = [sys.executable, "-m", "imgrag"]
ROOT = Path(__file__).resolve().parents[2]
PLACES = ["Harbour", "Mountain", "Orchard", "River", "Desert", "Island", "Forest", "Valley"]
KINDS = ["freight invoice", "survey report", "lease agreement", "bridge inspection", "solar contract"]
# enough pages that a run lasts well beyond a second writer's start and its 3 s wait for the lock
# (40 small pages were done within that once indexing got faster: 160, each kind and place 4 times)
WORDS = [f"{place} {kind} no. {i}" for i, (place, kind) in enumerate((p, k) for k in KINDS for p in PLACES for _ in range(4))]


def env(home: Path) -> dict[str, str]:
    e = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for k in ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_CONFIG", "IMGRAG_BACKEND", "IMGRAG_DEBUG"):
        e.pop(k, None)
    return e


def cli(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMGRAG, *args], cwd=ROOT, env=env(home), capture_output=True, text=True, timeout=timeout)


def start_index(home: Path, folder: Path) -> subprocess.Popen[str]:
    # one page per batch, one worker: pages are written one by one, so a kill lands between writes
    return subprocess.Popen(
        [*IMGRAG, "index", str(folder), "--batch-size", "1", "--workers", "1", "--json"],
        cwd=ROOT, env=env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def live_pages(home: Path) -> int:
    """Pages a search would see, read straight from the tables (no imgrag store: it takes no part)."""
    import lancedb

    index = home / "index"
    if not (index / "images.lance").exists():
        return 0
    try:
        return int(lancedb.connect(str(index)).open_table("images").count_rows("deleted = false"))
    except Exception:  # the table is being created this instant
        return 0


def wait_for_pages(home: Path, proc: subprocess.Popen[str], n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while live_pages(home) < n:
        assert proc.poll() is None, f"the indexer ended early:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no pages written in time"
        time.sleep(0.2)


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def versions(home: Path) -> list[dict]:
    p = cli(home, "versions", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def stats(home: Path) -> dict:
    p = cli(home, "stats")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def page(path: Path, words: str) -> None:
    img = Image.new("RGB", (520, 160), "white")
    ImageDraw.Draw(img).text((20, 50), words, fill="black", font_size=30)
    img.save(path)


def test_killed_indexer_at_several_moments(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, words in enumerate(WORDS[:2]):
        page(folder / f"a{i}.png", words)

    # an acknowledged run: these two pages must survive everything below
    first = cli(home, "index", str(folder), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["version"] == 1
    for i, words in enumerate(WORDS[2:], start=2):
        page(folder / f"b{i}.png", words)
    total = len(WORDS)

    # moment 1: killed at once (imports, models loading): nothing changed, the index opens
    proc = start_index(home, folder)
    time.sleep(1.0)
    kill(proc)
    assert [v["op"] for v in versions(home)] == ["index"]
    assert stats(home)["images"] == 2

    # moment 2: killed after some pages were written; meanwhile a second writer is refused
    proc = start_index(home, folder)
    wait_for_pages(home, proc, 3)
    second = cli(home, "index", str(folder))
    assert second.returncode == 2, second.stderr
    assert f"another imgrag process is writing to the index at {home / 'index'} (pid {proc.pid}:" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
    kill(proc)
    written = live_pages(home)
    assert 3 <= written < total
    vs = versions(home)  # the next open records the killed run's pages as a version
    assert [v["op"] for v in vs] == ["index", "recovered"]
    st = stats(home)
    assert st["images"] == written and st["version"] == 2
    hits = json.loads(cli(home, "search", WORDS[0], "--json", "-k", "3").stdout)["hits"]
    assert hits and Path(hits[0]["path"]).name == "a0.png"  # acknowledged pages are still there
    # the partial work can be undone, and redone
    assert cli(home, "rollback", "1").returncode == 0
    assert stats(home)["images"] == 2
    assert cli(home, "rollback", "2").returncode == 0
    assert stats(home)["images"] == written

    # moment 3: a resumed run killed again, right after its first new page
    proc = start_index(home, folder)
    wait_for_pages(home, proc, written + 1)
    kill(proc)
    again = live_pages(home)
    assert [v["op"] for v in versions(home)][-1] == "recovered"

    # a re-run completes: only the missing pages are indexed, nothing twice
    final = cli(home, "index", str(folder), "--json")
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["indexed"] == total - again and summary["unchanged"] == again and not summary["failed"]
    st = stats(home)
    assert st["images"] == total and st["documents"] == total and st["deleted"] == 0
    ops = [v["op"] for v in versions(home)]
    assert ops[-1] == "index" and ops.count("recovered") == 2
    for words in (WORDS[1], WORDS[-1]):
        hits = json.loads(cli(home, "search", words, "--json", "-k", "3").stdout)["hits"]
        assert hits, words


def test_a_kill_between_writing_and_linking_is_linked_by_the_rerun(tmp_path: Path) -> None:
    """A report and its X-ray (one case, via sidecars): the indexer dies right after writing the
    batch, before linking it. The re-run found both pages unchanged and left them unlinked for good
    (it linked unchanged pages only with --acl/--meta/--tag); now it links what still waits."""
    folder, home = tmp_path / "case", tmp_path / "home"
    folder.mkdir()
    page(folder / "report.png", "Radiology report for case C-17")
    page(folder / "xray.png", "X-ray C-17")
    (folder / "report.png.imgrag.json").write_text('{"case": "C-17", "kind": "document"}')
    (folder / "xray.png.imgrag.json").write_text('{"case": "C-17", "kind": "image"}')
    die_before_linking = (
        "import os, sys, imgrag.indexing.pipeline as p\n"
        "p.relink = lambda *a, **k: os._exit(137)  # the kill, in the window between write and link\n"
        "from imgrag.cli import main\n"
        f"sys.argv = ['imgrag', 'index', {str(folder)!r}, '--public']\n"
        "main()\n"
    )
    killed = subprocess.run([sys.executable, "-c", die_before_linking], cwd=ROOT, env=env(home), check=False,
                            capture_output=True, text=True, timeout=900)
    assert killed.returncode == 137, killed.stderr
    assert live_pages(home) == 2  # written, not linked

    rerun = cli(home, "index", str(folder), "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] == 2 and summary["indexed"] == 0 and summary["linked"] == 2, summary
    ids = [h["image_id"] for h in json.loads(cli(home, "search", "C-17", "--json").stdout)["hits"]]
    assert len(ids) == 2
    for image_id in ids:
        rec = json.loads(cli(home, "show", image_id).stdout)
        assert [ln["kind"] for ln in rec["links"]] == (["image"] if rec["path"].endswith("report.png") else ["document"]), rec
    again = json.loads(cli(home, "index", str(folder), "--json").stdout)
    assert again["linked"] == 0 and again["unchanged"] == 2  # linked pages are not linked again
