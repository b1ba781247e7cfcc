"""PII detection quality on pages with planted personal data, through the real indexing pipeline.

Corpus (``evals/datasets/pii_pages.py`` + ``evals/datasets/contracts.py``, zh + en, half of each
group scanned-looking: tint, skew, blur, noise, JPEG, 90/180/270 rotation):

* forms with planted PII of every kind (labelled fields, two to a row, inline in sentences),
  mixed with dates, amounts, contract / invoice / order numbers, tax ids, versions;
* negative pages with those numbers and no personal data;
* generated contracts: the Chinese ones print two mobile numbers (联系电话), the English ones none.

Everything is indexed with ``imgrag``'s real pipeline (preprocess, OCR, layout, detectors,
embeddings) into a fresh embedded store, and the stored records are scored against the ground
truth. A finding is a true positive when its kind and its value (letters and digits only) equal a
not-yet-matched planted one; a phone number whose country prefix (+86 / +1) OCR lost still counts,
as the rest of it is what gets redacted. Any other finding is a false positive, every unmatched
planted value a miss. "value recall" ignores the kind (what redaction needs). Box coverage is the
share of a planted value's printed box (saved-file pixels) covered by the finding's estimated box.

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_pii.py [--forms 24] [--negatives 12] [--contracts 8]
        [--seed 3] [--workers 2] [--keep DIR] [-v]

``-v`` lists every miss (with the OCR line read there) and every false positive.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from imgrag.indexing.models import OcrLine, PiiFinding  # noqa: E402

PHONE_KINDS = {"cn_mobile", "cn_landline", "phone"}


@dataclass
class Truth:
    kind: str
    value: str
    bbox: list[int] | None


@dataclass
class Page:
    file: Path
    lang: str
    scanned: bool
    group: str  # form / negative / contract
    truth: list[Truth]


@dataclass
class Tally:
    truths: int = 0
    tp: int = 0
    fp: int = 0
    value_hits: int = 0  # truths found with any kind
    coverage: list[float] = field(default_factory=list)

    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    def recall(self) -> float:
        return self.tp / self.truths if self.truths else float("nan")


def norm(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def same_value(kind: str, found: str, truth: str) -> bool:
    f, t = norm(found), norm(truth)
    if f == t:
        return True
    return kind in PHONE_KINDS and min(len(f), len(t)) >= 10 and (f.endswith(t) or t.endswith(f))


def coverage(found: tuple[float, ...] | None, truth: list[int] | None) -> float | None:
    if found is None or truth is None:
        return None
    ix = max(0.0, min(found[2], truth[2]) - max(found[0], truth[0]))
    iy = max(0.0, min(found[3], truth[3]) - max(found[1], truth[1]))
    area = (truth[2] - truth[0]) * (truth[3] - truth[1])
    return ix * iy / area if area > 0 else None


def build_corpus(root: Path, forms: int, negatives: int, contracts: int, seed: int) -> list[Page]:
    from imgrag.evals.datasets.contracts import make_contracts
    from imgrag.evals.datasets.pii_pages import make_pii_pages

    pages: list[Page] = []
    for s in make_pii_pages(root / "pii", forms, negatives, seed=seed):
        truth = [Truth(p.kind, p.value, p.bbox) for p in s.pii]
        pages.append(Page(root / "pii" / s.file, s.lang, s.scanned, s.page_kind, truth))
    for c in make_contracts(root / "contracts", contracts, seed=seed, variants=True):
        truth = [Truth("cn_mobile", m, None) for ln in c.lines for m in re.findall(r"联系电话：(1\d{10})", ln.text)]
        pages.append(Page(root / "contracts" / c.file, c.lang, c.scanned, "contract", truth))
    return pages


def score(page: Page, found: list[PiiFinding]) -> tuple[list[tuple[Truth, PiiFinding | None]], list[PiiFinding]]:
    """(each truth with the finding that matched it or None, the unmatched findings)."""
    pairs: list[tuple[Truth, PiiFinding | None]] = []
    used: set[int] = set()
    for t in page.truth:
        hit = next((i for i, f in enumerate(found) if i not in used and f.kind == t.kind and same_value(t.kind, f.text, t.value)), None)
        if hit is None:  # found with another kind: a miss for the kind, but redaction still covers it
            hit = next((i for i, f in enumerate(found) if i not in used and same_value("phone", f.text, t.value)), None)
        if hit is not None:
            used.add(hit)
        pairs.append((t, found[hit] if hit is not None else None))
    return pairs, [f for i, f in enumerate(found) if i not in used]


def nearest_line(lines: list[OcrLine], box: list[int] | None, value: str) -> str:
    digits = norm(value)[-4:]
    for ln in lines:
        if digits and digits in norm(ln.text):
            return ln.text
    if box is None:
        return "?"
    best = max(lines, key=lambda ln: coverage(ln.bbox, box) or 0.0, default=None)
    return best.text if best is not None and (coverage(best.bbox, box) or 0) > 0 else "(no OCR line there)"


def fmt(x: float) -> str:
    return "  -  " if x != x else f"{x:5.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--forms", type=int, default=24, help="pages with planted PII (zh/en alternating)")
    ap.add_argument("--negatives", type=int, default=12, help="pages with numbers but no PII")
    ap.add_argument("--contracts", type=int, default=8, help="generated contracts (zh ones hold 2 mobiles each)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build corpus and index here and keep them")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    from imgrag.indexing.config import Settings
    from imgrag.indexing.pipeline import Indexer
    from imgrag.indexing.runtime import Runtime
    from imgrag.indexing.stores.base import OPERATOR, Filters

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    else:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pages = build_corpus(root / "corpus", args.forms, args.negatives, args.contracts, args.seed)
    print(f"corpus: {len(pages)} pages, {sum(len(p.truth) for p in pages)} planted values "
          f"({time.perf_counter() - t0:.0f} s to render)", flush=True)
    rt = Runtime(Settings(home=root / "home", workers=args.workers))
    t0 = time.perf_counter()
    summary = Indexer(rt).index([root / "corpus"])
    dt = time.perf_counter() - t0
    if summary.failed:
        raise SystemExit(f"indexing failed: {summary.failed}")
    print(f"indexed {summary.indexed} pages in {dt:.0f} s ({dt / max(1, summary.indexed):.1f} s/page)\n", flush=True)
    store = rt.store

    by_kind: dict[str, Tally] = defaultdict(Tally)
    by_cond: dict[str, Tally] = defaultdict(Tally)
    kind_cond: dict[tuple[str, str], Tally] = defaultdict(Tally)
    flagged: dict[bool, list[bool]] = {True: [], False: []}  # planted PII? -> has_pii of each page
    misses, false_pos = [], []
    for page in pages:
        ids = store.live_ids_for_path(str(page.file.resolve()))
        assert len(ids) == 1, (page.file, ids)
        rec = store.get(next(iter(ids)), OPERATOR)
        assert rec is not None
        cond = f"{page.lang} {'scanned' if page.scanned else 'clean'}"
        pairs, extra = score(page, rec.pii)
        flagged[bool(page.truth)].append(rec.has_pii)
        for t, f in pairs:
            for tally in (by_kind[t.kind], by_cond[cond], kind_cond[(t.kind, "scanned" if page.scanned else "clean")]):
                tally.truths += 1
                tally.value_hits += f is not None
                if f is not None and f.kind == t.kind:
                    tally.tp += 1
                    if (c := coverage(f.bbox, t.bbox)) is not None:
                        tally.coverage.append(c)
            if f is None or f.kind != t.kind:
                misses.append((page, t, f, nearest_line(rec.ocr_lines, t.bbox, t.value)))
            if f is not None and f.kind != t.kind:
                by_kind[f.kind].fp += 1
                by_cond[cond].fp += 1
        for f in extra:
            by_kind[f.kind].fp += 1
            by_cond[cond].fp += 1
            kind_cond[(f.kind, "scanned" if page.scanned else "clean")].fp += 1
            false_pos.append((page, f, rec.ocr_lines[f.line].text if f.line is not None else ""))

    total = Tally()
    for t in by_kind.values():
        total.truths += t.truths
        total.tp += t.tp
        total.fp += t.fp
        total.value_hits += t.value_hits
        total.coverage += t.coverage
    print(f"{'kind':<13}{'planted':>8}{'TP':>5}{'FP':>5}{'prec':>7}{'recall':>8}{'R clean':>9}{'R scan':>8}"
          f"{'value R':>9}{'box cov':>9}")
    for kind in sorted(by_kind, key=lambda k: -by_kind[k].truths):
        t = by_kind[kind]
        rc, rs = kind_cond[(kind, "clean")].recall(), kind_cond[(kind, "scanned")].recall()
        cov = sum(t.coverage) / len(t.coverage) if t.coverage else float("nan")
        print(f"{kind:<13}{t.truths:>8}{t.tp:>5}{t.fp:>5}{fmt(t.precision()):>7}{fmt(t.recall()):>8}{fmt(rc):>9}"
              f"{fmt(rs):>8}{fmt(t.value_hits / t.truths if t.truths else float('nan')):>9}{fmt(cov):>9}")
    cov = sum(total.coverage) / len(total.coverage) if total.coverage else float("nan")
    print(f"{'all':<13}{total.truths:>8}{total.tp:>5}{total.fp:>5}{fmt(total.precision()):>7}{fmt(total.recall()):>8}"
          f"{'':>9}{'':>8}{fmt(total.value_hits / total.truths):>9}{fmt(cov):>9}")
    full = sum(c >= 0.9 for c in total.coverage)
    print(f"\nbox coverage >= 0.9 for {full} of {len(total.coverage)} true positives with a planted box")
    print(f"\n{'condition':<13}{'planted':>8}{'TP':>5}{'FP':>5}{'prec':>7}{'recall':>8}")
    for cond in sorted(by_cond):
        t = by_cond[cond]
        print(f"{cond:<13}{t.truths:>8}{t.tp:>5}{t.fp:>5}{fmt(t.precision()):>7}{fmt(t.recall()):>8}")
    print(f"\npages without planted PII: {len(flagged[False])}, flagged has_pii: {sum(flagged[False])}")
    print(f"pages with planted PII: {len(flagged[True])}, flagged has_pii: {sum(flagged[True])}")
    n_true = store.count(OPERATOR, Filters(has_pii=True))
    n_false = store.count(OPERATOR, Filters(has_pii=False))
    st = store.stats(OPERATOR)
    print(f"filter has_pii=true: {n_true} pages, false: {n_false}; stats: {st.pii_pages} pages, {st.pii_by_kind}")

    if args.verbose:
        print("\nmisses:")
        for page, t, f, line in misses:
            got = f" (found as {f.kind})" if f is not None else ""
            print(f"  {page.file.name}: {t.kind} {t.value!r}{got} — OCR: {line!r}")
        print("false positives:")
        for page, f, line in false_pos:
            print(f"  {page.file.name}: {f.kind} {f.text!r} — OCR: {line!r}")
    if args.json:
        out: dict[str, Any] = {
            "pages": len(pages), "planted": total.truths, "tp": total.tp, "fp": total.fp,
            "precision": total.precision(), "recall": total.recall(),
            "by_kind": {k: {"planted": t.truths, "tp": t.tp, "fp": t.fp} for k, t in by_kind.items()},
            "by_condition": {k: {"planted": t.truths, "tp": t.tp, "fp": t.fp} for k, t in by_cond.items()},
        }
        args.json.write_text(json.dumps(out, indent=2))
    if tmp is not None:
        rt.store.close()
        tmp.cleanup()


if __name__ == "__main__":
    main()
