"""Where an Elasticsearch fused search's time goes, request by request: each request the store sends
(page kNN per field, BM25, the region routes' ranking and naming requests, the record fetch) with
its round trip and the server's ``took``, beside the whole search's wall time, on an index that
``bench_backends.py --keep DIR`` built (es-int8 column). ``PAGE/REGION`` columns run the fused
two-stage search with those kNN candidates (``IMGRAG_ES_NUM_CANDIDATES`` /
``IMGRAG_ES_REGION_NUM_CANDIDATES``), interleaved query by query; ``PAGE/REGION/separate`` (or
``/msearch``) sets ``IMGRAG_ES_MSEARCH`` too: an ``_msearch`` round is one line (its round trip,
and the slowest of its searches' ``took``). A column ending in ``/idle`` searches as after a pause
of a few seconds: before each search the handle's short-lived caches (the live generation, the
Searcher's models and page count) are made stale, as a user typing a query after 5 s finds them
(bench_backends.py's fused row, whose searches come ~20 routes apart, does too). Every column also
counts the requests a search sends besides its searches (alias/mapping, ``_count``) and their time.
A column ending in ``/after``  runs, untimed, the one-stage fused search of the same query right
before each of its searches (as bench_backends.py's rotation puts heavy routes before the fused one).
A column ending in ``/user`` searches as bench_backends.py's filtered row does: a restricted user
(group g3) and the year 2023 (the ACL and date filters inside every request); suffixes combine
(``10000/800/msearch/user``). A column ending in ``/twice`` asks BM25's records as sessions 11-12
did: the same query again for the first hits, beside it in the ``_msearch`` (now one request fetches
them with the hits).

    IMGRAG_ES_HEAP=4g IMGRAG_ES_PORT=9271 IMGRAG_ES_DATA=DIR/100000-seed0-dims384x1280x384-r15/es-data \\
        bash tests/elasticsearch.sh start
    python benchmarks/bench_es_profile.py DIR 100000 http://127.0.0.1:9271 15 800/800 10000/800
    python benchmarks/bench_es_profile.py DIR 100000 http://127.0.0.1:9271 15 10000/800/separate 10000/800/msearch
    python benchmarks/bench_es_profile.py DIR 100000 http://127.0.0.1:9271 40 10000/800 10000/800/idle
    python benchmarks/bench_es_profile.py DIR 100000 http://127.0.0.1:9271 60 10000/800 10000/800/after

The queries are bench_backends.py's (seed 0, the first 3 warm up), near the kept page vectors."""

from __future__ import annotations

import json
import os
import random
import sys
import time
import types
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_backends as bb
from imgrag.indexing.config import Settings
from imgrag.indexing.search import Searcher, SearchRequest
from imgrag.indexing.stores.base import OPERATOR, Filters, ModelSpaces, Principal

keep, n, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
nq = int(sys.argv[4]) if len(sys.argv) > 4 else 15
columns = sys.argv[5:] or ["800/800", "10000/800"]
wd = keep / f"{n}-seed0-dims384x1280x384-r15"
corpus = bb.Corpus(n, (384, 1280, 384), 15, 0)
with np.load(wd / "page-vectors.npz") as z:  # the queries are drawn near pages, as bench_backends.py's
    corpus.img[:], corpus.txt[:] = z["img"], z["txt"]  # (before session 12 they were noise: no pages loaded)
queries = corpus.queries(max(nq, 20) + 3, 0)
prefix = json.loads((wd / "es-int8.json").read_text())["prefix"]
spaces = ModelSpaces(image="bench-joint", image_dim=384, feature="bench-feat", feature_dim=1280, text="bench-text", text_dim=384)
img_q, txt_q = {q.text: q.image for q in queries}, {q.text: q.text_vec for q in queries}

log: list[tuple[str, str, float, float]] = []  # column, request, round trip ms, took ms
meta: list[tuple[str, float]] = []  # requests that are not searches: (what, round trip ms)


def label(body: dict[str, Any]) -> str:
    knn = body.get("knn")
    if knn is not None:
        field = knn["field"].split(".")[0]
        if field in ("tiles", "blocks"):
            return f"regions {field}: {'naming (inner hits)' if 'inner_hits' in knn else 'ranking'}"
        return f"page kNN {field}"
    if "sort" in body:
        return "records"
    return "bm25 records" if body.get("source") == ["record"] else "bm25"


stores = {}
searchers = {}
idle: set[str] = set()
USER = Principal(name="bench-user", groups=["g3"])  # bench_backends.py's "fused, user+2023"
YEAR = Filters(date_from=date(2023, 1, 1), date_to=date(2023, 12, 31))
who: dict[str, tuple[Principal, Filters]] = {}  # column -> whom it searches as, with which filters


def _bm25_records_twice(self: Any, query: str, k: int, filters: Filters, principal: Principal, extra: Any = (),
                        records: int = 0) -> Any:
    """Sessions 11-12's BM25 with records: the query twice in one round (ids for k, records for the first)."""
    from imgrag.indexing.stores.base import ImageRecord, RouteHit
    from imgrag.indexing.stores.elastic.queries import bm25_query, dedup, hit_image_id
    from imgrag.indexing.text import tokens

    extra = [e for e in extra if tokens(e.text)]
    if not (tokens(query) or extra) or k <= 0 or self._live() is None:
        return [], {}
    body: dict[str, Any] = {"query": bm25_query(query, filters, principal, extra), "size": min(k, 10_000), "source": False}
    out: dict[str, Any] = {}
    if records <= 0:
        res = yield body
    else:
        res, got = yield [body, {**body, "size": min(records, 10_000), "source": ["record"]}]
        for h in got["hits"]["hits"]:
            rec = ImageRecord.model_validate(h["_source"]["record"])
            out.setdefault(rec.image_id, rec)
    hits = dedup([RouteHit(image_id=hit_image_id(h), score=float(h["_score"])) for h in res["hits"]["hits"]],
                 lambda h: h.image_id)
    return hits, out


def strip(col: str) -> str:
    parts = col.split("/")
    return "/".join(p for p in parts if p not in ("twice", "user", "idle", "after"))


after: dict[str, Searcher] = {}  # column -> a one-stage searcher run before each of its searches
for col in columns:
    page, region, msearch = bb.es_baseline(strip(col))
    if "/idle" in col:
        idle.add(col)
    who[col] = (USER, YEAR) if "/user" in col else (OPERATOR, Filters())
    st, close, _ = bb.open_backend("es-int8", wd, url, "int8_hnsw", prefix=prefix, keep=True)
    update: dict[str, Any] = {"es_num_candidates": page, "es_region_num_candidates": region}
    if msearch is not None:
        update["es_msearch"] = msearch
    st.settings = st.settings.model_copy(update=update)
    if "/twice" in col:
        st._bm25_records_steps = types.MethodType(_bm25_records_twice, st)  # type: ignore[method-assign]
    search, multi = st._search, st._multi

    def timed(_search: Any = search, _col: str = col, **body: Any) -> dict[str, Any]:
        t = time.perf_counter()
        res = _search(**body)
        log.append((_col, label(body), (time.perf_counter() - t) * 1000, float(res.get("took", float("nan")))))
        return res

    def timed_multi(bodies: list[dict[str, Any]], _multi: Any = multi, _col: str = col) -> list[dict[str, Any]]:
        """An _msearch round: logged as one request (its round trip; took: the slowest search's)."""
        if len(bodies) == 1:
            return _multi(bodies)  # a plain search (logged by timed)
        t = time.perf_counter()
        res = _multi(bodies)
        took = max(float(r.get("took", float("nan"))) for r in res)
        log.append((_col, "msearch: " + " + ".join(sorted(label(b) for b in bodies)), (time.perf_counter() - t) * 1000, took))
        return res

    st._search, st._multi = timed, timed_multi
    transport = st.es.transport

    def perform(method: str, target: str, _perform: Any = transport.perform_request, **kw: Any) -> Any:
        t = time.perf_counter()
        res = _perform(method, target, **kw)
        path = target.split("?")[0]
        if not path.endswith(("/_search", "/_msearch")):
            meta.append((f"{method} {path.rsplit('/', 1)[-1]}", (time.perf_counter() - t) * 1000))
        return res

    transport.perform_request = perform
    stores[col] = (st, close)
    searchers[col] = Searcher(bb._BenchRuntime(st, img_q, txt_q, spaces, Settings(search_cache=0, two_stage_pages=1)))
    if "/after" in col:
        after[col] = Searcher(bb._BenchRuntime(st, img_q, txt_q, spaces, Settings(search_cache=0, two_stage_pages=0)))

segs = stores[columns[0]][0].es.cat.segments(index=f"{prefix}-*", format="json")
# the server's CPU per search (its process's user + system time; the server must run on this machine)
_es_pid = next(iter(stores[columns[0]][0].es.nodes.info(node_id="_local", metric="process")["nodes"].values()))["process"]["id"]
_tick = os.sysconf("SC_CLK_TCK")


def es_cpu_ms() -> float:
    try:
        f = Path(f"/proc/{_es_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(f[11]) + int(f[12])) * 1000.0 / _tick



print(f"n={n} segments {len(segs)} · load {os.getloadavg()[0]:.1f} · {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
for col, sr in searchers.items():
    for q in queries[:3]:
        sr.search(SearchRequest(query=q.text, k=10, filters=who[col][1]), who[col][0])
log.clear()
wall: dict[str, list[float]] = defaultdict(list)
server_cpu: dict[str, list[float]] = defaultdict(list)
top: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)  # column -> each query's fused top 10, every field
metas: dict[str, list[tuple[int, float]]] = defaultdict(list)  # per search: requests, ms
for qi, q in enumerate(queries[3 : 3 + nq]):
    order = list(searchers.items())
    # each query's first search meets colder caches than the ones after it, and a search right after
    # a heavier one is slower (session 13: a rotation always put the first column after the last,
    # an unfiltered one, and the first of the filtered columns read slowest): a seeded shuffle a query
    random.Random(qi).shuffle(order)
    for col, sr in order:
        sr._cache.data.clear()
        if col in idle:  # as after a pause: what the next search re-reads is stale
            st = stores[col][0]
            st._live_cache = None
            sr._spaces = None
            if sr._pages is not None:
                sr._pages = (sr._pages[0] - 60.0, sr._pages[1])
        if col in after:
            n_log = len(log)
            after[col]._cache.data.clear()
            after[col].search(SearchRequest(query=q.text, k=10, filters=who[col][1]), who[col][0])
            del log[n_log:]  # its requests are not the column's
        meta.clear()
        c, t = es_cpu_ms(), time.perf_counter()
        got = sr.search(SearchRequest(query=q.text, k=10, filters=who[col][1]), who[col][0])
        top[col].append([h.model_dump() for h in got.hits])
        wall[col].append((time.perf_counter() - t) * 1000)
        server_cpu[col].append(es_cpu_ms() - c)
        metas[col].append((len(meta), sum(ms for _, ms in meta)))
print(f"fused two-stage search, {nq} queries, interleaved (a shuffled order a query); load now {os.getloadavg()[0]:.1f}")
print(f"{'':38s}" + "".join(f"{c:>26s}" for c in columns))
print(f"{'fused search p50 / p95 ms':38s}" + "".join(
    f"{np.percentile(wall[c], 50):>14.1f} / {np.percentile(wall[c], 95):7.1f}  " for c in columns))
print(f"{'  p95: 90 % bootstrap interval':38s}" + "".join(
    "{:>14.1f} – {:7.1f}  ".format(*bb.p95_interval([x / 1000.0 for x in wall[c]])) for c in columns))
print(f"{'server CPU ms a search, mean':38s}" + "".join(f"{np.mean(server_cpu[c]):>24.1f}  " for c in columns))
print(f"{'other requests a search: n / ms, mean':38s}" + "".join(
    f"{np.mean([m[0] for m in metas[c]]):>14.2f} / {np.mean([m[1] for m in metas[c]]):7.1f}  " for c in columns))
for c in columns[1:]:  # the same user's columns must answer alike
    ref = next(r for r in columns if who[r] == who[c])
    if ref != c:
        same = sum(a == b for a, b in zip(top[ref], top[c], strict=True))
        print(f"{'fused top 10 (every field) as ' + ref:38s} {c}: identical in {same} of {len(top[c])} queries")
names = sorted({r for _, r, _, _ in log})
print(f"{'request: round trip / took p50 ms (n)':38s}")
for name in names:
    cells = []
    for c in columns:
        rt = [x for col, r, x, _ in log if col == c and r == name]
        took = [y for col, r, _, y in log if col == c and r == name]
        cells.append(f"{np.percentile(rt, 50):>12.1f} / {np.percentile(took, 50):5.1f} ({len(rt)})" if rt else f"{'-':>26s}")
    print(f"  {name:36s}" + "".join(f"{x:>26s}" for x in cells))

for st, close in stores.values():
    close()
