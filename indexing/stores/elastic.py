"""Distributed backend: Elasticsearch 9.x through the official client, on the free basic licence.

Layout (``P`` = ``IMGRAG_ES_INDEX_PREFIX``):

* ``P`` — an alias over exactly one *generation* index ``P-g000001``, ``P-g000002``, ... Each
  generation is built with one set of embedding models (recorded in the mapping's ``_meta``).
  Reads and writes go through the alias; switching models or rolling back to a version built
  with other models swaps the alias atomically.
* ``P-versions`` — the version log, one small document per committed version: number, time,
  operation, summary, spaces and the generation it was committed in.

One document per page *row*: the filter fields (acl, deleted, quality, tags, meta, dates, path,
doc id, seal), the analysed full text ``fts``, the stored-only ``record`` (the ImageRecord JSON),
three ``dense_vector`` fields and the page's regions as two ``nested`` fields (``tiles`` in the
image-text space, ``blocks`` in the OCR-text space) so a region kNN hit names its region through
``inner_hits`` and every filter of the page applies to its regions for free.

Versions are multi-version rows rather than snapshots (the basic licence has no cheap snapshots
and the minimal distribution has no ``_reindex``): a row lives for versions ``[v_from, v_to)``
(``current`` while ``v_to`` is unset) and a soft delete stamps ``deleted_in``. Replacing a page
supersedes its row and writes a new one; ``rollback(n)`` supersedes rows written after ``n`` and
re-creates the rows that were live at ``n`` — its cost is proportional to what changed since
``n``, not to the index size. Every query filters ``current`` and ``deleted`` inside the query.
``purge`` removes soft-deleted images with their whole history, so they cannot come back.

Fusion is not done here (see :mod:`indexing.search`); ACL and filters always go inside
``knn.filter`` and the BM25 ``bool.filter``, never after the fact.
"""

from __future__ import annotations

import base64
import calendar
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from ..analysis import normalize, tokens
from ..errors import BackendUnavailableError, ImgragError
from .base import (
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
    RouteHit,
    Stats,
    Version,
    VectorField,
    check_same_base_spaces,
    check_same_spaces,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from ..config import Settings

log = logging.getLogger(__name__)

SCHEMA = 1
_VEC_FIELD: dict[VectorField, str] = {"image": "img_vec", "feature": "feat_vec", "text": "text_vec"}
_SPACE_DIM: dict[str, str] = {"img_vec": "image_dim", "feat_vec": "feature_dim", "text_vec": "text_dim"}
_MIN_DATE, _MAX_DATE = date(1900, 1, 1), date(2100, 12, 31)  # the embedded store's bounds
_PAGE = 1000  # rows per page when scanning
_LIVE_TTL = 2.0  # seconds a read trusts its cached view of the live generation
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,180}$")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")

T = TypeVar("T")


class BulkWriteError(ImgragError):
    """Some documents of a bulk request were rejected; ``failures`` maps image id → reason."""

    def __init__(self, message: str, hint: str, failures: dict[str, str]) -> None:
        super().__init__(message, hint)
        self.failures = failures


# -- errors ---------------------------------------------------------------------------------------
def _reason(e: Exception) -> str:
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
    if isinstance(e, AuthenticationException):
        return BackendUnavailableError(
            f"Elasticsearch at {url} rejected our credentials (401) while trying to {what}",
            "set IMGRAG_ES_API_KEY, or IMGRAG_ES_USERNAME and IMGRAG_ES_PASSWORD",
        )
    if isinstance(e, AuthorizationException):
        return BackendUnavailableError(
            f"the credentials for Elasticsearch at {url} are not allowed to {what} (403: {_reason(e)})",
            "grant the API key / user the `monitor` cluster privilege and all privileges on the "
            "IMGRAG_ES_INDEX_PREFIX indices, or use other credentials",
        )
    if isinstance(e, ApiError):
        reason = _reason(e)
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
    return ImgragError(f"unexpected error while trying to {what}: {type(e).__name__}: {e}", "see the log")


def _guard(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def deco(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(self: ElasticStore, *args: Any, **kwargs: Any) -> T:
            try:
                return fn(self, *args, **kwargs)
            except ImgragError:
                raise
            except Exception as e:
                raise translate(e, self.url, what) from e

        return wrapper

    return deco


# -- documents and queries ------------------------------------------------------------------------
def _date_interval(d: date, precision: str) -> dict[str, str]:
    """The days a mention stands for: a day, its whole month or its whole year."""
    if precision == "year":
        end = date(d.year, 12, 31)
    elif precision == "month":
        end = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
    else:
        end = d
    return {"gte": d.isoformat(), "lte": end.isoformat()}


def fts_source(rec: ImageRecord) -> str:
    """What BM25 sees: OCR text, caption, tags and metadata values, NFKC-normalised."""
    return normalize(" ".join([rec.ocr_text, rec.caption, " ".join(rec.tags), *rec.all_meta().values()]))


def _vec(v: np.ndarray) -> list[float]:
    return np.asarray(v, dtype=np.float32).ravel().tolist()


def _source_vec(v: Any) -> np.ndarray:
    """A vector as read back from ``_source``: a float list, or base64 big-endian float32."""
    if isinstance(v, str):
        return np.frombuffer(base64.b64decode(v), dtype=">f4").astype(np.float32)
    return np.asarray(v, np.float32)


def _vec_b64(v: np.ndarray) -> str:
    """Big-endian float32, base64: what Elasticsearch ≥ 9.3 accepts for a dense_vector, ~4× smaller than JSON."""
    return base64.b64encode(np.asarray(v, dtype=">f4").ravel().tobytes()).decode("ascii")


def row_document(item: Indexed, version: int, *, base64_vectors: bool = False) -> dict[str, Any]:
    """The row for one page; ``base64_vectors`` for servers that accept base64 vectors (9.3+)."""
    rec = item.record
    enc = _vec_b64 if base64_vectors else _vec
    tiles, blocks = [], []
    for r in item.regions:
        region = {"region_id": r.region_id, "label": r.label, "bbox": [float(x) for x in r.bbox], "vector": enc(r.vector)}
        if r.kind == "tile":
            tiles.append(region)
        else:
            blocks.append({**region, "kind": r.kind, "text": r.text})
    dates = {(m.date, getattr(m, "precision", "day")) for m in rec.dates}
    return {
        "image_id": rec.image_id,
        "doc_id": rec.doc_id,
        "path": rec.path,
        "page": rec.page,
        "format": rec.format,
        "quality": rec.quality,
        "tags": rec.tags,
        "meta_kv": [f"{k}={v}" for k, v in sorted(rec.all_meta().items())],
        "acl": rec.acl,
        "has_seal": bool(rec.seals),
        "dates": [_date_interval(d, p) for d, p in sorted(dates)],
        "deleted": bool(rec.deleted),
        "current": True,
        "v_from": version,
        "fts": fts_source(rec),
        "record": rec.model_dump(mode="json"),
        "img_vec": enc(item.vectors.image),
        "feat_vec": enc(item.vectors.feature),
        "text_vec": enc(item.vectors.text),
        "tiles": tiles,
        "blocks": blocks,
    }


def filter_clauses(filters: Filters, principal: Principal) -> list[dict[str, Any]]:
    """The filter for one principal and one set of filters, as ``bool.filter`` clauses."""
    out: list[dict[str, Any]] = [{"term": {"current": True}}, {"term": {"deleted": False}}]
    if not principal.all_access:
        public = {"bool": {"must_not": [{"exists": {"field": "acl"}}]}}
        toks = principal.tokens()
        out.append({"bool": {"should": [public, {"terms": {"acl": toks}}], "minimum_should_match": 1}} if toks else public)
    if filters.date_from or filters.date_to:
        lo = max(filters.date_from or _MIN_DATE, _MIN_DATE)
        hi = min(filters.date_to or _MAX_DATE, _MAX_DATE)
        if lo > hi:
            out.append({"match_none": {}})
        else:
            out.append({"range": {"dates": {"gte": lo.isoformat(), "lte": hi.isoformat(), "relation": "within"}}})
    if filters.quality:
        out.append({"terms": {"quality": list(filters.quality)}})
    if filters.tags:
        out.append({"terms": {"tags": list(filters.tags)}})
    for key, value in sorted(filters.meta.items()):
        out.append({"term": {"meta_kv": f"{key}={value}"}})
    if filters.path_prefix:
        out.append({"prefix": {"path": filters.path_prefix}})
    if filters.doc_id:
        out.append({"term": {"doc_id": filters.doc_id}})
    if filters.has_seal is not None:
        out.append({"term": {"has_seal": filters.has_seal}})
    if filters.image_ids is not None:
        out.append({"terms": {"image_id": list(filters.image_ids)}} if filters.image_ids else {"match_none": {}})
    return out


def _bool(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": clauses}}


def _image_id(hit: dict[str, Any]) -> str:
    return str(hit["_id"]).rsplit("@", 1)[0]


def _dedup(hits: Iterable[T], key: Callable[[T], str]) -> list[T]:
    """A page has one current row; should a crashed write leave two, reads show the page once."""
    seen: set[str] = set()
    out = []
    for h in hits:
        k = key(h)
        if k not in seen:
            seen.add(k)
            out.append(h)
    return out


def _region_hit(image_id: str, kind_path: str, src: dict[str, Any], score: float) -> RegionHit:
    return RegionHit(
        region_id=src["region_id"],
        image_id=image_id,
        kind="tile" if kind_path == "tiles" else src.get("kind", "block"),
        label=src.get("label", ""),
        bbox=tuple(float(x) for x in src["bbox"]),  # type: ignore[arg-type]
        text=src.get("text", ""),
        score=score,
    )


# -- the store ------------------------------------------------------------------------------------
class ElasticStore:
    """:class:`~indexing.stores.base.IndexStore` on Elasticsearch 9.x; one writer process at a time."""

    backend = "elasticsearch"

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.url = settings.es_url
        prefix = settings.es_index_prefix
        if not _INDEX_NAME.match(prefix):
            raise ImgragError(
                f"IMGRAG_ES_INDEX_PREFIX={prefix!r} is not a valid index name",
                "use lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        self.alias = prefix
        self.versions_index = f"{prefix}-versions"
        self._lock = threading.RLock()
        self._live_cache: tuple[float, tuple[str, dict[str, Any]] | None] | None = None
        self.es = client if client is not None else self._connect()
        self.server_version = self._check_server()
        self._check_alias()

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        if not os.environ.get("IMGRAG_DEBUG"):
            # The transport logs every retry with a traceback; our errors say what went wrong.
            logging.getLogger("elastic_transport").setLevel(logging.ERROR)
        s = self.settings
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
            return Elasticsearch(self.url, **kwargs)
        except Exception as e:  # bad URL and the like
            raise ImgragError(f"invalid Elasticsearch settings ({e})", "check IMGRAG_ES_URL, e.g. http://127.0.0.1:9200") from e

    @_guard("read the server version")
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

    @_guard("inspect the index alias")
    def _check_alias(self) -> None:
        """An existing prefix must be ours: an alias over a generation built by this schema."""
        info = self._generation()
        if info is None:
            if self.es.indices.exists(index=self.alias):
                raise ImgragError(
                    f"an index named {self.alias!r} exists at {self.url} but is not an imgrag alias",
                    "set IMGRAG_ES_INDEX_PREFIX to another name",
                )
            return
        schema = info[1].get("schema")
        if schema != SCHEMA:
            raise ImgragError(
                f"the index {info[0]!r} behind {self.alias!r} was not built by this imgrag (schema {schema!r}, need {SCHEMA})",
                "set IMGRAG_ES_INDEX_PREFIX to another name, or re-index into a new prefix",
            )

    # -- generations -------------------------------------------------------------------------
    def _gen_name(self, n: int) -> str:
        return f"{self.alias}-g{n:06d}"

    def _generation(self) -> tuple[str, dict[str, Any]] | None:
        """(index, imgrag _meta) of the live generation, or None before the first write."""
        from elasticsearch import NotFoundError

        try:
            aliases = self.es.indices.get_alias(name=self.alias)
        except NotFoundError:
            return None
        names = sorted(aliases.body)
        if len(names) != 1:
            raise ImgragError(
                f"the alias {self.alias!r} points at {len(names)} indices ({', '.join(names)})",
                "imgrag keeps exactly one generation live: fix the alias or use another IMGRAG_ES_INDEX_PREFIX",
            )
        mapping = self.es.indices.get_mapping(index=names[0])
        meta = (mapping.body[names[0]]["mappings"].get("_meta") or {}).get("imgrag") or {}
        return names[0], meta

    def _live(self) -> tuple[str, dict[str, Any]] | None:
        """:meth:`_generation` cached for a moment: reads go through the alias anyway, so a stale
        entry only delays noticing another process's model switch by ``_LIVE_TTL`` seconds."""
        cached = self._live_cache
        if cached is not None and cached[1] is not None and time.monotonic() - cached[0] < _LIVE_TTL:
            return cached[1]
        info = self._generation()
        self._live_cache = (time.monotonic(), info)
        return info

    def _require_generation(self) -> tuple[str, dict[str, Any]]:
        info = self._generation()
        if info is None:
            raise ImgragError("the index has no tables yet", "call ensure_spaces before writing")
        return info

    def _existing_generations(self) -> list[int]:
        res = self.es.indices.get(index=f"{self.alias}-g*", allow_no_indices=True, ignore_unavailable=True)
        gens = []
        for name in res.body:
            m = re.fullmatch(re.escape(self.alias) + r"-g(\d+)", name)
            if m:
                gens.append(int(m.group(1)))
        return sorted(gens)

    def _mappings(self, spaces: ModelSpaces, generation: int) -> dict[str, Any]:
        s = self.settings

        def vector(dim: int) -> dict[str, Any]:
            return {
                "type": "dense_vector",
                "dims": dim,
                "similarity": "cosine",
                "index": True,
                "index_options": {"type": s.es_index_options},
            }

        keyword = {"type": "keyword"}
        stored = {"type": "keyword", "index": False, "doc_values": False}
        bbox = {"type": "float", "index": False, "doc_values": False}
        return {
            "dynamic": "strict",
            "_meta": {
                "imgrag": {
                    "schema": SCHEMA,
                    "generation": generation,
                    "spaces": spaces.model_dump(),
                    "created": datetime.now(timezone.utc).isoformat(),
                }
            },
            "properties": {
                "image_id": keyword,
                "doc_id": keyword,
                "path": keyword,
                "page": {"type": "integer"},
                "format": keyword,
                "quality": keyword,
                "tags": keyword,
                "meta_kv": keyword,
                "acl": keyword,
                "has_seal": {"type": "boolean"},
                "dates": {"type": "date_range", "format": "strict_date"},
                "deleted": {"type": "boolean"},
                "deleted_in": {"type": "integer"},
                "current": {"type": "boolean"},
                "v_from": {"type": "integer"},
                "v_to": {"type": "integer"},
                "fts": {"type": "text", "analyzer": s.es_analyzer},
                "record": {"type": "object", "enabled": False},
                "img_vec": vector(spaces.image_dim),
                "feat_vec": vector(spaces.feature_dim),
                "text_vec": vector(spaces.text_dim),
                "tiles": {
                    "type": "nested",
                    "properties": {"region_id": keyword, "label": stored, "bbox": bbox, "vector": vector(spaces.image_dim)},
                },
                "blocks": {
                    "type": "nested",
                    "properties": {
                        "region_id": keyword,
                        "kind": keyword,
                        "label": stored,
                        "bbox": bbox,
                        "text": {"type": "text", "index": False},
                        "vector": vector(spaces.text_dim),
                    },
                },
            },
        }

    def _create_generation(self, spaces: ModelSpaces) -> tuple[str, int]:
        existing = self._existing_generations()
        n = (existing[-1] + 1) if existing else 1
        name = self._gen_name(n)
        index_settings: dict[str, Any] = {"number_of_shards": self.settings.es_shards}
        if self.settings.es_replicas is not None:
            index_settings["number_of_replicas"] = self.settings.es_replicas
        self.es.indices.create(index=name, mappings=self._mappings(spaces, n), settings={"index": index_settings})
        return name, n

    def _switch_alias(self, index: str) -> None:
        info = self._generation()
        actions: list[dict[str, Any]] = []
        if info is not None:
            if info[0] == index:
                return
            actions.append({"remove": {"index": info[0], "alias": self.alias}})
        actions.append({"add": {"index": index, "alias": self.alias}})
        self._live_cache = None
        self.es.indices.update_aliases(actions=actions)

    def _ensure_versions_index(self) -> None:
        if self.es.indices.exists(index=self.versions_index):
            return
        from elasticsearch import BadRequestError

        settings: dict[str, Any] = {"number_of_shards": 1}
        if self.settings.es_replicas is not None:
            settings["number_of_replicas"] = self.settings.es_replicas
        try:
            self.es.indices.create(
                index=self.versions_index,
                settings={"index": settings},
                mappings={
                    "dynamic": False,
                    "properties": {
                        "version": {"type": "integer"},
                        "time": {"type": "date"},
                        "op": {"type": "keyword"},
                        "generation": {"type": "integer"},
                        "index": {"type": "keyword"},
                    },
                },
            )
        except BadRequestError as e:
            if "resource_already_exists" not in _reason(e):
                raise

    @_guard("read the index's models")
    def spaces(self) -> ModelSpaces | None:
        info = self._generation()
        if info is None or "spaces" not in info[1]:
            return None
        return ModelSpaces.model_validate(info[1]["spaces"])

    @_guard("create the index")
    def ensure_spaces(self, spaces: ModelSpaces) -> None:
        with self._lock:
            current = self.spaces()
            if current is not None:
                check_same_spaces(current, spaces, "IMGRAG_ES_INDEX_PREFIX")
                return
            self._ensure_versions_index()
            name, _ = self._create_generation(spaces)
            self._switch_alias(name)

    @_guard("start a new index generation")
    def start_generation(self, spaces: ModelSpaces) -> Version:
        """Build a new, empty generation for other embedding models and make it live.

        Re-index everything into it afterwards; ``rollback`` to a version of the previous
        generation switches the alias back (the old generation is kept untouched).
        """
        with self._lock:
            self._ensure_versions_index()
            name, n = self._create_generation(spaces)
            self._switch_alias(name)
            return self.commit(f"new generation {n}", {"generation": n})

    # -- low-level helpers --------------------------------------------------------------------
    def _refresh(self) -> None:
        self.es.indices.refresh(index=self.alias)

    def _search(self, **body: Any) -> dict[str, Any]:
        return self.es.search(index=self.alias, **body).body

    def _scan(
        self, query: dict[str, Any], source: Any, index: str | None = None, page: int = _PAGE
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, in (image id, version) order, via ``search_after`` (no scroll context kept)."""
        after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"query": query, "size": page, "sort": [{"image_id": "asc"}, {"v_from": "asc"}], "source": source}
            if after is not None:
                kw["search_after"] = after
            hits = self.es.search(index=index or self.alias, **kw).body["hits"]["hits"]
            yield from hits
            if len(hits) < page:
                return
            after = hits[-1]["sort"]

    def _next_version(self) -> int:
        if not self.es.indices.exists(index=self.versions_index):
            return 1
        res = self.es.search(
            index=self.versions_index, size=0, aggs={"top": {"max": {"field": "version"}}}, request_cache=False
        ).body
        top = res["aggregations"]["top"]["value"]
        return int(top) + 1 if top is not None else 1

    def _bulk(self, actions: list[dict[str, Any]], what: str) -> dict[str, str]:
        """Send actions in order, retrying 429/5xx with backoff; return ``image id → reason`` failures."""
        from elasticsearch import helpers

        if not actions:
            return {}
        failures: dict[str, str] = {}
        s = self.settings
        for ok, info in helpers.streaming_bulk(
            self.es,
            actions,
            chunk_size=s.es_bulk_docs,
            max_chunk_bytes=50 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=s.es_max_retries,
            initial_backoff=0.5,
            max_backoff=30,
            retry_on_status=(429, 500, 502, 503, 504),
            yield_ok=False,
        ):
            if ok:
                continue
            op, detail = next(iter(info.items()))
            status = detail.get("status")
            if op == "delete" and status == 404:
                continue
            err = detail.get("error")
            reason = (
                f"{err.get('type')}: {err.get('reason')}" if isinstance(err, dict) else str(err or detail.get("result"))
            )
            doc_id = str(detail.get("_id", "?")).rsplit("@", 1)[0]
            failures[doc_id] = f"{op} failed ({status}): {reason}"
        if failures:
            log.error("%s: %d document(s) failed: %s", what, len(failures), failures)
        return failures

    def _raise_failures(self, failures: dict[str, str], total: int, what: str) -> None:
        if not failures:
            return
        shown = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        mapping = any("mapper_parsing" in v or "strict_dynamic" in v or "illegal_argument" in v for v in failures.values())
        raise BulkWriteError(
            f"{what}: {len(failures)} of {total} page(s) were rejected by Elasticsearch: {shown}{more}",
            "the index mapping conflicts with these records: use a new IMGRAG_ES_INDEX_PREFIX"
            if mapping
            else "the other pages were written; retry the failed ones (imgrag index skips what is already indexed)",
            failures,
        )

    def _current_rows(self, image_ids: list[str], extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(image_ids), 1000):
            chunk = image_ids[i : i + 1000]
            q = _bool([{"term": {"current": True}}, {"terms": {"image_id": chunk}}, *(extra or [])])
            out.extend(self._scan(q, ["image_id", "v_from", "deleted"]))
        return out

    # -- writes ------------------------------------------------------------------------------
    @_guard("write pages")
    def write(self, items: list[Indexed]) -> None:
        if not items:
            return
        with self._lock:
            index, meta = self._require_generation()
            spaces = ModelSpaces.model_validate(meta["spaces"])
            self._check_dims(items, spaces)
            p = self._next_version()
            by_id = {it.record.image_id: it for it in items}
            actions: list[dict[str, Any]] = []
            for row in self._current_rows(list(by_id)):
                src = row["_source"]
                if row["_id"] == f"{src['image_id']}@{p}":
                    continue  # the new row below overwrites it
                actions.append(
                    {"_op_type": "update", "_index": index, "_id": row["_id"], "routing": src["image_id"],
                     "doc": {"current": False, "v_to": p}}
                )
            for image_id, it in by_id.items():
                actions.append(
                    {"_op_type": "index", "_index": index, "_id": f"{image_id}@{p}", "routing": image_id,
                     "_source": row_document(it, p, base64_vectors=self.server_version >= (9, 3))}
                )
            failures = self._bulk(actions, "write")
            self._refresh()
            self._raise_failures(failures, len(by_id), "write")

    @staticmethod
    def _check_dims(items: list[Indexed], spaces: ModelSpaces) -> None:
        for it in items:
            v = it.vectors
            for name, vec, dim in (
                ("image", v.image, spaces.image_dim),
                ("feature", v.feature, spaces.feature_dim),
                ("text", v.text, spaces.text_dim),
            ):
                if np.asarray(vec).size != dim:
                    raise ImgragError(
                        f"the {name} vector of {it.record.image_id} has {np.asarray(vec).size} dimensions, the index {dim}",
                        "the configured embedding models differ from the index's: see `imgrag stats`",
                    )
            for r in it.regions:
                dim = spaces.image_dim if r.kind == "tile" else spaces.text_dim
                if np.asarray(r.vector).size != dim:
                    raise ImgragError(
                        f"region {r.region_id} has a {np.asarray(r.vector).size}-dimensional vector, the index {dim}",
                        "the configured embedding models differ from the index's",
                    )

    @_guard("update metadata")
    def update_metadata(self, image_ids: list[str], update: MetadataUpdate) -> int:
        """Like :meth:`write` for the metadata only: the current row of each changed page is
        superseded by a copy (vectors and regions included) with the new ACL, tags and metadata,
        so a rollback to an earlier version brings the old metadata back."""
        if not image_ids or update.is_empty():
            return 0
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            index = info[0]
            p = self._next_version()
            ids = list(dict.fromkeys(image_ids))
            actions: list[dict[str, Any]] = []
            changed = 0
            for i in range(0, len(ids), 200):
                chunk = ids[i : i + 200]
                q = _bool([{"term": {"current": True}}, {"term": {"deleted": False}}, {"terms": {"image_id": chunk}}])
                hits = self.es.search(
                    index=index, query=q, size=2 * len(chunk), sort=[{"v_from": "desc"}],
                    source={"includes": ["*"]},  # explicit includes: vectors come back too
                ).body["hits"]["hits"]
                for h in _dedup(hits, _image_id):
                    src = h["_source"]
                    rec = update.apply(ImageRecord.model_validate(src["record"]))
                    if rec is None:
                        continue
                    if any(f not in src for f in _SPACE_DIM):
                        raise ImgragError(
                            f"cannot update {rec.image_id}: Elasticsearch returned its row without vectors",
                            "nothing was changed; report this with the Elasticsearch version",
                        )
                    new_id = f"{rec.image_id}@{p}"
                    if h["_id"] != new_id:
                        actions.append(
                            {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": rec.image_id,
                             "doc": {"current": False, "v_to": p}}
                        )
                    src.update(
                        acl=rec.acl, tags=rec.tags, meta_kv=[f"{k}={v}" for k, v in sorted(rec.all_meta().items())],
                        fts=fts_source(rec), record=rec.model_dump(mode="json"), current=True, v_from=p,
                    )
                    src.pop("v_to", None)
                    actions.append(
                        {"_op_type": "index", "_index": index, "_id": new_id, "routing": rec.image_id, "_source": src}
                    )
                    changed += 1
            failures = self._bulk(actions, "update metadata")
            self._refresh()
            self._raise_failures(failures, changed, "update metadata")
            return changed

    @_guard("replace the image space")
    def replace_image_space(self, spaces: ModelSpaces, new_vectors: ImageSpaceFn) -> ImageSpaceReplaced:
        """A new generation for the new space (a mapping's vector width is fixed), filled with the
        current rows of the live one carrying new image and tile vectors, then made live by an
        atomic alias switch. The old generation stays untouched: ``rollback`` to one of its
        versions switches back."""
        with self._lock:
            info = self._require_generation()
            current = ModelSpaces.model_validate(info[1]["spaces"])
            check_same_base_spaces(current, spaces)
            p = self._next_version()
            name, _ = self._create_generation(spaces)
            enc = _vec_b64 if self.server_version >= (9, 3) else _vec
            out = ImageSpaceReplaced()
            try:
                failures: dict[str, str] = {}
                batch: list[dict[str, Any]] = []

                def flush() -> None:
                    if not batch:
                        return
                    records = [
                        ImageRecord.model_validate(h["_source"]["record"]).model_copy(
                            update={"deleted": bool(h["_source"].get("deleted"))}
                        )
                        for h in batch
                    ]
                    feats = np.stack([_source_vec(h["_source"]["feat_vec"]) for h in batch])
                    whole, tiles = new_vectors(feats, records)
                    actions = []
                    for i, h in enumerate(batch):
                        src = h["_source"]
                        if any(f not in src for f in _SPACE_DIM):
                            raise ImgragError(
                                f"cannot re-embed {src.get('image_id')}: Elasticsearch returned its row without vectors",
                                "nothing was changed; report this with the Elasticsearch version",
                            )
                        for t in src.get("tiles") or []:
                            v = tiles[i].get(t["label"])
                            if v is None:
                                out.tiles_placeholder += 1
                                v = whole[i]
                            else:
                                out.tiles_from_pixels += 1
                            t["vector"] = enc(v)
                        for b in src.get("blocks") or []:
                            b["vector"] = enc(_source_vec(b["vector"]))
                        src.update(
                            img_vec=enc(whole[i]), feat_vec=enc(_source_vec(src["feat_vec"])),
                            text_vec=enc(_source_vec(src["text_vec"])), current=True, v_from=p,
                        )
                        src.pop("v_to", None)
                        actions.append(
                            {"_op_type": "index", "_index": name, "_id": f"{src['image_id']}@{p}",
                             "routing": src["image_id"], "_source": src}
                        )
                    failures.update(self._bulk(actions, "re-embed"))
                    out.images += len(batch)
                    batch.clear()

                rows = self._scan(_bool([{"term": {"current": True}}]), {"includes": ["*"]}, index=info[0], page=200)
                for h in _dedup(rows, lambda h: h["_source"]["image_id"]):
                    batch.append(h)
                    if len(batch) >= 200:
                        flush()
                flush()
                self.es.indices.refresh(index=name)
                self._raise_failures(failures, out.images, "re-embed")
            except BaseException:
                self.es.indices.delete(index=name, ignore_unavailable=True)  # the old generation stays live
                raise
            self._switch_alias(name)
            return out

    @_guard("soft-delete images")
    def soft_delete(self, image_ids: list[str]) -> int:
        if not image_ids:
            return 0
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            p = self._next_version()
            rows = _dedup(self._current_rows(list(dict.fromkeys(image_ids)), [{"term": {"deleted": False}}]),
                          lambda r: r["_source"]["image_id"])
            actions = [
                {"_op_type": "update", "_index": info[0], "_id": r["_id"], "routing": r["_source"]["image_id"],
                 "doc": {"deleted": True, "deleted_in": p}}
                for r in rows
            ]
            failures = self._bulk(actions, "soft delete")
            self._refresh()
            self._raise_failures(failures, len(actions), "soft delete")
            return len(actions)

    @_guard("purge deleted images")
    def purge(self) -> int:
        with self._lock:
            info = self._generation()
            if info is None:
                return 0
            q = _bool([{"term": {"current": True}}, {"term": {"deleted": True}}])
            ids = sorted({h["_source"]["image_id"] for h in self._scan(q, ["image_id"])})
            if not ids:
                return 0
            actions: list[dict[str, Any]] = []
            for i in range(0, len(ids), 1000):
                # every row of these images, history included: purged means gone for good
                for h in self._scan({"terms": {"image_id": ids[i : i + 1000]}}, ["image_id"]):
                    actions.append(
                        {"_op_type": "delete", "_index": info[0], "_id": h["_id"], "routing": h["_source"]["image_id"]}
                    )
            failures = self._bulk(actions, "purge")
            self._refresh()
            self._raise_failures(failures, len(ids), "purge")
            return len(ids)

    # -- reads -------------------------------------------------------------------------------
    def _records(self, clauses: list[dict[str, Any]], limit: int, offset: int = 0) -> list[ImageRecord]:
        if limit <= 0 or self._live() is None:
            return []
        sort = [{"path": "asc"}, {"page": "asc"}, {"image_id": "asc"}, {"v_from": "desc"}]
        src = ["record"]
        out: list[dict[str, Any]] = []
        if offset + limit <= 10_000:
            hits = self._search(query=_bool(clauses), sort=sort, from_=offset, size=limit, source=src)["hits"]["hits"]
            out = hits
        else:  # deep paging: walk with search_after
            after: list[Any] | None = None
            skipped = 0
            while len(out) < limit:
                kw: dict[str, Any] = {"query": _bool(clauses), "sort": sort, "size": _PAGE, "source": src}
                if after is not None:
                    kw["search_after"] = after
                hits = self._search(**kw)["hits"]["hits"]
                if not hits:
                    break
                after = hits[-1]["sort"]
                take = hits[max(0, offset - skipped) :]
                skipped += len(hits)
                out.extend(take[: limit - len(out)])
        recs = [ImageRecord.model_validate(h["_source"]["record"]) for h in out]
        return _dedup(recs, lambda r: r.image_id)

    @_guard("look up images")
    def live_ids(self, image_ids: list[str]) -> set[str]:
        if not image_ids or self._live() is None:
            return set()
        out: set[str] = set()
        ids = list(dict.fromkeys(image_ids))
        for i in range(0, len(ids), 1000):
            q = _bool([*filter_clauses(Filters(), Principal(all_access=True)), {"terms": {"image_id": ids[i : i + 1000]}}])
            out.update(h["_source"]["image_id"] for h in self._scan(q, ["image_id"]))
        return out

    @_guard("look up a path")
    def live_ids_for_path(self, path: str) -> dict[str, str]:
        if self._live() is None:
            return {}
        q = _bool([*filter_clauses(Filters(), Principal(all_access=True)), {"term": {"path": path}}])
        return {h["_source"]["image_id"]: h["_source"]["doc_id"] for h in self._scan(q, ["image_id", "doc_id"])}

    @_guard("read an image")
    def get(self, image_id: str, principal: Principal) -> ImageRecord | None:
        return self.get_many([image_id], principal).get(image_id)

    @_guard("read images")
    def get_many(self, image_ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        if not image_ids:
            return {}
        ids = list(dict.fromkeys(image_ids))
        out: dict[str, ImageRecord] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for r in self._records(filter_clauses(Filters(image_ids=chunk), principal), 2 * len(chunk)):
                out.setdefault(r.image_id, r)
        return out

    @_guard("read an image's vectors")
    def get_vectors(self, image_id: str, principal: Principal) -> ImageVectors | None:
        if self._live() is None:
            return None
        hits = self._search(
            query=_bool(filter_clauses(Filters(image_ids=[image_id]), principal)),
            size=1,
            sort=[{"v_from": "desc"}],
            source={"includes": ["img_vec", "feat_vec", "text_vec"]},
        )["hits"]["hits"]
        if not hits:
            return None
        s = hits[0]["_source"]
        return ImageVectors(
            image=np.asarray(s["img_vec"], np.float32),
            feature=np.asarray(s["feat_vec"], np.float32),
            text=np.asarray(s["text_vec"], np.float32),
        )

    @_guard("list images")
    def list_images(
        self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100
    ) -> list[ImageRecord]:
        return self._records(filter_clauses(filters, principal), limit, offset)

    @_guard("count images")
    def count(self, principal: Principal, filters: Filters) -> int:
        if self._live() is None:
            return 0
        return int(self.es.count(index=self.alias, query=_bool(filter_clauses(filters, principal)))["count"])

    def _num_candidates(self, k: int) -> int:
        return min(10_000, max(self.settings.es_num_candidates, 2 * k))

    def _knn_clause(self, field: str, vector: list[float], k: int, filters: Filters, principal: Principal) -> dict[str, Any]:
        """A kNN clause with the ACL and filters inside (pre-filtering, never a post-filter)."""
        clause: dict[str, Any] = {
            "field": field,
            "query_vector": vector,
            "k": k,
            "num_candidates": self._num_candidates(k),
            "filter": _bool(filter_clauses(filters, principal)),
        }
        oversample = self.settings.es_rescore_oversample
        if oversample >= 1 and self.settings.es_index_options != "hnsw":
            # quantized graphs score approximately; re-rank the candidates on the raw float vectors
            clause["rescore_vector"] = {"oversample": oversample}
        return clause

    def _check_query_dim(self, vector: np.ndarray, field: str, spaces: dict[str, Any]) -> list[float]:
        v = _vec(vector)
        dim = spaces[_SPACE_DIM[field]]
        if len(v) != dim:
            raise ImgragError(
                f"the query vector has {len(v)} dimensions, the index's {field} field {dim}",
                "query with the models the index was built with (see `imgrag stats`)",
            )
        return v

    @_guard("run a vector search")
    def knn(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> list[RouteHit]:
        info = self._live()
        if info is None or k <= 0:
            return []
        name = _VEC_FIELD[field]
        qv = self._check_query_dim(vector, name, info[1]["spaces"])
        k = min(k, 10_000)
        res = self._search(knn=self._knn_clause(name, qv, k, filters, principal), size=k, source=False)
        hits = [RouteHit(image_id=_image_id(h), score=2.0 * float(h["_score"]) - 1.0) for h in res["hits"]["hits"]]
        return _dedup(hits, lambda h: h.image_id)

    @_guard("run a full-text search")
    def bm25(self, query: str, k: int, filters: Filters, principal: Principal) -> list[RouteHit]:
        if not tokens(query) or k <= 0 or self._live() is None:
            return []
        q = normalize(query)
        phrases = [{"match_phrase": {"fts": {"query": run}}} for run in dict.fromkeys(_CJK_RUN.findall(q))]
        res = self._search(
            query={
                "bool": {
                    "must": [{"match": {"fts": {"query": q}}}],
                    "should": phrases,
                    "filter": filter_clauses(filters, principal),
                }
            },
            size=min(k, 10_000),
            source=False,
        )
        hits = [RouteHit(image_id=_image_id(h), score=float(h["_score"])) for h in res["hits"]["hits"]]
        return _dedup(hits, lambda h: h.image_id)

    @_guard("run a region search")
    def knn_regions(
        self,
        kind: Literal["tile", "text"],
        vector: np.ndarray,
        k: int,
        filters: Filters,
        principal: Principal,
    ) -> list[RegionHit]:
        info = self._live()
        if info is None or k <= 0:
            return []
        path = "tiles" if kind == "tile" else "blocks"
        qv = self._check_query_dim(vector, "img_vec" if kind == "tile" else "text_vec", info[1]["spaces"])
        k = min(k, 10_000)
        # Nested kNN ranks pages by their best region; inner_hits names the regions. Inner hits
        # cost one small query per returned page, so ask for just enough pages to fill k regions
        # at ``es_region_hits`` regions per page.
        per_image = min(k, self.settings.es_region_hits)
        pages = -(-k // per_image)
        knn = self._knn_clause(f"{path}.vector", qv, pages, filters, principal)
        knn["inner_hits"] = {"size": per_image, "_source": {"excludes": [f"{path}.vector"]}}
        res = self._search(knn=knn, size=pages, source=False)
        out: list[RegionHit] = []
        for h in _dedup(res["hits"]["hits"], _image_id):
            for ih in h.get("inner_hits", {}).get(path, {}).get("hits", {}).get("hits", []):
                out.append(_region_hit(_image_id(h), path, ih["_source"], 2.0 * float(ih["_score"]) - 1.0))
        out.sort(key=lambda r: -r.score)
        return out[:k]

    @staticmethod
    def _regions_source(with_vectors: bool) -> dict[str, Any]:
        # Since 9.2 vectors leave _source by default, but any explicit `includes` brings them back.
        src: dict[str, Any] = {"includes": ["image_id", "tiles", "blocks"]}
        if not with_vectors:
            src["excludes"] = ["tiles.vector", "blocks.vector"]
        return src

    @_guard("read regions")
    def regions_of(self, image_ids: list[str]) -> list[RegionHit]:
        if not image_ids or self._live() is None:
            return []
        ids = list(dict.fromkeys(image_ids))
        out: list[RegionHit] = []
        for i in range(0, len(ids), 1000):
            q = _bool([*filter_clauses(Filters(), Principal(all_access=True)), {"terms": {"image_id": ids[i : i + 1000]}}])
            rows = _dedup(self._scan(q, self._regions_source(False), page=200), lambda h: h["_source"]["image_id"])
            for h in rows:
                src = h["_source"]
                for path in ("tiles", "blocks"):
                    out.extend(_region_hit(src["image_id"], path, r, 0.0) for r in src.get(path) or [])
        return out

    @_guard("read region vectors")
    def region_vectors(self, region_ids: list[str]) -> dict[str, np.ndarray]:
        """Vectors of the given regions (tile → joint space, text → text space), for re-ranking."""
        if not region_ids or self._live() is None:
            return {}
        wanted = set(region_ids)
        out: dict[str, np.ndarray] = {}
        q = {
            "bool": {
                "filter": [{"term": {"current": True}}],
                "should": [
                    {"nested": {"path": p, "query": {"terms": {f"{p}.region_id": sorted(wanted)}}}}
                    for p in ("tiles", "blocks")
                ],
                "minimum_should_match": 1,
            }
        }
        for h in self._scan(q, self._regions_source(True), page=100):
            for path in ("tiles", "blocks"):
                for r in h["_source"].get(path) or []:
                    if r["region_id"] in wanted and r.get("vector") is not None:
                        out.setdefault(r["region_id"], np.asarray(r["vector"], np.float32))
        return out

    @_guard("compute statistics")
    def stats(self, principal: Principal) -> Stats:
        versions = self.versions()
        spaces = self.spaces()
        version = versions[-1].version if versions else None
        if self._live() is None:
            return Stats(
                backend=self.backend, images=0, documents=0, deleted=0, regions=0,
                by_quality={}, by_format={}, version=version, spaces=spaces,
            )
        res = self._search(
            query=_bool(filter_clauses(Filters(), principal)),
            size=0,
            track_total_hits=True,
            aggs={
                "documents": {"cardinality": {"field": "doc_id", "precision_threshold": 40_000}},
                "quality": {"terms": {"field": "quality", "size": 50}},
                "format": {"terms": {"field": "format", "size": 200}},
                "tiles": {"nested": {"path": "tiles"}},
                "blocks": {"nested": {"path": "blocks"}},
            },
        )
        aggs = res["aggregations"]
        deleted = 0
        if principal.all_access:
            deleted = int(
                self.es.count(index=self.alias, query=_bool([{"term": {"current": True}}, {"term": {"deleted": True}}]))["count"]
            )
        return Stats(
            backend=self.backend,
            images=int(res["hits"]["total"]["value"]),
            documents=int(aggs["documents"]["value"]),
            deleted=deleted,
            regions=int(aggs["tiles"]["doc_count"]) + int(aggs["blocks"]["doc_count"]),
            by_quality={b["key"]: int(b["doc_count"]) for b in aggs["quality"]["buckets"]},
            by_format={b["key"]: int(b["doc_count"]) for b in aggs["format"]["buckets"]},
            version=version,
            spaces=spaces,
        )

    # -- versions ---------------------------------------------------------------------------
    def _log_entries(self) -> list[dict[str, Any]]:
        if not self.es.indices.exists(index=self.versions_index):
            return []
        out: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while True:
            kw: dict[str, Any] = {"size": _PAGE, "sort": [{"version": "asc"}], "query": {"match_all": {}}}
            if after is not None:
                kw["search_after"] = after
            hits = self.es.search(index=self.versions_index, **kw).body["hits"]["hits"]
            out.extend(h["_source"] for h in hits)
            if len(hits) < _PAGE:
                return out
            after = hits[-1]["sort"]

    @staticmethod
    def _as_version(entry: dict[str, Any]) -> Version:
        return Version(
            version=entry["version"], time=entry["time"], op=entry["op"],
            summary=entry.get("summary") or {}, spaces=entry.get("spaces"),
        )

    @_guard("read the version log")
    def versions(self) -> list[Version]:
        return [self._as_version(e) for e in self._log_entries()]

    @_guard("record a version")
    def commit(self, op: str, summary: dict[str, int | str]) -> Version:
        from elasticsearch import ConflictError

        with self._lock:
            info = self._generation()
            if info is None:
                raise ImgragError("nothing to commit: the index is empty", "index some images first")
            self._ensure_versions_index()
            number = self._next_version()
            version = Version(
                version=number, time=datetime.now(timezone.utc), op=op, summary=summary,
                spaces=ModelSpaces.model_validate(info[1]["spaces"]) if "spaces" in info[1] else None,
            )
            entry = {
                **version.model_dump(mode="json"),
                "generation": info[1].get("generation"),
                "index": info[0],
            }
            try:
                self.es.create(index=self.versions_index, id=str(number), document=entry, refresh=True)
            except ConflictError as e:
                raise ImgragError(
                    f"version {number} was recorded by another process at the same time",
                    "run one writer (index / delete / purge / rollback) at a time, then retry",
                ) from e
            return version

    @_guard("roll back")
    def rollback(self, version: int) -> Version:
        with self._lock:
            entries = {e["version"]: e for e in self._log_entries()}
            if version not in entries:
                known = ", ".join(str(v) for v in sorted(entries)) or "none"
                raise ImgragError(f"no version {version} (known: {known})", "see `imgrag versions`")
            target = entries[version]
            index = target["index"]
            if not self.es.indices.exists(index=index):
                raise ImgragError(
                    f"version {version} lives in index {index!r}, which no longer exists",
                    "roll back to a version of a generation that still exists (see `imgrag versions`)",
                )
            p = self._next_version()
            n = version
            actions: list[dict[str, Any]] = []
            revive: list[tuple[dict[str, Any], bool]] = []  # (row, deleted at n)
            # 1. rows written after n leave the live state
            for h in self._scan(_bool([{"term": {"current": True}}, {"range": {"v_from": {"gt": n}}}]), ["image_id", "v_from"], index=index):
                src = h["_source"]
                if src["v_from"] >= p:  # uncommitted: nobody can roll back to it, and its id is reused below
                    actions.append({"_op_type": "delete", "_index": index, "_id": h["_id"], "routing": src["image_id"]})
                else:
                    actions.append(
                        {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": src["image_id"],
                         "doc": {"current": False, "v_to": p}}
                    )
            # 2. rows live at n but superseded since come back
            q2 = _bool([{"range": {"v_from": {"lte": n}}}, {"range": {"v_to": {"gt": n}}}])
            for h in self._scan(q2, ["image_id", "deleted_in"], index=index):
                d_in = h["_source"].get("deleted_in")
                revive.append((h, d_in is not None and d_in <= n))
            # 3. rows live at n and still current but soft-deleted since: un-delete as a new row
            q3 = _bool([
                {"term": {"current": True}}, {"range": {"v_from": {"lte": n}}},
                {"term": {"deleted": True}}, {"range": {"deleted_in": {"gt": n}}},
            ])
            for h in self._scan(q3, ["image_id"], index=index):
                src = h["_source"]
                actions.append(
                    {"_op_type": "update", "_index": index, "_id": h["_id"], "routing": src["image_id"],
                     "doc": {"current": False, "v_to": p}}
                )
                revive.append((h, False))
            full_source = {"includes": ["*"]}  # explicit includes: vectors come back too
            for i in range(0, len(revive), 200):
                chunk = revive[i : i + 200]
                found = {
                    d["_id"]: d["_source"]
                    for d in self.es.search(
                        index=index, query={"ids": {"values": [h["_id"] for h, _ in chunk]}},
                        size=len(chunk), source=full_source,
                    ).body["hits"]["hits"]
                }
                for h, deleted in chunk:
                    src = found.get(h["_id"])
                    if src is None:
                        continue
                    if any(f not in src for f in _SPACE_DIM):
                        raise ImgragError(
                            f"cannot restore {src.get('image_id')}: Elasticsearch returned its row without vectors",
                            "nothing was changed; report this with the Elasticsearch version",
                        )
                    src.update(current=True, v_from=p, deleted=deleted)
                    src.pop("v_to", None)
                    if not deleted:
                        src.pop("deleted_in", None)
                    actions.append(
                        {"_op_type": "index", "_index": index, "_id": f"{src['image_id']}@{p}",
                         "routing": src["image_id"], "_source": src}
                    )
            failures = self._bulk(actions, "rollback")
            self.es.indices.refresh(index=index)
            self._raise_failures(failures, len(actions), f"rollback to {version}")
            self._switch_alias(index)  # other models: make that generation live, atomically
            return self.commit(f"rollback to {version}", {"restored": version})

    def close(self) -> None:
        try:
            self.es.close()
        except Exception:  # closing must never fail a command
            pass

    # -- maintenance (tests, benchmarks) ------------------------------------------------------
    @_guard("delete the indices")
    def drop(self) -> None:
        """Delete every index and the alias of this prefix (irreversible)."""
        names = [self._gen_name(n) for n in self._existing_generations()]
        if self.es.indices.exists(index=self.versions_index):
            names.append(self.versions_index)
        for name in names:
            self.es.indices.delete(index=name, ignore_unavailable=True)


def wait_until_ready(store: ElasticStore, timeout: float = 30.0) -> None:
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


def open_elastic(settings: Settings) -> ElasticStore:
    try:
        return ElasticStore(settings)
    except ImgragError:
        raise
    except Exception as e:
        raise translate(e, settings.es_url, "connect") from e
