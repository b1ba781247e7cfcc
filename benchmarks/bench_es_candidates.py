"""Elasticsearch page kNN: recall@10 against exact cosine search and latency per
``IMGRAG_ES_NUM_CANDIDATES``, on an index that ``bench_backends.py --keep DIR`` built (es-int8
column), the settings interleaved query by query. A setting is ``N`` (num_candidates, the
index's default re-score oversample) or ``N:OS`` (``IMGRAG_ES_RESCORE_OVERSAMPLE`` OS too: the
kNN gathers k × OS candidates and re-scores them on the raw vectors). ``k`` 10 (a plain kNN) and 50 (what the fused
search asks a page route for at k = 10: ``max(50, 3 k)``); the clause uses ``max(N, 2 k)``; and
the latency of the one-stage tile region route (nested kNN, 67 pages) per setting.

    python benchmarks/bench_es_candidates.py /tmp/b100k 100000 http://127.0.0.1:9271 20 100,200,400,800
    python benchmarks/bench_es_candidates.py /tmp/b100k 100000 http://127.0.0.1:9271 40 10000,2000:5,2000:10

Start the server on the kept data first (``IMGRAG_ES_DATA=DIR/<n>-.../es-data tests/elasticsearch.sh
start``); the queries are bench_backends.py's (seed 0)."""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_backends as bb
from imgrag.indexing.stores.base import OPERATOR, Filters

keep, n, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
nq = int(sys.argv[4]) if len(sys.argv) > 4 else 20
cands = (sys.argv[5] if len(sys.argv) > 5 else "100,200,400,800").split(",")
wd = keep / f"{n}-seed0-dims384x1280x384-r15"
corpus = bb.Corpus(n, (384, 1280, 384), 15, 0)
with np.load(wd / "page-vectors.npz") as z:
    corpus.img[:], corpus.txt[:] = z["img"], z["txt"]
queries = corpus.queries(nq + 3, 0)
prefix = json.loads((wd / "es-int8.json").read_text())["prefix"]
st, close, _ = bb.open_backend("es-int8", wd, url, "int8_hnsw", prefix=prefix, keep=True)
segs = st.es.cat.segments(index=f"{prefix}-*", format="json")
print(f"n={n} segments {len(segs)} load {os.getloadavg()[0]:.1f} {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
base = st.settings
settings = {c: base.model_copy(update={"es_num_candidates": int(c.split(":")[0]),
                                       **({"es_rescore_oversample": float(c.split(":")[1])} if ":" in c else {})})
            for c in cands}
fields = (("image", corpus.img, "image"), ("text", corpus.txt, "text_vec"))
exact = {(f, i): set(np.argsort(-(mat @ getattr(q, attr)))[:10].tolist())
         for f, mat, attr in fields for i, q in enumerate(queries)}
rec: dict = {}
lat: dict = {}
for i, q in enumerate(queries):
    for k in (10, 50):
        for c in cands:
            st.settings = settings[c]
            for f, _, attr in fields:
                t = time.perf_counter()
                hits = st.knn(f, getattr(q, attr), k, Filters(), OPERATOR)
                ms = (time.perf_counter() - t) * 1000
                if i < 3:
                    continue  # warm-up
                got = {int(h.image_id[3:]) for h in hits[:10]}
                rec.setdefault((k, c, f), []).append(len(got & exact[(f, i)]) / 10)
                lat.setdefault((k, c, f), []).append(ms)
    for c in cands:  # the fused search's one-stage tile route at k = 10: 200 regions, 67 pages
        st.settings = settings[c]
        t = time.perf_counter()
        st.knn_regions("tile", q.image, 200, Filters(), OPERATOR)
        if i >= 3:
            lat.setdefault(("tile", c), []).append((time.perf_counter() - t) * 1000)
st.settings = base
print(f"{nq} queries (+3 warm-up), interleaved; load now {os.getloadavg()[0]:.1f} {time.strftime('%H:%M:%S', time.gmtime())} UTC")
print(f"| k | num_candidates used (:oversample; default {base.es_rescore_oversample:g}) | recall@10 image / text | image p50 / p95 ms | text p50 / p95 ms |")
print("|---:|---:|---:|---:|---:|")
for k in (10, 50):
    for c in cands:
        r = [np.mean(rec[(k, c, f)]) for f, _, _ in fields]
        l = [f"{np.percentile(lat[(k, c, f)], 50):.1f} / {np.percentile(lat[(k, c, f)], 95):.1f}" for f, _, _ in fields]
        num = max(int(c.split(":")[0]), 2 * k)
        print(f"| {k} | {num}{':' + c.split(':')[1] if ':' in c else ''} | {r[0]:.3f} / {r[1]:.3f} | {l[0]} | {l[1]} |", flush=True)
print("tile region route (200 regions): " + ", ".join(
    f"{c}: {np.percentile(lat[('tile', c)], 50):.1f} / {np.percentile(lat[('tile', c)], 95):.1f} ms" for c in cands))
close()
