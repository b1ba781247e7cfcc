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

``--label-sweep`` instead pastes one-line labels (10-40 px text, dark on light and light on dark)
on the scikit-image pictures at 512 and 1024 px long side and counts, per text size, the labels the
quick look finds on pictures whose bare copy it finds nothing on, and how many of those the first
looks' peaks would miss: small text on natural photos, which the eval sets hardly hold.

``--model FILE.onnx`` runs another detector model as the look too, at the same size, through
rapidocr's own pre- and post-processing: its own boxes as the answer, and its peak under each
``--min-prob`` as a first test in front of the packaged look; ``--make-int8 FILE.onnx`` writes the
int8 copy session 12 measured (ONNX Runtime static QDQ quantisation, per-channel int8 weights, uint8
activations, MinMax calibration on ten scikit-image pictures at 384 px; opset 11 -> 13 first).
Verdict: docs/performance.md, "The first look in int8".

    ~/.cache/imgrag/venv/bin/python benchmarks/bench_text_look.py FOLDER [FOLDER ...]
        [--first 160,256] [--min-prob 0.1,0.3] [--gate 384] [--no-ocr] [--json OUT.jsonl] [--model FILE.onnx]
    ~/.cache/imgrag/venv/bin/python benchmarks/bench_text_look.py --label-sweep [--first 160] [--min-prob 0.3]
    ~/.cache/imgrag/venv/bin/python benchmarks/bench_text_look.py --make-int8 FILE.onnx
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


def _model_look(det: Any, sess: Any, rgb: np.ndarray, side: int) -> tuple[int, float, float]:
    """(text lines, highest text probability, CPU-s) of another detector model (``--model``: an ONNX file
    with the packaged detector's input and output, e.g. an int8 copy) at the look's size, through
    rapidocr's own preprocessing and box post-processing, as ``text_score`` runs the packaged one."""
    import cv2

    t = time.process_time()
    h, w = rgb.shape[:2]
    f = min(1.0, side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    x = det.get_preprocess()(bgr)
    if x is None:
        return 0, 0.0, time.process_time() - t
    pred = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    boxes, _ = det.postprocess_op(pred, bgr.shape[:2])
    return len(boxes), float(pred.max()) if pred.size else 0.0, time.process_time() - t


def _model_session(path: Path) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def measure(folder: Path, sides: list[int], gate: int, ocr: bool, model: Path | None = None) -> list[dict]:
    from imgrag.indexing.errors import ImgragError
    from imgrag.indexing.loader import iter_pages
    from imgrag.indexing.ocr import RapidOcrEngine, to_rgb_uint8
    from imgrag.indexing.preprocess import preprocess

    engine = RapidOcrEngine()
    rapid, _ = engine._engine()
    det = rapid._load_det_model()
    msess = _model_session(model) if model else None
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
            if msess is not None:
                row["mlook"], row["mpeak"], row["mcpu"] = _model_look(det, msess, rgb, gate)
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
    if rows and "mlook" in rows[0]:
        c = np.mean([r["mcpu"] for r in rows]) * 1000
        print(f"  --model at {gate} px ({c:.1f} CPU-ms a look), its own boxes as the answer, and its peak under a threshold:")
        print(f"  {'answer':<22}{'fires→fires':>13}{'fires→none':>12}{'text lost':>11}{'clean→fires':>13}{'clean settled':>15}")
        rules = [("boxes", lambda r: r["mlook"] > 0)] + [(f"peak >= {p:.2f}", lambda r, p=p: r["mpeak"] >= p) for p in probs]
        for label, fires_m in rules:
            kept = sum(fires_m(r) for r in fires)
            lost = [r for r in with_text if not fires_m(r)]
            extra = sum(fires_m(r) for r in clean)
            print(f"  {label:<22}{kept:>13}{len(fires) - kept:>12}{len(lost):>11}{extra:>13}{len(clean) - extra:>9} of {len(clean)}")
            for r in lost:
                print(f"      loses {r['file']} p{r['page']}: {r.get('lines', '?')} lines, model peak {r['mpeak']:.3f}: {r.get('text', '')[:60]}")


PICTURES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "retina")
LABELS = ("P/N: BRK-4471", "LOT L2403-117", "EXIT", "Main Street 42", "SALE 50%", "出口", "注意安全", "Model X200")


def label_sweep(sides: list[int], probs: list[float], gate: int) -> None:
    import cv2
    from imgrag.evals.datasets.fonts import load_font
    from imgrag.indexing.ocr import RapidOcrEngine
    from PIL import Image, ImageDraw
    from skimage import data

    engine = RapidOcrEngine()
    rapid, _ = engine._engine()
    det = rapid._load_det_model()
    rng = np.random.default_rng(0)
    sizes = (10, 12, 14, 16, 20, 24, 32, 40)
    print(f"labels the {gate} px look finds on pictures it finds nothing on bare; of those, first looks under the threshold")
    print(f"  {'photo px':>8}{'text px':>8}{'found':>7}" + "".join(f"{f'{s} px <{p}':>13}" for s in sides for p in probs))
    for long in (512, 1024):
        bases = []
        for name in PICTURES:
            img = getattr(data, name)()
            img = (np.stack([img] * 3, -1) if img.ndim == 2 else img)[:, :, :3]
            h, w = img.shape[:2]
            f = long / max(h, w)
            img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
            if engine.text_score(img, gate) == 0:  # the picture's own false alarms tell nothing about labels
                bases.append(img)
        for size in sizes:
            found, missed = 0, {(s, p): 0 for s in sides for p in probs}
            for img in bases:
                for dark in (True, False):
                    pil = Image.fromarray(img)
                    d = ImageDraw.Draw(pil)
                    word = LABELS[int(rng.integers(len(LABELS)))]
                    font, _ = load_font("zh" if any(ord(c) > 127 for c in word) else "en", size, bold=bool(rng.integers(2)))
                    tw = font.getlength(word)
                    x = int(rng.integers(0, max(1, pil.width - tw - 10)))
                    y = int(rng.integers(0, max(1, pil.height - size - 10)))
                    bg, fg = ((245, 245, 240), (15, 15, 15)) if dark else ((20, 30, 90), (250, 250, 250))
                    if rng.integers(2):
                        d.rectangle((x - 4, y - 4, x + tw + 4, y + size * 1.3 + 4), fill=bg)
                    d.text((x, y), word, fill=fg, font=font)
                    lab = np.asarray(pil)
                    if engine.text_score(lab, gate) == 0:
                        continue
                    found += 1
                    for s in sides:
                        peak, _ = _peak(det, lab, s)
                        for p in probs:
                            missed[(s, p)] += peak < p
            print(f"  {long:>8}{size:>8}{found:>7}" + "".join(f"{missed[(s, p)]:>13}" for s in sides for p in probs))


CALIBRATION = ("astronaut", "chelsea", "cat", "hubble_deep_field", "camera", "text", "moon", "brick", "gravel", "logo")


def make_int8(out: Path, side: int = 384) -> None:
    """The packaged detector in int8 (static QDQ), calibrated on scikit-image pictures shrunk to
    ``side`` through rapidocr's own detector input."""
    import os
    import tempfile

    import cv2
    import onnx
    from imgrag.indexing.ocr import RapidOcrEngine
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from skimage import data

    rapid, _ = RapidOcrEngine()._engine()
    det = rapid._load_det_model()
    src = Path(rapid.cfg.Det.model_path) if getattr(rapid.cfg.Det, "model_path", None) else None
    if src is None or not src.is_file():
        import rapidocr

        src = next(Path(rapidocr.__file__).parent.glob("models/*det*.onnx"))
    feeds = []
    for name in CALIBRATION:
        img = getattr(data, name)()
        img = (np.stack([img] * 3, -1) if img.ndim == 2 else img)[:, :, :3]
        h, w = img.shape[:2]
        f = min(1.0, side / max(h, w))
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        feeds.append({"x": det.get_preprocess()(np.ascontiguousarray(img[:, :, ::-1]))})

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:  # quant_pre_process writes its own temporary files into the cwd
        t13, pre = Path(tmp) / "det13.onnx", Path(tmp) / "det13p.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(src)), 13), str(t13))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            quant_pre_process(str(t13), str(pre), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        quantize_static(str(pre), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(f"{out}: int8 copy of {src.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path)
    ap.add_argument("--label-sweep", action="store_true", help="labels pasted on scikit-image pictures instead of folders")
    ap.add_argument("--first", default="160,256", help="long sides (px) of the first looks to measure")
    ap.add_argument("--min-prob", default="0.1,0.3", help="peaks under which a first look says 'no text'")
    ap.add_argument("--gate", type=int, default=384, help="the quick look's long side (IMGRAG_PHOTO_TEXT_GATE)")
    ap.add_argument("--no-ocr", action="store_true", help="skip OCR on the photos the look fires on (every firing counts as text)")
    ap.add_argument("--model", type=Path, help="another detector ONNX file (e.g. an int8 copy) run as the look, beside the packaged one")
    ap.add_argument("--make-int8", type=Path, metavar="OUT", help="write an int8 copy of the packaged detector (for --model) and stop")
    ap.add_argument("--json", type=Path, help="also write every photo's figures here (JSON lines)")
    args = ap.parse_args()
    sides = [int(s) for s in args.first.split(",") if s]
    probs = [float(p) for p in args.min_prob.split(",") if p]
    if args.make_int8:
        make_int8(args.make_int8, args.gate)
        return
    if args.label_sweep:
        label_sweep(sides, probs, args.gate)
        return
    if not args.folders:
        ap.error("name a folder, or --label-sweep")
    out = []
    for folder in args.folders:
        rows = measure(folder, sides, args.gate, not args.no_ocr, args.model)
        report(str(folder), rows, sides, probs, args.gate)
        out += [{"folder": str(folder), **r} for r in rows]
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in out))


if __name__ == "__main__":
    main()
