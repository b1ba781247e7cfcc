"""The pipeline's failure paths on a real embedded store with stand-in models (the edge cases need
a model that fails on cue): one page that cannot be embedded costs only itself, a document's broken
page costs only that page, and a run stopped by an unreachable backend keeps a version of what it
wrote. Real models on real hostile files: tests/e2e/test_hostile_files.py."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing import pipeline
from imgrag.indexing.config import Settings
from imgrag.indexing.embedders import ImageEmbeddings
from imgrag.indexing.errors import BackendUnavailableError
from imgrag.indexing.pipeline import Analysed, Indexer, IndexOptions
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord
from imgrag.indexing.stores.lance import LanceStore

DIM = 8


class PoisonedImages:
    """Embeds any image but a black one, on which it raises (as a model does on input it chokes on)."""

    identity, feature_identity, dim, feature_dim = "fake-joint", "fake-feat", DIM, DIM

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed_images(self, imgs: list[np.ndarray]) -> ImageEmbeddings:
        self.batches.append(len(imgs))
        if any(int(np.asarray(i).max()) == 0 for i in imgs):
            raise ValueError("poisoned input")
        n = len(imgs)
        vecs = np.tile(np.eye(DIM, dtype=np.float32)[0], (n, 1))
        return ImageEmbeddings(vectors=vecs, features=vecs.copy(), captions=["fake"] * n)


class Texts:
    identity, dim = "fake-text", DIM

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.eye(DIM, dtype=np.float32)[1], (len(texts), 1))


def analysed(page: pipeline.Page, rt: Runtime, opts: IndexOptions) -> Analysed:
    """Stands in for the OCR / layout / detector stage: the page as it is."""
    rec = ImageRecord(
        image_id=page.image_id, doc_id=page.doc_id, path=page.path, page=page.page, n_pages=page.n_pages,
        format=page.format, width=page.image.shape[1], height=page.image.shape[0], quality="photo",
        indexed_at=datetime.now(timezone.utc),
    )
    return Analysed(page=page, record=rec, image=page.image, to_original=lambda b: b)


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setattr(pipeline, "analyse_page", analysed)
    store = LanceStore(tmp_path / "index", ann_min_rows=10**9)
    runtime = Runtime(Settings(home=tmp_path / "home"), store=store)
    runtime.__dict__.update(ocr=type("Ocr", (), {"name": "fake-ocr"})(), text_embedder=Texts(), image_embedder=PoisonedImages())
    monkeypatch.setattr(runtime, "load_models", lambda: None)
    return runtime


def image(path: Path, value: int) -> Path:
    Image.new("RGB", (64, 48), (value, value, value)).save(path)
    return path


def test_a_page_that_cannot_be_embedded_costs_only_itself(rt: Runtime, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, v in enumerate((200, 150, 0, 100)):  # the third is black: poison for the embedder
        image(folder / f"p{i}.png", v)
    summary = Indexer(rt).index([folder], IndexOptions(batch_size=8, workers=1))
    assert summary.indexed == 3 and summary.version == 1
    assert [(Path(f.path).name, f.reason.split(" — ")[0]) for f in summary.failed] == [
        ("p2.png", "embedding failed: ValueError: poisoned input")
    ]
    assert rt.image_embedder.batches[0] == 4  # one batch first, then page by page
    assert rt.store.count(OPERATOR, Filters()) == 3


def test_a_broken_page_of_a_document_costs_only_that_page(rt: Runtime, tmp_path: Path) -> None:
    tif = tmp_path / "two.tif"
    frames = [Image.new("RGB", (64, 48), (200, 0, 0)), Image.new("RGB", (40, 4400), (0, 200, 0))]  # page 2: a strip
    frames[0].save(tif, save_all=True, append_images=frames[1:])
    summary = Indexer(rt).index([tif])
    assert summary.indexed == 1
    assert [f.path for f in summary.failed] == [f"{tif}#page=2"]
    assert "strip over 100 times" in summary.failed[0].reason and str(tif) not in summary.failed[0].reason


def test_a_run_stopped_by_the_backend_keeps_a_version_of_what_it_wrote(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):
        image(folder / f"p{i}.png", 50 + 40 * i)
    store = rt.store
    real_write = store.write
    calls: list[int] = []

    def flaky(items: list) -> None:
        calls.append(len(items))
        if len(calls) > 1:
            raise BackendUnavailableError("the index went away", "bring it back")
        real_write(items)

    monkeypatch.setattr(store, "write", flaky)
    with pytest.raises(BackendUnavailableError):
        Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert calls == [2, 2]  # not retried page by page: no page is at fault
    vs = store.versions()
    assert [(v.op, v.summary.get("indexed")) for v in vs] == [("index", 2)]
    assert store.count(OPERATOR, Filters()) == 2
    monkeypatch.setattr(store, "write", real_write)
    again = Indexer(rt).index([folder])
    assert (again.indexed, again.unchanged) == (2, 2)


def test_every_failure_is_reported_as_it_happens_without_repeating_the_path(rt: Runtime, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    image(folder / "good.png", 200)
    (folder / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    events: list[tuple[str, str]] = []
    summary = Indexer(rt).index(
        [folder, tmp_path / "missing.png"],
        progress=lambda ev, data: events.append((data["path"], data["reason"])) if ev == "fail" else None,
    )
    assert summary.indexed == 1
    assert sorted(events) == sorted((f.path, f.reason) for f in summary.failed)
    assert {Path(p).name for p, _ in events} == {"empty.png", "dot.png", "missing.png"}
    assert all(p not in r for p, r in events)


def test_a_changed_file_whose_new_content_fails_keeps_its_old_pages(rt: Runtime, tmp_path: Path) -> None:
    path = image(tmp_path / "page.png", 120)
    first = Indexer(rt).index([path])
    assert first.indexed == 1
    image(path, 0)  # new content, which the embedder chokes on
    second = Indexer(rt).index([path])
    assert (second.indexed, second.replaced, len(second.failed)) == (0, 0, 1)
    assert rt.store.live_ids(first.indexed_ids) == set(first.indexed_ids)  # still searchable as it was
    image(path, 60)  # fixed: the new content replaces the old
    third = Indexer(rt).index([path])
    assert (third.indexed, third.replaced) == (1, 1)
    assert rt.store.live_ids(first.indexed_ids) == set()


# -- write-ahead: a batch is embedded and written while the next pages are analysed ------------------


def _folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "many"
    folder.mkdir(parents=True)
    for i in range(n):
        image(folder / f"p{i:02d}.png", 20 + 10 * i)
    return folder


def test_the_next_pages_are_analysed_while_a_batch_is_written(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch's embedding waits until a page of a later batch is being analysed: only a
    run that writes on a thread of its own gets there (on the indexing thread it would wait alone)."""
    import threading

    folder = _folder(tmp_path, 8)
    later = threading.Event()
    seen: list[str] = []

    def analyse(page: pipeline.Page, runtime: Runtime, opts: IndexOptions) -> Analysed:
        if Path(page.path).name >= "p04.png":  # submitted only after the first batch was handed over
            later.set()
        return analysed(page, runtime, opts)

    monkeypatch.setattr(pipeline, "analyse_page", analyse)
    embed = rt.image_embedder.embed_images

    def slow_first(imgs: list[np.ndarray]) -> ImageEmbeddings:
        seen.append(threading.current_thread().name)
        if len(seen) == 1:
            seen.append("overlapped" if later.wait(20) else "waited alone")
        return embed(imgs)

    monkeypatch.setattr(rt.image_embedder, "embed_images", slow_first)
    events: list[tuple[str, str]] = []
    summary = Indexer(rt).index(
        [folder], IndexOptions(batch_size=2, workers=1),
        progress=lambda e, d: events.append((e, threading.current_thread().name)),
    )
    assert summary.indexed == 8 and summary.version == 1 and not summary.failed
    assert seen[0].startswith("imgrag-write") and seen[1] == "overlapped"
    # progress callbacks (the MCP server's hop to its event loop) only ever on the indexing thread
    assert {name for _, name in events} == {threading.current_thread().name}
    assert [e for e, _ in events].count("written") == 4


def test_write_ahead_off_writes_on_the_indexing_thread(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    names: list[str] = []
    embed = rt.image_embedder.embed_images

    def record(imgs: list[np.ndarray]) -> ImageEmbeddings:
        names.append(threading.current_thread().name)
        return embed(imgs)

    monkeypatch.setattr(rt.image_embedder, "embed_images", record)
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 8)  # more cores than workers: the writer embeds
    on = Indexer(rt).index([_folder(tmp_path / "on", 5)], IndexOptions(batch_size=2, workers=2))
    assert on.indexed == 5 and len(names) == 3 and all(n.startswith("imgrag-write") for n in names)
    names.clear()
    rt.settings = rt.settings.model_copy(update={"write_ahead": False})
    folder = tmp_path / "off"
    folder.mkdir()
    for i in range(5):
        image(folder / f"q{i}.png", 25 + 10 * i)  # other content: indexed anew
    off = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=2))
    assert off.indexed == 5 and off.version == 2 and names == [threading.current_thread().name] * 3
    assert rt.store.count(OPERATOR, Filters()) == 10


@pytest.mark.parametrize(("cores", "embeds_on", "sizes"), [(2, "imgrag-page", [1, 2]), (3, "imgrag-write", [3])])
def test_the_page_workers_embed_when_they_have_every_core(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int, embeds_on: str, sizes: list[int]
) -> None:
    """2 workers on 2 cores: a batch's embedding runs on a page worker (a third busy thread, the
    writer, left a core idle while the indexing thread waited for it), the last batch split between
    the workers; on 3 cores on the writer. The writing itself stays on the writer thread, in order."""
    import threading

    embedded: list[str] = []
    calls: list[int] = []
    written: list[tuple[str, list[str]]] = []
    embed, write = rt.image_embedder.embed_images, rt.store.write

    def record_embed(imgs: list[np.ndarray]) -> ImageEmbeddings:
        embedded.append(threading.current_thread().name)
        calls.append(len(imgs))
        return embed(imgs)

    def record_write(items: list[pipeline.Indexed]) -> None:
        written.append((threading.current_thread().name, [it.record.path for it in items]))
        return write(items)

    monkeypatch.setattr(rt.image_embedder, "embed_images", record_embed)
    monkeypatch.setattr(rt.store, "write", record_write)
    monkeypatch.setattr(pipeline, "usable_cores", lambda: cores)
    summary = Indexer(rt).index([_folder(tmp_path, 9)], IndexOptions(batch_size=3, workers=2))
    assert summary.indexed == 9 and summary.version == 1 and not summary.failed
    # the last batch (full: flushed while draining the last pages) in one part a worker, on 2 cores
    assert calls[:2] == [3, 3] and sorted(calls[2:]) == sizes and all(n.startswith(embeds_on) for n in embedded)
    assert all(n.startswith("imgrag-write") for n, _ in written) and [len(p) for _, p in written] == [3, 3, 3]
    assert [Path(p).name for _, paths in written for p in paths] == [f"p{i:02d}.png" for i in range(9)]


def test_a_second_copy_in_the_same_run_is_a_duplicate_before_the_first_is_written(rt: Runtime, tmp_path: Path) -> None:
    """Pages are written a batch behind their analysis: two copies of the same content close
    together must still be one page and one duplicate (not two rows under one id)."""
    folder = tmp_path / "copies"
    folder.mkdir()
    for i in range(8):
        image(folder / f"p{i}.png", 30 if i in (0, 1, 5) else 60 + 10 * i)  # p1 and p5: copies of p0
    summary = Indexer(rt).index([folder], IndexOptions(batch_size=2, workers=1))
    assert (summary.indexed, summary.duplicates) == (6, 2) and not summary.failed
    assert rt.store.count(OPERATOR, Filters()) == 6


def test_files_that_give_no_page_cost_no_store_query(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file's indexed pages were looked up (~8 ms a query on LanceDB) before the file was read:
    a folder of 100,000 empty files took over 13 minutes to report. Files that give no page (empty,
    undecodable, too small) now ask nothing; a good file still asks once, and stays unchanged."""
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(30):
        (folder / f"e{i}.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    good = image(folder / "good.png", 200)
    asked: list[str] = []
    batched: list[list[str]] = []
    real, real_batch = rt.store.live_ids_for_path, rt.store.live_pages
    monkeypatch.setattr(rt.store, "live_ids_for_path", lambda p: asked.append(p) or real(p))
    monkeypatch.setattr(rt.store, "live_pages", lambda paths, docs: batched.append(paths) or real_batch(paths, docs))
    summary = Indexer(rt).index([folder])
    assert (summary.indexed, len(summary.failed)) == (1, 32)
    # no file-by-file lookup (the good file's answer came with its look-ahead window's one query),
    # and the empty files are in no query at all
    assert asked == []
    assert 1 <= len(batched) <= 2 and str(good) in {p for b in batched for p in b}
    assert not any(p.rsplit("/", 1)[-1].startswith("e") for b in batched for p in b)
    again = Indexer(rt).index([folder])
    assert (again.indexed, again.unchanged, len(again.failed)) == (0, 1, 32)


CONFLICT = ("lance error: Retryable commit conflict for version 9: This CreateIndex transaction was preempted by "
            "concurrent transaction CreateIndex at version 9. Please retry., conflict_resolver.rs:926:34")


@pytest.mark.parametrize("conflicts", [1, 99])
def test_a_search_beside_a_write_survives_the_full_text_index_race(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conflicts: int
) -> None:
    """A search between a write and its commit (or beside `imgrag purge`) rebuilds the FTS index as
    the commit does: one of them lost LanceDB's commit race and failed ("internal error
    (RuntimeError)" for an MCP search, and for a delete_image whose image was deleted). The loser
    now retries on the latest version; a search that keeps losing searches with the index there is."""
    folder = tmp_path / "docs"
    folder.mkdir()
    ids = Indexer(rt).index([image(folder / "a.png", 100), image(folder / "b.png", 200)]).indexed_ids
    store = rt.store
    store.soft_delete(ids[:1])  # rows rewritten: the FTS index no longer covers every row
    table_type = type(store._images)
    real = table_type.create_index
    left = {"n": conflicts}

    def racing(self: object, *a: object, **k: object) -> object:
        if left["n"] > 0:
            left["n"] -= 1
            raise RuntimeError(CONFLICT)
        return real(self, *a, **k)

    monkeypatch.setattr(table_type, "create_index", racing)
    assert [h.image_id for h in store.bm25("fake", 5, Filters(), OPERATOR)] == ids[1:]  # the live page, no error
    if conflicts == 1:
        assert left["n"] == 0
        assert store.commit("delete", {"deleted": 1}).op == "delete"


def test_rerunning_with_the_same_acl_meta_and_tags_records_no_version(rt: Runtime, tmp_path: Path) -> None:
    """``imgrag index FOLDER --public`` (or the same --acl/--meta/--tag) again on unchanged files
    changes nothing; it left an "interrupted" version each time (the store noted a change under way
    before finding that no page needed one), and a reopened index found the note and recorded it."""
    folder = tmp_path / "docs"
    folder.mkdir()
    image(folder / "a.png", 200)
    image(folder / "b.png", 100)
    assert Indexer(rt).index([folder]).version == 1
    opts = IndexOptions(acl=[], meta={"lot": "7"}, tags=["x"])
    changed = Indexer(rt).index([folder], opts)  # a real change has its version
    assert (changed.updated_metadata, changed.version) == (2, 2)
    again = Indexer(rt).index([folder], opts)
    assert (again.indexed, again.unchanged, again.updated_metadata, again.version) == (0, 2, 0, None)
    assert [v.op for v in rt.store.versions()] == ["index", "index"]
    reopened = LanceStore(rt.store.path, ann_min_rows=10**9)  # the next command: nothing left to recover
    assert reopened.recover() is None
    assert [v.op for v in reopened.versions()] == ["index", "index"]
