"""Elasticsearch region names (``IMGRAG_ES_REGION_NAMED_PAGES``) side by side on an index that
``bench_backends.py --keep DIR`` built (es-int8 column), interleaved query by query: every ranked
page's regions named (0, one request with inner hits, the code before) against the best 10 pages'
(10, the default), each two-stage and one-stage; the fused top-10 overlap with the naming-every-page
search and page kNN recall@10 against exact cosine search.

    python benchmarks/bench_es_regions.py /tmp/b100k 100000 http://127.0.0.1:9271 15

Start the server on the kept data first (``IMGRAG_ES_DATA=DIR/<n>-.../es-data tests/elasticsearch.sh
start``); the queries are bench_backends.py's (seed 0, 20 + 3 warm-up)."""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_backends as bb
from imgrag.indexing.config import Settings
from imgrag.indexing.search import Searcher, SearchRequest
from imgrag.indexing.stores.base import OPERATOR, Filters, ModelSpaces

keep, n, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
nq = int(sys.argv[4]) if len(sys.argv) > 4 else 20
wd = keep / f"{n}-seed0-dims384x1280x384-r15"
corpus = bb.Corpus(n, (384, 1280, 384), 15, 0)
with np.load(wd / "page-vectors.npz") as z:
    corpus.img[:], corpus.txt[:] = z["img"], z["txt"]
queries = corpus.queries(20 + 3, 0)
prefix = json.loads((wd / "es-int8.json").read_text())["prefix"]
print(f"n={n} load {os.getloadavg()} {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
spaces = ModelSpaces(image="bench-joint", image_dim=384, feature="bench-feat", feature_dim=1280, text="bench-text", text_dim=384)
stores = {}
for named in (0, 10):
    st, close, _ = bb.open_backend("es-int8", wd, url, "int8_hnsw", prefix=prefix, keep=True)
    st.settings = st.settings.model_copy(update={"es_region_named_pages": named})
    stores[named] = (st, close)
segs = stores[0][0].es.cat.segments(index=f"{prefix}-*", format="json")
print("segments:", len(segs), flush=True)
img_q, txt_q = {q.text: q.image for q in queries}, {q.text: q.text_vec for q in queries}
base = Settings(search_cache=0)
cols = {}
for named in (0, 10):
    for label, tsp in (("two-stage", 1), ("one-stage", 0)):
        cols[f"{label}, named={named}"] = Searcher(bb._BenchRuntime(stores[named][0], img_q, txt_q, spaces, base.model_copy(update={"two_stage_pages": tsp})))
user = bb.Principal(name="bench-user", groups=["g3"])
year = Filters(date_from=bb.date(2023, 1, 1), date_to=bb.date(2023, 12, 31))
for sr in cols.values():
    for q in queries[:3]:
        sr.search(SearchRequest(query=q.text, k=10), OPERATOR)
lat = {c: [] for c in cols}; cpu = {c: [] for c in cols}; top = {c: [] for c in cols}
latu = {c: [] for c in cols if c.startswith("two")}
for q in queries[3:3 + nq]:
    for c, sr in cols.items():
        sr._cache.data.clear()
        t, p = time.perf_counter(), time.process_time()
        r = sr.search(SearchRequest(query=q.text, k=10), OPERATOR)
        lat[c].append((time.perf_counter() - t) * 1000); cpu[c].append((time.process_time() - p) * 1000)
        top[c].append([h.image_id for h in r.hits])
        if c in latu:
            sr._cache.data.clear()
            t = time.perf_counter(); sr.search(SearchRequest(query=q.text, k=10, filters=year), user); latu[c].append((time.perf_counter() - t) * 1000)
print(f"fused search, {nq} queries (+3 warm-up), interleaved; load now {os.getloadavg()[0]:.1f}")
for c in cols:
    ref = top["two-stage, named=0"] if c.startswith("two") else top["one-stage, named=0"]
    ov = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top[c], ref)])
    u = f"  user+2023 {np.percentile(latu[c],50):.1f}/{np.percentile(latu[c],95):.1f}" if c in latu else ""
    print(f"  {c:22s} p50/p95 {np.percentile(lat[c],50):7.1f}/{np.percentile(lat[c],95):7.1f} ms  CPU {np.mean(cpu[c]):5.1f} ms  top-10 overlap vs named=0 {ov:.3f}{u}")
tw = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top["two-stage, named=10"], top["one-stage, named=0"])])
print(f"  top-10 overlap two-stage named=10 vs one-stage named=0 (main's one-stage): {tw:.3f}")
st = stores[10][0]
for label, field, mat, attr in (("image", "image", corpus.img, "image"), ("text", "text", corpus.txt, "text_vec")):
    hits = 0
    for q in queries[3:13]:
        exact = set(np.argsort(-(mat @ getattr(q, attr)))[:10].tolist())
        got = {int(h.image_id[3:]) for h in st.knn(field, getattr(q, attr), 10, Filters(), OPERATOR)}
        hits += len(exact & got)
    print(f"  page recall@10 {label}: {hits / 100:.3f}")
for s, close in stores.values():
    close()
