"""``imgrag index FOLDER --prune`` with the real CLI, models and embedded store: a file deleted from
the folder leaves the index (``pruned 1``, one ``pruned PATH`` line), search no longer returns it,
``imgrag rollback`` brings it back; a named folder that is missing or empty is refused with one
line and nothing is pruned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for k in ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_DEBUG", "IMGRAG_CONFIG", "IMGRAG_BACKEND"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "imgrag", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)


def text_image(path: Path, words: str) -> None:
    img = Image.new("RGB", (480, 160), (255, 255, 255))
    ImageDraw.Draw(img).text((20, 50), words, fill=(0, 0, 0), font_size=32)
    img.save(path)


def hit_names(home: Path, query: str) -> set[str]:
    r = run(home, "search", query, "--json", "--mode", "keyword")
    assert r.returncode == 0, r.stderr
    return {Path(h["path"]).name for h in json.loads(r.stdout)["hits"]}


def test_prune_deletes_gone_files_rollback_restores_and_a_missing_or_empty_folder_is_refused(tmp_path: Path) -> None:
    home, scans = tmp_path / "home", tmp_path / "scans"
    scans.mkdir()
    for name, words in (("invoice.png", "INVOICE walnut"), ("receipt.png", "RECEIPT pelican"), ("letter.png", "LETTER harbour")):
        text_image(scans / name, words)
    r = run(home, "index", str(scans))
    assert r.returncode == 0, r.stderr
    assert "pruned" not in r.stdout  # without --prune: the summary as before
    assert "receipt.png" in hit_names(home, "pelican")

    (scans / "receipt.png").unlink()
    r = run(home, "index", str(scans), "--prune")
    assert r.returncode == 0, r.stderr
    assert " · pruned 1 · " in r.stdout and "unchanged 2" in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("pruned ")]
    assert lines == [f"pruned {scans.resolve() / 'receipt.png'}: the file is gone (1 page(s))"]
    assert "receipt.png" not in hit_names(home, "pelican")
    assert "invoice.png" in hit_names(home, "walnut")

    versions = json.loads(run(home, "versions", "--json").stdout)
    assert versions[-1]["op"] == "delete"
    r = run(home, "rollback", str(versions[-2]["version"]))
    assert r.returncode == 0, r.stderr
    assert "receipt.png" in hit_names(home, "pelican")

    # an unmounted drive: the folder is empty (or gone) while the index holds pages under it
    for f in scans.iterdir():
        f.unlink()
    r = run(home, "index", str(scans), "--prune")
    assert r.returncode == 0, r.stderr
    assert " · pruned 0 · " in r.stdout
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("not pruned")] == [(
        f"not pruned {scans.resolve()}: is empty but the index holds 3 page(s) under it (an unmounted drive?) — "
        "nothing pruned under it; `imgrag delete --path FILE` removes them one by one"
    )]
    scans.rmdir()
    r = run(home, "index", str(scans), "--prune")
    assert any(ln.startswith(f"not pruned {scans}: no such folder") for ln in r.stderr.splitlines()), r.stderr
    assert {"invoice.png", "receipt.png", "letter.png"} <= {
        Path(h["path"]).name for q in ("walnut", "pelican", "harbour") for h in json.loads(run(home, "search", q, "--json", "--mode", "keyword").stdout)["hits"]
    }
