"""The audit log: who called what, from where, which images it returned, how it ended.

Every MCP tool call and resource read (rejected ones included), every rejected HTTP request and every
write to the index (index — ACL and metadata changes included —, delete, purge, rollback, reembed) is
appended as one :class:`AuditRecord`. Arguments are never stored, only the SHA-256 of their canonical
JSON (:func:`args_digest`): they may hold personal data. Two implementations behind one protocol,
chosen by ``IMGRAG_BACKEND``: :class:`JsonlAuditLog` (files under ``IMGRAG_HOME/audit``) and
:class:`ElasticAuditLog` (the index ``<prefix>-audit``).

A record that cannot be appended raises :class:`~indexing.errors.AuditError`: the caller refuses the
call (a read's result is withheld; a write is refused before it starts, see :func:`recorded_write`).
Nothing is ever dropped silently. Format, rotation and guarantees: docs/audit.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import heapq
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from .errors import AccessDeniedError, AuditError, BackendUnavailableError, ImgragError, NotFoundError, Stopped
from .pii import mask_values
from .stores.base import Principal

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from .config import Settings

log = logging.getLogger(__name__)

SCHEMA = 1
MAX_IDS = 10_000  # image ids kept in one record; beyond, only their number (``ids_omitted``)
MAX_QUERY_LIMIT = 10_000

Transport = Literal["cli", "stdio", "http", "python"]
Event = Literal["tool", "resource", "write", "auth", "log", "web", "completion"]
Outcome = Literal["started", "ok", "error", "denied", "cancelled"]


class AuditRecord(BaseModel):
    """One line of the log (one document on Elasticsearch). ``v`` comes first on purpose: a reader
    recovers a record that follows a torn write by looking for ``{"v":``."""

    v: Literal[1] = SCHEMA
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="unique; the Elasticsearch _id")
    time: datetime = Field(description="UTC, when the call ended (for `started`: when it began)")
    event: Event
    name: str = Field(description="tool, resource (image, thumbnail, collection), write (index, delete, ...), auth check or web viewer route")
    outcome: Outcome
    error: str | None = Field(default=None, description="kind of failure: not_found, invalid_arguments, denied, backend, ...")
    principal: str | None = Field(default=None, description="who: the token's or configured name, `operator`, `anonymous`; none when unauthenticated")
    groups: list[str] = Field(default_factory=list)
    transport: Transport
    client: str | None = Field(default=None, description="HTTP: the peer address")
    args_sha256: str | None = Field(default=None, description="SHA-256 of the canonical JSON of the arguments (never the arguments)")
    image_ids: list[str] = Field(default_factory=list, description="returned (reads) or changed (writes)")
    ids_omitted: int = 0
    latency_ms: float | None = None
    count: int = Field(default=1, description="requests this record stands for (coalesced rejected HTTP requests)")
    detail: dict[str, Any] = Field(default_factory=dict, description="writes: counts, version, the ACL given")
    os_user: str | None = None
    pid: int = Field(default_factory=os.getpid)


class AuditQuery(BaseModel):
    principal: str | None = None
    image_id: str | None = None
    since: datetime | None = None
    name: str | None = Field(default=None, description="tool, resource or write name")
    limit: int = Field(default=50, ge=1, le=MAX_QUERY_LIMIT)

    def matches(self, r: AuditRecord) -> bool:
        return (
            (self.principal is None or r.principal == self.principal)
            and (self.image_id is None or self.image_id in r.image_ids)
            and (self.since is None or r.time >= self.since)
            and (self.name is None or r.name == self.name)
        )


class AuditPage(BaseModel):
    """The newest ``limit`` matching records, oldest first, and what could not be read."""

    records: list[AuditRecord]
    problems: list[str] = Field(default_factory=list)


class AuditLog(Protocol):
    """Where records go. ``append`` returns only once the record is durable, or raises AuditError."""

    where: str

    def check(self) -> None:
        """Raise AuditError now if records cannot be written here (a server checks at start)."""

    def append(self, record: AuditRecord) -> None: ...

    def query(self, q: AuditQuery) -> AuditPage: ...

    def close(self) -> None: ...


# -- who is calling, from where -------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    transport: Transport = "python"
    client: str | None = None


_CALLER: ContextVar[Caller] = ContextVar("imgrag_audit_caller", default=Caller())


def current_caller() -> Caller:
    return _CALLER.get()


def set_caller(caller: Caller) -> None:
    """For the rest of this context (the CLI: the whole command)."""
    _CALLER.set(caller)


@contextlib.contextmanager
def calling_as(caller: Caller) -> Iterator[None]:
    """Within one call (an MCP request): the facade's write records name this transport and peer."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


def principal_label(principal: Principal | None) -> str | None:
    if principal is None:
        return None
    return principal.name or ("operator" if principal.all_access else "anonymous")


def caller_digest(args: Any, principal: Principal | None) -> str:
    """``args_digest`` of what a caller may see of its own arguments: without PII clearance
    (``principal.sees_pii``) the personal data in them is masked first (:func:`~indexing.pii.mask_values`),
    so the log holds nothing from which a value could be recovered."""
    if principal is None or not principal.sees_pii:
        args = mask_values(args)
    return args_digest(args)


def args_digest(args: Any) -> str:
    """SHA-256 (hex) of ``json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
    lets an investigator check whether given arguments were sent, without the log holding them."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_KINDS: tuple[tuple[type[BaseException], Outcome, str], ...] = (  # most specific first
    (AccessDeniedError, "denied", "denied"),
    (NotFoundError, "error", "not_found"),
    (BackendUnavailableError, "error", "backend"),
    (AuditError, "error", "audit"),
    (ValidationError, "error", "invalid_arguments"),
    (ImgragError, "error", "rejected"),
    (KeyboardInterrupt, "error", "interrupted"),
)


def error_kind(e: BaseException) -> tuple[Outcome, str]:
    """(outcome, kind) for a failure; the message is not recorded (it may quote arguments)."""
    if isinstance(e, Stopped):  # its client went: ``disconnected`` or ``cancelled``
        return "cancelled", e.reason
    return next(((outcome, kind) for cls, outcome, kind in _KINDS if isinstance(e, cls)), ("error", "internal"))


_OS_USER: list[str | None] = []


def _os_user() -> str | None:
    if not _OS_USER:
        try:
            _OS_USER.append(getpass.getuser())
        except Exception:  # no passwd entry (containers): the uid says as much
            _OS_USER.append(str(os.getuid()) if hasattr(os, "getuid") else None)
    return _OS_USER[0]


def make_record(
    *,
    event: Event,
    name: str,
    outcome: Outcome,
    principal: Principal | None,
    args: Any = None,
    image_ids: Sequence[str] = (),
    error: str | None = None,
    latency_ms: float | None = None,
    detail: dict[str, Any] | None = None,
    caller: Caller | None = None,
    args_sha256: str | None = None,
    count: int = 1,
) -> AuditRecord:
    """A record stamped now, for the current caller (transport and peer)."""
    c = caller or current_caller()
    ids = list(dict.fromkeys(image_ids))
    return AuditRecord(
        time=datetime.now(timezone.utc),
        event=event,
        name=name,
        outcome=outcome,
        error=error,
        principal=principal_label(principal),
        groups=list(principal.groups) if principal is not None else [],
        transport=c.transport,
        client=c.client,
        args_sha256=args_sha256 if args_sha256 is not None else (caller_digest(args, principal) if args is not None else None),
        image_ids=ids[:MAX_IDS],
        ids_omitted=max(0, len(ids) - MAX_IDS),
        latency_ms=None if latency_ms is None else round(latency_ms, 2),
        count=count,
        detail=detail or {},
        os_user=_os_user(),
    )


@dataclass
class WriteRecord:
    """What a write filled in while it ran: the images it changed and a summary."""

    image_ids: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def recorded_write(audit: AuditLog, name: str, principal: Principal, args: Any) -> Iterator[WriteRecord]:
    """Record a write in two steps: ``started`` before it touches the index — an unwritable log
    refuses the write, so nothing changes unrecorded — and ``ok`` / ``error`` / ``denied`` after.
    If only the second record fails, the error says the write itself completed."""
    t0 = time.perf_counter()
    digest = caller_digest(args, principal)
    audit.append(make_record(event="write", name=name, outcome="started", principal=principal, args_sha256=digest))
    w = WriteRecord()

    def done(outcome: Outcome, kind: str | None) -> AuditRecord:
        return make_record(
            event="write", name=name, outcome=outcome, error=kind, principal=principal, args_sha256=digest,
            image_ids=w.image_ids, latency_ms=(time.perf_counter() - t0) * 1000, detail=w.detail,
        )

    try:
        yield w
    except BaseException as e:
        outcome, kind = error_kind(e)
        try:
            audit.append(done(outcome, kind))
        except AuditError as ae:
            raise AuditError(f"{name} failed ({e}) and its end could not be recorded: {ae.message}", ae.hint) from e
        raise
    try:
        audit.append(done("ok", None))
    except AuditError as ae:
        raise AuditError(f"{name} completed, but its completion could not be recorded: {ae.message}", ae.hint) from ae


_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``2w`` ago, or an ISO date or date-time (local time
    unless it names a zone), as an aware UTC datetime."""
    t = text.strip()
    m = _AGE.match(t.lower())
    if m:
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=int(m.group(1)) * _AGE_SECONDS[m.group(2)])
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ImgragError(
            f"--since {text!r} is neither a date, a date-time nor an age",
            "use e.g. 2025-03-01, 2025-03-01T14:00, 2025-03-01T14:00Z, or 7d / 12h / 30m",
        ) from None
    return (dt.astimezone() if dt.tzinfo is None else dt).astimezone(timezone.utc)


# -- off ------------------------------------------------------------------------------------------
class NullAuditLog:
    """``IMGRAG_AUDIT=off``: nothing is recorded (development; never for personal data)."""

    where = "nowhere (IMGRAG_AUDIT=off)"

    def check(self) -> None:
        pass

    def append(self, record: AuditRecord) -> None:
        pass

    def query(self, q: AuditQuery) -> AuditPage:
        return AuditPage(records=[])

    def close(self) -> None:
        pass


# -- embedded: JSONL files ------------------------------------------------------------------------
_ROTATED = re.compile(r"^audit-\d{8}T\d{6}\.\d{6}Z-\d+\.jsonl$")
_RECORD_START = b'{"v":'
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}


class _Newest:
    """The newest ``limit`` distinct records seen (a record read twice, across a rotation, counts once)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[datetime, str, AuditRecord]] = []
        self._ids: set[str] = set()

    def add(self, r: AuditRecord) -> None:
        if r.id in self._ids:
            return
        item = (r.time, r.id, r)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
            self._ids.add(r.id)
        elif item[:2] > self._heap[0][:2]:
            self._ids.discard(heapq.heapreplace(self._heap, item)[1])
            self._ids.add(r.id)

    def oldest_first(self) -> list[AuditRecord]:
        return [r for _, _, r in sorted(self._heap, key=lambda x: x[:2])]


class JsonlAuditLog:
    """One JSON object per line in ``folder/audit.jsonl``, rotated by size into
    ``audit-<UTC time>-<pid>.jsonl``.

    Appends: each record is one ``write(2)`` of one complete line to a descriptor opened with
    ``O_APPEND`` (so writers in any number of threads and processes never interleave on a local
    file system), then ``fdatasync`` before ``append`` returns. Rotation renames the file under an
    exclusive ``flock`` on ``audit.lock``; a writer that opened the old file just before lands its
    line in the rotated file, where readers find it too. Files are ``0600`` in a ``0700`` folder.
    """

    def __init__(self, folder: Path, *, max_bytes: int = 100 * 2**20, keep: int = 0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "audit.jsonl"
        self.max_bytes = max_bytes
        self.keep = keep
        self.where = str(self.path)
        self._made = False

    # -- writing --------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            self._prepare()
            os.close(self._open())
        except OSError as e:
            raise self._error(e) from e

    def append(self, record: AuditRecord) -> None:
        line = (record.model_dump_json(exclude_none=True) + "\n").encode("utf-8")
        try:
            self._prepare()
            expired = self._append_line(line, may_rotate=True)
            for name, size in expired:
                # retention is itself on the record: which file went, and how big it was
                note = make_record(
                    event="log", name="expire", outcome="ok", principal=None,
                    caller=Caller(transport=record.transport), detail={"removed": name, "bytes": size, "keep": self.keep},
                )
                self._append_line((note.model_dump_json(exclude_none=True) + "\n").encode("utf-8"), may_rotate=False)
        except OSError as e:
            raise self._error(e) from e

    def _prepare(self) -> None:
        if not self._made:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made = True

    def _open(self) -> int:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        if created:
            self._sync_folder()
        return fd

    def _append_line(self, line: bytes, *, may_rotate: bool) -> list[tuple[str, int]]:
        expired: list[tuple[str, int]] = []
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if may_rotate and size and size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                expired = self._rotate(len(line))
                fd = self._open()
            written = os.write(fd, line)
            if written != len(line):  # a full disk or a file-size limit, part-way through
                raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes written")
            os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        return expired

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.folder / "audit.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _rotate(self, incoming: int) -> list[tuple[str, int]]:
        with self._locked():
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                return []
            if size + incoming <= self.max_bytes:
                return []  # another writer rotated while we waited
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            os.rename(self.path, self.folder / f"audit-{stamp}-{os.getpid()}.jsonl")
            expired = []
            if self.keep:
                for old in self.rotated()[: -self.keep]:
                    try:
                        size = old.stat().st_size
                        old.unlink()
                        expired.append((old.name, size))
                        log.warning("audit log: removed %s (IMGRAG_AUDIT_KEEP=%d)", old, self.keep)
                    except FileNotFoundError:
                        pass
            self._sync_folder()
            return expired

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _error(self, e: OSError) -> AuditError:
        reason = e.strerror or str(e)
        if e.errno in _NO_SPACE:
            hint = f"free disk space under {self.folder} (or set IMGRAG_AUDIT_KEEP); until then imgrag refuses every call it cannot record"
        elif e.errno in _NO_ACCESS:
            hint = f"make {self.folder} writable by this user (or set IMGRAG_HOME); until then imgrag refuses every call it cannot record"
        else:
            hint = f"check {self.folder}; until then imgrag refuses every call it cannot record"
        return AuditError(f"cannot write the audit log {self.path}: {reason}", hint)

    # -- reading --------------------------------------------------------------------------------
    def rotated(self) -> list[Path]:
        """Rotated files, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if _ROTATED.match(p.name))

    def files(self) -> list[Path]:
        return [*self.rotated(), *([self.path] if self.path.exists() else [])]

    def query(self, q: AuditQuery) -> AuditPage:
        newest = _Newest(q.limit)
        problems: list[str] = []
        # a cheap test before parsing: each wanted value, as it is spelled inside a JSON string
        needles = [json.dumps(n, ensure_ascii=False)[1:-1].encode("utf-8") for n in (q.principal, q.image_id, q.name) if n]
        for path in self.files():
            try:
                if q.since is not None and path != self.path and path.stat().st_mtime < q.since.timestamp():
                    continue  # last written before the window
                with path.open("rb") as f:
                    for n, line in enumerate(f, 1):
                        if not all(x in line for x in needles):
                            continue
                        for r in self._parse(line, f"{path.name} line {n}", problems):
                            if q.matches(r):
                                newest.add(r)
            except FileNotFoundError:
                continue  # rotated away (and expired) while we read
            except OSError as e:
                problems.append(f"{path}: {e.strerror or e}")
        return AuditPage(records=newest.oldest_first(), problems=problems)

    @staticmethod
    def _parse(line: bytes, where: str, problems: list[str]) -> list[AuditRecord]:
        """A line holds one record — or, after a write that failed part-way, a torn record and then
        the next complete one: that one is kept and the torn part reported."""
        text = line.strip()
        if not text:
            return []
        try:
            return [AuditRecord.model_validate_json(text)]
        except ValidationError:
            pass
        cut = text.rfind(_RECORD_START)
        if cut > 0:
            try:
                rec = AuditRecord.model_validate_json(text[cut:])
                problems.append(f"{where}: a torn record (a write that failed part-way) before this one, skipped")
                return [rec]
            except ValidationError:
                pass
        problems.append(f"{where}: not a readable record ({len(text)} bytes), skipped")
        return []

    def close(self) -> None:
        pass


# -- Elasticsearch: one index ---------------------------------------------------------------------
_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        **{k: {"type": "keyword"} for k in (
            "id", "event", "name", "outcome", "error", "principal", "groups", "transport", "client",
            "args_sha256", "image_ids", "os_user",
        )},
        "v": {"type": "integer"},
        "time": {"type": "date"},
        "ids_omitted": {"type": "integer"},
        "latency_ms": {"type": "float"},
        "count": {"type": "integer"},
        "pid": {"type": "integer"},
        "detail": {"type": "object", "enabled": False},
    },
}


class ElasticAuditLog:
    """The index ``<IMGRAG_ES_INDEX_PREFIX>-audit``, through its own client with the store's
    settings. Each record is indexed with ``op_type=create`` under its id, so a request the client
    retries after a timeout cannot record it twice; Elasticsearch acknowledges only once the
    operation is in its translog (fsync'd per request by default)."""

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        from .stores.elastic import audit_index_name, check_index_name

        check_index_name(settings.es_index_prefix)
        self.settings = settings
        self.index = audit_index_name(settings.es_index_prefix)
        self.where = f"{settings.es_url} index {self.index}"
        self._client = client
        self._ready = False
        self._lock = threading.Lock()

    @property
    def es(self) -> Elasticsearch:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from .stores.elastic import connect

                    self._client = connect(self.settings)
        return self._client

    def _fail(self, e: Exception, what: str) -> AuditError:
        from .stores.elastic import translate

        t = translate(e, self.settings.es_url, what)
        return AuditError(
            f"cannot {what} ({t.message})", (t.hint + "; " if t.hint else "") + "until then imgrag refuses every call it cannot record"
        )

    def _ensure(self) -> None:
        if self._ready:
            return
        from elasticsearch import BadRequestError

        body: dict[str, Any] = {"number_of_shards": 1}
        if self.settings.es_replicas is not None:
            body["number_of_replicas"] = self.settings.es_replicas
        if not self.es.indices.exists(index=self.index):
            try:
                self.es.indices.create(index=self.index, settings={"index": body}, mappings=_MAPPING)
            except BadRequestError as e:
                if "resource_already_exists" not in str(e):
                    raise
        self._ready = True

    def check(self) -> None:
        """Nothing here: a server starts without waiting for the cluster (as the store does); the
        first record creates the index, and a call that cannot be recorded fails."""

    def append(self, record: AuditRecord) -> None:
        from elasticsearch import ConflictError

        try:
            self._ensure()
            self.es.index(index=self.index, id=record.id, document=record.model_dump(mode="json", exclude_none=True), op_type="create")
        except ConflictError:
            return  # this very record, written by an earlier try of the same request
        except Exception as e:
            raise self._fail(e, f"write the audit log (index {self.index})") from e

    def query(self, q: AuditQuery) -> AuditPage:
        try:
            if not self.es.indices.exists(index=self.index):
                return AuditPage(records=[])
            self.es.indices.refresh(index=self.index)  # records appended a moment ago count too
            clauses: list[dict[str, Any]] = []
            for fld, val in (("principal", q.principal), ("image_ids", q.image_id), ("name", q.name)):
                if val is not None:
                    clauses.append({"term": {fld: val}})
            if q.since is not None:
                clauses.append({"range": {"time": {"gte": q.since.isoformat()}}})
            res = self.es.search(
                index=self.index, query={"bool": {"filter": clauses}}, size=q.limit,
                sort=[{"time": "desc"}, {"id": "desc"}], track_total_hits=False,
            )
        except Exception as e:
            raise self._fail(e, f"read the audit log (index {self.index})") from e
        records, problems = [], []
        for hit in res["hits"]["hits"]:
            try:
                records.append(AuditRecord.model_validate(hit["_source"]))
            except ValidationError:
                problems.append(f"document {hit.get('_id')}: not a readable record, skipped")
        return AuditPage(records=records[::-1], problems=problems)

    def close(self) -> None:
        """Close the connection; the next record opens a new one."""
        client, self._client, self._ready = self._client, None, False
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def drop(self) -> None:
        """Delete the audit index (tests)."""
        self.es.indices.delete(index=self.index, ignore_unavailable=True)


def open_audit(settings: Settings, *, reading: bool = False) -> AuditLog:
    """The audit log of ``IMGRAG_BACKEND``; with ``IMGRAG_AUDIT=off`` a log that records nothing
    (``reading``: the real one anyway, to read what was recorded before). Opens no connection."""
    if not settings.audit and not reading:
        return NullAuditLog()
    if settings.backend == "elasticsearch":
        return ElasticAuditLog(settings)
    return JsonlAuditLog(settings.home / "audit", max_bytes=settings.audit_max_mb * 2**20, keep=settings.audit_keep)
