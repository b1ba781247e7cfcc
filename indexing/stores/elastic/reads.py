"""Reads: records, vectors and regions by id, listing, counting, statistics and the search routes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from ...errors import ImgragError
from ...text import tokens
from ..base import (
    FEATURE_STATS,
    Filters,
    ImageRecord,
    ImageVectors,
    Principal,
    Read,
    RegionHit,
    RouteHit,
    Stats,
    VectorField,
    WeightedTerms,
    cut_steps,
    page_order,
    region_order,
    tie_margin,
)
from .client import PAGE, Connection, guard
from .mapping import SPACE_DIM, VEC_FIELD, vec_list
from .queries import (
    MAX_CANDIDATES,
    bm25_query,
    bool_filter,
    dedup,
    filter_clauses,
    hit_image_id,
    knn_clause,
    page_hit,
    region_hit,
)

T = TypeVar("T")
# A read as steps: it yields the body of each search it needs (the client's keyword arguments), or a
# list of bodies to run side by side, and is sent the answer (the list of answers); what it returns
# is the read's result. ``_run`` runs one read (a list in one _msearch); ``read_many`` runs several
# side by side, one _msearch per round.
Steps = Generator[Any, Any, T]


def ranked_steps(
    k: int, body: Callable[[int], dict[str, Any]], hits: Callable[[Any], list[RouteHit]], extra: int = 1,
) -> Steps[list[RouteHit]]:
    """A page route's ``k`` best hits in :func:`~indexing.stores.base.page_order` (a shard's order
    among exactly tied scores follows its segments) with the cut-off as
    :func:`~indexing.stores.base.top_k` makes it (:func:`~indexing.stores.base.cut_steps`), each
    fetch a search (``body(n)``: the search for ``n``; ``hits(answer)``: its hits)."""
    steps = cut_steps(k, page_order, extra, 10_000)
    try:
        n = next(steps)
        while True:
            n = steps.send(hits((yield body(n))))
    except StopIteration as done:
        return done.value


# the client's keyword arguments that are spelled otherwise in a request body
_BODY_KEYS = {"source": "_source", "from_": "from"}


class Reads(Connection):
    """Every read goes through the alias, with the principal's ACL and the filters inside the query."""

    def _run(self, steps: Steps[T]) -> T:
        """One read's searches, one request a round."""
        try:
            body = next(steps)
            while True:
                body = steps.send(self._multi(body) if isinstance(body, list) else self._search(**body))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _multi(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Searches in one ``_msearch`` (one alone: a plain search). An answer that failed, or that
        part of the shards gave, is asked again alone (retried, or raised as a search raises it)."""
        if len(bodies) == 1:
            return [self._search(**bodies[0])]
        searches: list[dict[str, Any]] = []
        for body in bodies:
            searches += [{"index": self.alias}, {_BODY_KEYS.get(k, k): v for k, v in body.items()}]
        answers = self.es.msearch(searches=searches).body["responses"]
        return [self._search(**body) if "error" in a or (a.get("_shards") or {}).get("failed") else a
                for body, a in zip(bodies, answers, strict=True)]

    @property
    def batches_reads(self) -> bool:
        """Whether :meth:`read_many` saves round trips (``IMGRAG_ES_MSEARCH``)."""
        return self.settings.es_msearch

    @guard("run a search")
    def read_many(self, reads: Sequence[Read]) -> list[Any]:
        """Several reads at once, each what its method returns: their searches go in one
        ``_msearch`` per round (a region route's ranking, then its naming: two rounds), so a fused
        search's independent requests share one round trip. An answer that failed, or that part of
        the shards gave, is asked again alone (retried, or raised as the method would raise it)."""
        steps: list[Steps[Any]] = [getattr(self, f"_{r.method}_steps")(*r.args) for r in reads]
        out: list[Any] = [None] * len(steps)
        pending: dict[int, Any] = {}  # read → the body (or bodies) it waits on

        def advance(i: int, answer: Any) -> None:
            try:
                pending[i] = next(steps[i]) if answer is None else steps[i].send(answer)
            except StopIteration as done:
                out[i] = done.value
                pending.pop(i, None)

        for i in range(len(steps)):
            advance(i, None)
        while pending:
            bodies: list[dict[str, Any]] = []
            spans: dict[int, tuple[int, int]] = {}
            for i, b in pending.items():
                spans[i] = (len(bodies), len(bodies) + (len(b) if isinstance(b, list) else 1))
                bodies += b if isinstance(b, list) else [b]
            answers = self._multi(bodies)
            for i, (lo, hi) in spans.items():
                advance(i, answers[lo:hi] if isinstance(pending[i], list) else answers[lo])
        return out

    def _records(self, clauses: list[dict[str, Any]], limit: int, offset: int = 0) -> list[ImageRecord]:
        return self._run(self._records_steps(clauses, limit, offset))

    def _records_steps(self, clauses: list[dict[str, Any]], limit: int, offset: int = 0) -> Steps[list[ImageRecord]]:
        if limit <= 0 or self._live() is None:
            return []
        sort = [{"path": "asc"}, {"page": "asc"}, {"image_id": "asc"}, {"v_from": "desc"}]
        src = ["record"]
        out: list[dict[str, Any]] = []
        if offset + limit <= 10_000:
            hits = (yield {"query": bool_filter(clauses), "sort": sort, "from_": offset, "size": limit, "source": src})["hits"]["hits"]
            out = hits
        else:  # deep paging: walk with search_after
            after: list[Any] | None = None
            skipped = 0
            while len(out) < limit:
                kw: dict[str, Any] = {"query": bool_filter(clauses), "sort": sort, "size": PAGE, "source": src}
                if after is not None:
                    kw["search_after"] = after
                hits = (yield kw)["hits"]["hits"]
                if not hits:
                    break
                after = hits[-1]["sort"]
                take = hits[max(0, offset - skipped) :]
                skipped += len(hits)
                out.extend(take[: limit - len(out)])
        recs = [ImageRecord.model_validate(h["_source"]["record"]) for h in out]
        return dedup(recs, lambda r: r.image_id)

    @guard("look up images")
    def live_ids(self, image_ids: list[str]) -> set[str]:
        if not image_ids or self._live() is None:
            return set()
        out: set[str] = set()
        ids = list(dict.fromkeys(image_ids))
        for i in range(0, len(ids), 1000):
            q = bool_filter([*filter_clauses(Filters(), Principal(all_access=True)), {"terms": {"image_id": ids[i : i + 1000]}}])
            out.update(h["_source"]["image_id"] for h in self._scan(q, ["image_id"]))
        return out

    @guard("look up a path")
    def live_ids_for_path(self, path: str) -> dict[str, str]:
        if self._live() is None:
            return {}
        q = bool_filter([*filter_clauses(Filters(), Principal(all_access=True)), {"term": {"path": path}}])
        return {h["_source"]["image_id"]: h["_source"]["doc_id"] for h in self._scan(q, ["image_id", "doc_id"])}

    @guard("look up files")
    def live_pages(self, paths: list[str], doc_ids: list[str]) -> list[tuple[str, str, str]]:
        """(image_id, doc_id, path) of the live records from ``paths`` or of ``doc_ids``, in one scan
        per 1000 of each: an index run's lookups for a run of files (``Indexer._look_ahead``)."""
        if not (paths or doc_ids) or self._live() is None:
            return []
        out: list[tuple[str, str, str]] = []
        for i in range(0, max(len(paths), len(doc_ids)), 1000):
            either = [{"terms": {f: v[i : i + 1000]}} for f, v in (("path", paths), ("doc_id", doc_ids)) if v[i : i + 1000]]
            q = bool_filter([*filter_clauses(Filters(), Principal(all_access=True)), {"bool": {"should": either, "minimum_should_match": 1}}])
            out += [(h["_source"]["image_id"], h["_source"]["doc_id"], h["_source"]["path"]) for h in self._scan(q, ["image_id", "doc_id", "path"])]
        return out

    @guard("read an image")
    def get(self, image_id: str, principal: Principal) -> ImageRecord | None:
        return self.get_many([image_id], principal).get(image_id)

    @guard("read images")
    def get_many(self, image_ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        return self._run(self._get_many_steps(image_ids, principal))

    def _get_many_steps(self, image_ids: list[str], principal: Principal) -> Steps[dict[str, ImageRecord]]:
        if not image_ids:
            return {}
        ids = list(dict.fromkeys(image_ids))
        out: dict[str, ImageRecord] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for r in (yield from self._records_steps(filter_clauses(Filters(image_ids=chunk), principal), 2 * len(chunk))):
                out.setdefault(r.image_id, r)
        return out

    @guard("read an image's vectors")
    def get_vectors(self, image_id: str, principal: Principal) -> ImageVectors | None:
        if self._live() is None:
            return None
        hits = self._search(
            query=bool_filter(filter_clauses(Filters(image_ids=[image_id]), principal)),
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

    @guard("list images")
    def list_images(
        self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100
    ) -> list[ImageRecord]:
        return self._records(filter_clauses(filters, principal), limit, offset)

    def data_version(self) -> str | None:
        """None: any client may write to the cluster, and knowing whether one did costs a request
        per search (index stats), which would eat what a cached result saves; results are not
        cached (the cluster caches its own shard requests)."""
        return None

    @guard("count images")
    def count(self, principal: Principal, filters: Filters) -> int:
        if self._live() is None:
            return 0
        return int(self._complete(self.es.count, index=self.alias, query=bool_filter(filter_clauses(filters, principal)))["count"])

    def _check_query_dim(self, vector: np.ndarray, field: str, spaces: dict[str, Any]) -> list[float]:
        v = vec_list(vector)
        dim = spaces[SPACE_DIM[field]]
        if len(v) != dim:
            raise ImgragError(
                f"the query vector has {len(v)} dimensions, the index's {field} field {dim}",
                "query with the models the index was built with (see `imgrag stats`)",
            )
        return v

    @guard("run a vector search")
    def knn(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> list[RouteHit]:
        return self._run(self._knn_steps(field, vector, k, filters, principal))

    def _knn_steps(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> Steps[list[RouteHit]]:
        return (yield from self._knn_stats_steps(field, vector, k, filters, principal, False))[0]

    @guard("run a vector search")
    def knn_stats(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> tuple[list[RouteHit], dict[str, dict[str, float | list[int]]]]:
        """The hits' statistics from the same search: only ``record.feature_stats`` of each hit's
        source (source filtering; the record is not indexed, but its source is kept whole)."""
        return self._run(self._knn_stats_steps(field, vector, k, filters, principal))

    def _knn_stats_steps(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal, with_stats: bool = True
    ) -> Steps[tuple[list[RouteHit], dict[str, dict[str, float | list[int]]]]]:
        info = self._live()
        if info is None or k <= 0:
            return [], {}
        name = VEC_FIELD[field]
        qv = self._check_query_dim(vector, name, info[1]["spaces"])
        k = min(k, 10_000)
        source: Any = ["record.feature_stats"] if with_stats else False
        raw: dict[str, Any] = {}

        def hits_of(res: dict[str, Any]) -> list[RouteHit]:
            out = []
            for h in res["hits"]["hits"]:
                i = hit_image_id(h)
                if with_stats and i not in raw:
                    raw[i] = ((h.get("_source") or {}).get("record") or {}).get("feature_stats") or {}
                out.append(RouteHit(image_id=i, score=2.0 * float(h["_score"]) - 1.0))
            return dedup(out, lambda h: h.image_id)

        hits = yield from ranked_steps(
            k, lambda n: {"knn": knn_clause(self.settings, name, qv, n, filters, principal), "size": n, "source": source}, hits_of,
        )
        stats: dict[str, dict[str, float | list[int]]] = {}
        for h in hits if with_stats else ():
            try:
                stats[h.image_id] = FEATURE_STATS.validate_python(raw.get(h.image_id) or {})
            except ValueError:  # counts as none, as the LanceDB store's column does
                stats[h.image_id] = {}
        return hits, stats

    @guard("run a full-text search")
    def bm25(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = ()
    ) -> list[RouteHit]:
        return self._run(self._bm25_steps(query, k, filters, principal, extra))

    @guard("run a full-text search")
    def bm25_records(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = (),
        records: int = 0,
    ) -> tuple[list[RouteHit], dict[str, ImageRecord]]:
        """:meth:`bm25`, and the records of its first ``records`` hits from the same request."""
        return self._run(self._bm25_records_steps(query, k, filters, principal, extra, records))

    def _bm25_steps(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = ()
    ) -> Steps[list[RouteHit]]:
        return (yield from self._bm25_records_steps(query, k, filters, principal, extra))[0]

    def _bm25_records_steps(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = (),
        records: int = 0,
    ) -> Steps[tuple[list[RouteHit], dict[str, ImageRecord]]]:
        extra = [e for e in extra if tokens(e.text)]
        if not (tokens(query) or extra) or k <= 0 or self._live() is None:
            return [], {}
        body: dict[str, Any] = {"query": bm25_query(query, filters, principal, extra), "source": False}
        out: dict[str, ImageRecord] = {}
        # the records of the first hits ride along in the same request: every hit's record is
        # fetched, the first ones (in the hits' order, ties by page id) kept. Sessions 11-12 asked
        # the same query again for just those hits, both in one _msearch: two searches in flight
        # beside the page kNNs, answered when the slower is done, for the same server CPU as one;
        # at 100k pages a filtered search (its page kNNs exact over few pages) was slower for it
        # (docs/performance.md). The record of every hit of the last fetch is kept by page.
        sources: dict[str, Any] = {}

        def route_hits(res: dict[str, Any]) -> list[RouteHit]:
            if records > 0:
                sources.clear()
                for h in res["hits"]["hits"]:
                    sources.setdefault(hit_image_id(h), h["_source"]["record"])
            return dedup([RouteHit(image_id=hit_image_id(h), score=float(h["_score"])) for h in res["hits"]["hits"]],
                         lambda h: h.image_id)

        hits = yield from ranked_steps(
            min(k, 10_000), lambda n: {**body, "size": n, **({"source": ["record"]} if records > 0 else {})}, route_hits, tie_margin(k),
        )
        for h in hits[: min(records, 10_000)]:
            rec = ImageRecord.model_validate(sources[h.image_id])
            out.setdefault(rec.image_id, rec)
        return hits, out

    @guard("run a region search")
    def knn_regions(
        self,
        kind: Literal["tile", "text"],
        vector: np.ndarray,
        k: int,
        filters: Filters,
        principal: Principal,
        image_ids: Sequence[str] | None = None,
    ) -> list[RegionHit]:
        return self._run(self._knn_regions_steps(kind, vector, k, filters, principal, image_ids))

    def _knn_regions_steps(
        self,
        kind: Literal["tile", "text"],
        vector: np.ndarray,
        k: int,
        filters: Filters,
        principal: Principal,
        image_ids: Sequence[str] | None = None,
    ) -> Steps[list[RegionHit]]:
        info = self._live()
        if info is None or k <= 0:
            return []
        path = "tiles" if kind == "tile" else "blocks"
        qv = self._check_query_dim(vector, "img_vec" if kind == "tile" else "text_vec", info[1]["spaces"])
        k = min(k, 10_000)
        # Nested kNN ranks pages by their best region; inner_hits names the regions. Inner hits
        # cost a sub-query per returned page (~80 % of the route at 10k pages, docs/performance.md),
        # so ask for just enough pages to fill k regions at ``es_region_hits`` regions per page,
        # and name the regions of the best ``es_region_named_pages`` only.
        per_image = min(k, self.settings.es_region_hits)
        pages = -(-k // per_image)
        if image_ids is not None:
            # Two-stage: the candidates' regions only. Lucene scores every vector that passes the
            # filter exactly, instead of walking the graph, when there are at most num_candidates
            # of them: ask for the most (a few hundred pages' regions fit; above, the filtered graph
            # search falls back to the exact one once it has visited that many).
            filters = filters.restricted_to(image_ids)
        exact = MAX_CANDIDATES if image_ids is not None else self.settings.es_region_num_candidates
        named = min(pages, self.settings.es_region_named_pages) or pages
        inner = {"size": per_image, "_source": {"excludes": [f"{path}.vector"]}}

        def ranking(n: int, named: bool) -> dict[str, Any]:
            knn = knn_clause(self.settings, f"{path}.vector", qv, n, filters, principal, exact)
            if named:
                knn["inner_hits"] = inner
            return {"knn": knn, "size": n, "source": False}

        last: list[dict[str, Any]] = []

        def page_hits(res: dict[str, Any]) -> list[RouteHit]:
            last[:] = [res]
            return dedup([RouteHit(image_id=hit_image_id(h), score=2.0 * float(h["_score"]) - 1.0) for h in res["hits"]["hits"]],
                         lambda h: h.image_id)

        # The pages are cut as a page route's hits are (ranked_steps): a tie at the cut-off falls
        # by page id, not by the shards' order.
        if named < pages:
            # The pages' order and best scores without inner hits; then the best pages' regions by
            # name: a kNN over just their regions (exact: a few pages), with inner hits.
            best = yield from ranked_steps(pages, lambda n: ranking(n, False), page_hits)
            ranked = [(h.image_id, h.score) for h in best]
            top = [i for i, _ in ranked[:named]]
            knn = knn_clause(self.settings, f"{path}.vector", qv, named, filters.restricted_to(top), principal, MAX_CANDIDATES)
            knn["inner_hits"] = inner
            res = yield {"knn": knn, "size": named, "source": False}
            keep = set(top)
        else:
            best = yield from ranked_steps(pages, lambda n: ranking(n, True), page_hits)
            ranked, top, res = [], [], last[0]
            keep = {h.image_id for h in best}
        out: list[RegionHit] = []
        for h in dedup(res["hits"]["hits"], hit_image_id):
            if hit_image_id(h) not in keep:  # a page past the cut-off, fetched to see where a tie ends
                continue
            for ih in h.get("inner_hits", {}).get(path, {}).get("hits", {}).get("hits", []):
                out.append(region_hit(hit_image_id(h), path, ih["_source"], 2.0 * float(ih["_score"]) - 1.0))
        # the other ranked pages: their best region's score, the region unnamed
        seen = set(top) | {r.image_id for r in out}
        out += [page_hit(i, kind, score) for i, score in ranked if i not in seen]
        out.sort(key=region_order)
        return out[:k]

    @staticmethod
    def _regions_source(with_vectors: bool) -> dict[str, Any]:
        # Since 9.2 vectors leave _source by default, but any explicit `includes` brings them back.
        src: dict[str, Any] = {"includes": ["image_id", "tiles", "blocks"]}
        if not with_vectors:
            src["excludes"] = ["tiles.vector", "blocks.vector"]
        return src

    @guard("read regions")
    def regions_of(self, image_ids: list[str]) -> list[RegionHit]:
        if not image_ids or self._live() is None:
            return []
        ids = list(dict.fromkeys(image_ids))
        out: list[RegionHit] = []
        for i in range(0, len(ids), 1000):
            q = bool_filter([*filter_clauses(Filters(), Principal(all_access=True)), {"terms": {"image_id": ids[i : i + 1000]}}])
            rows = dedup(self._scan(q, self._regions_source(False), page=200), lambda h: h["_source"]["image_id"])
            for h in rows:
                src = h["_source"]
                for path in ("tiles", "blocks"):
                    out.extend(region_hit(src["image_id"], path, r, 0.0) for r in src.get(path) or [])
        return out

    @guard("read region vectors")
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

    @guard("compute statistics")
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
            query=bool_filter(filter_clauses(Filters(), principal)),
            size=0,
            track_total_hits=True,
            aggs={
                "documents": {"cardinality": {"field": "doc_id", "precision_threshold": 40_000}},
                "quality": {"terms": {"field": "quality", "size": 50}},
                "format": {"terms": {"field": "format", "size": 200}},
                "years": {"date_histogram": {"field": "dates", "calendar_interval": "year", "format": "yyyy", "min_doc_count": 1}},
                "pii_pages": {"filter": {"term": {"has_pii": True}}},
                "pii_kinds": {"terms": {"field": "pii_kinds", "size": 50}},
                "tiles": {"nested": {"path": "tiles"}},
                "blocks": {"nested": {"path": "blocks"}},
            },
        )
        aggs = res["aggregations"]
        deleted = 0
        if principal.all_access:
            deleted = int(
                self._complete(self.es.count, index=self.alias, query=bool_filter([{"term": {"current": True}}, {"term": {"deleted": True}}]))["count"]
            )
        return Stats(
            backend=self.backend,
            images=int(res["hits"]["total"]["value"]),
            documents=int(aggs["documents"]["value"]),
            deleted=deleted,
            regions=int(aggs["tiles"]["doc_count"]) + int(aggs["blocks"]["doc_count"]),
            by_quality={b["key"]: int(b["doc_count"]) for b in aggs["quality"]["buckets"]},
            by_format={b["key"]: int(b["doc_count"]) for b in aggs["format"]["buckets"]},
            by_year={b["key_as_string"]: int(b["doc_count"]) for b in aggs["years"]["buckets"]},
            pii_pages=int(aggs["pii_pages"]["doc_count"]),
            pii_by_kind={b["key"]: int(b["doc_count"]) for b in aggs["pii_kinds"]["buckets"]},
            version=version,
            spaces=spaces,
        )
