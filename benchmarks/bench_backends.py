"""LanceDB (embedded) vs Elasticsearch on the same corpus and the same queries, side by side.

    python benchmarks/bench_backends.py                      # 20k pages; starts a throw-away ES
    python benchmarks/bench_backends.py --n 2000 --queries 50
    python benchmarks/bench_backends.py --es-url http://127.0.0.1:9200   # use a running cluster
    python benchmarks/bench_backends.py --backends lancedb,lancedb-ann --n 10000   # flat vs ANN
    python benchmarks/bench_backends.py --n 100000 --backends lancedb-sq --keep /tmp/b100k   # build once ...
    python benchmarks/bench_backends.py --n 100000 --backends lancedb-sq --keep /tmp/b100k   # ... reuse it

The corpus is synthetic but shaped like the real one, so the numbers need no models: per page a
joint image vector, a backbone feature vector and an OCR-text vector (default dims 384/1280/384,
clustered unit vectors), ~10 regions (grid tiles in the joint space, text blocks in the text space),
Zipf-distributed mixed English/Chinese OCR text, and the metadata the filters use (quality, tags,
department, dates, ACL groups, path). Both backends receive identical records in identical batches.

Measured: indexing throughput (``write`` batches, then ``commit``), the latency of every retrieval
route exactly as :mod:`indexing.search` calls it (kNN depth 50, region kNN depth 200, BM25 depth 50),
the full fused search (:class:`indexing.search.Searcher`: all routes + RRF + record fetch + region
evidence) for the operator and for a restricted user with a year filter, and kNN recall@10 against
exact cosine search. Timings are wall-clock on this machine; the load average is printed because
other processes skew them.

The fused search runs twice on the same store: as configured (``IMGRAG_TWO_STAGE_PAGES``: from
that size the region routes read only the page routes' candidates) and one-stage (the region routes
over every region, the code before the two-stage search), so each is the other's baseline. Region
recall@10 is against exact search over every region (page level), for the region routes alone and
for the region routes inside the fused search; the fused top 10 is compared with an exact one-stage
fused search (the region routes scored exactly over every region, page chunk by page chunk) on the
recall sample.

``--keep DIR`` builds each column's index under ``DIR/<n>/`` (Elasticsearch: its data path) and keeps
it, with the corpus's query-side vectors and the exact region search; a later run with the same DIR,
size, seed, dims and regions per page reuses them and skips the build (its build figures are the
first run's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imgrag.indexing.config import Settings  # noqa: E402
from imgrag.indexing.models import DateMention, Seal  # noqa: E402
from imgrag.indexing.stores.base import (  # noqa: E402
    OPERATOR,
    Filters,
    ImageRecord,
    ImageVectors,
    Indexed,
    IndexStore,
    ModelSpaces,
    Principal,
    RegionRecord,
)

QUALITIES = ["born_digital", "scanned", "handwritten", "photo"]
FORMATS = ["png", "jpg", "pdf", "tif"]
TAGS = [f"tag{i}" for i in range(20)]
DEPTS = ["legal", "sales", "hr", "finance", "ops", "it", "qa", "med"]
GROUPS = [f"g{i}" for i in range(10)]


# -- corpus ---------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Corpus:
    """Deterministic synthetic pages, generated batch by batch (the same for every backend)."""

    def __init__(self, n: int, dims: tuple[int, int, int], regions: int, seed: int) -> None:
        self.n, self.regions, self.seed = n, regions, seed
        self.img_dim, self.feat_dim, self.txt_dim = dims
        rng = np.random.default_rng(seed)
        self.centroids = {
            "img": _unit(rng.normal(size=(300, self.img_dim))),
            "feat": _unit(rng.normal(size=(300, self.feat_dim))),
            "txt": _unit(rng.normal(size=(300, self.txt_dim))),
        }
        syll = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "us", "ver", "con", "tra", "de"]
        words = sorted({"".join(rng.choice(syll, size=rng.integers(2, 4))) for _ in range(6000)})[:3000]
        hanzi = [chr(c) for c in rng.choice(np.arange(0x4E00, 0x9FA5), size=1500, replace=False)]
        self.vocab = words + ["".join(rng.choice(hanzi, size=2)) for _ in range(1500)]
        rng.shuffle(self.vocab)
        ranks = np.arange(1, len(self.vocab) + 1)
        self.p = (1.0 / ranks**1.1) / np.sum(1.0 / ranks**1.1)
        self.cluster = rng.integers(0, 300, size=n)  # one topic per page, shared by its spaces
        # the query-side needs the pages' joint and text vectors: keep those two in memory
        self.img = np.zeros((n, self.img_dim), np.float32)
        self.txt = np.zeros((n, self.txt_dim), np.float32)

    def _text(self, rng: np.random.Generator, n_tokens: int) -> str:
        return " ".join(self.vocab[i] for i in rng.choice(len(self.vocab), size=n_tokens, p=self.p))

    def batch(self, start: int, size: int) -> list[Indexed]:
        out: list[Indexed] = []
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for i in range(start, min(start + size, self.n)):
            rng = np.random.default_rng([self.seed, i])
            c = self.cluster[i]
            img = _unit(self.centroids["img"][c] + 0.6 * rng.normal(size=self.img_dim) / np.sqrt(self.img_dim) * 4)
            feat = _unit(self.centroids["feat"][c] + 0.6 * rng.normal(size=self.feat_dim) / np.sqrt(self.feat_dim) * 4)
            txt = _unit(self.centroids["txt"][c] + 0.6 * rng.normal(size=self.txt_dim) / np.sqrt(self.txt_dim) * 4)
            self.img[i], self.txt[i] = img, txt
            doc, page = divmod(i, 4)
            dept = DEPTS[int(rng.integers(0, len(DEPTS)))]
            text = self._text(rng, int(rng.integers(30, 120)))
            n_dates = int(rng.integers(0, 4))
            dates = [date(2015, 1, 1) + timedelta(days=int(rng.integers(0, 11 * 365))) for _ in range(n_dates)]
            rec = ImageRecord(
                image_id=f"img{i:07d}",
                doc_id=f"doc{doc:06d}",
                path=f"/corpus/{dept}/doc{doc:06d}.pdf",
                page=page + 1,
                n_pages=4,
                format=FORMATS[int(rng.integers(0, 4))],
                width=1240,
                height=1754,
                quality=QUALITIES[int(rng.integers(0, 4))],  # type: ignore[arg-type]
                ocr_text=text,
                caption=self._text(rng, 6),
                tags=sorted({TAGS[int(t)] for t in rng.integers(0, len(TAGS), size=int(rng.integers(0, 3)))}),
                meta={"dept": dept},
                acl=[] if rng.random() < 0.7 else [GROUPS[int(rng.integers(0, len(GROUPS)))]],
                dates=[DateMention(text=d.isoformat(), date=d) for d in dates],
                seals=[Seal(bbox=(900, 1500, 1100, 1700), color="red", confidence=0.9)] if rng.random() < 0.2 else [],
                indexed_at=now,
            )
            regions: list[RegionRecord] = []
            n_tiles = self.regions // 2
            for t in range(n_tiles):
                x, y = t % 2, t // 2
                regions.append(RegionRecord(
                    region_id=f"{rec.image_id}:t{t}", image_id=rec.image_id, kind="tile", label=f"t{t}",
                    bbox=(x * 620.0, y * 585.0, (x + 1) * 620.0, (y + 1) * 585.0),
                    vector=_unit(img + 0.8 * rng.normal(size=self.img_dim) / np.sqrt(self.img_dim) * 4),
                ))
            words = text.split()
            for b in range(self.regions - n_tiles):
                chunk = " ".join(words[b * 10 : b * 10 + 10]) or text[:40]
                regions.append(RegionRecord(
                    region_id=f"{rec.image_id}:b{b}", image_id=rec.image_id, kind="block", label="text",
                    bbox=(100.0, 100.0 + 150 * b, 1100.0, 230.0 + 150 * b), text=chunk,
                    vector=_unit(txt + 0.8 * rng.normal(size=self.txt_dim) / np.sqrt(self.txt_dim) * 4),
                ))
            out.append(Indexed(record=rec, vectors=ImageVectors(image=img, feature=feat, text=txt), regions=regions))
        return out

    def queries(self, count: int, seed: int) -> list[Query]:
        """Queries near random pages, with mid-frequency words (call after one full pass of batch())."""
        rng = np.random.default_rng([seed, 7])
        out = []
        for _ in range(count):
            j = int(rng.integers(0, self.n))
            terms = [self.vocab[int(i)] for i in rng.integers(20, 800, size=int(rng.integers(1, 4)))]
            qi = _unit(self.img[j] + 0.5 * rng.normal(size=self.img_dim) / np.sqrt(self.img_dim) * 4)
            qt = _unit(self.txt[j] + 0.5 * rng.normal(size=self.txt_dim) / np.sqrt(self.txt_dim) * 4)
            qf = self.batch(int(rng.integers(0, self.n)), 1)[0].vectors.feature
            out.append(Query(" ".join(terms), qi, qt, qf))
        return out


@dataclass
class Query:
    text: str
    image: np.ndarray  # joint space
    text_vec: np.ndarray  # OCR-text space
    feature: np.ndarray  # an indexed page's feature vector (image-to-image search)


# -- backends -------------------------------------------------------------------------------------
# column name -> (backend, LanceDB ANN index or Elasticsearch index_options); None: LanceDB exact scan
CONFIGS: dict[str, tuple[str, str | None]] = {
    "lancedb": ("lancedb", None),
    "lancedb-sq": ("lancedb", "ivf_hnsw_sq"),
    "lancedb-ann": ("lancedb", "ivf_hnsw_sq"),  # the old name of lancedb-sq
    "lancedb-pq": ("lancedb", "ivf_pq"),
    "elasticsearch": ("elasticsearch", None),  # index_options from --index-options
    "es-hnsw": ("elasticsearch", "hnsw"),
    "es-int8": ("elasticsearch", "int8_hnsw"),
    "es-int4": ("elasticsearch", "int4_hnsw"),
    "es-bbq": ("elasticsearch", "bbq_hnsw"),
}


def es_start(heap: str, port: int | None, data: Path | None = None) -> str:
    env = {**os.environ, "IMGRAG_ES_HEAP": heap}
    if port:
        env["IMGRAG_ES_PORT"] = str(port)
    if data is not None:
        env["IMGRAG_ES_DATA"] = str(data)
    res = subprocess.run(["bash", str(ROOT / "tests/elasticsearch.sh"), "start"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"could not start Elasticsearch:\n{res.stderr}")
    return res.stdout.strip()


def es_stop(url: str) -> None:
    subprocess.run(["bash", str(ROOT / "tests/elasticsearch.sh"), "stop", url], capture_output=True)


def open_backend(
    name: str, workdir: Path, es_url: str | None, index_options: str, prefix: str | None = None, keep: bool = False
) -> tuple[IndexStore, Callable[[], None], Callable[[], int]]:
    """The store, its close(), and a function that returns its size on disk in bytes (``keep``:
    close() leaves the Elasticsearch indices in place; ``prefix``: theirs)."""
    backend, option = CONFIGS[name]
    if backend == "lancedb":
        from imgrag.indexing.stores.lance import LanceStore

        path = workdir / name
        if option is None:  # exact kNN scans
            st = LanceStore(path, ann_min_rows=10**12)
        else:  # an ANN index on every page vector column, whatever the size
            st = LanceStore(path, ann_min_rows=0, ann_index=option)  # type: ignore[arg-type]
        return st, st.close, lambda: sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    from imgrag.indexing.stores.elastic import ElasticStore

    assert es_url
    prefix = prefix or f"imgrag-bench-{int(time.time())}"
    settings = Settings(
        home=workdir / "home", backend="elasticsearch", es_url=es_url, es_replicas=0,
        es_index_prefix=prefix, es_index_options=option or index_options,  # type: ignore[arg-type]
        es_request_timeout=600,
    )
    st = ElasticStore(settings)

    def close() -> None:
        if not keep:
            st.drop()
        st.close()

    def disk() -> int:
        stats = st.es.indices.stats(index=f"{prefix}-*", metric="store", filter_path="_all.primaries.store")
        return int(stats["_all"]["primaries"]["store"]["size_in_bytes"])

    return st, close, disk


def vector_bytes(name: str, index_options: str, dims: tuple[int, int, int], pages: int, regions: int) -> int:
    """What the vector indices need in memory (page cache) to answer kNN from RAM: the quantised
    vectors plus the HNSW graph, from the stores' documented formulas (Elasticsearch: "tune
    approximate kNN search"; LanceDB: int8 per dimension for SQ, dim/16 bytes for PQ). Exact LanceDB
    scans read the float32 vectors. Every page has its 3 vectors; ~half the regions are tiles
    (joint space), half text blocks (text space)."""
    backend, option = CONFIGS[name]
    option = option or (index_options if backend == "elasticsearch" else None)
    img, feat, txt = dims
    tiles = regions // 2
    blocks = regions - tiles
    vecs = [(img, pages), (feat, pages), (txt, pages), (img, pages * tiles), (txt, pages * blocks)]
    if backend == "lancedb":
        # LanceDB indexes only the page vectors (regions are scanned exactly: float32)
        page_vecs, region_vecs = vecs[:3], vecs[3:]
        per = {None: lambda d: 4 * d, "ivf_hnsw_sq": lambda d: d + 4 * 20 * 2, "ivf_pq": lambda d: d // 16}[option]
        return sum(per(d) * n for d, n in page_vecs) + sum(4 * d * n for d, n in region_vecs)
    per = {
        "hnsw": lambda d: 4 * (d + 12),
        "int8_hnsw": lambda d: d + 4,
        "int4_hnsw": lambda d: d // 2 + 4,
        "bbq_hnsw": lambda d: d // 8 + 14,
    }[option]  # type: ignore[index]
    return sum(per(d) * n for d, n in vecs)


def es_process_rss(es: Any) -> tuple[int, int] | None:
    """Resident memory of the (local) Elasticsearch JVM (the heap is pre-touched: RSS >= heap), and
    its file-backed part: the mmapped index files that searches touched."""
    from elasticsearch import ApiError

    try:
        nodes = es.nodes.info(node_id="_local", metric="process", filter_path="nodes.*.process.id")["nodes"]
        pid = next(iter(nodes.values()))["process"]["id"]
        status = Path(f"/proc/{pid}/status")
        return _rss_kb(status, "VmRSS") * 1024, _rss_kb(status, "RssFile") * 1024
    except (OSError, KeyError, StopIteration, ApiError):  # a remote cluster, or /proc not readable
        return None


def _rss_kb(status: Path, field: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


class RegionTruth:
    """Exact region search for the recall sample, page level: each page's best tile / text-block
    cosine per query, filled in while the corpus is written (the region vectors never all sit in
    memory at once)."""

    def __init__(self, queries: list[Query], n: int) -> None:
        self.qi = np.stack([q.image for q in queries]) if queries else np.zeros((0, 1), np.float32)
        self.qt = np.stack([q.text_vec for q in queries]) if queries else np.zeros((0, 1), np.float32)
        self.best = {"tile": np.full((len(queries), n), -2.0, np.float32), "text": np.full((len(queries), n), -2.0, np.float32)}
        self.done = 0

    def observe(self, items: list[Indexed]) -> None:
        for kind, qs, kinds in (("tile", self.qi, ("tile",)), ("text", self.qt, ("block", "lines"))):
            vecs, pages = [], []
            for it in items:
                for r in it.regions:
                    if r.kind in kinds:
                        vecs.append(r.vector)
                        pages.append(int(r.image_id[3:]))
            if vecs:
                sims = qs @ np.stack(vecs).T
                np.maximum.at(self.best[kind], (slice(None), np.asarray(pages)), sims)  # type: ignore[arg-type]

    def top(self, kind: str, qi: int, k: int) -> set[int]:
        return set(np.argsort(-self.best[kind][qi])[:k].tolist())

    def save(self, path: Path) -> None:
        np.savez(path, tile=self.best["tile"], text=self.best["text"])

    def load(self, path: Path, n: int) -> bool:
        if not path.exists():
            return False
        with np.load(path) as z:
            self.best = {"tile": z["tile"], "text": z["text"]}
        self.done = n
        return True


class ExactRegions:
    """The store with exact region routes over every region: the store's own two-stage search
    (``image_ids``) over every page, chunk by chunk — the reference the two-stage search is
    compared with (what a user gets without it, at any cost)."""

    def __init__(self, store: IndexStore, n: int, chunk: int = 500) -> None:
        self.store, self.ids, self.chunk = store, [f"img{i:07d}" for i in range(n)], chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def knn_regions(self, kind: Any, vector: np.ndarray, k: int, filters: Filters, principal: Principal,
                    image_ids: Any = None) -> list[Any]:
        ids = self.ids if image_ids is None else list(image_ids)
        out: list[Any] = []
        for i in range(0, len(ids), self.chunk):
            out += self.store.knn_regions(kind, vector, k, filters, principal, image_ids=ids[i : i + self.chunk])
        out.sort(key=lambda h: -h.score)
        return out[:k]


# -- measuring ------------------------------------------------------------------------------------
@dataclass
class _FakeEmbedder:
    vectors: dict[str, np.ndarray]
    identity: str  # the searcher checks the query space against the index's
    dim: int

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [self.vectors[t] for t in texts]


class _BenchRuntime:
    """Just what :class:`indexing.search.Searcher` touches: settings, store and query embedders."""

    def __init__(
        self, store: IndexStore, img: dict[str, np.ndarray], txt: dict[str, np.ndarray], spaces: ModelSpaces,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.store = store
        self.image_embedder = _FakeEmbedder(img, spaces.image, spaces.image_dim)
        self.text_embedder = _FakeEmbedder(txt, spaces.text, spaces.text_dim)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, p)) if xs else float("nan")


def p95_interval(xs: list[float], draws: int = 2000) -> tuple[float, float]:
    """Where the p95 of these latencies (ms) could as well have come out: the 5th and 95th percentile
    of the p95 over ``draws`` resamples (with replacement, fixed seed). With 20 queries the p95 is
    about the 19th search, and one slow search moves it."""
    if len(xs) < 2:
        return float("nan"), float("nan")
    a = np.asarray(xs) * 1000.0
    p95s = np.percentile(a[np.random.default_rng(0).integers(0, len(a), (draws, len(a)))], 95, axis=1)
    return float(np.percentile(p95s, 5)), float(np.percentile(p95s, 95))


def run_backend(
    name: str, corpus: Corpus, queries: list[Query], truth: RegionTruth, args: argparse.Namespace,
    workdir: Path, es_url: str | None,
) -> dict[str, Any]:
    from imgrag.indexing.search import SearchRequest, Searcher, two_stage_candidates

    reset_peak_rss()
    rss0 = _rss_kb(Path("/proc/self/status"), "VmRSS")
    kept = workdir / f"{name}.json" if args.keep else None  # a kept column's build: its prefix and figures
    built = json.loads(kept.read_text()) if kept is not None and kept.exists() else None
    store, close, disk = open_backend(
        name, workdir, es_url, args.index_options, prefix=(built or {}).get("prefix"), keep=kept is not None
    )
    res: dict[str, Any] = {}
    try:
        spaces = ModelSpaces(image="bench-joint", image_dim=corpus.img_dim, feature="bench-feat",
                             feature_dim=corpus.feat_dim, text="bench-text", text_dim=corpus.txt_dim)
        store.ensure_spaces(spaces)
        if built is not None:
            print(f"  [{name}] reusing the index kept in {workdir}", file=sys.stderr, flush=True)
            if truth.done < corpus.n:
                for start in range(0, corpus.n, 2000):
                    truth.observe(corpus.batch(start, 2000))
                truth.done = corpus.n
            res.update({k: built[k] for k in ("write_s", "commit_s", "pages_per_s", "build_rss_peak_bytes")})
            res["reused"] = True
        else:
            t_write = 0.0
            for start in range(0, corpus.n, args.batch):
                items = corpus.batch(start, args.batch)
                if truth.done < corpus.n:  # the first backend fills the exact region search in
                    truth.observe(items)
                    truth.done = start + len(items)
                t = time.perf_counter()
                store.write(items)
                t_write += time.perf_counter() - t
                if (start // args.batch) % 50 == 0:
                    print(f"  [{name}] wrote {start + len(items)}/{corpus.n} pages ({t_write:.0f} s)", file=sys.stderr, flush=True)
            t = time.perf_counter()
            store.commit("index", {"indexed": corpus.n})
            t_commit = time.perf_counter() - t
            res["write_s"], res["commit_s"] = t_write, t_commit
            res["pages_per_s"] = corpus.n / (t_write + t_commit)
            res["build_rss_peak_bytes"] = (_rss_kb(Path("/proc/self/status"), "VmHWM") - rss0) * 1024
            if kept is not None:
                prefix = getattr(getattr(store, "settings", None), "es_index_prefix", None)
                kept.write_text(json.dumps({"prefix": prefix, **res}))
        res["disk_bytes"] = disk()
        res["vector_ram_bytes"] = vector_bytes(
            name, args.index_options, (corpus.img_dim, corpus.feat_dim, corpus.txt_dim), corpus.n, corpus.regions
        )

        user = Principal(name="bench-user", groups=["g3"])
        year = Filters(date_from=date(2023, 1, 1), date_to=date(2023, 12, 31))
        routes: dict[str, Callable[[Query], Any]] = {
            "knn image (50)": lambda q: store.knn("image", q.image, 50, Filters(), OPERATOR),
            "knn text (50)": lambda q: store.knn("text", q.text_vec, 50, Filters(), OPERATOR),
            "knn feature (51)": lambda q: store.knn("feature", q.feature, 51, Filters(), OPERATOR),
            "bm25 (50)": lambda q: store.bm25(q.text, 50, Filters(), OPERATOR),
            "regions tile (200)": lambda q: store.knn_regions("tile", q.image, 200, Filters(), OPERATOR),
            "regions text (200)": lambda q: store.knn_regions("text", q.text_vec, 200, Filters(), OPERATOR),
            "knn image, user+2023": lambda q: store.knn("image", q.image, 50, year, user),
            "bm25, user+2023": lambda q: store.bm25(q.text, 50, year, user),
        }
        img_q, txt_q = {q.text: q.image for q in queries}, {q.text: q.text_vec for q in queries}
        base = Settings(search_cache=0)  # every search runs (the bench repeats no query, but be sure)
        two = base.model_copy(update={"two_stage_pages": args.two_stage_pages} if args.two_stage_pages is not None else {})
        one = base.model_copy(update={"two_stage_pages": 0})
        searcher = Searcher(_BenchRuntime(store, img_q, txt_q, spaces, two))  # type: ignore[arg-type]
        one_stage = Searcher(_BenchRuntime(store, img_q, txt_q, spaces, one))  # type: ignore[arg-type]
        exact_search = Searcher(_BenchRuntime(ExactRegions(store, corpus.n), img_q, txt_q, spaces, one))  # type: ignore[arg-type]
        res["two_stage_pages"] = two.two_stage_pages
        res["two_stage"] = searcher._two_stage()
        routes["fused search (k=10)"] = lambda q: searcher.search(SearchRequest(query=q.text, k=10), OPERATOR)
        routes["fused, one-stage"] = lambda q: one_stage.search(SearchRequest(query=q.text, k=10), OPERATOR)
        routes["fused, user+2023"] = lambda q: searcher.search(SearchRequest(query=q.text, k=10, filters=year), user)
        routes["fused, user+2023, one-stage"] = lambda q: one_stage.search(SearchRequest(query=q.text, k=10, filters=year), user)
        if args.skip_one_stage:  # the slow rows: a 100k run of many queries spends most of its time on them
            for r in ("fused, one-stage", "fused, user+2023, one-stage", "regions tile (200)", "regions text (200)"):
                del routes[r]
        # the same index searched with other kNN parameters (a second handle on it): the fused
        # search as configured, beside the search as it was with those parameters
        old, tag = baseline_store(name, store, args)
        old_search = Searcher(_BenchRuntime(old, img_q, txt_q, spaces, two)) if old is not None else None  # type: ignore[arg-type]
        one_old = Searcher(_BenchRuntime(old, img_q, txt_q, spaces, one)) if old is not None else None  # type: ignore[arg-type]
        if old is not None:
            assert old_search is not None and one_old is not None
            routes[f"fused, {tag}"] = lambda q: old_search.search(SearchRequest(query=q.text, k=10), OPERATOR)
            if not args.skip_one_stage:
                routes[f"fused, one-stage, {tag}"] = lambda q: one_old.search(SearchRequest(query=q.text, k=10), OPERATOR)
            routes[f"fused, user+2023, {tag}"] = lambda q: old_search.search(
                SearchRequest(query=q.text, k=10, filters=year), user)
            routes[f"knn image, {tag}"] = lambda q: old.knn("image", q.image, 50, Filters(), OPERATOR)
            routes[f"knn text, {tag}"] = lambda q: old.knn("text", q.text_vec, 50, Filters(), OPERATOR)
            routes[f"knn feature (51), {tag}"] = lambda q: old.knn("feature", q.feature, 51, Filters(), OPERATOR)
            if not args.skip_one_stage:
                routes[f"regions tile (200), {tag}"] = lambda q: old.knn_regions("tile", q.image, 200, Filters(), OPERATOR)

        extra: list[tuple[str, Searcher]] = []  # more searchers whose fused top 10 is compared with the exact one
        if args.other_store and CONFIGS[name][0] == "lancedb":
            # another copy of this index (e.g. compacted: benchmarks/compact_store.py), same queries, interleaved
            from imgrag.indexing.stores.lance import LanceStore

            other = LanceStore(args.other_store, ann_min_rows=store.ann_min_rows, ann_index=store.ann_index)  # type: ignore[attr-defined]
            other_search = Searcher(_BenchRuntime(other, img_q, txt_q, spaces, two))  # type: ignore[arg-type]
            extra.append(("other store", other_search))
            routes["fused, other store"] = lambda q: other_search.search(SearchRequest(query=q.text, k=10), OPERATOR)
            routes["fused, user+2023, other store"] = lambda q: other_search.search(SearchRequest(query=q.text, k=10, filters=year), user)
            routes["knn image (50), other store"] = lambda q: other.knn("image", q.image, 50, Filters(), OPERATOR)
            routes["knn text (50), other store"] = lambda q: other.knn("text", q.text_vec, 50, Filters(), OPERATOR)
            routes["knn feature (51), other store"] = lambda q: other.knn("feature", q.feature, 51, Filters(), OPERATOR)
            res["other_store_fragments"] = {t: other.db.open_table(t).stats()["fragment_stats"]["num_fragments"]  # type: ignore[attr-defined]
                                            for t in ("images", "regions")}
            res["store_fragments"] = {t: store.db.open_table(t).stats()["fragment_stats"]["num_fragments"]  # type: ignore[attr-defined]
                                      for t in ("images", "regions")}
        if res["two_stage"]:
            # the two-stage region routes alone, on the pages the fused search hands them (its page
            # routes' candidates for that query, found once here), one call at a time: their own CPU
            cands: dict[str, list[str]] = {}
            for q in queries:
                searcher._cache.data.clear()
                rec = searcher.recall(SearchRequest(query=q.text, k=10), OPERATOR)
                ranked = [ids for r, ids in rec.ranked.items() if not r.startswith("region_")]
                cands[q.text] = two_stage_candidates(ranked, two.two_stage_candidates)

            def candidates(q: Query) -> list[str]:
                return cands[q.text]

            photo = Filters(quality=two.image_route_quality)
            for label, st in (("", store), *([(", other store", other)] if extra else [])):
                routes[f"regions tile, two-stage{label}"] = lambda q, st=st: st.knn_regions(  # type: ignore[misc]
                    "tile", q.image, 200, photo, OPERATOR, image_ids=candidates(q))
                routes[f"regions text, two-stage{label}"] = lambda q, st=st: st.knn_regions(  # type: ignore[misc]
                    "text", q.text_vec, 200, Filters(), OPERATOR, image_ids=candidates(q))
        for fn in routes.values():
            for q in queries[: args.warmup]:
                fn(q)
        lat: dict[str, list[float]] = {r: [] for r in routes}
        cpu: dict[str, list[float]] = {r: [] for r in routes}
        parts: dict[str, dict[str, list[float]]] = {}  # fused search -> its timings_ms entry -> ms per query
        order = list(routes.items())
        for qi, q in enumerate(queries[args.warmup :]):
            # interleaved, so background load hits every route alike, in a seeded shuffled order a
            # query: a query's first search meets colder caches than the ones after it, and a search
            # right after a heavier one reads slower (a rotation put each route always after the same one)
            random.Random(qi).shuffle(order)
            for r, fn in order:
                for sr in (searcher, one_stage, *([old_search, one_old] if old is not None else []), *(e[1] for e in extra)):
                    sr._cache.data.clear()  # embeddings are precomputed; keep the cache from skewing
                c, t = time.process_time(), time.perf_counter()
                out = fn(q)
                lat[r].append(time.perf_counter() - t)
                cpu[r].append(time.process_time() - c)
                for part, ms in (getattr(out, "timings_ms", None) or {}).items():
                    parts.setdefault(r, {}).setdefault(part, []).append(ms / 1000.0)
        res["latency"] = {r: (pct(v, 50), pct(v, 95)) for r, v in lat.items()}
        res["p95_interval"] = {r: p95_interval(v) for r, v in lat.items() if r.startswith("fused")}
        res["cpu_ms"] = {r: 1000 * float(np.mean(v)) if v else float("nan") for r, v in cpu.items()}
        # each fused search's routes and steps as it timed them (wall inside its thread, routes
        # running side by side on the search pool)
        res["parts"] = {r: {p: (pct(v, 50), pct(v, 95)) for p, v in ps.items()} for r, ps in parts.items()}

        # recall@10 against exact cosine search (no filters): the page routes, and the region routes
        # at page level (the first 10 distinct pages of the route vs the 10 pages with the best region)
        sample = queries[args.warmup :][: args.recall_queries]
        page_stores = [("", store), *([(f", {tag}", old)] if old is not None else []),
                       *([(", other store", other)] if args.other_store and CONFIGS[name][0] == "lancedb" else [])]
        # the image route of the fused search runs under the `photo` prefilter (IMGRAG_IMAGE_ROUTE_QUALITY):
        # its recall against exact search over the photo pages
        # (LanceDB: the pages' quality read from its table)
        photo = np.zeros(corpus.n, bool)
        if CONFIGS[name][0] == "lancedb":
            tbl = store._images.search().where("quality = 'photo'").select(["image_id"]).limit(corpus.n).to_arrow()  # type: ignore[attr-defined]
            photo[[int(i[3:]) for i in tbl.column("image_id").to_pylist()]] = True
        pics = Filters(quality=["photo"])
        for (label, field, mat, attr, flt, mask), (suffix, st) in (
            (r, ps) for r in (("recall image", "image", corpus.img, "image", Filters(), None),
                              *([("recall image, photo", "image", corpus.img, "image", pics, photo)] if photo.any() else []),
                              ("recall text", "text", corpus.txt, "text_vec", Filters(), None))
            for ps in page_stores
        ):
            hits = 0
            for q in sample:  # at the routes' depth (50), as the fused search asks
                sims = mat @ getattr(q, attr)
                exact = set(np.argsort(-(sims if mask is None else np.where(mask, sims, -9.0)))[:10].tolist())
                got = {int(h.image_id[3:]) for h in st.knn(field, getattr(q, attr), 50, flt, OPERATOR)[:10]}  # type: ignore[arg-type]
                hits += len(exact & got)
            res[label + suffix] = hits / (10 * len(sample)) if sample else float("nan")
        for label, kind, attr in (("recall regions tile", "tile", "image"), ("recall regions text", "text", "text_vec")):
            hits = 0
            for qi, q in enumerate(sample):
                pages: list[int] = []
                for h in store.knn_regions(kind, getattr(q, attr), 200, Filters(), OPERATOR):  # type: ignore[arg-type]
                    p = int(h.image_id[3:])
                    if p not in pages:
                        pages.append(p)
                hits += len(truth.top(kind, qi, 10) & set(pages[:10]))
            res[label] = hits / (10 * len(sample)) if sample else float("nan")
        # what the user loses: the region routes inside the fused search (two-stage from its
        # threshold) against exact search over every region, and the fused top 10 against an exact
        # one-stage fused search (and the one-stage search as the store answers it, for comparison)
        fused_hits = {"tile": 0, "text": 0}
        overlap = {"two-stage": 0, **({} if args.skip_one_stage else {"one-stage": 0}), **({tag: 0} if old is not None else {}),
                   **{label: 0 for label, _ in extra}}
        for qi, q in enumerate(sample):
            rec = searcher.recall(SearchRequest(query=q.text, k=10), OPERATOR)
            for kind in fused_hits:
                got = {int(i[3:]) for i in rec.ranked.get(f"region_{kind}", [])[:10]}
                fused_hits[kind] += len(truth.top(kind, qi, 10) & got)
        for q in sample[: args.overlap_queries]:
            ref = [h.image_id for h in exact_search.search(SearchRequest(query=q.text, k=10), OPERATOR).hits]
            for label, sr in (("two-stage", searcher), *([] if args.skip_one_stage else [("one-stage", one_stage)]),
                              *([(tag, old_search)] if old is not None else []), *extra):
                got = [h.image_id for h in sr.search(SearchRequest(query=q.text, k=10), OPERATOR).hits]
                overlap[label] += len(set(ref) & set(got))
        for kind, hits in fused_hits.items():
            res[f"recall regions {kind}, fused"] = hits / (10 * len(sample)) if sample else float("nan")
        n_over = len(sample[: args.overlap_queries])
        for label, hits in overlap.items():
            res[f"fused top-10 overlap, {label}"] = hits / (10 * n_over) if n_over else float("nan")
        res["stats"] = store.stats(OPERATOR).model_dump(exclude={"spaces"})
        res["rss_peak_bytes"] = (_rss_kb(Path("/proc/self/status"), "VmHWM") - rss0) * 1024
        if CONFIGS[name][0] == "elasticsearch":
            res["es_rss_bytes"] = es_process_rss(store.es)  # type: ignore[attr-defined]
    finally:
        close()
    return res


def baseline_tag(args: argparse.Namespace, backend: str) -> str:
    """The label of the baseline parameters a column also runs with ('' if none)."""
    if backend == "lancedb" and args.ann_baseline:
        return f"ef/refine {args.ann_baseline}"
    if backend == "elasticsearch" and args.es_baseline:
        return f"candidates {args.es_baseline}"
    return ""


def baseline_store(name: str, store: IndexStore, args: argparse.Namespace) -> tuple[IndexStore | None, str]:
    """A second handle on the same index with the baseline's kNN parameters (``--ann-baseline``,
    ``--es-baseline``), and its label; (None, '') if none."""
    backend = CONFIGS[name][0]
    tag = baseline_tag(args, backend)
    if not tag:
        return None, ""
    if backend == "lancedb":
        from imgrag.indexing.stores.lance import LanceStore

        ef, refine = (int(x) for x in args.ann_baseline.split("/"))
        return LanceStore(store.path, ann_min_rows=store.ann_min_rows, ann_index=store.ann_index,  # type: ignore[attr-defined]
                          ann_ef=ef, ann_refine=refine, ann_ef_fixed=True), tag  # that ef on every index, as main had it
    from imgrag.indexing.stores.elastic import ElasticStore

    page, region, msearch = es_baseline(args.es_baseline)
    update: dict[str, Any] = {"es_num_candidates": page, "es_region_num_candidates": region}
    if msearch is not None:
        update["es_msearch"] = msearch
    return ElasticStore(store.settings.model_copy(update=update)), tag  # type: ignore[attr-defined]


def es_baseline(value: str) -> tuple[int, int, bool | None]:
    """``PAGE/REGION[/msearch|/separate]`` → candidates and IMGRAG_ES_MSEARCH (None: as configured)."""
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]) or (len(parts) == 3 and parts[2] not in ("msearch", "separate")):
        raise SystemExit(f"--es-baseline {value!r}: give PAGE/REGION candidates, e.g. 10000/800, optionally "
                         "/msearch or /separate (one _msearch a round, or a request per read)")
    return int(parts[0]), int(parts[1]), None if len(parts) == 2 else parts[2] == "msearch"


def es_version(url: str) -> str:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(url)
    try:
        nodes = es.nodes.info(node_id="_local", filter_path="nodes.*.version,nodes.*.jvm.mem.heap_max_in_bytes")["nodes"]
        n = next(iter(nodes.values()))
        return f"{n['version']} (heap {n['jvm']['mem']['heap_max_in_bytes'] / 2**30:.1f} GiB)"
    finally:
        es.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="20000", help="pages; a comma-separated list runs each size in turn (1000,10000,100000)")
    ap.add_argument("--regions", type=int, default=15, help="regions per page (half tiles, half text blocks)")
    ap.add_argument("--dims", default="384,1280,384", help="joint,feature,text dimensions")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--recall-queries", type=int, default=50, help="queries of the recall@10 sample")
    ap.add_argument("--batch", type=int, default=200, help="pages per write() call")
    ap.add_argument("--backends", default="lancedb,elasticsearch",
                    help="columns, any of: " + ", ".join(CONFIGS))
    ap.add_argument("--es-url", default=None, help="a running cluster; default: start a throw-away server")
    ap.add_argument("--es-heap", default="2g", help="heap of the throw-away server")
    ap.add_argument("--es-port", type=int, default=None, help="port of the throw-away server (default: a free one from 9200)")
    ap.add_argument("--index-options", default="int8_hnsw", choices=["hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw"],
                    help="index_options of the 'elasticsearch' column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--two-stage-pages", type=int, default=None,
                    help="IMGRAG_TWO_STAGE_PAGES of the fused search (default: the setting's); the one-stage search runs beside it")
    ap.add_argument("--overlap-queries", type=int, default=10,
                    help="queries of the recall sample whose fused top 10 is compared with the exact one-stage search")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the indices under DIR/<n>/ and keep them; a later run with the same DIR reuses them")
    ap.add_argument("--ann-baseline", default=None, metavar="EF/REFINE",
                    help="LanceDB: also run the fused search and page kNN with these page-kNN parameters "
                         "(ef on every index, not scaled by its partitions; main before 2026-12-05 s11: 400/1, "
                         "before s9: 400/10) on the same index")
    ap.add_argument("--other-store", type=Path, default=None, metavar="DIR",
                    help="LanceDB: also run the fused search and the page kNN on this copy of the column's index "
                         "(e.g. <keep>/<n>-.../lancedb-sq copied and compacted with benchmarks/compact_store.py)")
    ap.add_argument("--es-baseline", default=None, metavar="PAGE/REGION[/MODE]",
                    help="Elasticsearch: also run the fused search, page kNN and region routes with these kNN "
                         "candidates (IMGRAG_ES_NUM_CANDIDATES / _REGION_NUM_CANDIDATES; main before s10: 800/800) on the same index; "
                         "MODE 'separate' or 'msearch' sets IMGRAG_ES_MSEARCH (false / true) too (main before s11: 10000/800/separate)")
    ap.add_argument("--skip-one-stage", action="store_true",
                    help="leave out the one-stage rows (fused and region routes over every region): the slow ones at 100k, "
                         "not what a search there runs; a run of many queries then takes minutes")
    ap.add_argument("--json", type=Path, help="also write the results here (one entry per size)")
    args = ap.parse_args()
    if args.es_baseline:
        es_baseline(args.es_baseline)  # a bad value stops here, not after the build
    dims = tuple(int(d) for d in args.dims.split(","))
    assert len(dims) == 3
    sizes = [int(x) for x in str(args.n).split(",") if x.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in CONFIGS]
    if unknown:
        sys.exit(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")

    out: list[dict[str, Any]] = []
    for n in sizes:
        results, load, version = run_size(n, dims, backends, args)  # type: ignore[arg-type]
        print_table(n, results, load, version, args)
        out.append({"n": n, "load": load, "es_version": version, "results": results})
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "sizes": out},
                                            indent=2, default=str))


def run_size(
    n: int, dims: tuple[int, int, int], backends: list[str], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], tuple[float, float, float], str]:
    corpus = Corpus(n, dims, args.regions, args.seed)
    results: dict[str, dict[str, Any]] = {}
    if args.keep:
        workdir = args.keep / f"{n}-seed{args.seed}-dims{'x'.join(map(str, dims))}-r{args.regions}"
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="imgrag-bench-"))
    load = os.getloadavg()
    version = "-"
    try:
        vectors = workdir / "page-vectors.npz"
        if args.keep and vectors.exists():
            with np.load(vectors) as z:
                corpus.img[:], corpus.txt[:] = z["img"], z["txt"]
        else:
            print(f"generating the corpus ({n} pages) ...", file=sys.stderr, flush=True)
            for start in range(0, corpus.n, 2000):  # fills the page vectors the queries are drawn near
                corpus.batch(start, 2000)
            if args.keep:
                np.savez(vectors, img=corpus.img, txt=corpus.txt)
        queries = corpus.queries(args.queries + args.warmup, args.seed)
        truth = RegionTruth(queries[args.warmup :][: args.recall_queries], n)
        truth_file = workdir / f"region-truth-q{args.queries}-w{args.warmup}-r{args.recall_queries}.npz"
        if args.keep:
            # the queries are one seeded sequence, the same first ones whatever --queries: an exact
            # region search saved by a run with another --queries (same --warmup / --recall-queries)
            # serves too (computing it reads every page of the corpus again: minutes at 100k)
            for f in (truth_file, *sorted(workdir.glob(f"region-truth-q*-w{args.warmup}-r{args.recall_queries}.npz"))):
                if truth.load(f, n):
                    truth_file = f
                    break
        import lancedb  # noqa: F401  (loaded before the RSS baseline of the first column)
        from imgrag.indexing.search import Searcher  # noqa: F401
        from imgrag.indexing.stores.elastic import ElasticStore  # noqa: F401

        for b in backends:
            print(f"== {b} ({n} pages)", file=sys.stderr, flush=True)
            url = args.es_url
            # without --es-url every Elasticsearch column gets a fresh server: its RSS is its own
            fresh = CONFIGS[b][0] == "elasticsearch" and not url
            if fresh:
                url = es_start(args.es_heap, args.es_port, workdir / "es-data" if args.keep else None)
            try:
                if CONFIGS[b][0] == "elasticsearch":
                    version = es_version(url)
                results[b] = run_backend(b, corpus, queries, truth, args, workdir, url)
                if args.keep and not truth_file.exists():
                    truth.save(truth_file)
                print(f"  [{b}] {json.dumps(results[b], default=str)}", file=sys.stderr, flush=True)
            finally:
                if fresh:
                    es_stop(url)  # type: ignore[arg-type]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return results, load, version


def _mb(x: int | None) -> str:
    if x is None:
        return "-"
    mb = x / 2**20
    return f"{mb:,.1f} MB" if mb < 100 else f"{mb:,.0f} MB"


def print_table(
    n: int, results: dict[str, dict[str, Any]], load: tuple[float, float, float], version: str, args: argparse.Namespace
) -> None:
    names = list(results)
    w, c = 36, 18
    print()
    print(f"imgrag backend benchmark · {n} pages × {args.regions} regions · dims {args.dims} · "
          f"{args.queries} queries (+{args.warmup} warm-up) · recall over {args.recall_queries} · batch {args.batch}")
    es = Settings()
    print(f"Elasticsearch {version} · num_candidates pages / one-stage regions {es.es_num_candidates} / "
          f"{es.es_region_num_candidates} (at least 2k) · rescore oversample {es.es_rescore_oversample:g} · 1 shard, 0 replicas"
          + ("" if args.es_url else " · a fresh server per column"))
    print(f"machine: {os.cpu_count()} CPUs · load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print()

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        print(f"{label:{w}s}" + "".join(f"{cell(results[m]):>{c}s}" for m in names))

    row("", lambda r: "")
    print(f"{'':{w}s}" + "".join(f"{m:>{c}s}" for m in names))
    row("index: build s", lambda r: f"{r['write_s'] + r['commit_s']:.1f}")
    row("index: pages/s", lambda r: f"{r['pages_per_s']:.1f}")
    row("index: commit s", lambda r: f"{r['commit_s']:.1f}")
    row("disk", lambda r: _mb(r["disk_bytes"]))
    row("vector RAM (est.)", lambda r: _mb(r["vector_ram_bytes"]))
    row("RSS: bench process peak Δ", lambda r: _mb(r["rss_peak_bytes"]))
    row("RSS: Elasticsearch JVM", lambda r: _mb(r["es_rss_bytes"][0]) if r.get("es_rss_bytes") else "-")
    row("  of it mmapped files", lambda r: _mb(r["es_rss_bytes"][1]) if r.get("es_rss_bytes") else "-")
    row("two-stage (from pages)", lambda r: f"{'yes' if r['two_stage'] else 'no'} ({r['two_stage_pages']})")
    tags = [t for t in (baseline_tag(args, "lancedb"), baseline_tag(args, "elasticsearch")) if t]
    extra = [f", {t}" for t in tags] + ([", other store"] if args.other_store else [])
    for label in ("recall image", *(f"recall image{e}" for e in extra), "recall image, photo",
                  *(f"recall image, photo{e}" for e in extra), "recall text", *(f"recall text{e}" for e in extra),
                  "recall regions tile", "recall regions text", "recall regions tile, fused", "recall regions text, fused"):
        row(label.replace("recall", "recall@10"), lambda r, label=label: f"{r[label]:.3f}" if label in r else "-")  # type: ignore[misc]
    more = sorted({k for r in results.values() for k in r if k.startswith("fused top-10 overlap, ")}
                  - {"fused top-10 overlap, two-stage", "fused top-10 overlap, one-stage"})
    for label in ("fused top-10 overlap, two-stage", "fused top-10 overlap, one-stage", *more):
        row(label.replace("fused ", "") + " vs exact", lambda r, label=label: f"{r[label]:.3f}" if label in r else "-")  # type: ignore[misc]
    for key in ("store_fragments", "other_store_fragments"):
        row(f"data files (pages / regions), {key.replace('_fragments', '').replace('_', ' ')}",
            lambda r, key=key: f"{r[key]['images']} / {r[key]['regions']}" if key in r else "-")  # type: ignore[misc]
    print(f"{'latency ms (p50 / p95)':{w}s}")
    for route in results[names[0]]["latency"]:
        row("  " + route, lambda r, route=route: f"{r['latency'][route][0]:.1f} / {r['latency'][route][1]:.1f}"  # type: ignore[misc]
            if route in r["latency"] else "-")
    print(f"{'fused p95 ms: 90 % bootstrap interval':{w}s}")
    for route in results[names[0]].get("p95_interval", {}):
        row("  " + route, lambda r, route=route: "{:.1f} – {:.1f}".format(*r["p95_interval"][route])  # type: ignore[misc]
            if route in r.get("p95_interval", {}) else "-")
    print(f"{'CPU ms / call, this process (mean)':{w}s}")
    for route in results[names[0]]["cpu_ms"]:
        row("  " + route, lambda r, route=route: f"{r['cpu_ms'][route]:.1f}" if route in r["cpu_ms"] else "-")  # type: ignore[misc]
    print(f"{'inside the fused searches: ms (p50 / p95)':{w}s}")
    for search, ps in results[names[0]].get("parts", {}).items():
        print(f"  {search}")
        for part in ps:
            row("    " + part, lambda r, search=search, part=part: "{:.1f} / {:.1f}".format(*r["parts"][search][part])  # type: ignore[misc]
                if part in r.get("parts", {}).get(search, {}) else "-")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
