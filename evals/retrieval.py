"""Retrieval eval: every route configuration on the same golden set, in one run.

Why one run: a route's gain only means something against the hybrid measured on the same index,
queries and machine load, so each configuration's metrics are also reported as a ratio of the
hybrid's. Configurations use :class:`indexing.search.SearchRequest`'s ``routes`` override and
``rerank`` flag; each gets a fresh :class:`~indexing.search.Searcher` so no configuration reuses
another's cached query embeddings (their latency would look free).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from imgrag.indexing.search import _LRU, ALL_ROUTES, Hit, Route, Searcher, SearchRequest, translated_image_query
from imgrag.indexing.stores.base import OPERATOR, Filters

from .golden import GoldenItem
from .metrics import RANKING_METRICS, latency_summary, ranking_metrics


class RouteConfig(BaseModel):
    name: str
    label: str
    routes: list[Route]
    rerank: bool
    follow_links: bool = True


CONFIGS: tuple[RouteConfig, ...] = (
    RouteConfig(name="image", label="image vector only", routes=["image"], rerank=False),
    RouteConfig(name="bm25", label="BM25 only", routes=["bm25"], rerank=False),
    RouteConfig(name="text_vector", label="OCR-text vector only", routes=["text_vector"], rerank=False),
    RouteConfig(name="region_text", label="text-region vector only", routes=["region_text"], rerank=False),
    RouteConfig(name="region_tile", label="image-tile vector only", routes=["region_tile"], rerank=False),
    RouteConfig(name="hybrid", label="hybrid RRF (no re-rank)", routes=list(ALL_ROUTES), rerank=False),
    RouteConfig(name="hybrid_rerank", label="hybrid + region re-rank", routes=list(ALL_ROUTES), rerank=True),
)
# Joint-retrieval sets (golden items with a ``link`` field) are also scored with links not followed.
NO_LINKS = RouteConfig(name="hybrid_rerank_nolinks", label="hybrid + re-rank, links not followed", routes=list(ALL_ROUTES),
                       rerank=True, follow_links=False)
BASELINE = "hybrid"
DEFAULT_RUN = "hybrid_rerank"

# --sweep keys → Settings fields
SWEEP_FIELDS = {
    "image": "weight_image",
    "bm25": "weight_bm25",
    "text_vector": "weight_text_vector",
    "region": "weight_region",
    "rerank": "region_rerank",
    "rrf_k": "rrf_k",
}


class ConfigResult(BaseModel):
    name: str
    label: str
    metrics: dict[str, float]
    ratio_vs_hybrid: dict[str, float | None] = Field(default_factory=dict)
    latency: dict[str, float] = Field(description="p50/p95 ms over the latency sample, cold query-embedding cache")
    stages: dict[str, dict[str, float]] = Field(default_factory=dict, description="per search stage p50/p95 (ms)")
    by_kind: dict[str, dict[str, float]] = Field(default_factory=dict, description="kind → nDCG@10, Recall@10, n")
    by_lang: dict[str, dict[str, float]] = Field(default_factory=dict)
    by_split: dict[str, dict[str, float]] = Field(default_factory=dict, description="dev / heldout halves, where items have a split")
    by_kind_lang: dict[str, dict[str, float]] = Field(default_factory=dict, description="'kind/lang' → nDCG@10, Recall@5, Recall@10, n")
    errors: int = 0


class SweepPoint(BaseModel):
    setting: str
    value: float
    current: bool = False
    queries: int = 0
    metrics: dict[str, float]


class RetrievalResult(BaseModel):
    set: str
    golden: str
    backend: str
    k: int
    queries: int
    pairs: int
    configs: dict[str, ConfigResult]
    sweep: list[SweepPoint] = Field(default_factory=list)
    weights: dict[str, float]
    index: dict[str, Any] = Field(default_factory=dict)
    seconds: float


def hit_name(path: str, page: int, n_pages: int, corpus: Path | None) -> str:
    """How golden files name a hit: its path relative to the corpus folder (its file name when it
    lies elsewhere), plus ``#page=N`` for a page of a multi-page file."""
    name = PurePosixPath(path).name
    if corpus is not None:
        try:
            name = Path(path).resolve().relative_to(corpus.resolve()).as_posix()
        except ValueError:
            pass
    return f"{name}#page={page}" if n_pages > 1 else name


def matcher(relevant: Sequence[str]) -> Callable[[str], str]:
    """Maps a ranked name onto the golden name it satisfies, else itself: ``doc.pdf#page=2`` counts
    as ``doc.pdf`` when the golden file names the whole document, and ``sub/x.png`` as ``x.png``
    when the golden file gives bare names."""
    rel = set(relevant)

    def f(name: str) -> str:
        if name in rel:
            return name
        base = name.split("#page=", 1)[0]
        if base in rel:
            return base
        bare = PurePosixPath(base).name
        if bare in rel:
            return bare
        with_page = PurePosixPath(name).name
        return with_page if with_page in rel else name

    return f


def ranked_names(hits: Sequence[Hit], item: GoldenItem, corpus: Path | None) -> list[str]:
    m = matcher(list(item.qrels()))
    return list(dict.fromkeys(m(hit_name(h.path, h.page, h.n_pages, corpus)) for h in hits))


def _group_metrics(items: Sequence[GoldenItem], per_query: dict[str, list[float]], *attrs: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[int]] = {}
    scored = [it for it in items if it.qrels()]
    for i, it in enumerate(scored):
        values = [getattr(it, a, None) for a in attrs]
        if len(attrs) > 1 and not all(values):
            continue
        key = "/".join(str(v or "-") for v in values)
        groups.setdefault(key, []).append(i)
    out: dict[str, dict[str, float]] = {}
    for key, idx in sorted(groups.items()):
        out[key] = {m: round(sum(per_query[m][i] for i in idx) / len(idx), 4) for m in ("ndcg@10", "recall@5", "recall@10") if m in per_query}
        out[key]["n"] = len(idx)
    return out


class _SharedCacheSearcher(Searcher):
    """A Searcher whose query-embedding cache is shared and unbounded: every configuration of one
    run embeds each query once, so scoring 7 configurations costs about one embedding per query."""

    def __init__(self, rt: Any, cache: _LRU) -> None:
        super().__init__(rt)
        self._cache = cache


def prime_cache(rt: Any, cache: _LRU, queries: Sequence[str], batch: int = 64) -> None:
    """Embed every query in batches, for both spaces, into the shared cache. A batched call costs
    about what one query alone does (the per-call overhead dominates for short texts), so scoring a
    large set takes minutes instead of an hour; latency is measured separately, one query at a time."""
    qs = list(dict.fromkeys(q.strip() for q in queries if q.strip()))
    for i in range(0, len(qs), batch):
        part = qs[i : i + batch]
        for space, embed in (("text", rt.text_embedder.embed_queries), ("image", rt.image_embedder.embed_queries)):
            vecs = embed(part)
            for q, v in zip(part, vecs, strict=True):
                cache.data[(space, q)] = v
    # the image vector as the search makes it: a Chinese query may add its English reading's text vector
    def text_vector(t: str) -> Any:
        if ("text", t) not in cache.data:
            cache.data[("text", t)] = rt.text_embedder.embed_queries([t])[0]
        return cache.data[("text", t)]

    for q in qs:
        cache.data[("image", q)] = translated_image_query(rt, q, cache.data[("image", q)], text_vector)


def run_config(
    searcher: Searcher,
    cfg: RouteConfig,
    items: Sequence[GoldenItem],
    k: int,
    corpus: Path | None,
    filters: Filters,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[str]], int]:
    """Search every query with one configuration: (ranked names per id, errors)."""
    from imgrag.indexing.errors import ImgragError

    runs: dict[str, list[str]] = {}
    errors = 0
    for n, it in enumerate(items):
        req = SearchRequest(query=it.query, k=k, routes=cfg.routes, rerank=cfg.rerank, filters=filters, follow_links=cfg.follow_links)
        try:
            res = searcher.search(req, OPERATOR)
        except ImgragError:
            errors += 1
            runs[it.id] = []
            continue
        runs[it.id] = ranked_names(res.hits, it, corpus)
        if progress and (n + 1) % 100 == 0:
            progress(f"{cfg.name}: {n + 1}/{len(items)}")
    return runs, errors


def time_config(rt: Any, cfg: RouteConfig, items: Sequence[GoldenItem], k: int, filters: Filters) -> tuple[list[float], dict[str, list[float]]]:
    """Latency as a user sees it: a fresh Searcher (cold query-embedding cache) per configuration,
    after one untimed warm-up search (models load and the store opens outside the timed calls)."""
    Searcher(rt).search(SearchRequest(query="warm up", k=k, routes=cfg.routes, rerank=cfg.rerank, filters=filters,
                                      follow_links=cfg.follow_links), OPERATOR)
    searcher = Searcher(rt)
    lat: list[float] = []
    stages: dict[str, list[float]] = {}
    for it in items:
        req = SearchRequest(query=it.query, k=k, routes=cfg.routes, rerank=cfg.rerank, filters=filters, follow_links=cfg.follow_links)
        t = time.perf_counter()
        try:
            res = searcher.search(req, OPERATOR)
        except Exception:  # an error is counted by the scoring pass; here it only has no latency
            continue
        lat.append((time.perf_counter() - t) * 1000)
        for stage, ms in res.timings_ms.items():
            if stage != "total":
                stages.setdefault(stage, []).append(ms)
    return lat, stages


def latency_sample(items: Sequence[GoldenItem], n: int) -> list[GoldenItem]:
    """Every len/n-th query: a fixed sample that spans the set's kinds and languages."""
    if n <= 0 or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def evaluate_retrieval(
    rt: Any,
    items: Sequence[GoldenItem],
    *,
    set_name: str,
    golden: str,
    k: int = 10,
    corpus: Path | None = None,
    restrict_to_corpus: bool = False,
    configs: Sequence[RouteConfig] = CONFIGS,
    sweep: dict[str, list[float]] | None = None,
    run_out: Path | None = None,
    run_config_name: str = DEFAULT_RUN,
    runs_dir: Path | None = None,
    latency_queries: int = 12,
    sweep_queries: int = 80,
    index_info: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> RetrievalResult:
    """Run every configuration (and the optional weight sweep) and score them with ranx."""
    t0 = time.perf_counter()
    k_eff = max(k, 10)
    items = [it for it in items if it.qrels()]
    qrels = {it.id: it.qrels() for it in items}
    filters = Filters(path_prefix=str(corpus.resolve())) if (restrict_to_corpus and corpus is not None) else Filters()
    results: dict[str, ConfigResult] = {}
    all_runs: dict[str, dict[str, list[str]]] = {}
    cache = _LRU(size=1_000_000)
    if progress:
        progress(f"retrieval {set_name}: embedding {len(items)} queries")
    prime_cache(rt, cache, [it.query for it in items])
    timed = latency_sample(items, latency_queries)
    for cfg in configs:
        if progress:
            progress(f"retrieval {set_name}: {cfg.label}")
        lat, stages = time_config(rt, cfg, timed, k_eff, filters)
        runs, errors = run_config(_SharedCacheSearcher(rt, cache), cfg, items, k_eff, corpus, filters, progress)
        all_runs[cfg.name] = runs
        mean, per = ranking_metrics(qrels, runs)
        results[cfg.name] = ConfigResult(
            name=cfg.name,
            label=cfg.label,
            metrics={m: round(v, 4) for m, v in mean.items()},
            latency=latency_summary(lat),
            stages={s: latency_summary(v) for s, v in sorted(stages.items())},
            by_kind=_group_metrics(items, per, "kind"),
            by_lang=_group_metrics(items, per, "lang"),
            by_split=_group_metrics(items, per, "split") if any(getattr(it, "split", None) for it in items) else {},
            by_kind_lang=_group_metrics(items, per, "kind", "lang"),
            errors=errors,
        )
    if BASELINE in results:
        base = results[BASELINE].metrics
        for r in results.values():
            r.ratio_vs_hybrid = {m: (round(r.metrics[m] / base[m], 3) if base[m] else None) for m in RANKING_METRICS}
    points: list[SweepPoint] = []
    if sweep:
        # Each point re-runs every search, so the sweep uses a fixed sample and always includes the
        # current setting: compare points with each other, not with the full-set table.
        sample = latency_sample(items, sweep_queries)
        sq = {it.id: qrels[it.id] for it in sample}
        original = rt.settings
        try:
            for key, values in sweep.items():
                field = SWEEP_FIELDS[key]
                current = float(getattr(original, field))
                for v in sorted(set(values) | {current}):
                    rt.settings = original.model_copy(update={field: int(v) if field == "rrf_k" else float(v)})
                    if progress:
                        progress(f"sweep {field}={v:g} on {len(sample)} queries")
                    cfg = next(c for c in CONFIGS if c.name == DEFAULT_RUN)
                    runs, _ = run_config(_SharedCacheSearcher(rt, cache), cfg, sample, k_eff, corpus, filters)
                    mean, _ = ranking_metrics(sq, runs)
                    points.append(SweepPoint(setting=field, value=float(v), current=v == current, queries=len(sample),
                                             metrics={m: round(x, 4) for m, x in mean.items()}))
        finally:
            rt.settings = original
    if run_out is not None:
        write_run(run_out, items, all_runs.get(run_config_name, {}), k)
    if runs_dir is not None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for name, runs in all_runs.items():
            write_run(runs_dir / f"{set_name}-{name}.jsonl", items, runs, k)
    s = rt.settings
    return RetrievalResult(
        set=set_name,
        golden=golden,
        backend=s.backend,
        k=k,
        queries=len(items),
        pairs=sum(len(q) for q in qrels.values()),
        configs=results,
        sweep=points,
        weights={"image": s.weight_image, "bm25": s.weight_bm25, "text_vector": s.weight_text_vector,
                 "region": s.weight_region, "region_rerank": s.region_rerank, "rrf_k": float(s.rrf_k)},
        index=index_info or {},
        seconds=round(time.perf_counter() - t0, 1),
    )


def write_run(path: Path, items: Sequence[GoldenItem], runs: dict[str, list[str]], k: int) -> Path:
    """One line per query: ``{"id", "ranked": [file names, best first]}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps({"id": it.id, "ranked": runs.get(it.id, [])[:k]}, ensure_ascii=False) + "\n")
    return path


def parse_sweep(spec: str | None, fields: dict[str, str] = SWEEP_FIELDS, flag: str = "--sweep") -> dict[str, list[float]] | None:
    """``"image=0,0.25,0.5;bm25=1,2"`` → {"image": [0, .25, .5], "bm25": [1, 2]} (values sorted, unique)."""
    if not spec:
        return None
    from imgrag.indexing.errors import ImgragError

    out: dict[str, list[float]] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        key, _, vals = part.partition("=")
        key = key.strip()
        if key not in fields or not vals.strip():
            raise ImgragError(f"bad {flag} {part!r}", f"write it like image=0,0.5,1 with a key among {', '.join(fields)}")
        try:
            out[key] = sorted({float(v) for v in vals.split(",") if v.strip()})
        except ValueError as e:
            raise ImgragError(f"bad {flag} value in {part!r}", "values are numbers separated by commas") from e
    return out
