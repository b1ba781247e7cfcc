"""``imgrag index FOLDER --prune`` (``Imgrag.prune``, ``indexing.prune``): the pages of files gone
from the named folders are soft-deleted the way ``imgrag delete`` does (a version that ``rollback``
undoes); files elsewhere, named files' siblings, unreadable files and moved files are kept, and a
folder that is missing, empty or not fully listable is refused as a whole.
Real embedded store, stand-in models (as tests/unit/test_pipeline_failures.py)."""

from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import pytest
from imgrag.indexing import prune as prune_mod
from imgrag.indexing.app import Imgrag
from imgrag.indexing.pipeline import IndexOptions
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import OPERATOR, Filters
from PIL import Image
from test_pipeline_failures import rt  # noqa: F401  (the fixture: a real LanceStore, stand-in models)

OPTS = IndexOptions(batch_size=8, workers=1)


def image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (value, value, value)).save(path)  # value 0 is the stand-in embedder's poison
    return path


def live(app: Imgrag) -> list[str]:
    return sorted(Path(r.path).name for r in app.store.list_images(OPERATOR, Filters(), limit=1000))


@pytest.fixture
def app(rt: Runtime) -> Imgrag:  # noqa: F811
    return Imgrag(runtime=rt)


@pytest.fixture
def scans(app: Imgrag, tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    for i, v in enumerate((200, 150, 100)):
        image(folder / f"s{i}.png", v)
    assert app.index([str(folder)], OPTS).indexed == 3
    return folder


def test_a_deleted_file_is_pruned_as_delete_does_and_rollback_restores_it(app: Imgrag, scans: Path) -> None:
    (scans / "s1.png").unlink()
    summary = app.index([str(scans)], OPTS)
    assert summary.unchanged == 2
    before = app.current_version()
    pruned = app.prune([str(scans)])
    assert pruned.files == {str(scans.resolve() / "s1.png"): 1} and pruned.pages == 1 and not pruned.refused
    assert live(app) == ["s0.png", "s2.png"]
    v = app.versions()[-1]
    assert (v.op, v.summary, v.version) == ("delete", {"deleted": 1}, pruned.version)
    app.rollback(before)  # type: ignore[arg-type]
    assert live(app) == ["s0.png", "s1.png", "s2.png"]
    assert app.prune([str(scans)]).files  # still gone: pruned again
    assert app.prune([str(scans)]).files == {}  # nothing left to prune: no new version
    assert app.versions()[-1].op == "delete"


def test_only_under_the_named_folders(app: Imgrag, scans: Path, tmp_path: Path) -> None:
    other = tmp_path / "scans2"  # shares the prefix "scans"
    image(other / "o.png", 90)
    app.index([str(other)], OPTS)
    (other / "o.png").unlink()
    (scans / "s0.png").unlink()
    assert app.prune([str(scans / "s1.png")]).files == {}  # a named file: its siblings are not pruned
    assert app.prune([str(scans)]).files == {str(scans.resolve() / "s0.png"): 1}  # not scans2/o.png
    assert live(app) == ["o.png", "s1.png", "s2.png"]


def test_a_file_moved_in_this_run_is_not_pruned(app: Imgrag, scans: Path) -> None:
    (scans / "s2.png").rename(scans / "renamed.png")
    app.index([str(scans)], OPTS)
    assert app.prune([str(scans)]).files == {}
    assert live(app) == ["renamed.png", "s0.png", "s1.png"]


def test_no_longer_a_regular_file_is_pruned_an_unreadable_one_is_not(app: Imgrag, scans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (scans / "s0.png").unlink()
    (scans / "s0.png").mkdir()  # a folder where the file was
    unreadable = str(scans.resolve() / "s1.png")

    def stat(path: str, *a: object, **k: object) -> os.stat_result:
        if str(path) == unreadable:
            raise PermissionError(13, "Permission denied", path)
        return os.stat(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(prune_mod, "os", types.SimpleNamespace(stat=stat, walk=os.walk))
    (scans / "s1.png").unlink()  # gone, but the check cannot tell: kept
    assert app.prune([str(scans)]).files == {str(scans.resolve() / "s0.png"): 1}
    assert live(app) == ["s1.png", "s2.png"]


def test_a_missing_folder_is_refused(app: Imgrag, scans: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    scans.rename(moved)  # as an unmounted drive or a typo looks
    pruned = app.prune([str(scans)])
    assert pruned.files == {} and len(pruned.refused) == 1
    assert pruned.refused[0].folder == str(scans) and "no such folder" in pruned.refused[0].reason
    assert live(app) == ["s0.png", "s1.png", "s2.png"]


def test_an_empty_folder_with_pages_under_it_is_refused(app: Imgrag, scans: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert app.prune([str(empty)]).refused == []  # no pages under it: nothing to refuse
    shutil.rmtree(scans)
    scans.mkdir()  # a mount point with nothing mounted
    pruned = app.prune([str(scans)])
    assert pruned.files == {} and [r.folder for r in pruned.refused] == [str(scans.resolve())]
    assert "empty" in pruned.refused[0].reason and "3 page(s)" in pruned.refused[0].reason
    assert live(app) == ["s0.png", "s1.png", "s2.png"]


def test_a_folder_not_listed_in_full_is_refused(app: Imgrag, scans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (scans / "s0.png").unlink()
    (scans / "sub").mkdir()

    def walk(top: str, onerror=None, **k):  # type: ignore[no-untyped-def]
        for root, dirs, files in os.walk(top, **k):
            if Path(root).name == "sub" and onerror is not None:
                onerror(OSError(5, "Input/output error", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(prune_mod, "os", types.SimpleNamespace(stat=os.stat, walk=walk))
    pruned = app.prune([str(scans)])
    assert pruned.files == {} and "could not be listed in full" in pruned.refused[0].reason
    assert "Input/output error" in pruned.refused[0].reason
    assert live(app) == ["s0.png", "s1.png", "s2.png"]
