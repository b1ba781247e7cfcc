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
from imgrag.indexing.stores.base import OPERATOR, Filters, Principal
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


def test_a_renamed_moved_or_deleted_first_copy_moves_its_pages_to_the_file_that_has_them(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    """A file renamed (or moved, or deleted while a copy of it remains) was counted a duplicate of
    its own old page for good: search kept naming a file that is gone, and cropping it failed. The
    page now moves to the file that holds it, under its id; a copy beside a file still there stays a
    duplicate, and nothing is indexed twice."""
    folder = tmp_path / "m"
    folder.mkdir()
    image(folder / "a.png", 10)
    image(folder / "dup1.png", 20)
    image(folder / "dup2.png", 20)
    image(folder / "over.png", 40)
    image(folder / "keep1.png", 30)
    image(folder / "keep2.png", 30)
    first = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert (first.indexed, first.duplicates) == (4, 2)
    old = live(rt)
    (folder / "a.png").rename(folder / "renamed.png")
    (folder / "dup1.png").unlink()
    image(folder / "over.png", 50)  # overwritten: its old bytes survive only in a new file
    image(folder / "zz_over_copy.png", 40)
    second = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert (second.indexed, second.duplicates, second.unchanged) == (4, 1, 1), second
    now = live(rt)
    assert set(now) == {"renamed.png", "dup2.png", "over.png", "zz_over_copy.png", "keep1.png"}
    assert (now["renamed.png"], now["dup2.png"], now["zz_over_copy.png"]) == (old["a.png"], old["dup1.png"], old["over.png"])
    assert rt.store.count(OPERATOR, Filters()) == 5
    third = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert (third.indexed, third.duplicates, third.unchanged, third.version) == (0, 1, 5, None)


def test_a_renamed_file_moves_for_a_caller_who_is_not_the_operator(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    """The same over MCP, where pages are looked up as the copies the caller can see."""
    alice = Principal(name="alice")
    folder = tmp_path / "n"
    folder.mkdir()
    image(folder / "a.png", 10)
    assert Indexer(rt).index([folder], IndexOptions(principal=alice)).indexed == 1
    old = live(rt)["a.png"]
    (folder / "a.png").rename(folder / "b.png")
    second = Indexer(rt).index([folder], IndexOptions(principal=alice))
    assert (second.indexed, second.duplicates) == (1, 0)
    assert live(rt) == {"b.png": old}


def test_a_copy_of_a_document_still_there_costs_one_lookup_not_one_a_page(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    frames = [Image.new("RGB", (64, 48), (v, v, v)) for v in (10, 90, 170)]
    frames[0].save(folder / "a.tif", save_all=True, append_images=frames[1:])
    Indexer(rt).index([folder])
    (folder / "b.tif").write_bytes((folder / "a.tif").read_bytes())
    calls: list[list[str]] = []
    real = rt.store.get_many
    monkeypatch.setattr(rt.store, "get_many", lambda ids, who: calls.append(list(ids)) or real(ids, who))
    summary = Indexer(rt).index([folder])
    assert (summary.indexed, summary.duplicates, summary.unchanged) == (0, 3, 3)
    assert len([c for c in calls if len(c) == 1]) == 1, calls  # the copy's check (the other call: a.tif's links)


def test_a_file_overwritten_with_a_copy_of_another_retires_its_old_page(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    """a.png overwritten with b.png's bytes: its new content is a duplicate, and its old page stayed
    live for good, found by words a.png no longer holds (every re-run counted a duplicate and left it)."""
    folder = tmp_path / "o"
    folder.mkdir()
    image(folder / "a.png", 10)
    image(folder / "b.png", 20)
    assert Indexer(rt).index([folder]).indexed == 2
    image(folder / "a.png", 20)
    second = Indexer(rt).index([folder])
    assert (second.indexed, second.duplicates, second.unchanged, second.replaced) == (0, 1, 1, 1)
    assert set(live(rt)) == {"b.png"}
    assert [v.op for v in rt.store.versions()] == ["index", "index"]
    third = Indexer(rt).index([folder])
    assert (third.indexed, third.duplicates, third.unchanged, third.replaced, third.version) == (0, 1, 1, 0, None)


def test_an_overwritten_file_whose_new_content_fails_in_part_keeps_its_old_pages(rt: Runtime, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "p"
    folder.mkdir()
    image(folder / "a.png", 10)
    frames = [Image.new("RGB", (64, 48), (20, 20, 20)), Image.new("RGB", (40, 4400), (0, 200, 0))]  # page 2: a strip
    frames[0].save(folder / "b.tif", save_all=True, append_images=frames[1:])
    Indexer(rt).index([folder])
    (folder / "a.png").write_bytes((folder / "b.tif").read_bytes())
    second = Indexer(rt).index([folder])
    assert second.replaced == 0 and "a.png" in live(rt)
