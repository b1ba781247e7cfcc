"""Which photos get OCR: the quick look for text (``IMGRAG_PHOTO_TEXT_GATE``) against a cheaper first look.

For every page of the given folders that the pipeline would call a photo (``preprocess``, the class a
DICOM file declares included), the quick look's answer (the text detector's lines at the gate's long
side), OCR's lines where the look fires (what the photo would lose without it), and for each
``--first`` side the highest value of the detector's text-probability map on a copy shrunk to that
side: a first look that answers "no text" when the peak stays under ``--min-prob`` would skip the
quick look. Prints, per folder and per (side, threshold), the confusion against the quick look, the
photos with OCR text it would lose, the share of photos without text it would settle, and the CPU
of each look. Session 11's figures and the verdict (a first look at 160 or 256 px loses text):
docs/performance.md, "A smaller first look for text".

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_text_look.py FOLDER [FOLDER ...]
        [--first 160,256] [--min-prob 0.1,0.3] [--gate 384] [--no-ocr] [--json OUT.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's imgrag
    sys.path.insert(0, str(ROOT))

SKIP = {".json", ".jsonl", ".txt", ".md", ".hash", ".yaml", ".csv"}


def _text_peak(det: Any, bgr: np.ndarray) -> float:
    """The highest value of rapidocr's text-probability map for ``bgr`` (its own preprocessing and
    session, no boxes built), 0.0 for an image too small to detect on."""
    x = det.get_preprocess()(bgr)
    if x is None:
        return 0.0
    pred = np.asarray(det.session(x))
    return float(pred.max()) if pred.size else 0.0


def _peak(det: Any, rgb: np.ndarray, side: int) -> tuple[float, float]:
    """(highest text probability, CPU-s) of the detector on ``rgb`` shrunk to long side ``side``."""
    import cv2

    t = time.process_time()
    h, w = rgb.shape[:2]
    f = min(1.0, side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    p = _text_peak(det, np.ascontiguousarray(small[:, :, ::-1]))
    return p, time.process_time() - t


def measure(folder: Path, sides: list[int], gate: int, ocr: bool) -> list[dict]:
    from imgrag.indexing.errors import ImgragError
    from imgrag.indexing.loader import iter_pages
    from imgrag.indexing.ocr import RapidOcrEngine, to_rgb_uint8
    from imgrag.indexing.preprocess import preprocess

    engine = RapidOcrEngine()
    rapid, _ = engine._engine()
    det = rapid._load_det_model()
    rows = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in SKIP):
        try:
            pages = list(iter_pages(f, max_pixels=10**9, pdf_dpi=150))
        except ImgragError as exc:  # not an image the loader reads
            print(f"  skipped {f.name}: {exc}", file=sys.stderr)
            continue
        for i, pg in enumerate(pages):
            if not hasattr(pg, "image"):  # a page that failed to decode
                continue
            pre = preprocess(pg.image, pg.dpi, quality=pg.info.quality if pg.info else None)
            if pre.quality != "photo":
                continue
            t = time.process_time()
            look = engine.text_score(pre.image, gate)
            row = {"file": str(f.relative_to(folder)), "page": i, "look": look, "look_cpu": time.process_time() - t}
            if ocr and look:
                lines = engine.read(engine.detect(pre.image))
                row["lines"], row["text"] = len(lines), " | ".join(ln.text for ln in lines)[:120]
            rgb = to_rgb_uint8(pre.image)
            for s in sides:
                row[f"peak{s}"], row[f"cpu{s}"] = _peak(det, rgb, s)
            rows.append(row)
    return rows


def report(name: str, rows: list[dict], sides: list[int], probs: list[float], gate: int) -> None:
    fires = [r for r in rows if r["look"]]
    clean = [r for r in rows if not r["look"]]
    with_text = [r for r in fires if r.get("lines", 1)]
    cpu = np.mean([r["look_cpu"] for r in rows]) * 1000 if rows else float("nan")
    print(f"\n{name}: {len(rows)} photos; the {gate} px look fires on {len(fires)} ({cpu:.1f} CPU-ms a look), "
          f"OCR reads text on {len(with_text)} of them" + ("" if all("lines" in r for r in fires) else " (no OCR run: every firing counted)"))
    print(f"  {'first look':<12}{'min prob':>9}{'CPU-ms':>8}{'fires→fires':>13}{'fires→none':>12}{'text lost':>11}{'clean settled':>15}")
    for s in sides:
        c = np.mean([r[f"cpu{s}"] for r in rows]) * 1000 if rows else float("nan")
        for p in probs:
            kept = sum(r[f"peak{s}"] >= p for r in fires)
            lost = [r for r in with_text if r[f"peak{s}"] < p]
            settled = sum(r[f"peak{s}"] < p for r in clean)
            print(f"  {s:>6} px   {p:>9.2f}{c:>8.1f}{kept:>13}{len(fires) - kept:>12}{len(lost):>11}{settled:>9} of {len(clean)}")
            for r in lost:
                print(f"      loses {r['file']} p{r['page']}: {r.get('lines', '?')} lines, peak {r[f'peak{s}']:.3f}: {r.get('text', '')[:60]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--first", default="160,256", help="long sides (px) of the first looks to measure")
    ap.add_argument("--min-prob", default="0.1,0.3", help="peaks under which a first look says 'no text'")
    ap.add_argument("--gate", type=int, default=384, help="the quick look's long side (IMGRAG_PHOTO_TEXT_GATE)")
    ap.add_argument("--no-ocr", action="store_true", help="skip OCR on the photos the look fires on (every firing counts as text)")
    ap.add_argument("--json", type=Path, help="also write every photo's figures here (JSON lines)")
    args = ap.parse_args()
    sides = [int(s) for s in args.first.split(",") if s]
    probs = [float(p) for p in args.min_prob.split(",") if p]
    out = []
    for folder in args.folders:
        rows = measure(folder, sides, args.gate, not args.no_ocr)
        report(str(folder), rows, sides, probs, args.gate)
        out += [{"folder": str(folder), **r} for r in rows]
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in out))


if __name__ == "__main__":
    main()
