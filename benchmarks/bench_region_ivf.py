"""The LanceDB region route alone, at scale: recall and latency of a vector index against exact search.

    python benchmarks/bench_region_ivf.py --pages 100000 --index "flat:366:37,92,183"
    python benchmarks/bench_region_ivf.py --pages 100000 --index "flat:171:18,43,86" --no-placeholders
    python benchmarks/bench_region_ivf.py --pages 100000 --mode pages --index "hnswsq:24:20/500/10,24/500/10"

A component benchmark for what ``benchmarks/bench_backends.py`` cannot vary without a full rebuild
(~25 min at 100k pages): one table shaped like the store's regions table (per page 7 tiles near the
page's joint vector, and 8 text-block rows that carry a placeholder in this column, as the store's
``tile_vec`` does), the same synthetic vectors as bench_backends (300 topics, the same noise), the
route's query (k=200, ``kind = 'tile'`` prefilter, cosine) and its recall measure: the first 10
distinct pages of the 200 regions against the 10 pages with the best tile by exact cosine.
``--mode pages`` does the same for the page kNN route (k=50 on one 384-d column, recall@10).
Each ``--index`` entry is ``TYPE:PARTITIONS:SEARCHES``: TYPE flat (IVF_FLAT), sq (IVF_SQ) or hnswsq
(IVF_HNSW_SQ); SEARCHES comma-separated ``nprobes[/ef[/refine]]``. Indices are built one after the
other on the same table. The numbers depend on the load of the machine; recall does not.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import Bitmap, BTree, IvfFlat, IvfHnswSq, IvfSq

DIM, TILES, BLOCKS, TOPICS = 384, 7, 8, 300
INDICES = {"flat": IvfFlat, "sq": IvfSq, "hnswsq": IvfHnswSq}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--mode", choices=["regions", "pages"], default="regions")
    ap.add_argument("--index", required=True, help="TYPE:PARTITIONS:nprobes[/ef[/refine]],...; several separated by ';'")
    ap.add_argument("--queries", type=int, default=30, help="queries (the first 3 are not timed)")
    ap.add_argument("--exact", action="store_true", help="also time the exact scan (slow at 100k pages)")
    ap.add_argument("--no-placeholders", action="store_true", help="tile rows only (no text-block rows)")
    args = ap.parse_args()
    pages, regions = args.pages, args.mode == "regions"
    blocks = 0 if args.no_placeholders else BLOCKS
    rng = np.random.default_rng(0)
    cent = unit(rng.normal(size=(TOPICS, DIM)))
    topic = rng.integers(0, TOPICS, size=pages)
    placeholder = unit(np.ones((1, DIM)))[0]
    img_all = np.zeros((pages, DIM), np.float32)
    tiles_all, tile_page = [], []
    path = Path(tempfile.mkdtemp(prefix="imgrag-region-ivf-"))
    try:
        db = lancedb.connect(path)
        tbl = None
        t0 = time.time()
        for s in range(0, pages, 5000):
            n = min(5000, pages - s)
            img = unit(cent[topic[s : s + n]] + 0.6 * rng.normal(size=(n, DIM)) / math.sqrt(DIM) * 4)
            img_all[s : s + n] = img
            if regions:
                t = unit(np.repeat(img, TILES, 0) + 0.8 * rng.normal(size=(n * TILES, DIM)) / math.sqrt(DIM) * 4)
                vecs = np.concatenate([t, np.tile(placeholder, (n * blocks, 1))])
                kinds = ["tile"] * (n * TILES) + ["block"] * (n * blocks)
                owners = np.concatenate([np.repeat(np.arange(s, s + n), TILES), np.repeat(np.arange(s, s + n), blocks)])
                tiles_all.append(t)
                tile_page.append(owners[: n * TILES])
            else:
                vecs, kinds, owners = img, ["page"] * n, np.arange(s, s + n)
            data = pa.table({
                "image_id": [f"img{i:07d}" for i in owners], "kind": kinds, "deleted": [False] * len(kinds),
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM),
            })
            if tbl is None:
                tbl = db.create_table("t", data)
            else:
                tbl.add(data)
        assert tbl is not None
        print(f"wrote {tbl.count_rows()} rows in {time.time() - t0:.0f} s", flush=True)
        qrng = np.random.default_rng(1)
        queries = [unit(img_all[j] + 0.5 * qrng.normal(size=DIM) / math.sqrt(DIM) * 4) for j in qrng.integers(0, pages, args.queries)]
        if regions:  # exact truth: each page's best tile per query
            allt, allp = np.concatenate(tiles_all), np.concatenate(tile_page)
            truth = []
            for q in queries:
                best = np.full(pages, -2.0, np.float32)
                np.maximum.at(best, allp, allt @ q)
                truth.append(set(np.argsort(-best)[:10].tolist()))
            del allt, tiles_all
            k, where = 200, "kind = 'tile' AND deleted = false"
        else:
            truth = [set(np.argsort(-(img_all @ q))[:10].tolist()) for q in queries]
            k, where = 50, "deleted = false"
        tbl.create_index("image_id", config=BTree())
        tbl.create_index("kind", config=Bitmap())
        tbl.create_index("deleted", config=Bitmap())

        def measure(label: str, nprobes: int, ef: int | None = None, refine: int | None = None) -> None:
            lat, hits = [], 0
            for i, q in enumerate(queries):
                qq = tbl.search(q, vector_column_name="vec").distance_type("cosine").nprobes(nprobes)
                if ef:
                    qq = qq.ef(ef)
                if refine:
                    qq = qq.refine_factor(refine)
                t = time.perf_counter()
                r = qq.where(where, prefilter=True).select(["image_id"]).limit(k).to_arrow()
                lat.append(time.perf_counter() - t)
                seen: list[int] = []
                for x in r.column("image_id").to_pylist():
                    if int(x[3:]) not in seen:
                        seen.append(int(x[3:]))
                hits += len(truth[i] & set(seen[:10]))
            ms = np.array(lat[3:]) * 1000
            print(f"{label:45s} p50 {np.percentile(ms, 50):7.1f} p95 {np.percentile(ms, 95):7.1f} ms  "
                  f"recall@10 {hits / (10 * len(queries)):.3f}", flush=True)

        if args.exact:
            measure("exact (no index)", 1)
        for entry in args.index.split(";"):
            kind, parts, searches = entry.split(":")
            t = time.time()
            tbl.create_index("vec", config=INDICES[kind](distance_type="cosine", num_partitions=int(parts)), replace=True)
            print(f"-- {kind} {parts} partitions built in {time.time() - t:.0f} s", flush=True)
            for spec in searches.split(","):
                nprobes, ef, refine = (int(x) if x else None for x in (spec.split("/") + ["", ""])[:3])
                measure(f"{kind}/{parts} nprobes {nprobes} ef {ef} refine {refine}", nprobes or 1, ef, refine)
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
