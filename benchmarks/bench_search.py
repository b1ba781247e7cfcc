"""Fused search latency in process, this checkout beside a baseline checkout, in the same run.

    python benchmarks/bench_search.py --source ~/.imgrag-demo --pages 1000 \\
        [--baseline-tree /path/to/a/worktree/of/main] [--rounds 5] [--queries FILE.jsonl] [--as-user NAME]

The index: ``--pages`` pages (default 1000) made from the real pages of one or more ``--source``
indexes (``IMGRAG_HOME`` folders on LanceDB, e.g. the eval caches' ``index-*`` folders or the demo):
each source page is copied as often as needed under a new id (same file, same document), its
vectors nudged by a little noise so no two copies tie. Built once into ``--home`` (default ``/tmp/imgrag-bench-search-<pages>``) and
reused while the sources stay the same.

Each checkout (``.`` and ``--baseline-tree``) runs in its own child process (``python -m`` from its
root imports that checkout's code) on the same index, with the real query embedders, and the
parent interleaves them round by round, so machine load hits both alike. Per round and checkout:

* ``cold query``: a new ``Searcher`` (no embedded or cached queries), every query once — what an
  agent's first question costs, and what ``imgrag eval retrieval`` reports;
* ``page 2``: the same queries' second page (k=10, offset 10) on that searcher, as an agent asks
  for it right after page 1 (query embeddings cached, results not); and how many page-2 hits had
  been on page 1 too (a page that repeats or skips hits);
* ``embedded query``: the same queries again with k=9 on that searcher: the query embeddings are
  cached (both checkouts have that cache), the results are not (another k is another request);
* ``repeated query``: that again, the very same requests (a checkout with a result cache answers
  from it).

Printed: p50 / p95 / mean per checkout and row, the per-stage p50 / p95 the searcher reports, and
whether both checkouts returned the same hits (ids and order) for every query.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import JsonChild

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_QUERIES = [
    "甲方 盖章 日期", "合同签订日期", "contract agreement", "payment terms", "date of agreement", "乙方",
    "a cat", "一只猫", "a rocket", "astronaut", "coffee cup", "seal", "甲方 盖章", "违约责任",
    "Debian package management", "软件包", "apt-get install", "kernel modules", "network configuration",
    "备份", "system administration", "the party B shall pay", "signature", "合同编号", "governing law",
    "termination of the agreement", "a photo of a person", "红色印章", "invoice total amount", "源代码",
]


# -- the index ------------------------------------------------------------------------------------
def _stamp(sources: list[Path], pages: int) -> str:
    h = hashlib.sha256(f"copies-v2/{pages}".encode())
    for s in sources:
        for f in sorted((s / "index").rglob("*.manifest")):
            h.update(str(f.relative_to(s)).encode())
    return h.hexdigest()[:16]


def build_index(sources: list[Path], home: Path, pages: int, seed: int = 0) -> None:
    """Copy the sources' pages (records, vectors, regions and their vectors) into ``home`` until it
    holds ``pages`` pages; each copy's vectors get a small random nudge."""
    from imgrag.indexing.stores.base import OPERATOR, Filters, ImageVectors, Indexed, RegionRecord
    from imgrag.indexing.stores.lance import LanceStore

    stamp = _stamp(sources, pages)
    done = home / "bench-built.json"
    if done.is_file() and json.loads(done.read_text()).get("stamp") == stamp:
        return
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    src_pages: list[tuple[Any, Any, list[Any], dict[str, np.ndarray]]] = []
    spaces = None
    for s in sources:
        st = LanceStore(s / "index")
        spaces = spaces or st.spaces()
        if st.spaces() != spaces:
            sys.exit(f"{s} was built with other models than {sources[0]}")
        for rec in st.list_images(OPERATOR, Filters(), limit=1_000_000):
            vecs = st.get_vectors(rec.image_id, OPERATOR)
            regions = st.regions_of([rec.image_id])
            rvecs = st.region_vectors([r.region_id for r in regions])
            src_pages.append((rec, vecs, regions, rvecs))
        st.close()
    if not src_pages or spaces is None:
        sys.exit("the sources hold no pages")
    rng = np.random.default_rng(seed)

    def nudge(v: np.ndarray) -> np.ndarray:
        v = v + rng.normal(scale=0.3 / np.sqrt(v.shape[-1]), size=v.shape).astype(np.float32)
        return (v / np.linalg.norm(v)).astype(np.float32)

    out = LanceStore(home / "index")
    out.ensure_spaces(spaces)
    batch: list[Indexed] = []
    with out.writer():
        for i in range(pages):
            rec, vecs, regions, rvecs = src_pages[i % len(src_pages)]
            copy = i // len(src_pages)
            iid = f"{rec.image_id}-c{copy}" if copy else rec.image_id
            # a copy keeps the file (path and document id): the MCP tools can crop and re-read it
            # and is public: bench_mcp's --load clients are plain token users (an eval index's pages are
            # the operator's alone, default deny)
            r2 = rec.model_copy(update={"image_id": iid, "acl": []})
            v2 = ImageVectors(image=nudge(vecs.image) if copy else vecs.image,
                              feature=nudge(vecs.feature) if copy else vecs.feature,
                              text=nudge(vecs.text) if copy else vecs.text)
            regs = [
                RegionRecord(region_id=f"{iid}:{r.region_id}" if copy else r.region_id, image_id=iid, kind=r.kind,
                             label=r.label, bbox=r.bbox, text=r.text, pii_kinds=r.pii_kinds,
                             vector=nudge(rvecs[r.region_id]) if copy else rvecs[r.region_id])
                for r in regions if r.region_id in rvecs
            ]
            batch.append(Indexed(record=r2, vectors=v2, regions=regs))
            if len(batch) == 100:
                out.write(batch)
                batch = []
        out.write(batch)
        out.commit("bench copy", {"pages": pages})
    out.close()
    done.write_text(json.dumps({"stamp": stamp, "sources": [str(s) for s in sources], "pages": pages}))


def load_queries(path: Path | None, n: int) -> list[str]:
    if path is None:
        qs = DEFAULT_QUERIES
    else:
        qs = list(dict.fromkeys(json.loads(line)["query"] for line in path.read_text().splitlines() if line.strip()))
        step = max(1, len(qs) // n)
        qs = qs[::step]
    return qs[:n]


# -- the child: one checkout ------------------------------------------------------------------------
CHILD = r"""
import json, sys, time
from imgrag.indexing.app import Imgrag
from imgrag.indexing.config import Settings
from imgrag.indexing.search import Searcher, SearchRequest
from imgrag.indexing.stores.base import OPERATOR, Principal
app = Imgrag(Settings(home=sys.argv[1], audit=False))
app.warm_up()
queries = json.loads(sys.argv[2])
user = sys.argv[3]
who = Principal(name=user) if user else OPERATOR
Searcher(app.rt).search(SearchRequest(query="warm up", k=10), OPERATOR)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    searcher = app.searcher = Searcher(app.rt)
    # as a user: the facade's search, which leaves personal data out of the query and masks the hits
    search = app.search if user else searcher.search
    rows = {}
    for row, k, offset in (("cold query", 10, 0), ("page 2", 10, 10), ("embedded query", 9, 0), ("repeated query", 9, 0)):
        out = []
        for q in queries:
            t, c = time.perf_counter(), time.process_time()
            res = search(SearchRequest(query=q, k=k, offset=offset), who)
            out.append({"ms": (time.perf_counter() - t) * 1000, "cpu_ms": (time.process_time() - c) * 1000,
                        "stages": res.timings_ms,
                        "hits": [h.image_id for h in res.hits]})
        rows[row] = out
    print(json.dumps(rows), flush=True)
"""


class Child(JsonChild):
    def __init__(self, tree: Path, home: Path, queries: list[str], user: str = "") -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        super().__init__(tree, CHILD, [str(home), json.dumps(queries), user], env)

    def round(self) -> dict[str, list[dict[str, Any]]]:
        return self.send({})  # type: ignore[no-any-return]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, action="append", required=True,
                    help="IMGRAG_HOME of an existing LanceDB index whose pages are copied (repeatable)")
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--home", type=Path, help="where the copied index lives (default /tmp/imgrag-bench-search-<pages>)")
    ap.add_argument("--baseline-tree", type=Path, help="a checkout to compare with (e.g. `git worktree add /tmp/main main`)")
    ap.add_argument("--baseline-home", type=Path,
                    help="the baseline checkout reads this copy of the index instead (the same pages as its code "
                         "lays them out on disk, e.g. before a commit of this checkout merged their files)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=Path, help="a golden JSONL file to take queries from (default: a built-in mixed list)")
    ap.add_argument("--n-queries", type=int, default=30)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--as-user", metavar="NAME", default="",
                    help="search as this plain principal (no PII clearance: the facade's masked search, as an MCP "
                         "token holder gets it) instead of as the operator; the copied pages are public")
    args = ap.parse_args()
    home = args.home or Path(f"/tmp/imgrag-bench-search-{args.pages}")
    sys.path.insert(0, str(ROOT))
    t = time.perf_counter()
    build_index([s.expanduser().resolve() for s in args.source], home, args.pages)
    print(f"index: {home} ({args.pages} pages, ready in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    queries = load_queries(args.queries, args.n_queries)
    trees = {"this": ROOT}
    if args.baseline_tree:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    homes = {name: (args.baseline_home if name == "baseline" and args.baseline_home else home) for name in trees}
    children = {name: Child(tree, homes[name], queries, args.as_user) for name, tree in trees.items()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in trees}
    load = os.getloadavg()
    try:
        for r in range(args.rounds):
            for name, ch in children.items():  # interleaved: load hits both alike
                for row, xs in ch.round().items():
                    results[name].setdefault(row, []).extend(xs)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    finally:
        for ch in children.values():
            ch.close()

    print(f"\nFused search (hybrid + re-rank, k=10 / 9) in process · {args.pages} pages · {len(queries)} queries × "
          f"{args.rounds} rounds · load average {load[0]:.1f} · {os.cpu_count()} CPUs · as "
          + (f"user {args.as_user!r} (masked)" if args.as_user else "the operator"))
    if args.baseline_home:
        print(f"the baseline read {args.baseline_home}, this checkout {home}")
    print("wall ms: p50 / p95 / mean; CPU ms: the process's CPU time per search, all threads (steadier on a busy machine)")
    print(f"{'':<18}" + "".join(f"{f'{n} wall p50 / p95 / mean':>34}{'CPU':>8}" for n in trees))
    for row in ("cold query", "page 2", "embedded query", "repeated query"):
        cells = []
        for n in trees:
            ms = [x["ms"] for x in results[n][row]]
            cpu = statistics.fmean(x["cpu_ms"] for x in results[n][row])
            cells.append(f"{pct(ms, 50):>20.1f} / {pct(ms, 95):>6.1f} / {statistics.fmean(ms):>6.1f}{cpu:>8.1f}")
        print(f"{row:<18}" + "".join(cells))
    print("\nstages, cold query (p50 / p95 ms; routes that run concurrently overlap, so they do not add up)")
    for n in trees:
        stages: dict[str, list[float]] = {}
        for x in results[n]["cold query"]:
            for s, v in x["stages"].items():
                stages.setdefault(s, []).append(v)
        print(f"  {n}: " + ", ".join(f"{s} {pct(v, 50):.0f}/{pct(v, 95):.0f}" for s, v in stages.items()))
    for n in trees:
        firsts, seconds = results[n]["cold query"], results[n]["page 2"]
        again = [len(set(x["hits"]) & set(y["hits"])) for x, y in zip(firsts, seconds, strict=True)]
        print(f"  {n}: page 2 repeated a hit of page 1 in {sum(a > 0 for a in again)} of {len(again)} searches "
              f"({sum(again)} hits)")
    if len(trees) == 2:
        a, b = (results[n]["cold query"] for n in trees)
        same = sum(x["hits"] == y["hits"] for x, y in zip(a, b, strict=True))
        print(f"\nsame hits (ids and order) in both checkouts: {same} of {len(a)} searches")
    if args.json:
        args.json.write_text(json.dumps({"queries": queries, "results": results}, indent=1))


if __name__ == "__main__":
    main()
