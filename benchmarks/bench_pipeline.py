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

``--split-photos`` indexes the photos in two folders, each a row of its own: those the quick look
for text (``IMGRAG_PHOTO_TEXT_GATE``) finds nothing on ("photos, no text": look, no OCR) and those it
fires on ("photos, look fires": the full detector, and the recogniser where it finds lines).
``--baseline-tree DIR`` indexes the same corpus with that checkout's code too (say a ``git worktree
add /tmp/main main``), each checkout in a child process of its own (``--code-tree``), in turns
(baseline first in odd rounds, ``--rounds``), and prints both checkouts' rows beside each other.

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_pipeline.py [--docs 12] [--photos 8] [--queries 40]
        [--workers 1,2] [--compare-spin] [--index-only] [--profile] [--split-photos] [--clean-only] [--baseline-tree DIR [--rounds 1]]
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
if "--code-tree" in sys.argv:  # a child indexing with another checkout's code (--baseline-tree)
    ROOT = Path(sys.argv[sys.argv.index("--code-tree") + 1]).resolve()
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's imgrag
    sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _print_rows(rows: list[tuple]) -> None:
    print(f"{'corpus':<20}{'workers':>8}{'spin':>6}{'items':>7}{'seconds':>10}{'items/s':>9}{'CPU-s/item':>12}{'cores busy':>12}")
    for label, w, spin, n, dt, cpu in rows:  # cores busy: CPU-s ÷ wall-s, how much of the box the run kept at work
        print(f"{label:<20}{w:>8}{spin:>6}{n:>7}{dt:>10.1f}{n / dt:>9.2f}{cpu / n:>12.3f}{cpu / dt:>12.2f}")


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
    docs.mkdir(parents=True)
    specs = make_contracts(docs, n=n_docs, seed=1, variants=True) if n_docs else []  # --docs 0: photos only
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


def split_photos(photos: Path) -> list[tuple[str, Path]]:
    """The photos in two folders: those the quick look for text finds nothing on, and the rest
    (decided by this checkout's look on the preprocessed photo, as the pipeline looks)."""
    from imgrag.indexing.config import Settings
    from imgrag.indexing.loader import iter_pages
    from imgrag.indexing.ocr import RapidOcrEngine
    from imgrag.indexing.preprocess import preprocess

    gate = Settings().photo_text_gate
    engine = RapidOcrEngine()
    clean, look = photos.parent / "photos-no-text", photos.parent / "photos-look-fires"
    clean.mkdir()
    look.mkdir()
    for f in sorted(photos.iterdir()):
        pre = preprocess(next(iter(iter_pages(f, max_pixels=10**9, pdf_dpi=150))).image)
        fires = pre.quality != "photo" or engine.text_score(pre.image, gate) > 0
        f.rename((look if fires else clean) / f.name)
    return [(label, f) for label, f in (("photos, no text", clean), ("photos, look fires", look)) if any(f.iterdir())]


def _decoded(folder: Path) -> list[np.ndarray]:
    from imgrag.indexing.loader import iter_pages

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return [pg.image for f in files for pg in iter_pages(f, max_pixels=10**9, pdf_dpi=150)]


def _alone_rows(docs: Path, photos: list[Path]) -> list[tuple]:
    """The baselines: RapidOCR with its defaults on the document pages, Lite0 on the photos."""
    from rapidocr import RapidOCR

    from imgrag.indexing.embedders import get_image_text_embedder
    from imgrag.indexing.threads import patch_ort_sessions

    patch_ort_sessions()  # the same ONNX Runtime wait policy as imgrag's own sessions
    rows = []
    pages = _decoded(docs)
    if pages:  # --docs 0: no document page, no OCR baseline
        ocr = RapidOCR(params={"Global.log_level": "error"})
        ocr(np.ascontiguousarray(pages[0][:, :, ::-1]))  # load the sessions outside the timing
        t, c = time.perf_counter(), _cpu()
        for img in pages:
            ocr(np.ascontiguousarray(img[:, :, ::-1]))
        rows.append(("RapidOCR alone", len(pages), time.perf_counter() - t, _cpu() - c))
    bridge = get_image_text_embedder("bridge")
    pics = [img for folder in photos for img in _decoded(folder)]
    bridge.classify(pics[:1])
    t, c = time.perf_counter(), _cpu()
    for start in range(0, len(pics), 8):
        bridge.classify(pics[start : start + 8])
    rows.append(("Lite0 alone", len(pics), time.perf_counter() - t, _cpu() - c))
    return rows


def _print_alone(alone: list[tuple]) -> None:
    print(f"{'baseline':<16}{'items':>7}{'seconds':>10}{'items/s':>9}{'CPU-s/item':>12}")
    for label, n, dt, cpu in alone:
        print(f"{label:<16}{n:>7}{dt:>10.1f}{n / dt:>9.2f}{cpu / n:>12.2f}")


def _print_vs(rows: list[tuple], alone: list[tuple]) -> None:
    _print_alone(alone)
    print(f"{'imgrag ÷ alone':<20}{'workers':>8}{'by items/s':>12}{'by CPU-s':>10}   (baseline)")
    for label, w, _spin, n, dt, cpu in rows:
        b = next(a for a in alone if a[0] == ("RapidOCR alone" if label == "document pages" else "Lite0 alone"))
        print(f"{label:<20}{w:>8}{(n / dt) / (b[1] / b[2]):>11.2f}×{(b[3] / b[1]) / (cpu / n):>9.2f}×   ({b[0]})")


def _warm(ig: object, folder: Path, workers: int) -> None:
    """Load the models, then index a few small pictures: each analysis worker's own OCR sessions
    load with its first page (threads.worker_slots), so no timed run pays for loading them."""
    ig.rt.load_models()  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2 * workers):
        Image.new("RGB", (64 + i, 64), (40 * i, 90, 200)).save(folder / f"warm_{i}.png")
    ig.index([str(folder)])  # type: ignore[attr-defined]


def _index_rows(corpora: list[tuple[str, Path]], worker_counts: list[int], spin: str, home: Path) -> tuple[list[tuple], dict]:
    """Index each corpus folder with each worker count (models loaded first): one row each."""
    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings

    rows = []
    apps = {}
    for workers in worker_counts:
        ig = Imgrag(Settings(home=home / f"home{workers}", workers=workers))
        _warm(ig, home / f"warm{workers}", workers)
        apps[workers] = ig
        for label, folder in corpora:
            t, c = time.perf_counter(), _cpu()
            summary = ig.index([str(folder)])
            dt, cpu = time.perf_counter() - t, _cpu() - c
            assert not summary.failed and summary.indexed, summary
            n = summary.indexed
            rows.append((label, workers, spin, n, dt, cpu))
    return rows, apps


def _baseline_rows(args: argparse.Namespace, corpora: list[tuple[str, Path]], home: Path) -> dict[str, list[tuple]]:
    """Both checkouts' rows on the same corpus, each in a child process, in turns round by round."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
    trees = {"this": ROOT, "baseline": args.baseline_tree.resolve()}
    out: dict[str, list[tuple]] = {"this": [], "baseline": []}
    for r in range(args.rounds):
        order = ["baseline", "this"] if r % 2 == 0 else ["this", "baseline"]
        for name in order:
            cmd = [sys.executable, __file__, "--code-tree", str(trees[name]), "--workers", args.workers, "--json",
                   "--corpus", json.dumps([[label, str(f)] for label, f in corpora]), "--home", str(home / f"{name}{r}")]
            res = subprocess.run(cmd, env=env, cwd=trees[name], capture_output=True, text=True, check=False)
            if res.returncode:
                sys.exit(f"the {name} child failed:\n{res.stderr[-3000:]}")
            out[name] += [tuple(row) for row in json.loads(res.stdout.strip().splitlines()[-1])]
    return out


def _profile(root: Path, docs: Path, n: int, workers: int, what: str = "document page") -> None:
    """CPU-s per item (document page, or photo with ``--split-photos``) by stage and by thread, models loaded."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _stages

    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings

    _stages.install()
    _stages.set_clock(workers > 1)
    ig = Imgrag(Settings(home=root / "home-profile", workers=workers))
    _warm(ig, root / "warm-profile", workers)
    _stages.reset()
    _stages.wrap_object(ig.rt.image_embedder, ("embed_images", "embed_regions"), "image embedder")
    _stages.wrap_object(ig.rt.store, ("write", "commit"), "store")
    t, c = time.perf_counter(), _cpu()
    with _stages.ThreadSampler() as threads:
        summary = ig.index([str(docs)])
    dt, cpu = time.perf_counter() - t, _cpu() - c
    assert summary.indexed == n, summary
    _stages.report(n, workers, what)
    print(f"  {'imgrag index in all':<36}{cpu / n:>8.3f}   ({dt / n:.2f} s wall a {what})")
    threads.report(n, what)
    _stages.set_clock(False)
    if what != "document page":
        return
    _stages.replay_e5(ig.rt.text_embedder, n)
    alone = _alone_rows(docs, [docs])[0]
    print(f"  {'RapidOCR() alone, same pages':<36}{alone[3] / alone[1]:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=12, help="document pages (0: photos only, no OCR baseline)")
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to index with")
    ap.add_argument("--compare-spin", action="store_true", help="also index with thread spinning on and off")
    ap.add_argument("--index-only", action="store_true", help="skip the search benchmark")
    ap.add_argument("--split-photos", action="store_true",
                    help="photos the quick look for text finds nothing on, and the rest, in rows of their own")
    ap.add_argument("--clean-only", action="store_true",
                    help="index only the photos the quick look finds no text on (implies --split-photos)")
    ap.add_argument("--baseline-tree", type=Path, help="also index with this checkout's code (implies --index-only)")
    ap.add_argument("--rounds", type=int, default=1, help="with --baseline-tree: runs of each checkout, in turns")
    ap.add_argument("--profile", action="store_true",
                    help="only index the document pages (with --split-photos: the photos without text; --workers: one count) "
                         "and print CPU-s per item by stage and thread")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--code-tree", type=Path, help=argparse.SUPPRESS)  # read before the imports (ROOT)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)  # child mode of --baseline-tree: [[label, folder], ...]
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from imgrag.indexing.threads import spin_enabled

    spin = "on" if spin_enabled() else "off"
    worker_counts = [int(w) for w in args.workers.split(",")]
    if args.corpus:  # a child of --baseline-tree: index the parent's corpus, print the rows
        corpora = [(label, Path(f)) for label, f in json.loads(args.corpus)]
        rows, _ = _index_rows(corpora, worker_counts, spin, args.home)
        print(json.dumps(rows))
        return

    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.search import SearchRequest
    from imgrag.indexing.stores.base import OPERATOR

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs, photos, queries = build_corpus(root / "corpus", args.docs, args.photos)
        if args.profile and not (args.split_photos or args.clean_only):  # --clean-only implies --split-photos
            _profile(root, docs, args.docs, int(args.workers.split(",")[-1]))
            return
        photo_sets = split_photos(photos) if args.split_photos or args.clean_only else [("photos", photos)]
        if args.clean_only:  # wall throughput of clean photos without minutes of full-size detection beside it
            photo_sets = [(label, f) for label, f in photo_sets if label == "photos, no text"]
        if args.profile:  # the photos the quick look finds no text on
            folder = dict(photo_sets).get("photos, no text")
            if folder is None:
                sys.exit("no photo without text to profile")
            _profile(root, folder, sum(1 for _ in folder.iterdir()), int(args.workers.split(",")[-1]), "photo")
            return
        corpora = [("document pages", docs)] * bool(args.docs) + photo_sets
        if args.baseline_tree:
            both = _baseline_rows(args, corpora, root)
            for name, tree in (("this checkout", ROOT), ("baseline", args.baseline_tree)):
                print(f"\nIndexing throughput, {name} ({tree}; models loaded, embedded LanceDB store)")
                _print_rows(both["this" if name == "this checkout" else "baseline"])
            print("\nthis ÷ baseline, CPU-s per item and items/s by wall (summed over rounds)")
            for label, _ in corpora:
                for w in worker_counts:
                    a = [r for r in both["this"] if r[0] == label and r[1] == w]
                    b = [r for r in both["baseline"] if r[0] == label and r[1] == w]
                    if a and b:
                        ca, cb = sum(r[5] for r in a) / sum(r[3] for r in a), sum(r[5] for r in b) / sum(r[3] for r in b)
                        wa, wb = sum(r[3] for r in a) / sum(r[4] for r in a), sum(r[3] for r in b) / sum(r[4] for r in b)
                        print(f"{label:<20}{w:>3} workers  {ca:.3f} vs {cb:.3f} CPU-s/item ({ca / cb:.2f}×), "
                              f"{wa:.2f} vs {wb:.2f} items/s by wall ({wa / wb:.2f}×)")
            print("\nThe same images through the model that bounds each corpus, alone (same run)")
            _print_alone(_alone_rows(docs, [f for _, f in photo_sets]))
            return
        rows, apps = _index_rows(corpora, worker_counts, spin, root)
        if args.json:
            print(json.dumps(rows))
            return
        print("\nIndexing throughput (models loaded, embedded LanceDB store)")
        _print_rows(rows)
        print("\nThe same images through the model that bounds each corpus, alone (same run)")
        _print_vs(rows, _alone_rows(docs, [f for _, f in photo_sets]))
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
