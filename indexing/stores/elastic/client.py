"""Talking to the cluster: the client, one clear error for anything it raises, and the
primitives every part of the store shares (search through the alias, scan, refresh)."""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import BackendUnavailableError, ImgragError
from ..base import ModelSpaces, Version

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from ...config import Settings

log = logging.getLogger(__name__)

PAGE = 1000  # rows per page when scanning
_PARTIAL_RETRIES = 2  # a search answered by part of the shards is asked again this often

T = TypeVar("T")


class BulkWriteError(ImgragError):
    """Some documents of a bulk request were rejected; ``failures`` maps image id → reason."""

    def __init__(self, message: str, hint: str, failures: dict[str, str]) -> None:
        super().__init__(message, hint)
        self.failures = failures


# -- errors ---------------------------------------------------------------------------------------
READ_ONLY_HINT = (
    "free disk space on the cluster if a node's disk is past the flood-stage watermark (Elasticsearch lifts that "
    "block once it is below the high watermark); a block an operator set is lifted with "
    "PUT <index>/_settings {\"index.blocks.write\": null} (or index.blocks.read_only); searches keep working meanwhile"
)


def error_reason(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cause = err.get("caused_by", {}) or {}
        parts = [f"{err.get('type', '')}: {err.get('reason', '')}".strip(": ")]
        if cause.get("reason") and cause.get("reason") != err.get("reason"):
            parts.append(str(cause["reason"]))
        return "; ".join(p for p in parts if p)
    msg = getattr(e, "message", None)
    return str(msg or e)


def translate(e: Exception, url: str, what: str) -> ImgragError:
    """One clear error for anything the client raises; the caller raises it ``from e``."""
    from elasticsearch import (
        ApiError,
        AuthenticationException,
        AuthorizationException,
        ConnectionError,
        ConnectionTimeout,
        SSLError,
        TransportError,
        UnsupportedProductError,
    )

    if isinstance(e, ImgragError):
        return e
    if isinstance(e, SSLError):
        return BackendUnavailableError(
            f"TLS handshake with Elasticsearch at {url} failed ({e})",
            "set IMGRAG_ES_CA_CERTS to the cluster's CA certificate (PEM), or check IMGRAG_ES_URL (http vs https)",
        )
    if isinstance(e, ConnectionTimeout):
        return BackendUnavailableError(
            f"Elasticsearch at {url} did not answer in time while trying to {what}",
            "check the cluster's health, or raise IMGRAG_ES_REQUEST_TIMEOUT",
        )
    if isinstance(e, ConnectionError):
        return BackendUnavailableError(
            f"cannot reach Elasticsearch at {url}",
            "start it (tests: `tests/elasticsearch.sh start`) or set IMGRAG_ES_URL to the cluster's address",
        )
    if isinstance(e, UnsupportedProductError):
        return BackendUnavailableError(
            f"the server at {url} is not Elasticsearch ({e.message})",
            "imgrag needs Elasticsearch 9.x (OpenSearch is not supported); fix IMGRAG_ES_URL",
        )
    if isinstance(e, ApiError) and "cluster_block_exception" in (reason := error_reason(e)):
        # a write block answers 403 (index.blocks.write) or 429 (flood-stage): neither is the credentials
        return BackendUnavailableError(
            f"Elasticsearch at {url} refuses to {what}: the index is read-only ({reason.rstrip(';')})", READ_ONLY_HINT
        )
    if isinstance(e, AuthenticationException):
        return BackendUnavailableError(
            f"Elasticsearch at {url} rejected our credentials (401) while trying to {what}",
            "set IMGRAG_ES_API_KEY, or IMGRAG_ES_USERNAME and IMGRAG_ES_PASSWORD",
        )
    if isinstance(e, AuthorizationException):
        return BackendUnavailableError(
            f"the credentials for Elasticsearch at {url} are not allowed to {what} (403: {error_reason(e)})",
            "grant the API key / user the `monitor` cluster privilege and all privileges on the "
            "IMGRAG_ES_INDEX_PREFIX indices, or use other credentials",
        )
    if isinstance(e, ApiError):
        reason = error_reason(e)
        if e.status_code == 400 and ("compatible-with" in reason or "Accept version" in reason):
            return BackendUnavailableError(
                f"Elasticsearch at {url} is not version 9 ({reason})",
                "imgrag's client (elasticsearch-py 9.x) needs an Elasticsearch 9.x server; upgrade it or fix IMGRAG_ES_URL",
            )
        if e.status_code == 400 and any(
            k in reason for k in ("mapper_parsing", "illegal_argument", "strict_dynamic", "resource_already_exists")
        ):
            return ImgragError(
                f"Elasticsearch refused to {what}: {reason}",
                "the index mapping conflicts with what imgrag writes: use a new IMGRAG_ES_INDEX_PREFIX, "
                "or check IMGRAG_ES_ANALYZER / IMGRAG_ES_INDEX_OPTIONS (bbq_hnsw needs ≥ 64 dimensions, "
                "int4_hnsw an even number)",
            )
        if e.status_code == 429 or e.status_code >= 500:
            return BackendUnavailableError(
                f"Elasticsearch at {url} is overloaded or failing ({e.status_code}: {reason}) while trying to {what}",
                "retry later, or check the cluster's health and disk space",
            )
        return ImgragError(f"Elasticsearch refused to {what} ({e.status_code}: {reason})", "see the cluster's logs")
    if isinstance(e, TransportError):
        return BackendUnavailableError(f"Elasticsearch at {url} failed while trying to {what} ({e})", "check IMGRAG_ES_URL")
    from pydantic import ValidationError

    if isinstance(e, ValidationError):  # the _meta of an index behind the alias: older, or hand-made
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "?"
        return ImgragError(
            f"the imgrag metadata of the index behind the alias is not what this imgrag writes, so it cannot "
            f"{what} ({e.error_count()} problem(s), first: {where}: {first.get('msg')})",
            "set IMGRAG_ES_INDEX_PREFIX to another name, or re-index into a new prefix",
        )
    shown = " ".join(str(e).split())  # one line, however many the library's message has
    return ImgragError(f"unexpected error while trying to {what}: {type(e).__name__}: {shown[:500]}", "see the log")



def guard(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def deco(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(self: Connection, *args: Any, **kwargs: Any) -> T:
            try:
                return fn(self, *args, **kwargs)
            except ImgragError:
                raise
            except Exception as e:
                raise translate(e, self.url, what) from e

        return wrapper

    return deco

_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,180}$")


def check_index_name(prefix: str) -> None:
    if not _INDEX_NAME.match(prefix):
        raise ImgragError(
            f"IMGRAG_ES_INDEX_PREFIX={prefix!r} is not a valid index name",
            "use lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def audit_index_name(prefix: str) -> str:
    return f"{prefix}-audit"


def connect(settings: Settings) -> Elasticsearch:
    """A client from the ``IMGRAG_ES_*`` settings (no request is made yet); the store and the audit
    log (``<prefix>-audit``) each hold one."""
    from elasticsearch import Elasticsearch

    if not settings.debug:
        # The transport logs every retry with a traceback; our errors say what went wrong.
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    s = settings
    kwargs: dict[str, Any] = {
        "request_timeout": s.es_request_timeout,
        "max_retries": s.es_max_retries,
        "retry_on_timeout": True,
        "retry_on_status": (429, 502, 503, 504),
    }
    if s.es_api_key is not None:
        key = s.es_api_key.get_secret_value()
        kwargs["api_key"] = tuple(key.split(":", 1)) if ":" in key else key
    elif s.es_username:
        kwargs["basic_auth"] = (s.es_username, s.es_password.get_secret_value() if s.es_password else "")
    if s.es_ca_certs is not None:
        if not s.es_ca_certs.is_file():
            raise ImgragError(f"IMGRAG_ES_CA_CERTS={s.es_ca_certs} is not a file", "point it at the cluster's CA certificate (PEM)")
        kwargs["ca_certs"] = str(s.es_ca_certs)
    try:
        return Elasticsearch(s.es_url, **kwargs)
    except Exception as e:  # bad URL and the like
        raise ImgragError(f"invalid Elasticsearch settings ({e})", "check IMGRAG_ES_URL, e.g. http://127.0.0.1:9200") from e


class Connection:
    """What every part of :class:`~.store.ElasticStore` shares: the client, the alias and the
    writer lock (set by the store's constructor)."""

    settings: Settings
    url: str
    alias: str
    versions_index: str
    es: Elasticsearch
    server_version: tuple[int, ...]
    _lock: threading.RLock
    _dirty: bool
    _writer_depth: int
    _bulk_pages: int  # pages written since the last commit (a large bulk load is force-merged)
    _live_cache: tuple[float, tuple[str, dict[str, Any]] | None] | None
    _live_lock: threading.Lock

    # What the parts call on each other (defined in generations, versions and writes).
    if TYPE_CHECKING:

        def _generation(self) -> tuple[str, dict[str, Any]] | None: ...
        def _live(self) -> tuple[str, dict[str, Any]] | None: ...
        def _require_generation(self) -> tuple[str, dict[str, Any]]: ...
        def _create_generation(self, spaces: ModelSpaces) -> tuple[str, int]: ...
        def _switch_alias(self, index: str) -> None: ...
        def _ensure_versions_index(self) -> None: ...
        def _next_version(self) -> int: ...
        def commit(self, op: str, summary: dict[str, int | str]) -> Version: ...
        def versions(self) -> list[Version]: ...
        def spaces(self) -> ModelSpaces | None: ...
        def _bulk(self, actions: list[dict[str, Any]], what: str) -> dict[str, str]: ...
        def _raise_failures(self, failures: dict[str, str], total: int, what: str) -> None: ...
        def _merge_after_bulk_load(self, index: str, pages: int) -> None: ...

    def _connect(self) -> Elasticsearch:
        return connect(self.settings)

    @guard("read the server version")
    def _check_server(self) -> tuple[int, ...]:
        from elasticsearch import ApiError, AuthorizationException

        number = ""
        try:
            number = self.es.info()["version"]["number"]
        except AuthorizationException:
            log.warning("no `monitor` privilege on %s: cannot check the server version", self.url)
            return (9,)
        except ApiError as e:
            if e.status_code not in (400, 404, 405):  # minimal distributions lack the `GET /` handler
                raise
            nodes = self.es.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version")["nodes"]
            number = next(iter(nodes.values()))["version"]
        version = tuple(int(p) for p in re.findall(r"\d+", number)[:3])
        if not version or version[0] != 9:
            raise BackendUnavailableError(
                f"Elasticsearch at {self.url} is version {number}; imgrag needs 9.x",
                "upgrade the cluster to 9.x or point IMGRAG_ES_URL at a 9.x cluster",
            )
        return version

    def _refresh(self) -> None:
        self.es.indices.refresh(index=self.alias)

    def _complete(self, call: Callable[..., Any], **kw: Any) -> Any:
        """``call(**kw)`` (a search or count), asked again while any shard failed. Elasticsearch
        answers from the shards it reached: a node that drops out between the query and the fetch
        phase (its copies are not retried) leaves a 200 answer with half the results. Asked again,
        the copies left answer; an answer that stays partial is an error, never a silent subset
        (a write that supersedes rows must see all of them)."""
        for attempt in range(_PARTIAL_RETRIES + 1):
            res = call(**kw)
            shards = getattr(res, "body", res).get("_shards") or {}
            if not shards.get("failed"):
                return res
            if attempt < _PARTIAL_RETRIES:
                log.warning("Elasticsearch answered from part of the shards (%s); asking again", shards)
                time.sleep(0.25 * (attempt + 1))
        failures = shards.get("failures") or [{}]
        reason = (failures[0].get("reason") or {}).get("type", "unknown") if isinstance(failures[0], dict) else "unknown"
        raise BackendUnavailableError(
            f"Elasticsearch at {self.url} answered from {shards.get('successful', '?')} of {shards.get('total', '?')} "
            f"shards ({shards.get('failed')} failed: {reason})",
            "a node or shard copy is missing: check the cluster's health (GET _cluster/health) and retry",
        )

    def _search(self, **body: Any) -> dict[str, Any]:
        return self._complete(self.es.search, index=self.alias, **body).body  # type: ignore[no-any-return]

    def _scan(
        self, query: dict[str, Any], source: Any, index: str | None = None, page: int = PAGE
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, in (image id, version) order, via ``search_after`` (no scroll context kept)."""
        after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"query": query, "size": page, "sort": [{"image_id": "asc"}, {"v_from": "asc"}], "source": source}
            if after is not None:
                kw["search_after"] = after
            hits = self._complete(self.es.search, index=index or self.alias, **kw).body["hits"]["hits"]
            yield from hits
            if len(hits) < page:
                return
            after = hits[-1]["sort"]

    def close(self) -> None:
        try:
            self.es.close()
        except Exception:  # closing must never fail a command
            pass


def wait_until_ready(store: Connection, timeout: float = 30.0) -> None:
    """Block until the cluster is at least yellow (the test server needs a moment after start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            store.es.cluster.health(wait_for_status="yellow", timeout="5s")
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise translate(e, store.url, "wait for the cluster") from e
            time.sleep(0.5)
