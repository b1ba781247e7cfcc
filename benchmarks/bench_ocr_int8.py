"""The int8 recogniser (``IMGRAG_OCR_INT8``, indexing/ocr_int8.py) against the float32 one.

``collect``: runs the pipeline's text detector and recogniser (``preprocess``, ``detect``, ``read``)
over page images and keeps every text-line input the recogniser gets (1 x 3 x 48 x W float32),
tagged with its page, in a pickle. ``--calibration`` instead collects the calibration set the
shipped ranges come from: contract pages of ``make_contracts(seed=7)`` (the eval's seed is another),
Debian Reference pages 150-153 (en, zh; the docqa set rasterises the first ~30 body pages) and
one-line renderings of text from pages 160-175 in the project's fonts; nothing from an eval's pages.

``calibrate``: the activation ranges over a collected set (``ortquant.calibrate_ranges``) and the
recipe (``--float32`` layers kept in float32, ``--percentile``, ``--symmetric``, ``--space-scale``) into
``indexing/ocr_int8_ranges.json`` (or ``--out``), which ``ocr_int8.int8_model`` quantises from.

``compare``: float32 and int8 over a collected set in one process, one thread, each line read by
both in turn: lines read differently, characters differing (edit distance), spaces lost and gained,
CPU-s a page of each; ``--model`` names another int8 file (a sweep's) instead of the shipped recipe.

    python benchmarks/bench_ocr_int8.py collect --calibration --out /tmp/calib.pkl
    python benchmarks/bench_ocr_int8.py collect --out /tmp/test.pkl DIR [DIR ...]
    python benchmarks/bench_ocr_int8.py calibrate /tmp/calib.pkl --float32 Conv.0,Conv.1 [--percentile 99.999]
    python benchmarks/bench_ocr_int8.py compare /tmp/test.pkl [--model int8.onnx] [--show 20]

Figures: docs/performance.md, "The recogniser in int8 (session 12)".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# collect


class _Recorder:
    def __init__(self) -> None:
        from imgrag.indexing.ocr import RapidOcrEngine

        self.engine = RapidOcrEngine(threads=1)
        self.engine.load()
        rapid, _ = self.engine._engine()
        self.session = rapid.text_rec.session
        self.page = ""
        self.inputs: list[tuple[str, np.ndarray]] = []
        orig = type(self.session).__call__
        rec = self

        def call(s: Any, x: np.ndarray) -> Any:
            if s is rec.session:
                rec.inputs.append((rec.page, x.copy()))
            return orig(s, x)

        type(self.session).__call__ = call

    def image(self, tag: str, img: Any) -> None:
        from imgrag.indexing.preprocess import preprocess

        self.page = tag
        self.engine.read(self.engine.detect(preprocess(img).image))

    def files(self, files: list[Path]) -> None:
        from imgrag.indexing.loader import iter_pages

        for f in files:
            for i, pg in enumerate(iter_pages(f, max_pixels=10**9, pdf_dpi=150)):
                self.image(f"{f.name}#{i}", pg.image)


def _pdf_lines(lang: str, first: int, last: int) -> list[tuple[str, str]]:
    from imgrag.evals.datasets.docpages import _page_texts, find_doc_pdfs

    out = []
    for page in _page_texts(find_doc_pdfs()[lang], first, last):
        for ln in page.splitlines():
            ln = " ".join(ln.split())
            if 8 <= len(ln) <= 70:
                out.append((lang, ln))
    return out


def _render_lines(rec: _Recorder, texts: list[tuple[str, str]], seed: int, tag: str) -> None:
    from imgrag.evals.datasets.fonts import load_font
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    for k, (lang, text) in enumerate(texts):
        size = rng.choice([14, 16, 18, 20, 24, 28, 32])
        font, _ = load_font(lang, size, bold=rng.random() < 0.25)  # type: ignore[arg-type]
        w, h = int(font.getlength(text)) + 40, size * 2 + 20
        im = Image.new("RGB", (max(w, 200), h), (255, 255, 255))
        ImageDraw.Draw(im).text((20, 10), text, font=font, fill=(0, 0, 0))
        rec.image(f"{tag}-{k}#0", np.asarray(im))


def collect_calibration(rec: _Recorder) -> None:
    from imgrag.evals.datasets.contracts import make_contracts
    from imgrag.evals.datasets.docpages import find_doc_pdfs

    rng = random.Random(1)
    texts = _pdf_lines("en", 160, 175) + _pdf_lines("zh", 160, 175)
    rng.shuffle(texts)
    _render_lines(rec, texts[:120], 1, "rl")
    with tempfile.TemporaryDirectory(prefix="imgrag-calib-") as td:
        make_contracts(td, n=8, seed=7, variants=True)
        rec.files(sorted(p for p in Path(td).iterdir() if p.suffix in (".png", ".jpg")))
        for lang, pdf in find_doc_pdfs().items():
            subprocess.run(["pdftoppm", "-r", "100", "-png", "-f", "150", "-l", "153", str(pdf), f"{td}/{lang}"], check=True)
        rec.files(sorted(Path(td).glob("*-1[0-9][0-9].png")))


# --------------------------------------------------------------------------------------------------
# compare


def _session(path: Path) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def levenshtein(a: str, b: str) -> int:
    if a == b:
        return 0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def compare(items: list[tuple[str, np.ndarray]], models: dict[str, Path]) -> dict[str, Any]:
    """Each line through every model in ``models`` (``float32`` first among them), in a rotating
    order; texts and CPU-s (thread time) per model."""
    from imgrag.indexing.ocr import RapidOcrEngine

    eng = RapidOcrEngine(threads=1)
    eng.load()
    decode = eng._engine()[0].text_rec.postprocess_op
    sessions = {k: _session(p) for k, p in models.items()}
    name = sessions["float32"].get_inputs()[0].name
    cpu = dict.fromkeys(sessions, 0.0)
    texts: dict[str, list[str]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, {name: items[0][1]})
    keys = list(sessions)
    for i, (_, x) in enumerate(items):
        for k in keys[i % len(keys):] + keys[: i % len(keys)]:
            c = time.thread_time()
            out = sessions[k].run(None, {name: x})[0]
            cpu[k] += time.thread_time() - c
            r = x.shape[3] / x.shape[2]
            texts[k].append(decode(out, False, wh_ratio_list=[r], max_wh_ratio=r)[0][0][0])
    return {"texts": texts, "cpu": cpu}


def _group(page: str) -> str:
    if page.startswith("contract"):
        return "contracts"
    if page.startswith("debian"):
        return "docqa"
    return "rendered lines"


def report(items: list[tuple[str, np.ndarray]], res: dict[str, Any], show: int) -> dict[str, Any]:
    a = res["texts"]["float32"]
    out: dict[str, Any] = {}
    n = len({p for p, _ in items if _group(p) != "rendered lines"}) or 1
    for model, b in res["texts"].items():
        if model == "float32":
            continue
        groups: dict[str, dict[str, Any]] = {}
        for (page, _), x, y in zip(items, a, b, strict=True):
            g = groups.setdefault(_group(page), {"lines": 0, "differ": 0, "chars": 0, "char_edits": 0,
                                                  "spaces_lost": 0, "spaces_gained": 0, "pages": set(), "diffs": []})
            g["lines"] += 1
            g["pages"].add(page)
            g["chars"] += len(x)
            if x != y:
                g["differ"] += 1
                g["char_edits"] += levenshtein(x, y)
                sp = (" ", "\u3000")
                g["spaces_lost"] += max(sum(x.count(c) for c in sp) - sum(y.count(c) for c in sp), 0)
                g["spaces_gained"] += max(sum(y.count(c) for c in sp) - sum(x.count(c) for c in sp), 0)
                g["diffs"].append((x, y))
        print(f"== {model}")
        for gname, g in groups.items():
            diffs = g.pop("diffs")
            g["pages"] = len(g["pages"])
            g["lines_same_pct"] = round(100 * (1 - g["differ"] / g["lines"]), 3)
            g["chars_same_pct"] = round(100 * (1 - g["char_edits"] / max(g["chars"], 1)), 3)
            print(f"{gname}: {json.dumps(g)}")
            for x, y in diffs[:show]:
                print(f"    {x!r}\n -> {y!r}")
            g["diffs"] = diffs
        out[model] = groups
    cpu = {k: round(v, 2) for k, v in res["cpu"].items()}
    print(f"CPU-s (one thread, all lines): {cpu}; a document page ({n} pages): "
          f"{ {k: round(v / n, 3) for k, v in res['cpu'].items()} }")
    out["cpu"] = cpu
    out["doc_pages"] = n
    return out


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("dirs", nargs="*", type=Path)
    c.add_argument("--calibration", action="store_true")
    c.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("calibrate")
    k.add_argument("inputs", type=Path)
    k.add_argument("--float32", default="", help="comma-separated node names kept in float32")
    k.add_argument("--percentile", type=float, default=99.999)
    k.add_argument("--symmetric", action="store_true")
    k.add_argument("--every", type=int, default=1, help="calibrate on every N-th line only")
    k.add_argument("--space-scale", type=float, default=2.0,
                   help="the space class's probability times this after int8 (ocr_int8.scale_space); 1: off")
    k.add_argument("--out", type=Path, default=REPO / "indexing" / "ocr_int8_ranges.json")
    m = sub.add_parser("compare")
    m.add_argument("inputs", type=Path)
    m.add_argument("--model", action="append", default=[],
                   help="LABEL=an int8 model file, repeatable (default: the shipped recipe's, derived into a temp cache)")
    m.add_argument("--part", default="0/1", help="I/N: only the pages whose index is I modulo N (split a run over processes)")
    m.add_argument("--show", type=int, default=10)
    m.add_argument("--json", type=Path)
    a = p.parse_args(argv)

    from imgrag.indexing import ocr_int8

    if a.cmd == "collect":
        rec = _Recorder()
        if a.calibration:
            collect_calibration(rec)
        for d in a.dirs:
            rec.files(sorted(f for f in d.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg")))
        a.out.write_bytes(pickle.dumps(rec.inputs, protocol=5))
        print(f"{len(rec.inputs)} lines of {len({q for q, _ in rec.inputs})} pages -> {a.out}")
        return 0
    items = pickle.loads(a.inputs.read_bytes())
    fp32 = ocr_int8.float_model_path()
    if a.cmd == "calibrate":
        items = items[:: a.every]
        import onnxruntime as ort
        from imgrag.indexing.ortquant import calibrate_ranges

        name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
        c0 = time.process_time()
        ranges = calibrate_ranges(fp32, [{name: x} for _, x in items], percentile=a.percentile, symmetric=a.symmetric)
        doc = {
            "float_model": fp32.name,
            "float_sha256": ocr_int8.file_sha(fp32),
            "calibration": {"lines": len(items), "pages": len({q for q, _ in items}),
                            "inputs_sha256": hashlib.sha256(b"".join(x.tobytes() for _, x in items)).hexdigest()[:16],
                            "set": f"benchmarks/bench_ocr_int8.py collect --calibration, every {a.every}. line",
                            "percentile": a.percentile, "symmetric": a.symmetric},
            "recipe": {"per_channel": True, "reduce_range": False, "activations": "uint8",
                       "float32": [s for s in a.float32.split(",") if s], "space_scale": a.space_scale},
            "ranges": ranges,
        }
        a.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{len(ranges)} tensor ranges from {len(items)} lines ({time.process_time() - c0:.1f} CPU-s) -> {a.out}")
        return 0
    i, n = (int(v) for v in a.part.split("/"))
    pages = sorted({q for q, _ in items})
    keep = {q for j, q in enumerate(pages) if j % n == i}
    items = [it for it in items if it[0] in keep]
    models = {"float32": fp32}
    for spec in a.model:
        label, _, path = spec.partition("=")
        models[label] = Path(path)
    if len(models) == 1:
        models["int8"] = ocr_int8.int8_model(Path(tempfile.mkdtemp(prefix="imgrag-int8-")))
    res = compare(items, models)
    out = report(items, res, a.show)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
