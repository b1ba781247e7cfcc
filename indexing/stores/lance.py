"""Embedded default backend: two LanceDB tables (images, regions) in ``$IMGRAG_HOME/index``.

Filter columns (acl, deleted, quality, tags, meta, date tokens, path) are copied onto the region
rows so every route, regions included, filters inside the query. A logical version is a pair of
table versions recorded in ``versions.jsonl``; rollback restores both tables together.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pyarrow as pa

from ..errors import BackendUnavailableError, ImgragError
from ..limits import MAX_FILTER_IDS
from ..lru import LRU
from ..text import date_filter_tokens, date_tokens, fts_text
from .base import (
    FEATURE_STATS,
    Filters,
    ImageRecord,
    ImageSpaceFn,
    ImageSpaceReplaced,
    ImageVectors,
    Indexed,
    MetadataUpdate,
    ModelSpaces,
    Principal,
    RegionHit,
    region_kind,
    RouteHit,
    Stats,
    Version,
    VectorField,
    WeightedTerms,
    check_same_base_spaces,
    check_same_spaces,
    fts_source,
    meta_kv,
    page_order,
    region_order,
    tie_margin,
    top_k,
)
from .locking import Journal, WriterLock

log = logging.getLogger(__name__)

_FTS_ATTEMPTS = 4
_FTS_RETRY_S = 30.0  # a search re-tries a failed FTS rebuild (a full disk) at most this often


class _CommitConflict(RuntimeError):
    """Another transaction kept winning the race to commit the same index."""


def _is_commit_conflict(e: Exception) -> bool:
    """LanceDB's optimistic-concurrency refusal: another transaction committed first; retry on the latest version."""
    text = str(e).lower()
    return isinstance(e, (RuntimeError, OSError, ValueError)) and ("commit conflict" in text or "preempted by concurrent" in text)

IMAGES = "images"
REGIONS = "regions"
_VEC_COLUMN: dict[VectorField, str] = {"image": "img_vec", "feature": "feat_vec", "text": "text_vec"}
# Page vectors get ``ann_index``. Region searches ask for k=200, where a high-recall HNSW search
# (ef >= k x refine) was slower than the exact scan at 100k region rows, so region vectors get IVF_FLAT:
# exact distances inside the probed partitions, no refine (benchmarks/bench_backends.py, docs/performance.md
# "Scale"). Half of each region column is a placeholder (tiles have no text vector and
# vice versa): those identical vectors share a partition that the kind prefilter empties.
_ANN_COLUMNS = {IMAGES: ("img_vec", "feat_vec", "text_vec"), REGIONS: ("tile_vec", "text_vec")}
# Scalar indices on the columns every search filters on, from _SCALAR_MIN_ROWS rows (or
# ann_min_rows, if lower): the `deleted` / `kind` / `quality` prefilters and the record fetch by id
# read the index instead of scanning the column. At 10k pages they cut the store's CPU time per
# search by about a third (record fetch 24 -> 5 ms); on smaller tables a scan is about as cheap.
# Filters stay exact: rows written after an index are scanned until optimize() folds them in.
# The date filter (`array_has_any(date_tokens, ...)`) reads a label-list index: at 100k pages a year
# filter scanned every row's tokens in each page route (a user's fused search with a year: 238 -> 168
# CPU-ms, same results; docs/performance.md "Date filter index, LanceDB").
# A user's searches filter on who may read a page: `array_length(acl) = 0 OR array_has_any(acl, ...)`
# has no index that answers it whole, so it was scanned over every row in each route. Tables made since
# session 12 also store ``acl_read``, a page's ACL or _PUBLIC where it is empty, and the filter is one
# `array_has_any(acl_read, ['@public', ...])` on its label-list index: at 100k pages a user's fused search
# with a year 148 -> 100 CPU-ms, same results (docs/performance.md "ACL filter index, ... session 12"). A
# store made before keeps the old clause (no column is added to it: at open that would rewrite a column
# of every region row; a new IMGRAG_HOME indexed afresh gets it).
_PUBLIC = "@public"  # no principal's name or group starts with "@" (Principal.tokens)
_SCALAR_MIN_ROWS = 1_000
_SCALAR_COLUMNS = {
    IMAGES: (("image_id", "btree"), ("deleted", "bitmap"), ("quality", "bitmap"), ("date_tokens", "label_list"),
             ("acl_read", "label_list")),
    REGIONS: (("image_id", "btree"), ("deleted", "bitmap"), ("kind", "bitmap"), ("quality", "bitmap"),
              ("date_tokens", "label_list"), ("acl_read", "label_list")),
}
# A commit merges a table's data files (Lance compaction, indices remapped, nothing re-trained) when it
# has more than _COMPACT_FRAGMENTS of them and at most _COMPACT_MAX_ROWS rows (a rewrite of at most
# ~130 MB of region rows), or more than ``compact_fragments`` (IMGRAG_LANCE_COMPACT_FRAGMENTS) whatever
# its size: every write adds a file, and each query pays per file (the 1k-page search benchmark's 10 + 10
# files cost ~14 of its ~80 ms of CPU per search against one file each; at 100k pages 500 + 500 files
# cost 224 CPU-ms per fused search against 144 on one file each). A big table is rewritten only once
# that many writes have piled up, not at every commit. Not optimize(): after compacting it also
# rebuilt the pages' HNSW index for over 13 minutes at 100k pages (docs/performance.md, session 10).
_COMPACT_FRAGMENTS = 8
_COMPACT_MAX_ROWS = 20_000
COMPACT_FRAGMENTS = 64  # IMGRAG_LANCE_COMPACT_FRAGMENTS' default
_KEEP_VERSIONS = timedelta(days=365 * 100)  # optimize() must never clean up versions rollback needs
_ABSENT: Any = object()  # get_many's cached answer for an id the principal cannot read (or no such page)
_PARSED_RECORDS = 512  # parsed ImageRecords kept by their stored JSON's hash: hot pages of search (~50 MB at most)
AnnIndex = Literal["ivf_hnsw_sq", "ivf_pq"]  # the ANN index of the page vectors (IMGRAG_LANCE_ANN_INDEX)
_PQ_MIN_ROWS = 256
# A page kNN search walks each probed partition's HNSW graph ``ef`` wide over int8 codes, then reads the
# float32 vectors of refine x k rows to re-rank them exactly. The re-rank read was most of the route's
# CPU at 100k pages (k=50, refine 10: 500 rows from as many data files) and bought no recall over
# refine 1, which still re-scores the k hits exactly (so the scores fusion sees stay exact):
# recall@10 1.000 at 100k, 0.995 at 10k (ef 100 / refine 4 gave 0.88 there); docs/performance.md
# "Page kNN: ef and re-rank". IVF_PQ codes are much coarser: its re-rank stays at least 10 x k. And at
# least _MIN_RERANK candidates are re-scored whatever k: a top 10 picked on int8 distances alone can
# miss a neighbour at its boundary (the fused search's routes ask for 50, where refine 1 suffices).
_ANN_EF, _ANN_REFINE, _PQ_REFINE, _MIN_RERANK = 400, 1, 10, 50
# ``ef`` is per probed partition: the more partitions a search probes, the fewer of the k nearest each
# one holds, and a narrower walk of its graph finds them. So an index probed in more than _EF_PARTS
# partitions walks each ef x _EF_PARTS / probed wide (never under k x refine): 400 up to ~50k pages, 200
# at 100k (24 partitions, all probed), where 200 kept recall@10 of the image (photo prefilter) and text
# routes at 1.000 / 0.995-1.000 and 400 only cost time; at 10k (2 partitions) 200 gave 0.96-0.97
# (docs/performance.md "Page kNN: ef by partitions").
_EF_PARTS = 12
# Every partition of an index up to 25 x 4,096 rows (~100k pages) is probed: at 100k pages 20 of the
# 24 page partitions gave recall@10 0.91-0.96, all 24 gave 1.00 for ~25 % more route time
# (bench_backends.py / bench_region_ivf.py --mode pages, docs/performance.md "100,000 pages").
_ANN_NPROBES = 25
_ANN_PROBE_SHARE = 0.1  # probe at least this share of the IVF partitions (and never fewer than _ANN_NPROBES)
_ROWS_PER_PART = 4096


def _partitions(rows: int) -> int:
    """IVF partitions of an index built over ``rows`` rows: ~4k rows each."""
    return max(1, rows // _ROWS_PER_PART)


def _nprobes(rows: int) -> int:
    return max(_ANN_NPROBES, math.ceil(_partitions(rows) * _ANN_PROBE_SHARE))


def _ef(ef: int, rows: int) -> int:
    """How wide a page kNN search walks each probed partition's graph, for ``ef`` (IMGRAG_LANCE_ANN_EF)
    on an index over ``rows`` rows: ``ef`` while it probes up to _EF_PARTS partitions, then less."""
    probed = min(_partitions(rows), _nprobes(rows))
    return ef if probed <= _EF_PARTS else math.ceil(ef * _EF_PARTS / probed)


T = TypeVar("T")


def _stale_read(e: Exception) -> bool:
    """A data file gone under a reader: another process's purge cleaned up the version it had open."""
    text = str(e)
    return "Not found" in text and ".lance" in text


def _fresh_reads(fn: Callable[..., T]) -> Callable[..., T]:
    """Retry a read once on the latest table versions after a purge in another process removed the
    files of the version this one had open (LanceDB's documented failure for concurrent readers)."""

    @functools.wraps(fn)
    def wrapper(self: LanceStore, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except Exception as e:
            if not _stale_read(e) or self._images is None:
                raise
            log.info("re-reading the index after a purge in another process (%s)", e)
            self._refresh_tables()
            return fn(self, *args, **kwargs)

    return wrapper


# (store, pages table version, regions table version) while a search reads under LanceStore.pinned
_PINNED: ContextVar[tuple[Any, int, int] | None] = ContextVar("imgrag_lance_pinned", default=None)


def _run(coro: Any) -> pa.Table:
    """Await ``coro`` on LanceDB's background event loop: one hand-off per query.

    The synchronous query builder hands every step to that loop on its own (the table's schema,
    twice, the row count, the plan, each batch): ~7 cross-thread hand-offs and a third of a small
    query's CPU time. Search runs 5-6 queries per request, so its hot path builds them with the
    table's async API instead and awaits the whole query in one trip (same engine, same results)."""
    from lancedb.background_loop import LOOP

    return LOOP.run(coro)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _lits(values: list[str]) -> str:
    return ", ".join(_lit(v) for v in values)


def _acl_read(acl: list[str]) -> list[str]:
    """``acl_read`` of a page with this ACL: _PUBLIC where it is empty. An entry that is literally
    _PUBLIC (an operator's ``--acl @public``) must not open the page to everyone: on Elasticsearch and on
    stores without ``acl_read`` it is a token no principal holds, so it stays one here (escaped)."""
    if not acl:
        return [_PUBLIC]
    return [f"@{a}" if a == _PUBLIC else a for a in acl]


def where_clause(filters: Filters, principal: Principal, acl_read: bool = False) -> str:
    """The SQL filter for one principal and one set of filters; shared by both tables. ``acl_read``:
    the tables have the ``acl_read`` column (see _PUBLIC)."""
    parts = ["deleted = false"]
    if not principal.all_access:
        toks = principal.tokens()
        if acl_read:  # one condition, answered by the column's label-list index
            parts.append(f"array_has_any(acl_read, [{_lits([_PUBLIC, *toks])}])")
        else:  # a store written before acl_read: scanned
            acl = "array_length(acl) = 0"
            if toks:
                acl = f"({acl} OR array_has_any(acl, [{_lits(toks)}]))"
            parts.append(acl)
    if filters.date_from or filters.date_to:
        toks = date_filter_tokens(filters.date_from, filters.date_to)
        parts.append(f"array_has_any(date_tokens, [{_lits(toks)}])" if toks else "false")
    if filters.quality:
        parts.append(f"quality IN ({_lits(list(filters.quality))})")
    if filters.tags:
        parts.append(f"array_has_any(tags, [{_lits(filters.tags)}])")
    for key, value in sorted(filters.meta.items()):
        parts.append(f"array_has(meta_kv, {_lit(f'{key}={value}')})")
    if filters.path_prefix:
        parts.append(f"starts_with(path, {_lit(filters.path_prefix)})")
    if filters.doc_id:
        parts.append(f"doc_id = {_lit(filters.doc_id)}")
    if filters.has_seal is not None:
        parts.append(f"has_seal = {'true' if filters.has_seal else 'false'}")
    if filters.has_pii is not None:
        parts.append(f"has_pii = {'true' if filters.has_pii else 'false'}")
    if filters.image_ids is not None:
        parts.append(f"image_id IN ({_lits(filters.image_ids)})" if filters.image_ids else "false")
    return " AND ".join(parts)


def _filter_fields(rec: ImageRecord) -> dict[str, Any]:
    tokens = sorted({t for d in rec.dates for t in date_tokens(d.date, d.precision)})
    return {
        "image_id": rec.image_id,
        "doc_id": rec.doc_id,
        "path": rec.path,
        "deleted": rec.deleted,
        "acl": rec.acl,
        "acl_read": _acl_read(rec.acl),
        "quality": rec.quality,
        "tags": rec.tags,
        "meta_kv": meta_kv(rec),
        "date_tokens": tokens,
        "has_seal": bool(rec.seals),
        "has_pii": bool(rec.pii),
    }


def _filter_schema() -> list[pa.Field]:
    strings = pa.list_(pa.string())
    return [
        pa.field("image_id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("path", pa.string()),
        pa.field("deleted", pa.bool_()),
        pa.field("acl", strings),
        pa.field("acl_read", strings),
        pa.field("quality", pa.string()),
        pa.field("tags", strings),
        pa.field("meta_kv", strings),
        pa.field("date_tokens", strings),
        pa.field("has_seal", pa.bool_()),
        pa.field("has_pii", pa.bool_()),
    ]


# Columns added after the first release: the SQL value older rows get, or a field (all null) for a
# list column, read back as empty. See LanceStore._upgrade.
_ADDED_COLUMNS: dict[str, dict[str, str | pa.Field]] = {
    # feature_stats (session 19): null in older rows, read from their records instead
    IMAGES: {"has_pii": "false", "feature_stats": pa.field("feature_stats", pa.string())},
    REGIONS: {"has_pii": "false", "pii_kinds": pa.field("pii_kinds", pa.list_(pa.string()))},
}


def _unit(dim: int) -> list[float]:
    v = [0.0] * dim
    v[0] = 1.0
    return v


def _erase_deleted(table: Any) -> None:
    """Remove soft-deleted rows from disk, not only from view. A Lance delete writes a deletion
    file beside the data file, which keeps the row's bytes; compaction rewrites a file only past a
    share of deleted rows (10 % by default, and LanceDB's ``optimize()`` uses that default), so one
    purged page among thousands stayed readable in the data files. Threshold 0: any deleted row
    rewrites its file; indices are remapped without it. Then every older version's files go,
    including leftovers of interrupted writes (``delete_unverified``: the caller holds the writer
    lock, so no write is in progress)."""
    import lance  # noqa: F401  (pylance: compaction with a deletion threshold)

    table.to_lance().optimize.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
    table.checkout_latest()
    table.to_lance().cleanup_old_versions(older_than=timedelta(0), delete_unverified=True)
    table.checkout_latest()


class LanceStore:
    """:class:`~indexing.stores.base.IndexStore` on LanceDB. Any number of reader processes; one
    writer process at a time, enforced by an exclusive lock (``writer.lock``) that a second writer
    is refused with a message naming the first. Changes that no version records when their writer
    dies are recorded as a version when the index is next opened (see :mod:`.locking`)."""

    backend = "lancedb"

    def __init__(
        self, path: Path, *, ann_min_rows: int = 10_000, ann_index: AnnIndex = "ivf_hnsw_sq",
        ann_ef: int = _ANN_EF, ann_refine: int = _ANN_REFINE, compact_fragments: int = COMPACT_FRAGMENTS,
        ann_ef_fixed: bool = False,
    ) -> None:
        import lancedb

        self.path = Path(path)
        self.ann_min_rows = ann_min_rows
        self.ann_index = ann_index
        self.ann_ef, self.ann_refine = ann_ef, ann_refine
        self.ann_ef_fixed = ann_ef_fixed  # True: every index walked ``ann_ef`` wide, whatever its partitions (main before s11)
        self.compact_fragments = compact_fragments  # 0: big tables are never compacted by a commit
        self._pq: tuple[int, frozenset[str]] | None = None  # (pages table version, columns with an IVF_PQ index)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            # Re-check the tables' latest version at most every second: a long-running reader (the MCP
            # server) must see what `imgrag index` in another process wrote.
            self.db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(seconds=1))
        except Exception as e:  # lance raises plain OSError/ValueError/RuntimeError variants
            raise BackendUnavailableError(
                f"cannot open the index at {self.path} ({e})", "check IMGRAG_HOME and its permissions"
            ) from e
        self._lock = threading.RLock()
        self._parsed = LRU(_PARSED_RECORDS)
        self._fetched = LRU(_PARSED_RECORDS)  # get_many's answers: (pages table version, principal, id) → record | _ABSENT
        self._fts_checked: int | None = None  # the pages table version whose FTS index _fts_ready found complete
        self._fts_failed: tuple[int, float] | None = None  # (that version, when) a rebuild for a search failed
        self._fts_lock = threading.Lock()  # one FTS build at a time in this process (searches and a commit)
        self._images: Any = None
        self._regions: Any = None
        self._acl_read = False  # both tables have acl_read (see _PUBLIC)
        # whether the pages table has feature_stats (an index made before session 19 may not), and the
        # table version that was read at (see _knn)
        self._stats_column = False
        self._stats_checked: int | None = None
        self._writer = WriterLock(self.path / "writer.lock", self.path)
        self._journal = Journal(self.path / "pending.json")
        self._open_tables()
        self._recover_at_open()

    # -- tables -----------------------------------------------------------------
    def _open_tables(self) -> None:
        names = set(self.db.list_tables().tables) if hasattr(self.db, "list_tables") else set()
        if IMAGES in names and REGIONS in names:
            self._images = self.db.open_table(IMAGES)
            self._regions = self.db.open_table(REGIONS)
            self._upgrade()
            self._acl_read = self._has_acl_read()

    def _upgrade(self) -> None:
        """Add the columns an index built by an older imgrag lacks (pages indexed then have no PII
        findings: re-index them to scan them)."""
        for name, table in ((IMAGES, self._images), (REGIONS, self._regions)):
            have = set(table.schema.names)
            missing = {c: v for c, v in _ADDED_COLUMNS[name].items() if c not in have}
            if not missing:
                continue
            try:
                for column, value in missing.items():
                    table.add_columns(value if isinstance(value, pa.Field) else {column: value})
                log.info("added column(s) %s to the %s table", ", ".join(missing), name)
            except Exception as e:  # another process upgrading at the same time, a read-only index
                log.warning("could not add column(s) %s to the %s table: %s", ", ".join(missing), name, e)

    def _refresh_tables(self) -> None:
        for table in (self._images, self._regions):
            if table is not None:
                table.checkout_latest()

    def _table_versions(self) -> dict[str, int]:
        return {IMAGES: self._images.version, REGIONS: self._regions.version}

    # -- one writer, and no change without a version ------------------------------------------
    def _acquire(self) -> tuple[bool, Version | None]:
        """Take (or deepen) the writer lock; on taking it, first record what a dead writer left."""
        fresh = self._writer.acquire()
        if not fresh:
            return False, None
        try:
            self._refresh_tables()
            return True, self._recover_locked()
        except BaseException:
            self._writer.release()
            raise

    @contextmanager
    def _writer_lock_only(self) -> Iterator[None]:
        self._acquire()
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the index for one whole operation (an index run; a delete and its commit): another
        process that tries to write meanwhile gets an ImgragError naming this one. Changes left
        without a version when the block ends (it raised) are recorded as version "interrupted"."""
        fresh, _ = self._acquire()
        try:
            yield
        finally:
            try:
                if fresh and self._uncommitted():
                    if self._unchanged_since(self._journal.read()):
                        self._journal.clear()  # noted, but nothing was written (metadata already as asked)
                    else:
                        self._commit_locked("interrupted", {"reason": "the operation stopped before it recorded a version"})
            finally:
                self._writer.release()

    @contextmanager
    def _change(self) -> Iterator[None]:
        """Around every change: the writer lock, and the journal noted before the first change."""
        with self._writer_lock_only():
            if self._images is not None:
                self._journal.note({"tables": self._table_versions()})
            yield

    def _unchanged_since(self, entry: dict[str, Any] | None) -> bool:
        """Whether the tables are as the journal ``entry`` found them before the first change: a
        write that was noted but changed nothing (an update to the values the pages already had)
        is no change to record."""
        before = ((entry or {}).get("before") or {}).get("tables")
        return bool(before) and before == self._table_versions()

    def _uncommitted(self) -> bool:
        entry = self._journal.read()
        return entry is not None and entry.get("token") == self._journal.token

    def recover(self) -> Version | None:
        fresh, recovered = self._acquire()
        try:
            return recovered if fresh else self._recover_locked()
        finally:
            self._writer.release()

    def _recover_locked(self) -> Version | None:
        """With the lock held: record the changes of a writer that died before its version."""
        entry = self._journal.orphaned()
        if entry is None or self._images is None:
            return None
        entries = self._log_entries()
        if entries and entries[-1]["tables"] == self._table_versions():
            self._journal.clear()  # it died after recording its version, before removing the note
            return None
        if self._unchanged_since(entry):
            self._journal.clear()  # it noted a change it never made
            return None
        before = (entry.get("before") or {}).get("tables")
        if not entries and before:
            # The very first run died: version 0 is the empty index, so `imgrag rollback 0` undoes it.
            self._append_log(Version(version=0, time=datetime.now(timezone.utc), op="empty", spaces=self.spaces()), before)
        log.warning("recording changes of an imgrag process that stopped before it finished (pid %s)", entry.get("pid"))
        return self._commit_locked(
            "recovered",
            {"reason": "a writer stopped before it recorded a version", "pid": str(entry.get("pid", "?")),
             "since": str(entry.get("since", "?"))[:19]},
        )

    def _recover_at_open(self) -> None:
        """An orphaned journal is recorded at once if no writer runs now; readers never fail on it."""
        if self._images is None or not self._journal.path.exists():
            return
        try:
            if not self._writer.try_acquire():
                return
        except Exception:
            return
        try:
            self._refresh_tables()
            self._recover_locked()
        except Exception as e:  # a read-only index, say: the next writer records it
            log.warning("could not record an interrupted run's changes at %s (%s)", self.path, e)
        finally:
            self._writer.release()

    def _where(self, filters: Filters, principal: Principal) -> str:
        return where_clause(filters, principal, self._acl_read)

    def _has_acl_read(self) -> bool:
        """Whether both tables have ``acl_read`` (written since session 12; see _PUBLIC). Kept in
        ``_acl_read`` when the tables are opened or made: a schema read is a round trip."""
        return self._images is not None and all("acl_read" in t.schema.names for t in (self._images, self._regions))

    def _ready(self) -> bool:
        """Whether the tables exist; re-looks for them, as another process may have created them since."""
        if self._images is None:
            with self._lock:
                if self._images is None:
                    self._open_tables()
        return self._images is not None

    @property
    def _meta_path(self) -> Path:
        return self.path / "spaces.json"

    @property
    def _log_path(self) -> Path:
        return self.path / "versions.jsonl"

    def spaces(self) -> ModelSpaces | None:
        if not self._meta_path.is_file():
            return None
        return ModelSpaces.model_validate_json(self._meta_path.read_text())

    def ensure_spaces(self, spaces: ModelSpaces) -> None:
        current = self.spaces()
        if current is not None and self._images is not None:
            check_same_spaces(current, spaces, "IMGRAG_HOME")
            return
        strings = pa.list_(pa.string())
        images_schema = pa.schema(
            _filter_schema()
            + [
                pa.field("page", pa.int32()),
                pa.field("fts", pa.string()),
                pa.field("record", pa.string()),
                pa.field("feature_stats", pa.string()),  # the record's, as JSON: read alone by the exemplar term
                pa.field("img_vec", pa.list_(pa.float32(), spaces.image_dim)),
                pa.field("feat_vec", pa.list_(pa.float32(), spaces.feature_dim)),
                pa.field("text_vec", pa.list_(pa.float32(), spaces.text_dim)),
            ]
        )
        regions_schema = pa.schema(
            _filter_schema()
            + [
                pa.field("region_id", pa.string()),
                pa.field("kind", pa.string()),
                pa.field("label", pa.string()),
                pa.field("bbox", pa.list_(pa.float32(), 4)),
                pa.field("text", pa.string()),
                pa.field("pii_kinds", strings),
                pa.field("fts", pa.string()),
                pa.field("tile_vec", pa.list_(pa.float32(), spaces.image_dim)),
                pa.field("text_vec", pa.list_(pa.float32(), spaces.text_dim)),
            ]
        )
        with self._writer_lock_only():
            self._images = self.db.create_table(IMAGES, schema=images_schema, exist_ok=True)
            self._regions = self.db.create_table(REGIONS, schema=regions_schema, exist_ok=True)
            self._acl_read = self._has_acl_read()
            self._meta_path.write_text(spaces.model_dump_json(indent=2))

    def _need_tables(self) -> bool:
        return self._images is not None

    # -- writes -----------------------------------------------------------------
    def write(self, items: list[Indexed]) -> None:
        if not items:
            return
        spaces = self.spaces()
        if spaces is None or self._images is None:
            raise ImgragError("the index has no tables yet", "call ensure_spaces before writing")
        ids = [it.record.image_id for it in items]
        # read per write: another process's open may have added the column (_upgrade), a rollback removed it
        has_stats = "feature_stats" in self._images.schema.names
        image_rows: list[dict[str, Any]] = []
        region_rows: list[dict[str, Any]] = []
        for it in items:
            rec = it.record
            common = _filter_fields(rec)
            if not self._acl_read:
                del common["acl_read"]
            stats = {"feature_stats": FEATURE_STATS.dump_json(rec.feature_stats).decode()} if has_stats else {}
            image_rows.append(
                {
                    **common,
                    **stats,
                    "page": rec.page,
                    "fts": fts_text(fts_source(rec)),
                    "record": rec.model_dump_json(),
                    "img_vec": it.vectors.image.astype(np.float32).tolist(),
                    "feat_vec": it.vectors.feature.astype(np.float32).tolist(),
                    "text_vec": it.vectors.text.astype(np.float32).tolist(),
                }
            )
            for r in it.regions:
                is_tile = r.kind == "tile"
                region_rows.append(
                    {
                        **common,
                        "region_id": r.region_id,
                        "kind": r.kind,
                        "label": r.label,
                        "bbox": [float(x) for x in r.bbox],
                        "text": r.text,
                        "pii_kinds": list(r.pii_kinds),
                        "fts": fts_text(r.text),
                        "tile_vec": r.vector.astype(np.float32).tolist() if is_tile else _unit(spaces.image_dim),
                        "text_vec": _unit(spaces.text_dim) if is_tile else r.vector.astype(np.float32).tolist(),
                    }
                )
        with self._change(), self._lock:
            # Regions first, the image row last: a page without its image row is not "live", so an
            # interrupted run re-indexes it and its half-written regions are replaced here.
            self._regions.delete(f"image_id IN ({_lits(ids)})")
            if region_rows:
                self._regions.add(region_rows)
            (
                self._images.merge_insert("image_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(image_rows)
            )

    def update_metadata(self, image_ids: list[str], update: MetadataUpdate) -> int:
        if not image_ids or update.is_empty() or not self._ready():
            return 0
        ids = list(dict.fromkeys(image_ids))
        changed = 0
        with self._change(), self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                # Whole rows (vectors included): merge_insert replaces a matched row as a whole.
                images = (
                    self._images.search()
                    .where(f"deleted = false AND image_id IN ({_lits(chunk)})")
                    .limit(len(chunk))
                    .to_arrow()
                )
                rows: list[dict[str, Any]] = []
                new_fields: dict[str, dict[str, Any]] = {}
                for row in images.to_pylist():
                    rec = update.apply(ImageRecord.model_validate_json(row["record"]))
                    if rec is None:
                        continue
                    fields = {k: v for k, v in _filter_fields(rec).items() if k in ("acl", "tags", "meta_kv")
                              or (k == "acl_read" and self._acl_read)}
                    new_fields[rec.image_id] = fields
                    rows.append({**row, **fields, "fts": fts_text(fts_source(rec)), "record": rec.model_dump_json()})
                if not rows:
                    continue
                where = f"image_id IN ({_lits(list(new_fields))})"
                n_regions = self._regions.count_rows(where)
                # Regions first, then the pages, as in write(): each table changes in one commit.
                if n_regions:
                    regions = self._regions.search().where(where).limit(n_regions).to_arrow().to_pylist()
                    for r in regions:
                        r.update(new_fields[r["image_id"]])
                    (
                        self._regions.merge_insert("region_id")
                        .when_matched_update_all()
                        .execute(pa.Table.from_pylist(regions, schema=self._regions.schema))
                    )
                (
                    self._images.merge_insert("image_id")
                    .when_matched_update_all()
                    .execute(pa.Table.from_pylist(rows, schema=self._images.schema))
                )
                changed += len(rows)
        return changed

    def replace_image_space(self, spaces: ModelSpaces, new_vectors: ImageSpaceFn) -> ImageSpaceReplaced:
        """Rewrite ``img_vec`` and the tiles' ``tile_vec`` at the new width as new table versions
        (an overwrite keeps the old versions, so rollback restores the old space)."""
        current = self.spaces()
        if current is None or not self._ready():
            raise ImgragError("the index is empty: nothing to re-embed", "index some images first")
        check_same_base_spaces(current, spaces)
        out = ImageSpaceReplaced()
        with self._change(), self._lock:
            images = self._images.to_arrow()
            regions = self._regions.to_arrow()
            records = [
                ImageRecord.model_validate_json(r).model_copy(update={"deleted": bool(d)})
                for r, d in zip(images.column("record").to_pylist(), images.column("deleted").to_pylist(), strict=True)
            ]
            feats = np.asarray(images.column("feat_vec").to_pylist(), np.float32).reshape(len(records), -1)
            whole, tiles = new_vectors(feats, records) if records else (np.zeros((0, spaces.image_dim)), [])
            by_id = {rec.image_id: i for i, rec in enumerate(records)}
            vec_type = pa.list_(pa.float32(), spaces.image_dim)
            new_tiles: list[list[float]] = []
            for image_id, kind, label in zip(
                regions.column("image_id").to_pylist(), regions.column("kind").to_pylist(),
                regions.column("label").to_pylist(), strict=True,
            ):
                i = by_id.get(image_id)
                v = None
                if kind == "tile" and i is not None:
                    v = tiles[i].get(label)
                    if v is None:
                        out.tiles_placeholder += 1
                    else:
                        out.tiles_from_pixels += 1
                if v is None:  # text regions never use tile_vec; a tile without pixels gets its page's vector
                    v = whole[i] if i is not None else _unit(spaces.image_dim)
                new_tiles.append(np.asarray(v, np.float32).tolist())
            images = images.set_column(
                images.schema.get_field_index("img_vec"), pa.field("img_vec", vec_type),
                pa.array(np.asarray(whole, np.float32).reshape(len(records), spaces.image_dim).tolist(), type=vec_type),
            )
            regions = regions.set_column(
                regions.schema.get_field_index("tile_vec"), pa.field("tile_vec", vec_type),
                pa.array(new_tiles, type=vec_type),
            )
            self._images = self.db.create_table(IMAGES, images, mode="overwrite")
            self._regions = self.db.create_table(REGIONS, regions, mode="overwrite")
            self._meta_path.write_text(spaces.model_dump_json(indent=2))
        out.images = len(records)
        return out

    def soft_delete(self, image_ids: list[str]) -> int:
        if not image_ids or not self._ready():
            return 0
        where = f"deleted = false AND image_id IN ({_lits(image_ids)})"
        with self._writer_lock_only(), self._lock:
            n = self._images.count_rows(where)
            if n:
                self._journal.note({"tables": self._table_versions()})
                self._images.update(where=where, values={"deleted": True})
                self._regions.update(where=where, values={"deleted": True})
        return n

    def purge(self) -> int:
        if not self._ready():
            return 0
        with self._writer_lock_only(), self._lock:
            n = self._images.count_rows("deleted = true")
            if n:
                self._journal.note({"tables": self._table_versions()})
                self._images.delete("deleted = true")
                self._regions.delete("deleted = true")
                # Purge is an erasure (GDPR / PIPL): rewrite every data file that holds a deleted
                # row, drop the old table versions, and refuse rollbacks to logical versions
                # recorded before it. A concurrent reader of an old version re-reads (_fresh_reads).
                for table in (self._images, self._regions):
                    _erase_deleted(table)
                entries = self._log_entries()
                floor = (entries[-1]["version"]["version"] + 1) if entries else 1
                self._purge_path.write_text(json.dumps({"restorable_from": floor}))
        return n

    @property
    def _purge_path(self) -> Path:
        return self.path / "purge.json"

    def _restorable_from(self) -> int:
        if not self._purge_path.is_file():
            return 0
        return int(json.loads(self._purge_path.read_text())["restorable_from"])

    # -- reads ------------------------------------------------------------------
    @_fresh_reads
    def _records(self, where: str, limit: int, offset: int = 0) -> list[ImageRecord]:
        if not self._ready():
            return []
        q = self._images._table.query().where(where).select(["record"]).limit(limit)
        if offset:
            q = q.offset(offset)
        return [self._parse(raw) for raw in _run(q.to_arrow()).column("record").to_pylist()]

    def _parse(self, raw: str) -> ImageRecord:
        """The record stored as ``raw``, parsed once: a search parses its ~30 candidates' records
        (OCR lines, layout, tables) and that was a fifth of its time. Keyed by the content's hash,
        so a changed record is a new key and nothing can go stale. Treat the result as read-only."""
        key = hashlib.blake2b(raw.encode(), digest_size=16).digest()
        return self._parsed.get(key, lambda: ImageRecord.model_validate_json(raw))

    @_fresh_reads
    def live_ids(self, image_ids: list[str]) -> set[str]:
        if not image_ids or not self._ready():
            return set()
        rows = (
            self._images.search()
            .where(f"deleted = false AND image_id IN ({_lits(image_ids)})")
            .select(["image_id"])
            .limit(len(image_ids))
            .to_list()
        )
        return {r["image_id"] for r in rows}

    @_fresh_reads
    def live_ids_for_path(self, path: str) -> dict[str, str]:
        if not self._ready():
            return {}
        rows = (
            self._images.search()
            .where(f"deleted = false AND path = {_lit(path)}")
            .select(["image_id", "doc_id"])
            .limit(100_000)
            .to_list()
        )
        return {r["image_id"]: r["doc_id"] for r in rows}

    @_fresh_reads
    def live_pages(self, paths: list[str], doc_ids: list[str]) -> list[tuple[str, str, str]]:
        """(image_id, doc_id, path) of the live records from ``paths`` or of ``doc_ids``: what an index
        run asks ``live_ids_for_path`` and ``live_ids`` for each file and page, for a run of files in
        one query (each was ~3-5 CPU-ms, mostly LanceDB's hand-offs, for a photo's ~100)."""
        if not (paths or doc_ids) or not self._ready():
            return []
        out: list[tuple[str, str, str]] = []
        step = MAX_FILTER_IDS // 2
        for i in range(0, max(len(paths), len(doc_ids)), step):
            ps, ds = paths[i : i + step], doc_ids[i : i + step]
            either = " OR ".join(c for c in (f"path IN ({_lits(ps)})" if ps else "", f"doc_id IN ({_lits(ds)})" if ds else "") if c)
            rows = (
                self._images.search()
                .where(f"deleted = false AND ({either})")
                .select(["image_id", "doc_id", "path"])
                .limit(1_000_000)
                .to_list()
            )
            out += [(r["image_id"], r["doc_id"], r["path"]) for r in rows]
        return out

    def get(self, image_id: str, principal: Principal) -> ImageRecord | None:
        recs = self._records(self._where(Filters(image_ids=[image_id]), principal), 1)
        return recs[0] if recs else None

    def get_many(self, image_ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        """The records of those ids ``principal`` may read.

        Each answer (a record, or that the id is not readable) is remembered under the pages table's
        version and the principal: the same version holds the same rows, so a search's ~30
        candidates, most of them seen by the previous searches, cost no query (the query was about
        a tenth of a search's CPU time). Any write, metadata update, delete or rollback is a new
        version, seen by this process when its reads see it."""
        if not image_ids or not self._ready():
            return {}
        ids = list(dict.fromkeys(image_ids))
        version, who = self._images_version(), principal.model_dump_json()
        known = {i: self._fetched.peek((version, who, i)) for i in ids}
        missing = [i for i, v in known.items() if v is None]
        if missing:
            # a filter holds at most MAX_FILTER_IDS ids
            chunks = [missing[i : i + MAX_FILTER_IDS] for i in range(0, len(missing), MAX_FILTER_IDS)]
            records, after = self._records_then_version([(self._where(Filters(image_ids=c), principal), len(c)) for c in chunks])
            fetched = {r.image_id: r for r in records}
            if after == version:  # not if the table moved on while reading
                for i in missing:
                    self._fetched.put((version, who, i), fetched.get(i, _ABSENT))
            known.update((i, fetched.get(i, _ABSENT)) for i in missing)
        return {i: v for i, v in known.items() if v is not _ABSENT}

    @_fresh_reads
    def _records_then_version(self, queries: list[tuple[str, int]]) -> tuple[list[ImageRecord], int]:
        """The records of each ``(where, limit)`` query, then the pages table's version, in one round
        trip to LanceDB's event loop (get_many's fetch and its check that the table did not move)."""
        at = self._images._table

        async def rows() -> tuple[list[pa.Table], int]:
            return [await at.query().where(w).select(["record"]).limit(n).to_arrow() for w, n in queries], await at.version()

        tables, version = _run(rows())
        return [self._parse(raw) for t in tables for raw in t.column("record").to_pylist()], version

    @_fresh_reads
    def get_vectors(self, image_id: str, principal: Principal) -> ImageVectors | None:
        if not self._ready():
            return None
        rows = (
            self._images.search()
            .where(self._where(Filters(image_ids=[image_id]), principal))
            .select(["img_vec", "feat_vec", "text_vec"])
            .limit(1)
            .to_list()
        )
        if not rows:
            return None
        r = rows[0]
        return ImageVectors(
            image=np.asarray(r["img_vec"], np.float32),
            feature=np.asarray(r["feat_vec"], np.float32),
            text=np.asarray(r["text_vec"], np.float32),
        )

    def list_images(
        self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100
    ) -> list[ImageRecord]:
        return self._records(self._where(filters, principal), limit, offset)

    def data_version(self) -> str | None:
        """Both tables' version numbers: every change commits a new table version (a rollback
        too: it restores as a new version), and another process's are seen as soon as reads see
        them (the connection's read-consistency interval)."""
        if not self._ready():
            return "empty"
        pin = _PINNED.get()
        if pin is not None and pin[0] is self:  # inside a search: the version it reads under
            return f"{pin[1]}.{pin[2]}"
        return "{}.{}".format(*self._versions())

    def _versions(self) -> tuple[int, int]:
        images, regions = self._images._table, self._regions._table

        async def versions() -> tuple[int, int]:  # both in one round trip to LanceDB's event loop
            return await images.version(), await regions.version()

        return _run(versions())  # type: ignore[return-value]

    @contextmanager
    def pinned(self) -> Iterator[str | None]:
        """Read both tables' versions once; inside (this context and copies of it: a search's route
        threads), every version check answers from them — what get_many remembers records under,
        whether the FTS index was checked, which ANN indices are IVF_PQ. Yields
        :meth:`data_version`'s token. A write that lands meanwhile is read by the next search: a
        record fetched after it is not remembered under the pinned version (get_many compares)."""
        if not self._ready():
            yield "empty"
            return
        pin = _PINNED.get()
        if pin is not None and pin[0] is self:  # a search inside a pinned call (the guarded search's)
            yield self.data_version()
            return
        images, regions = self._versions()
        token = _PINNED.set((self, images, regions))
        try:
            yield f"{images}.{regions}"
        finally:
            _PINNED.reset(token)

    def _images_version(self) -> int:
        pin = _PINNED.get()
        if pin is not None and pin[0] is self:
            return pin[1]
        return int(self._images.version)

    @_fresh_reads
    def count(self, principal: Principal, filters: Filters) -> int:
        if not self._ready():
            return 0
        return self._images.count_rows(self._where(filters, principal))

    @_fresh_reads
    def knn(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> list[RouteHit]:
        return self._knn(field, vector, k, filters, principal, False)[0]

    @_fresh_reads
    def knn_stats(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> tuple[list[RouteHit], dict[str, dict[str, float | list[int]]]]:
        """The hits' statistics come from the narrow ``feature_stats`` column, selected by the kNN
        itself (300 candidates' whole records: ~21 ms CPU to read, plus parsing). Rows written
        before the column existed hold null there: theirs come from their records. A value that
        does not validate counts as none (the exemplar term then leaves that page's score alone)."""
        return self._knn(field, vector, k, filters, principal, True)

    def _knn(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal, with_stats: bool
    ) -> tuple[list[RouteHit], dict[str, dict[str, float | list[int]]]]:
        if not self._ready():
            return [], {}
        where = self._where(filters, principal)
        if with_stats and self._stats_checked != (version := self._images_version()):
            # once per table version: a rollback to before the column (or another process's
            # upgrade) changes the schema under this handle
            self._stats_column, self._stats_checked = "feature_stats" in self._images.schema.names, version
        columns = ["image_id", "feature_stats"] if with_stats and self._stats_column else ["image_id"]
        raw: dict[str, str | None] = {}

        def fetch(n: int) -> list[RouteHit]:
            tbl = self._vector_rows(self._images, vector, _VEC_COLUMN[field], n, where, columns)
            ids, dist = tbl.column("image_id").to_pylist(), tbl.column("_distance").to_pylist()
            if len(columns) > 1:
                raw.update(zip(ids, tbl.column("feature_stats").to_pylist(), strict=True))
            return [RouteHit(image_id=i, score=1.0 - float(d)) for i, d in zip(ids, dist, strict=True)]

        hits = top_k(fetch, k, page_order)
        if not with_stats:
            return hits, {}
        stats: dict[str, dict[str, float | list[int]]] = {}
        older: list[str] = []
        for h in hits:
            value = raw.get(h.image_id)
            if value is None:
                older.append(h.image_id)
                continue
            try:
                stats[h.image_id] = FEATURE_STATS.validate_json(value)
            except ValueError:
                stats[h.image_id] = {}
        if older:
            stats.update((i, r.feature_stats) for i, r in self.get_many(older, principal).items())
        return hits, stats

    def _fts_ready(self) -> bool:
        """Whether the pages table has its indices, the FTS index with every row in it (built here if
        not, see _ensure_fts). Checked once per table version: the check is three round trips to
        LanceDB's event loop, and BM25 runs in every search."""
        version = self._images_version()
        if self._fts_checked == version:
            return True
        if self._fts_failed is not None and self._fts_failed[0] == version and time.monotonic() - self._fts_failed[1] < _FTS_RETRY_S:
            return bool(self._images.list_indices())  # tried a moment ago: no rebuild attempt per search
        try:
            self._ensure_fts(self._images)
        except _CommitConflict as e:  # another process keeps building it: search with the index there is
            log.warning("the full-text index is being rebuilt by another writer (%s); searching the one there is", e)
            return bool(self._images.list_indices())
        except Exception as e:  # noqa: BLE001 - a full disk, a read-only folder: the index there still answers
            # An `imgrag index` stopped by a full disk leaves rows outside the FTS index; the rebuild
            # needs space too, and every search failed with a traceback until space was freed.
            # Searched as it is, the rows written since are found by LanceDB's flat pass.
            now = time.monotonic()
            if self._fts_failed is None or self._fts_failed[0] != version or now - self._fts_failed[1] > _FTS_RETRY_S:
                log.warning("could not bring the full-text index up to date (%s); searching the one there is",
                            str(e).split(", /")[0][:300])
                self._fts_failed = (version, now)
            return bool(self._images.list_indices())
        if not self._images.list_indices():
            return False
        self._fts_checked = version
        return True

    def _ensure_fts(self, table: Any) -> None:
        """:meth:`_build_fts`, by one thread of this process at a time, and retried when another
        process (or this one's commit) built the index in between: a search between a write and its
        commit, or beside a purge, used to fail with LanceDB's "Retryable commit conflict ...
        preempted by concurrent transaction CreateIndex" (the client saw an internal error, and a
        delete_image whose commit lost the race reported one although the image was deleted)."""
        with self._fts_lock:
            for attempt in range(_FTS_ATTEMPTS):
                try:
                    self._build_fts(table)
                    return
                except Exception as e:
                    if not _is_commit_conflict(e):
                        raise
                    if attempt == _FTS_ATTEMPTS - 1:
                        raise _CommitConflict(str(e).split(",")[0][:300]) from e
                    log.debug("FTS index build preempted (%s); retrying on the latest version", e)
                    table.checkout_latest()

    def _build_fts(self, table: Any) -> None:
        """The BM25 (FTS) index over ``fts``, with every row in it. LanceDB searches rows written
        after the index by a flat pass whose term statistics are those of the new rows alone, so
        pages indexed by a later run scored on other terms than the rest (docqa indexed in two
        runs: BM25 nDCG@10 0.911 against 0.947 rebuilt). The commit rebuilds the index then: it
        reads the text column only, where ``optimize`` would also rewrite every data file below
        LanceDB's target size (all of them, vectors included, in a table of 100k pages)."""
        fts = [ix for ix in table.list_indices() if getattr(ix, "index_type", "") == "FTS" or "fts" in str(ix).lower()]
        if fts:
            st = table.index_stats(fts[0].name)
            if st is None or st.num_unindexed_rows == 0:
                return
        if table.count_rows() == 0:
            return
        from lancedb.index import FTS

        # `fts` holds pre-tokenised text (indexing.text.fts_text): split on whitespace, nothing else
        config = FTS(
            base_tokenizer="whitespace",
            lower_case=False,
            stem=False,
            remove_stop_words=False,
            ascii_folding=False,
            with_position=False,
        )
        table.create_index("fts", config=config, replace=True)

    def _compact(self, name: str, table: Any) -> None:
        """Merge the table's data files once there are too many (see _COMPACT_FRAGMENTS): same rows,
        indices remapped to the new files, a new table version. Older versions keep their files
        (rollback; a purge frees them), so until then the table's data takes twice its space. Never
        raised: a compaction that fails commits nothing, and the table stays as it was."""
        frags = table.stats()["fragment_stats"]["num_fragments"]
        limit = _COMPACT_FRAGMENTS if table.count_rows() <= _COMPACT_MAX_ROWS else self.compact_fragments
        if not limit or frags <= limit:
            return
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            import lance  # noqa: F401  (pylance: LanceDB's optimize() offers no compaction without index builds)

            table.to_lance().optimize.compact_files(defer_index_remap=False)
        except Exception as e:  # a missing pylance, a full disk, an interrupted rewrite
            log.warning("could not merge the %s table's %d data files (%s); it stays as it was", name, frags, e)
            return
        finally:
            table.checkout_latest()
        after = table.stats()["fragment_stats"]["num_fragments"]
        log.info(
            "merged the %s table's data files: %d -> %d in %.1f s (%.1f s CPU)",
            name, frags, after, time.perf_counter() - wall, time.process_time() - cpu,
        )

    def _ensure_ann(self, name: str, table: Any) -> None:
        """An ANN index per vector column (pages: ``ann_index``; regions: IVF_FLAT) once the table has
        ``ann_min_rows`` rows, and the scalar indices of ``_SCALAR_COLUMNS`` from ``_SCALAR_MIN_ROWS``
        rows (or ``ann_min_rows``, if lower); rows written after an index are searched exactly until
        ``optimize`` folds them in (when they are over a tenth of the table). Below the thresholds kNN
        and filters scan. An existing index keeps its type: a new ``ann_index`` applies to indices
        built afterwards."""
        if not _ANN_COLUMNS[name]:
            return
        rows = table.count_rows()
        if rows == 0 or rows < min(self.ann_min_rows, _SCALAR_MIN_ROWS):
            return
        from lancedb.index import Bitmap, BTree, HnswSq, IvfFlat, IvfPq, LabelList

        indexed = {tuple(ix.columns): ix.name for ix in table.list_indices()}
        scalar = {"btree": BTree, "bitmap": Bitmap, "label_list": LabelList}
        have = set(table.schema.names)  # acl_read: not in a store written before session 12
        wanted: list[tuple[str, Any]] = [(c, scalar[kind]()) for c, kind in _SCALAR_COLUMNS[name] if c in have]
        # PQ trains 256 centroids per sub-vector: on fewer rows LanceDB builds an index that holds
        # no rows and stays empty through later optimize() calls, so wait until it can train
        if rows >= max(self.ann_min_rows, _PQ_MIN_ROWS if self.ann_index == "ivf_pq" else 0):
            for column in _ANN_COLUMNS[name]:
                # about 4k rows per IVF partition, cosine; HNSW over int8 (scalar-quantised) vectors
                # inside each, or a flat scan of product-quantised codes (dim/16 bytes a vector), or
                # (regions) a flat scan of the float32 vectors of the probed partitions
                parts = _partitions(rows)
                config: Any
                if name == REGIONS:
                    config = IvfFlat(distance_type="cosine", num_partitions=parts)
                elif self.ann_index == "ivf_pq":
                    config = IvfPq(distance_type="cosine", num_partitions=parts)
                else:
                    config = HnswSq(distance_type="cosine", num_partitions=parts)
                wanted.append((column, config))
        stale = False
        for column, config in wanted:
            ix_name = indexed.get((column,))
            if ix_name is None:
                table.create_index(column, config=config, replace=True)
                continue
            st = table.index_stats(ix_name)
            if st is not None and st.num_unindexed_rows > rows // 10:
                stale = True
        if stale:
            table.optimize(cleanup_older_than=_KEEP_VERSIONS)

    def _vector_rows(
        self, table: Any, vector: np.ndarray, column: str, k: int, where: str, columns: list[str], exact: bool = False
    ) -> pa.Table:
        """The ``k`` nearest rows passing ``where`` (a prefilter), ``columns`` and ``_distance``.

        Without an index (or ``exact``: a prefilter that leaves few rows) the search is exact and
        nprobes etc. are ignored; with one: probe enough partitions (a share of them, which grows with
        the table), search the HNSW graphs wide enough, and re-rank the scalar-quantised candidates on
        the exact vectors. Region indices are IVF_FLAT: exact distances, no re-rank."""
        at = table._table  # the async table under the synchronous one (see _run)
        refine = 0 if exact or table.name == REGIONS else self._refine(table, column, k)

        async def rows() -> pa.Table:
            if exact:
                flat = at.query().nearest_to(vector.astype(np.float32)).column(column).distance_type("cosine").bypass_vector_index()
                return await flat.where(where).select([*columns, "_distance"]).limit(k).to_arrow()
            rows = await at.count_rows()
            q = at.query().nearest_to(vector.astype(np.float32)).column(column).distance_type("cosine").nprobes(_nprobes(rows))
            if table.name != REGIONS:  # HNSW needs ef >= k x refine
                ef = self.ann_ef if self.ann_ef_fixed else _ef(self.ann_ef, rows)
                q = q.ef(max(ef, k * max(refine, 1)))
            if refine:
                q = q.refine_factor(refine)
            return await q.where(where).select([*columns, "_distance"]).limit(k).to_arrow()

        return _run(rows())

    def _refine(self, table: Any, column: str, k: int) -> int:
        """The re-rank factor of a page kNN search for ``k`` hits on ``column``: ``ann_refine``, at
        least enough for ``_MIN_RERANK`` candidates, and at least ``_PQ_REFINE`` where the column's
        index is IVF_PQ (an index keeps the type it was built with, whatever ``ann_index`` says now).
        The index list is re-read when the table changes."""
        version = self._images_version() if table is self._images else table.version
        if self._pq is None or self._pq[0] != version:
            pq = frozenset(c for ix in table.list_indices() if "pq" in str(ix.index_type).lower() for c in ix.columns)
            self._pq = (version, pq)
        refine = max(self.ann_refine, math.ceil(_MIN_RERANK / max(k, 1))) if self.ann_refine > 0 else 0
        return max(refine, _PQ_REFINE) if column in self._pq[1] else refine

    @_fresh_reads
    def bm25(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = ()
    ) -> list[RouteHit]:
        q = fts_text(query)
        more = [(t, e.weight) for e in extra if (t := fts_text(e.text))]
        if not self._ready() or not (q or more) or not self._fts_ready():
            return []
        at = self._images._table
        where = self._where(filters, principal)

        def fetch(n: int) -> list[RouteHit]:
            if more:
                from lancedb.query import BooleanQuery, MatchQuery, Occur

                parts = [(q, 1.0)] if q else []
                query = at.query().nearest_to_text(BooleanQuery([(Occur.SHOULD, MatchQuery(t, "fts", boost=w)) for t, w in parts + more]))
            else:
                query = at.query().nearest_to_text(q, columns="fts")
            tbl = _run(query.where(where).select(["image_id", "_score"]).limit(n).to_arrow())
            ids, scores = tbl.column("image_id").to_pylist(), tbl.column("_score").to_pylist()
            return [RouteHit(image_id=i, score=float(sc)) for i, sc in zip(ids, scores, strict=True)]

        return top_k(fetch, k, page_order, tie_margin(k))

    @_fresh_reads
    def knn_regions(
        self,
        kind: Literal["tile", "text"],
        vector: np.ndarray,
        k: int,
        filters: Filters,
        principal: Principal,
        image_ids: Sequence[str] | None = None,
    ) -> list[RegionHit]:
        if not self._ready():
            return []
        kinds = "kind = 'tile'" if kind == "tile" else "kind IN ('block', 'lines', 'label')"
        column = "tile_vec" if kind == "tile" else "text_vec"
        if image_ids is not None:  # the candidates' rows through the image_id B-tree, every one scored
            filters = filters.restricted_to(image_ids)
        where = f"{kinds} AND {self._where(filters, principal)}"

        def fetch(n: int) -> list[RegionHit]:
            tbl = self._vector_rows(self._regions, vector, column, n, where, list(_REGION_HIT_COLUMNS), exact=image_ids is not None)
            return _region_hits(tbl, [1.0 - d for d in tbl.column("_distance").to_pylist()])

        return top_k(fetch, k, region_order, tie_margin(k))

    @_fresh_reads
    def regions_of(self, image_ids: list[str]) -> list[RegionHit]:
        if not image_ids or not self._ready():
            return []
        tbl = (
            self._regions.search()
            .where(f"deleted = false AND image_id IN ({_lits(image_ids)})")
            .select(list(_REGION_HIT_COLUMNS))
            .limit(200 * len(image_ids) + 100)
            .to_arrow()
        )
        return _region_hits(tbl, [0.0] * tbl.num_rows)

    @_fresh_reads
    def region_vectors(self, region_ids: list[str]) -> dict[str, np.ndarray]:
        """Vectors of the given regions (tile → joint space, text → text space), for re-ranking."""
        if not region_ids or not self._ready():
            return {}
        rows = (
            self._regions.search()
            .where(f"region_id IN ({_lits(region_ids)})")
            .select(["region_id", "kind", "tile_vec", "text_vec"])
            .limit(len(region_ids))
            .to_list()
        )
        return {
            r["region_id"]: np.asarray(r["tile_vec"] if r["kind"] == "tile" else r["text_vec"], np.float32)
            for r in rows
        }

    @_fresh_reads
    def stats(self, principal: Principal) -> Stats:
        versions = self.versions()
        if not self._ready():
            return Stats(
                backend=self.backend, images=0, documents=0, deleted=0, regions=0,
                by_quality={}, by_format={}, version=None, spaces=self.spaces(),
            )
        where = self._where(Filters(), principal)
        tbl = self._images.search().where(where).select(["doc_id", "quality", "record"]).limit(10_000_000).to_arrow()
        formats: Counter[str] = Counter()
        pii: Counter[str] = Counter()
        years: Counter[str] = Counter()
        pii_pages = 0
        for raw in tbl.column("record").to_pylist():
            doc = json.loads(raw)
            formats[doc.get("format", "?")] += 1
            years.update({str(m.get("date", ""))[:4] for m in doc.get("dates") or []} - {""})
            kinds = {f["kind"] for f in doc.get("pii") or []}
            pii.update(kinds)
            pii_pages += bool(kinds)
        return Stats(
            backend=self.backend,
            images=tbl.num_rows,
            documents=len(set(tbl.column("doc_id").to_pylist())),
            deleted=self._images.count_rows("deleted = true") if principal.all_access else 0,
            regions=self._regions.count_rows(f"kind != '' AND {where}"),
            by_quality=dict(Counter(tbl.column("quality").to_pylist())),
            by_format=dict(formats),
            by_year=dict(sorted(years.items())),
            pii_pages=pii_pages,
            pii_by_kind=dict(pii),
            version=versions[-1].version if versions else None,
            spaces=self.spaces(),
        )

    # -- versions ---------------------------------------------------------------
    def versions(self) -> list[Version]:
        return [Version.model_validate(e["version"]) for e in self._log_entries()]

    def _log_entries(self) -> list[dict[str, Any]]:
        if not self._log_path.is_file():
            return []
        out: list[dict[str, Any]] = []
        for n, line in enumerate(self._log_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entry["version"]["version"], entry["tables"][IMAGES]  # noqa: B018  (the fields rollback needs)
            except (ValueError, KeyError, TypeError):
                # A line torn by a crash mid-append (or edited by hand): the versions around it still
                # count, and the torn one's changes are still journaled, so the next open records them.
                log.info("%s line %d is not a version entry; ignored", self._log_path, n)
                continue
            out.append(entry)
        return out

    def _append_log(self, version: Version, tables: dict[str, int]) -> None:
        entry = {"version": json.loads(version.model_dump_json()), "tables": tables}
        with self._log_path.open("a+b") as f:
            torn = False
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            # after a line torn by a crash, start a new one: the torn one stays alone and is skipped
            f.write((b"\n" if torn else b"") + json.dumps(entry, ensure_ascii=False).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def commit(self, op: str, summary: dict[str, int | str]) -> Version:
        if not self._ready():
            raise ImgragError("nothing to commit: the index is empty", "index some images first")
        with self.writer():
            return self._commit_locked(op, summary)

    def _commit_locked(self, op: str, summary: dict[str, int | str]) -> Version:
        """Record the tables' current state as the next version, then forget the journal (the
        version records its changes). The writer lock makes read-number-then-append safe."""
        with self._lock:
            self._compact(IMAGES, self._images)
            self._compact(REGIONS, self._regions)
            self._ensure_fts(self._images)
            self._ensure_fts(self._regions)
            self._ensure_ann(IMAGES, self._images)
            self._ensure_ann(REGIONS, self._regions)
            entries = self._log_entries()
            number = (entries[-1]["version"]["version"] + 1) if entries else 1
            version = Version(
                version=number, time=datetime.now(timezone.utc), op=op, summary=summary, spaces=self.spaces()
            )
            self._append_log(version, self._table_versions())
            self._journal.clear()
        return version

    def rollback(self, version: int) -> Version:
        entries = {e["version"]["version"]: e for e in self._log_entries()}
        if version not in entries:
            known = ", ".join(str(v) for v in sorted(entries)) or "none"
            raise ImgragError(f"no version {version} (known: {known})", "see `imgrag versions`")
        floor = self._restorable_from()
        if version < floor:
            raise ImgragError(
                f"version {version} was recorded before a purge, whose erased data cannot come back",
                f"roll back to version {floor} or later",
            )
        target = entries[version]
        with self._change(), self._lock:
            for name, table in ((IMAGES, self._images), (REGIONS, self._regions)):
                table.checkout(target["tables"][name])
                table.restore()
            self._upgrade()  # a version from before a column was added
            spaces = target["version"].get("spaces")
            if spaces:
                self._meta_path.write_text(json.dumps(spaces, indent=2))
            return self._commit_locked(f"rollback to {version}", {"restored": version})

    def close(self) -> None:
        self._writer.release_all()
        self._journal.close()
        self._images = None
        self._regions = None


_REGION_HIT_COLUMNS = ("region_id", "image_id", "kind", "label", "bbox", "text", "pii_kinds")


def _region_hits(tbl: pa.Table, scores: list[float]) -> list[RegionHit]:
    """Region rows as hits, read column by column, not validated: the rows were validated when
    written, and a region search builds 200 of them (validation was a tenth of a search; row dicts
    from ``to_pylist`` and a generator per bbox were another ~1 ms a route)."""
    cols = [tbl.column(c).to_pylist() for c in _REGION_HIT_COLUMNS]
    return [
        _unvalidated_region_hit(
            {"region_id": r, "image_id": i, "kind": region_kind(k, lb), "label": lb, "bbox": tuple(b), "text": t, "score": sc,
             "pii_kinds": p or []}
        )
        for r, i, k, lb, b, t, p, sc in zip(*cols, scores, strict=True)
    ]


_REGION_HIT_FIELDS = frozenset(RegionHit.model_fields)
_new, _set = object.__new__, object.__setattr__


def _unvalidated_region_hit(values: dict[str, Any]) -> RegionHit:
    """``RegionHit.model_construct(**values)`` for a dict that has every field: the same instance
    state (tests/unit/test_search_hot_path.py compares them), without model_construct's per-call work
    (defaults, aliases, extra and private fields), which was ~70 % of building a route's 200 hits."""
    hit = _new(RegionHit)
    _set(hit, "__dict__", values)
    _set(hit, "__pydantic_fields_set__", set(_REGION_HIT_FIELDS))
    _set(hit, "__pydantic_extra__", None)
    _set(hit, "__pydantic_private__", None)
    return hit


def open_lance(
    path: Path, *, ann_min_rows: int = 10_000, ann_index: AnnIndex = "ivf_hnsw_sq", ann_ef: int = _ANN_EF,
    ann_refine: int = _ANN_REFINE, compact_fragments: int = COMPACT_FRAGMENTS,
) -> LanceStore:
    try:
        return LanceStore(
            path, ann_min_rows=ann_min_rows, ann_index=ann_index, ann_ef=ann_ef, ann_refine=ann_refine,
            compact_fragments=compact_fragments,
        )
    except ImgragError:
        raise
    except Exception as e:
        raise BackendUnavailableError(f"cannot open the index at {path} ({e})", "check IMGRAG_HOME") from e
