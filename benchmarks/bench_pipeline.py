"""Indexing throughput and search latency on the embedded store, side by side.

Indexing: document pages (generated contracts, a share scanned-looking) and photos, each with
1 and 2 analysis workers, after every model is loaded (``Runtime.load_models``: model sessions,
torch, the bridge's label vectors), so the rows are steady-state per-page costs. CPU-s/item is
the process's CPU time (all threads) per item: on a shared box it is steadier than wall time.
Beside them, measured in the same run on the same decoded images: "RapidOCR alone" (``RapidOCR()``
with its defaults, one page after the other: the OCR limit a document page cannot beat) and
"Lite0 alone" (the bridge's EfficientNet-Lite0 forward pass, batched: the floor for a photo),
and the ratio imgrag ÷ alone in items/s and in CPU-s (the target: ≥ 0.9× for documents).
Search: p50/p95 per mode (keyword-only, vector-only, hybrid, hybrid without re-rank) over the
same queries, after a warm-up.

``--compare-spin`` runs the indexing part twice more, in child processes (the OpenMP wait policy is
fixed when libgomp loads), with ``IMGRAG_THREAD_SPIN=1`` (runtimes' spinning default) and ``0``
(imgrag's default: idle pool threads sleep), and prints them side by side.

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_pipeline.py [--docs 12] [--photos 8] [--queries 40]
        [--workers 1,2] [--compare-spin] [--index-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's imgrag
    sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _print_rows(rows: list[tuple]) -> None:
    print(f"{'corpus':<16}{'workers':>8}{'spin':>6}{'items':>7}{'seconds':>10}{'items/s':>9}{'CPU-s/item':>12}")
    for label, w, spin, n, dt, cpu in rows:
        print(f"{label:<16}{w:>8}{spin:>6}{n:>7}{dt:>10.1f}{n / dt:>9.2f}{cpu / n:>12.2f}")


def _compare_spin(args: argparse.Namespace) -> list[tuple]:
    """The indexing rows under IMGRAG_THREAD_SPIN=1 and =0, each in a fresh child process."""
    rows: list[tuple] = []
    for spin in ("1", "0"):
        env = {**os.environ, "IMGRAG_THREAD_SPIN": spin}
        env.pop("OMP_WAIT_POLICY", None)
        cmd = [sys.executable, __file__, "--docs", str(args.docs), "--photos", str(args.photos),
               "--workers", args.workers, "--index-only", "--json"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows += [tuple(r) for r in json.loads(out.strip().splitlines()[-1])]
    return rows


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def build_corpus(root: Path, n_docs: int, n_photos: int) -> tuple[Path, Path, list[str]]:
    from skimage import data

    from imgrag.evals.datasets.contracts import make_contracts

    docs = root / "docs"
    specs = make_contracts(docs, n=n_docs, seed=1, variants=True)
    photos = root / "photos"
    photos.mkdir()
    names = ["astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "retina"]
    for i in range(n_photos):
        img = getattr(data, names[i % len(names)])()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        # vary each copy so content hashes differ
        img = np.roll(img, 7 * i, axis=1)
        Image.fromarray(img).save(photos / f"photo_{i:03d}.jpg", quality=90)
    queries = []
    for s in specs:
        queries += [s.party_a, s.party_b, s.sign_date_text, "合同签订日期" if s.lang == "zh" else "date of agreement"]
    queries += ["a cat", "一只猫", "a rocket", "astronaut", "coffee cup", "seal", "甲方 盖章", "payment terms"]
    return docs, photos, queries


def _decoded(folder: Path) -> list[np.ndarray]:
    from imgrag.indexing.loader import iter_pages

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return [pg.image for f in files for pg in iter_pages(f, max_pixels=10**9, pdf_dpi=150)]


def _alone_rows(docs: Path, photos: Path) -> list[tuple]:
    """The baselines: RapidOCR with its defaults on the document pages, Lite0 on the photos."""
    from rapidocr import RapidOCR

    from imgrag.indexing.embedders import get_image_text_embedder
    from imgrag.indexing.threads import patch_ort_sessions

    patch_ort_sessions()  # the same ONNX Runtime wait policy as imgrag's own sessions
    ocr = RapidOCR(params={"Global.log_level": "error"})
    pages = _decoded(docs)
    ocr(np.ascontiguousarray(pages[0][:, :, ::-1]))  # load the sessions outside the timing
    t, c = time.perf_counter(), _cpu()
    for img in pages:
        ocr(np.ascontiguousarray(img[:, :, ::-1]))
    rows = [("RapidOCR alone", len(pages), time.perf_counter() - t, _cpu() - c)]
    bridge = get_image_text_embedder("bridge")
    pics = _decoded(photos)
    bridge.classify(pics[:1])
    t, c = time.perf_counter(), _cpu()
    for start in range(0, len(pics), 8):
        bridge.classify(pics[start : start + 8])
    rows.append(("Lite0 alone", len(pics), time.perf_counter() - t, _cpu() - c))
    return rows


def _print_vs(rows: list[tuple], alone: list[tuple]) -> None:
    print(f"{'baseline':<16}{'items':>7}{'seconds':>10}{'items/s':>9}{'CPU-s/item':>12}")
    for label, n, dt, cpu in alone:
        print(f"{label:<16}{n:>7}{dt:>10.1f}{n / dt:>9.2f}{cpu / n:>12.2f}")
    base = {"document pages": alone[0], "photos": alone[1]}
    print(f"{'imgrag ÷ alone':<16}{'workers':>8}{'by items/s':>12}{'by CPU-s':>10}   (baseline)")
    for label, w, _spin, n, dt, cpu in rows:
        b = base[label]
        print(f"{label:<16}{w:>8}{(n / dt) / (b[1] / b[2]):>11.2f}×{(b[3] / b[1]) / (cpu / n):>9.2f}×   ({b[0]})")


def _profile(root: Path, docs: Path, n: int, workers: int) -> None:
    """CPU-s per document page by stage and by thread, models loaded."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _stages

    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings

    _stages.install()
    _stages.set_clock(workers > 1)
    ig = Imgrag(Settings(home=root / "home-profile", workers=workers))
    ig.rt.load_models()
    _stages.wrap_object(ig.rt.image_embedder, ("embed_images",), "image embedder")
    _stages.wrap_object(ig.rt.store, ("write", "commit"), "store")
    t, c = time.perf_counter(), _cpu()
    with _stages.ThreadSampler() as threads:
        summary = ig.index([str(docs)])
    dt, cpu = time.perf_counter() - t, _cpu() - c
    assert summary.indexed == n, summary
    _stages.report(n, workers)
    print(f"  {'imgrag index in all':<36}{cpu / n:>8.3f}   ({dt / n:.1f} s wall a page)")
    threads.report(n)
    _stages.set_clock(False)
    _stages.replay_e5(ig.rt.text_embedder, n)
    alone = _alone_rows(docs, docs)[0]
    print(f"  {'RapidOCR() alone, same pages':<36}{alone[3] / alone[1]:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=12)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to index with")
    ap.add_argument("--compare-spin", action="store_true", help="also index with thread spinning on and off")
    ap.add_argument("--index-only", action="store_true", help="skip the search benchmark")
    ap.add_argument("--profile", action="store_true",
                    help="only index the document pages (--workers: one count) and print CPU-s per page by stage and thread")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode of --compare-spin
    args = ap.parse_args()
    from imgrag.indexing.threads import spin_enabled

    spin = "on" if spin_enabled() else "off"

    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings
    from imgrag.indexing.search import SearchRequest
    from imgrag.indexing.stores.base import OPERATOR

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs, photos, queries = build_corpus(root / "corpus", args.docs, args.photos)
        if args.profile:
            _profile(root, docs, args.docs, int(args.workers.split(",")[-1]))
            return
        rows = []
        apps: dict[int, Imgrag] = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            ig = Imgrag(Settings(home=root / f"home{workers}", workers=workers))
            ig.rt.load_models()
            apps[workers] = ig
            for label, folder, n in (("document pages", docs, args.docs), ("photos", photos, args.photos)):
                t, c = time.perf_counter(), _cpu()
                summary = ig.index([str(folder)])
                dt, cpu = time.perf_counter() - t, _cpu() - c
                assert summary.indexed == n, summary
                rows.append((label, workers, spin, n, dt, cpu))
        if args.json:
            print(json.dumps(rows))
            return
        print("\nIndexing throughput (models loaded, embedded LanceDB store)")
        _print_rows(rows)
        print("\nThe same images through the model that bounds each corpus, alone (same run)")
        _print_vs(rows, _alone_rows(docs, photos))
        if args.compare_spin:
            print("\nThe same, thread spinning on vs off (IMGRAG_THREAD_SPIN=1 / 0), fresh child processes")
            _print_rows(_compare_spin(args))
        if args.index_only:
            return

        ig = apps[max(apps)]
        searcher = ig
        qs = (queries * (args.queries // len(queries) + 1))[: args.queries]
        variants = {
            "keyword (bm25)": {"mode": "keyword"},
            "vector routes": {"mode": "vector"},
            "hybrid, no rerank": {"mode": "hybrid", "rerank": False},
            "hybrid + rerank": {"mode": "hybrid"},
        }
        for q in set(qs):  # warm the query-embedding cache equally for every variant
            searcher.search(SearchRequest(query=q, k=10), OPERATOR)
        print(f"\nSearch latency over {len(qs)} queries, k=10, {args.docs + args.photos} images (ms)")
        print(f"{'variant':<20}{'p50':>8}{'p95':>8}{'mean':>8}")
        for name, kw in variants.items():
            times = []
            for q in qs:
                t = time.perf_counter()
                searcher.search(SearchRequest(query=q, k=10, **kw), OPERATOR)
                times.append((time.perf_counter() - t) * 1000)
            print(f"{name:<20}{_pct(times, 50):>8.1f}{_pct(times, 95):>8.1f}{statistics.mean(times):>8.1f}")
        cold = Imgrag(runtime=ig.rt)  # a fresh searcher: empty query-embedding cache
        times = []
        for q in qs[:10]:
            t = time.perf_counter()
            cold.search(SearchRequest(query=q, k=10), OPERATOR)
            times.append((time.perf_counter() - t) * 1000)
        print(f"{'hybrid, cold query':<20}{_pct(times, 50):>8.1f}{_pct(times, 95):>8.1f}{statistics.mean(times):>8.1f}")


if __name__ == "__main__":
    main()
