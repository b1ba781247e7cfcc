"""An index run looks up a run of files' stored pages in one store query (``Indexer._look_ahead``,
``LanceStore.live_pages``) instead of ``live_ids_for_path`` and ``live_ids`` for each file and page:
the same pages are indexed, skipped as unchanged, counted as duplicates and replaced as before.
Real embedded store, stand-in models (as tests/unit/test_pipeline_failures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from imgrag.indexing import pipeline
from imgrag.indexing.pipeline import Indexer, IndexOptions
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import OPERATOR, Filters
from imgrag.indexing.stores.lance import LanceStore
from PIL import Image
from test_pipeline_failures import rt  # noqa: F401  (the fixture: a real LanceStore, stand-in models)


def image(path: Path, value: int) -> Path:
    Image.new("RGB", (64, 48), (value, value, value)).save(path)
    return path


class Counting:
    """Counts the store's per-file and per-page lookups."""

    def __init__(self, store: LanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = {"live_ids": 0, "live_ids_for_path": 0, "live_pages": 0}
        for name in self.calls:
            orig = getattr(store, name)

            def wrapped(*a, _orig=orig, _name=name, **k):  # type: ignore[no-untyped-def]
                self.calls[_name] += 1
                return _orig(*a, **k)

            monkeypatch.setattr(store, name, wrapped)


def live(runtime: Runtime) -> dict[str, str]:
    return {r.path.rsplit("/", 1)[-1]: r.image_id for r in runtime.store.list_images(OPERATOR, Filters(), limit=1000)}


def test_a_run_of_files_is_looked_up_in_one_query(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """40 files: two ``live_pages`` queries (32 + 8 files), no lookup per file or page (main asked
    ``live_ids_for_path`` 40 times and ``live_ids`` 40 times)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(40):
        image(folder / f"p{i:02d}.png", 3 + 6 * i)
    counting = Counting(rt.store, monkeypatch)
    summary = Indexer(rt).index([folder], IndexOptions(batch_size=8, workers=1))
    assert (summary.indexed, summary.duplicates, summary.unchanged) == (40, 0, 0)
    assert counting.calls == {"live_ids": 0, "live_ids_for_path": 0, "live_pages": 2}
    again = Indexer(rt).index([folder], IndexOptions(batch_size=8, workers=1))
    assert (again.indexed, again.duplicates, again.unchanged) == (0, 0, 40)
    assert counting.calls == {"live_ids": 0, "live_ids_for_path": 0, "live_pages": 4}


def test_duplicates_changes_and_moves_as_before(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    """Against what an earlier run stored: a copy elsewhere is a duplicate, a changed file replaces
    its old page, and content moved from a changed file to a new one is indexed there. On main the
    moved content was lost when both were in one batch: the new file's page counted as a duplicate
    of the old page, which the changed file's write then retired."""
    folder = tmp_path / "f"
    folder.mkdir()
    image(folder / "a.png", 10)
    image(folder / "b.png", 20)
    first = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert first.indexed == 2
    old = live(rt)
    image(folder / "c.png", 10)  # a copy of a.png: a duplicate
    image(folder / "b.png", 30)  # b changed
    image(folder / "d.png", 20)  # b's old content, now in d (after b in the file order)
    second = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    # b's old page is d's page now (same content, same id): not retired, so none "replaced"
    assert (second.indexed, second.duplicates, second.unchanged, second.replaced) == (2, 1, 1, 0)
    now = live(rt)
    assert set(now) == {"a.png", "b.png", "d.png"}
    assert now["a.png"] == old["a.png"] and now["d.png"] == old["b.png"] and now["b.png"] != old["b.png"]
    assert rt.store.count(OPERATOR, Filters()) == 3


def test_a_file_changed_after_the_look_ahead_is_looked_up_alone(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """The bytes read differ from those looked up ahead: that file falls back to its own lookups."""
    folder = tmp_path / "g"
    folder.mkdir()
    image(folder / "a.png", 10)
    Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    image(folder / "b.png", 10)  # a copy of a.png ...
    real = pipeline.file_digest
    monkeypatch.setattr(pipeline, "file_digest", lambda f: "0" * 20 if Path(f).name == "b.png" else real(f))  # ... hashed "otherwise" ahead
    counting = Counting(rt.store, monkeypatch)
    summary = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert (summary.indexed, summary.duplicates, summary.unchanged) == (0, 1, 1)
    assert counting.calls == {"live_ids": 1, "live_ids_for_path": 0, "live_pages": 1}


def test_live_pages_by_path_or_content(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "h"
    folder.mkdir()
    a, b, c = image(folder / "a.png", 10), image(folder / "b's.png", 20), image(folder / "c.png", 30)
    Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    da, db, dc = (pipeline.file_digest(p) for p in (a, b, c))
    store = rt.store
    assert store.live_pages([], []) == []
    assert store.live_pages([str(a)], []) == [(da, da, str(a))]
    assert store.live_pages(["/nowhere"], [db, "0" * 20]) == [(db, db, str(b))]
    assert sorted(store.live_pages([str(b)], [dc])) == sorted([(db, db, str(b)), (dc, dc, str(c))])
    store.soft_delete([dc])
    assert store.live_pages([str(c)], [dc]) == []


def test_the_look_ahead_opens_only_regular_files_inside_the_roots(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    """A link that now points outside the folders being indexed, a FIFO (reading would block) and
    a missing file are not opened ahead: the page loop refuses or reports them as before."""
    import os

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    ok = image(root / "ok.png", 10)
    secret = image(elsewhere / "secret.png", 20)
    link = root / "link.png"
    link.symlink_to(secret)
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    found = Indexer(rt)._look_ahead([ok, link, fifo, root / "gone.png"], [root.resolve()])
    assert set(found) == {str(ok)}
    assert set(Indexer(rt)._look_ahead([link], None)) == {str(link)}  # no roots: a link is a file like any other
