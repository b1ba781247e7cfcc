"""``imgrag eval tune``: choose fusion weights from the golden sets instead of by hand.

Each query is recalled once (every route, the expensive part); every grid point then only
re-fuses and re-ranks those candidates (:meth:`indexing.search.Searcher.rank`), so a grid of a few
hundred settings over ~800 queries takes minutes. Queries are split in two halves by a hash of
their id: points are ordered by the *dev* half and the *test* half is reported beside it, so a
setting that only fits the queries it was chosen on shows up as a dev/test gap.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from imgrag.indexing.search import ALL_ROUTES, Recall, Searcher, SearchRequest
from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord, Principal

from .golden import GoldenItem
from .metrics import ranking_metrics
from .retrieval import SWEEP_FIELDS, parse_sweep, ranked_names

TUNE_FIELDS = {**SWEEP_FIELDS, "standout": "standout_z"}
DEFAULT_GRID = "image=0.25,0.5,1;bm25=2,3,4;text_vector=0.25,0.5,1;region=0.2,0.35,0.7;rerank=0.6,1,1.5"  # around the defaults
METRIC = "ndcg@10"


def half_of(item_id: str) -> str:
    """'dev' or 'test', stable for an id."""
    return "dev" if int(hashlib.sha256(f"imgrag-tune-v1:{item_id}".encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def parse_grid(spec: str) -> dict[str, list[float]]:
    return parse_sweep(spec, TUNE_FIELDS, "--grid") or {}


class TunePoint(BaseModel):
    setting: dict[str, float]
    current: bool = False
    dev: dict[str, float] = Field(default_factory=dict, description="set → nDCG@10 on its dev half")
    test: dict[str, float] = Field(default_factory=dict, description="set → nDCG@10 on its test half")
    dev_mean: float = 0.0
    test_mean: float = 0.0


class TuneResult(BaseModel):
    sets: list[str]
    queries: dict[str, dict[str, int]]
    grid: dict[str, list[float]]
    points: list[TunePoint]
    best: TunePoint
    current: TunePoint
    seconds: float


class _RecordCache:
    """``get_many`` with memory: every grid point asks for mostly the same pages."""

    def __init__(self, get_many: Callable[[list[str], Principal], dict[str, ImageRecord]]) -> None:
        self._get_many = get_many
        self.data: dict[str, ImageRecord | None] = {}

    def __call__(self, ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        missing = [i for i in ids if i not in self.data]
        if missing:
            got = self._get_many(missing, principal)
            for i in missing:
                self.data[i] = got.get(i)
        return {i: r for i in ids if (r := self.data[i]) is not None}


class _Prepared(BaseModel):
    model_config = {"arbitrary_types_allowed": True}

    name: str
    rt: Any
    items: list[GoldenItem]
    corpus: Path | None
    recalls: dict[str, Recall]
    cache: Any


def recall_set(name: str, rt: Any, items: Sequence[GoldenItem], corpus: Path | None, k: int, *,
               restrict: bool = False, progress: Callable[[str], None] | None = None) -> _Prepared:
    from .retrieval import _SharedCacheSearcher, prime_cache
    from imgrag.indexing.search import _LRU

    items = [it for it in items if it.qrels()]
    cache = _LRU(size=1_000_000)
    prime_cache(rt, cache, [it.query for it in items])
    searcher = _SharedCacheSearcher(rt, cache)
    filters = Filters(path_prefix=str(corpus.resolve())) if (restrict and corpus is not None) else Filters()
    recalls: dict[str, Recall] = {}
    for n, it in enumerate(items):
        req = SearchRequest(query=it.query, k=k, routes=list(ALL_ROUTES), rerank=True, filters=filters)
        recalls[it.id] = searcher.recall(req, OPERATOR)
        if progress and (n + 1) % 200 == 0:
            progress(f"tune {name}: recalled {n + 1}/{len(items)}")
    return _Prepared(name=name, rt=rt, items=items, corpus=corpus, recalls=recalls, cache=_RecordCache(rt.store.get_many))


def score_point(p: _Prepared, setting: dict[str, float], k: int) -> tuple[float, float]:
    """nDCG@10 of the dev and test halves under one setting."""
    original = p.rt.settings
    update = {TUNE_FIELDS[key]: (int(v) if TUNE_FIELDS[key] == "rrf_k" else float(v)) for key, v in setting.items()}
    p.rt.settings = original.model_copy(update=update)
    try:
        searcher = Searcher(p.rt)
        runs: dict[str, dict[str, list[str]]] = {"dev": {}, "test": {}}
        qrels: dict[str, dict[str, dict[str, int]]] = {"dev": {}, "test": {}}
        for it in p.items:
            req = SearchRequest(query=it.query, k=k, routes=list(ALL_ROUTES), rerank=True)
            res = searcher.rank(req, OPERATOR, p.recalls[it.id], get_many=p.cache)
            h = half_of(it.id)
            runs[h][it.id] = ranked_names(res.hits, it, p.corpus)
            qrels[h][it.id] = it.qrels()
    finally:
        p.rt.settings = original
    dev = ranking_metrics(qrels["dev"], runs["dev"], [METRIC])[0][METRIC]
    test = ranking_metrics(qrels["test"], runs["test"], [METRIC])[0][METRIC]
    return dev, test


def tune(prepared: Sequence[_Prepared], grid: dict[str, list[float]], k: int = 10,
         progress: Callable[[str], None] | None = None) -> TuneResult:
    t0 = time.perf_counter()
    base = prepared[0].rt.settings
    current = {key: float(getattr(base, TUNE_FIELDS[key])) for key in grid}
    # The current setting is always a point, so the table shows what a change would gain.
    full = {key: sorted(set(vals) | {current[key]}) for key, vals in grid.items()}
    keys = list(full)
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(full[key] for key in keys))]
    points: list[TunePoint] = []
    for n, setting in enumerate(combos):
        pt = TunePoint(setting=setting, current=setting == current)
        for p in prepared:
            d, t = score_point(p, setting, k)
            pt.dev[p.name], pt.test[p.name] = round(d, 4), round(t, 4)
        pt.dev_mean = round(sum(pt.dev.values()) / len(pt.dev), 4)
        pt.test_mean = round(sum(pt.test.values()) / len(pt.test), 4)
        points.append(pt)
        if progress and (n + 1) % 25 == 0:
            progress(f"tune: {n + 1}/{len(combos)} settings")
    points.sort(key=lambda x: (-x.dev_mean, -x.test_mean))
    cur = next(x for x in points if x.current)
    return TuneResult(
        sets=[p.name for p in prepared],
        queries={p.name: {h: sum(1 for it in p.items if half_of(it.id) == h) for h in ("dev", "test")} for p in prepared},
        grid=full,
        points=points,
        best=points[0],
        current=cur,
        seconds=round(time.perf_counter() - t0, 1),
    )
