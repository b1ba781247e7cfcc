"""Seal detector quality and speed: recall / precision / colour on generated contracts, false
positives on non-seal images, before (a git revision's detector) and after (the working tree's).

Positives: ``make_contracts(n, seed, variants=True)`` (zh + en, every scan profile: tint, skew, blur,
noise, JPEG, 90/180/270 rotation; oval and blue seals), scored (a) on the saved files and (b) on
``preprocess(img, None, orientation=detect_orientation)`` output with boxes mapped back through
``box_to_original`` (what indexing/pipeline.py does). A detection is a true positive when it has
IoU >= 0.5 with a not-yet-matched ground-truth seal (greedy, by confidence); colour accuracy is over
true positives. (c) scores the saved files again after harder damage than the generator does
(washed-out ink + JPEG 30, a warm colour cast, 100 dpi + blur + noise + JPEG 30, faded + blur 2 +
JPEG 25). Negatives: scikit-image photos (astronaut, coffee, chelsea, rocket), Debian Reference
pages (en + zh, 150 dpi) and two synthetic pages with red headings, red rules and underlines, red
bullets and a red-framed note; every seal reported on them, raw or preprocessed, is a false
positive. Extra negatives (raw only): immunohistochemistry, retina, hubble_deep_field, colorwheel.
Time: median per clean A4 page at 150 dpi (1240x1754), OpenCV on one thread, as CPU time of the
calling thread (robust to a busy machine) and as wall time.

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_seals.py [--n 24] [--seed 11] [--ref HEAD] [--docs 4]

``--ref REV`` loads ``indexing/detectors.py`` as it is at git revision REV for the "before" column
(``--ref none`` skips it). ``-v`` lists every miss and false positive.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from imgrag.indexing.models import Seal  # noqa: E402

Detector = Callable[[np.ndarray], list[Seal]]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(found: Sequence[Seal], truth: Sequence[tuple[Sequence[float], str]], thr: float = 0.5
          ) -> tuple[int, int, int, list[int]]:
    """(true positives, false positives, colour-correct TPs, indices of missed truths)."""
    used: set[int] = set()
    tp = fp = colour_ok = 0
    for s in sorted(found, key=lambda s: -s.confidence):
        best, best_j = thr, -1
        for j, (box, _) in enumerate(truth):
            if j not in used and (v := iou(s.bbox, box)) >= best:
                best, best_j = v, j
        if best_j < 0:
            fp += 1
        else:
            used.add(best_j)
            tp += 1
            colour_ok += s.color == truth[best_j][1]
    return tp, fp, colour_ok, [j for j in range(len(truth)) if j not in used]


@dataclass
class Score:
    truths: int = 0
    tp: int = 0
    fp: int = 0
    colour_ok: int = 0
    neg_fp: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.tp / self.truths if self.truths else float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def colour(self) -> float:
        return self.colour_ok / self.tp if self.tp else float("nan")


def load_detector(ref: str | None) -> Detector:
    """``detect_seals`` from the working tree (ref None) or from ``indexing/detectors.py`` at git ``ref``."""
    if ref is None:
        from imgrag.indexing.detectors import detect_seals

        return detect_seals
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:indexing/detectors.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="seals-ref-")) / "detectors_ref.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("detectors_ref", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.detect_seals


def red_pages() -> list[tuple[str, np.ndarray]]:
    """A4 at 150 dpi: a red-headed document (红头文件: red title, thick red rule) and a page with a red
    English heading, red underlines under words, a red boxed note and red bullets."""
    from imgrag.evals.datasets.fonts import load_font

    red = (200, 30, 36)
    out = []
    for lang in ("zh", "en"):
        im = Image.new("RGB", (1240, 1754), (255, 255, 255))
        d = ImageDraw.Draw(im)
        body, _ = load_font(lang, 30)  # type: ignore[arg-type]
        rng = np.random.default_rng(3)
        if lang == "zh":
            title, _ = load_font("zh", 92, bold=True)
            d.text((620, 200), "某某市人民政府文件", font=title, fill=red, anchor="mm")
            d.text((620, 330), "某政发〔2023〕12号", font=body, fill=(20, 20, 20), anchor="mm")
            d.rectangle([110, 372, 1130, 378], fill=red)
            words = "关于进一步加强合同管理工作的通知各有关单位为规范合同签订履行"
        else:
            title, _ = load_font("en", 70, bold=True)
            d.text((620, 190), "NOTICE OF AGREEMENT", font=title, fill=red, anchor="mm")
            d.line([(130, 250), (1110, 250)], fill=red, width=3)
            words = "the party shall pay within thirty days of invoice subject to terms "
        y = 430
        while y < 1650:
            n = 28 if lang == "zh" else 62
            start = int(rng.integers(0, len(words) - 8))
            line = (words[start:] + words)[:n]
            d.text((130, y), line, font=body, fill=(25, 25, 25))
            if rng.random() < 0.35:  # a red underline under part of the line
                x0 = 130 + int(rng.integers(0, 400))
                d.line([(x0, y + 38), (x0 + int(rng.integers(120, 500)), y + 38)], fill=red, width=3)
            if rng.random() < 0.15:  # a red bullet
                d.ellipse([96, y + 10, 114, y + 28], fill=red)
            y += 52
        d.rectangle([700, 1180, 1110, 1420], outline=red, width=4)  # a red boxed note
        d.text((720, 1200), "注意" if lang == "zh" else "NOTE", font=title, fill=red)
        out.append((f"red-{lang}", np.asarray(im).copy()))
    return out


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _fade(img: np.ndarray, keep: float) -> np.ndarray:
    """Scale every pixel's colourfulness by ``keep`` (washed-out ink; black and white stay)."""
    f = img.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    return np.clip(grey + keep * (f - grey), 0, 255).astype(np.uint8)


def _cast(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(img * np.array(gains), 0, 255).astype(np.uint8)


def _lowres(img: np.ndarray, seed: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = cv2.resize(img, (round(w * 2 / 3), round(h * 2 / 3)), interpolation=cv2.INTER_AREA).astype(np.float32)
    f = cv2.GaussianBlur(f, (0, 0), 1.5) + np.random.default_rng(seed).normal(0, 8, f.shape)
    return _jpeg(np.clip(f, 0, 255).astype(np.uint8), 30)


# name -> (damage(img, page index), factor the ground-truth boxes scale by)
DAMAGE: dict[str, tuple[Callable[[np.ndarray, int], np.ndarray], float]] = {
    "faded+jpeg30": (lambda im, i: _jpeg(_fade(im, 0.5), 30), 1.0),
    "warm cast+jpeg50": (lambda im, i: _jpeg(_cast(im, (1.0, 0.9, 0.76)), 50), 1.0),
    "100dpi+blur+noise+jpeg30": (lambda im, i: _lowres(im, i), 2 / 3),
    "faded+blur2+jpeg25": (lambda im, i: _jpeg(cv2.GaussianBlur(_fade(im, 0.6), (0, 0), 2.0), 25), 1.0),
}


def negatives(root: Path, n_docs: int) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    items = [(name, getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    if n_docs:
        from imgrag.evals.datasets.docpages import have_doc_deps, make_doc_pages

        if have_doc_deps():
            for f in make_doc_pages(root / "docpages", n_docs, dpi=150, pdf_lang=None):
                items.append((f.name, np.asarray(Image.open(f).convert("RGB"))))
        else:
            print("! Debian doc pages skipped: run bash evals/datasets/system_deps.sh", file=sys.stderr)
    return items + red_pages()


def _score(sc: Score, name: str, found: Sequence[Seal], truth: list[tuple[Sequence[float], str]]) -> None:
    tp, fp, ok, missed = match(found, truth)
    sc.truths += len(truth)
    sc.tp, sc.fp, sc.colour_ok = sc.tp + tp, sc.fp + fp, sc.colour_ok + ok
    if missed or fp or ok < tp:
        sc.notes.append(f"{name}: missed {[truth[j] for j in missed]}, fp {fp}, wrong colour {tp - ok}; "
                        f"found {[(f.bbox, f.color) for f in found]}")


def _frac(sc: Score) -> str:
    return f"{sc.tp}/{sc.truths}"


def run(n: int, seed: int, ref: str | None, n_docs: int, verbose: bool) -> None:
    from skimage import data

    from imgrag.evals.datasets.contracts import make_contracts
    from imgrag.indexing.ocr import detect_orientation
    from imgrag.indexing.preprocess import preprocess

    detectors: dict[str, Detector] = {}
    if ref is not None:
        detectors[f"before ({ref})"] = load_detector(ref)
    detectors["after (worktree)"] = load_detector(None)

    with tempfile.TemporaryDirectory(prefix="bench-seals-") as td:
        root = Path(td)
        specs = make_contracts(root / "contracts", n=n, seed=seed, variants=True)
        pages = [(s, np.asarray(Image.open(root / "contracts" / s.file).convert("RGB"))) for s in specs]
        negs = negatives(root, n_docs)
    extra_names = ("immunohistochemistry", "retina", "hubble_deep_field", "colorwheel")
    extra = [(name, getattr(data, name)()) for name in extra_names]
    t0 = time.perf_counter()
    pres = {s.file: preprocess(img, None, orientation=detect_orientation) for s, img in pages}
    neg_pres = {name: preprocess(img, None, orientation=detect_orientation) for name, img in negs}
    damaged = {kind: [(s, fn(img, i), f) for i, (s, img) in enumerate(pages)] for kind, (fn, f) in DAMAGE.items()}
    print(f"# {len(pages)} contract pages ({sum(len(s.seals) for s, _ in pages)} seals, "
          f"{sum(s.scanned for s, _ in pages)} scanned), {len(negs)} negatives + {len(extra)} extra; "
          f"preprocessing took {time.perf_counter() - t0:.1f} s")

    cv2.setNumThreads(1)
    results: dict[str, dict[str, Score]] = {}
    timing: dict[str, tuple[float, float]] = {}
    for label, det in detectors.items():
        res = {key: Score() for key in ("raw", "pre", "damaged", "extra")}
        for s, img in pages:
            truth = [(sl.bbox, sl.colour) for sl in s.seals]
            p = pres[s.file]
            _score(res["raw"], s.file, det(img), truth)
            mapped = [f.model_copy(update={"bbox": p.box_to_original(f.bbox)}) for f in det(p.image)]
            _score(res["pre"], s.file, mapped, truth)
        for kind, items in damaged.items():
            for s, img, f in items:
                truth = [([v * f for v in sl.bbox], sl.colour) for sl in s.seals]
                _score(res["damaged"], f"{kind} {s.file}", det(img), truth)
        for name, img in negs:
            for key, im in (("raw", img), ("pre", neg_pres[name].image)):
                found = det(im)
                res[key].neg_fp += len(found)
                if found:
                    res[key].notes.append(f"negative {name}: {[(f.bbox, f.color, f.confidence) for f in found]}")
        for name, img in extra:
            found = det(img)
            res["extra"].neg_fp += len(found)
            if found:
                res["extra"].notes.append(f"negative {name}: {[(f.bbox, f.color, f.confidence) for f in found]}")
        results[label] = res
        clean = [img for s, img in pages if not s.scanned][:8]
        cpu, wall = [], []
        for img in clean * 3:
            t, c = time.perf_counter(), time.thread_time()
            det(img)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - t) * 1000)
        timing[label] = (statistics.median(cpu), statistics.median(wall))

    cols = list(results)
    width = max(18, *(len(c) for c in cols))
    print(f"\n{'metric':<44}" + "".join(f"{c:>{width + 2}}" for c in cols))
    rows: list[tuple[str, Callable[[str], str]]] = []
    parts = (("raw", "(a) saved files"), ("pre", "(b) preprocessed, mapped back"), ("damaged", "(c) damaged copies"))
    for key, what in parts:
        rows += [
            (f"{what}: recall@0.5", lambda c, k=key: f"{results[c][k].recall:.3f} ({_frac(results[c][k])})"),
            (f"{what}: precision", lambda c, k=key: f"{results[c][k].precision:.3f} (fp {results[c][k].fp})"),
            (f"{what}: colour right", lambda c, k=key: f"{results[c][k].colour:.3f}"),
        ]
    rows += [
        ("negatives FP, raw (photos, docs, red pages)", lambda c: f"{results[c]['raw'].neg_fp}"),
        ("negatives FP, preprocessed", lambda c: f"{results[c]['pre'].neg_fp}"),
        ("extra negatives FP (IHC, retina, ...)", lambda c: f"{results[c]['extra'].neg_fp}"),
        ("ms / clean A4 page, 1 thread, CPU", lambda c: f"{timing[c][0]:.1f}"),
        ("ms / clean A4 page, 1 thread, wall", lambda c: f"{timing[c][1]:.1f}"),
    ]
    for name, fn in rows:
        print(f"{name:<44}" + "".join(f"{fn(c):>{width + 2}}" for c in cols))
    if verbose:
        for c in cols:
            for k, sc in results[c].items():
                for note in sc.notes:
                    print(f"  [{c} {k}] {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--ref", default="HEAD", help="git revision for the 'before' column; 'none' to skip")
    ap.add_argument("--docs", type=int, default=4, help="Debian Reference pages per language (0: none)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    run(a.n, a.seed, None if a.ref.lower() == "none" else a.ref, a.docs, a.verbose)


if __name__ == "__main__":
    main()
