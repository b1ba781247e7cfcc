"""Tests for the reproducible corpus builders in evals/datasets/.

System packages come from `bash evals/datasets/system_deps.sh`; tests that need a missing one skip
with the reason (CI runs the script, so they don't skip there)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from imgrag.evals.datasets import fonts
from imgrag.evals.datasets.contracts import (
    ContractSpec,
    cny_uppercase,
    make_contracts,
    number_to_words,
    read_contracts,
)
from imgrag.evals.datasets.docpages import have_doc_deps

REPO = Path(__file__).resolve().parents[2]
DEPS_HINT = "run `bash evals/datasets/system_deps.sh`"

needs_fonts = pytest.mark.skipif(
    not (fonts.have_font("zh") and fonts.have_font("en")),
    reason=f"no CJK/English font found by fc-match ({DEPS_HINT}: "
    "installs fonts-wqy-zenhei, fonts-dejavu-core)",
)
needs_docs = pytest.mark.skipif(
    not have_doc_deps(),
    reason=f"poppler-utils or the Debian Reference PDFs are missing ({DEPS_HINT})",
)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- numbers in words


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (120000, "壹拾贰万元整"),
        (100500, "壹拾万零伍佰元整"),
        (1005000, "壹佰万伍仟元整"),
        (10000500, "壹仟万零伍佰元整"),
        (100000005, "壹亿零伍元整"),
        (20000000, "贰仟万元整"),
        (1010, "壹仟零壹拾元整"),
        (101, "壹佰零壹元整"),
        (1234.05, "壹仟贰佰叁拾肆元零伍分"),
        (3400.5, "叁仟肆佰元伍角整"),
        (0.5, "伍角整"),
        (0, "零元整"),
    ],
)
def test_cny_uppercase(amount: float, expected: str) -> None:
    assert cny_uppercase(amount) == expected


def test_number_to_words() -> None:
    assert number_to_words(120000) == "One Hundred Twenty Thousand"
    assert number_to_words(759523) == "Seven Hundred Fifty-Nine Thousand Five Hundred Twenty-Three"
    assert number_to_words(6300000) == "Six Million Three Hundred Thousand"
    assert number_to_words(0) == "Zero"


# --------------------------------------------------------------------------- fonts


@needs_fonts
def test_find_font_returns_real_files() -> None:
    for lang in ("zh", "en"):
        for bold in (False, True):
            p = fonts.find_font(lang, bold=bold)
            assert p.is_file(), p
    font, _ = fonts.load_font("zh", 24)
    # the CJK font really has the glyphs: 合同 renders to something wider than nothing
    assert font.getlength("合同") > 30


def test_find_font_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    fonts.find_face.cache_clear()
    try:
        monkeypatch.setattr(fonts, "_fc_match", lambda pattern: None)
        monkeypatch.setattr(fonts.shutil, "which", lambda name: "/usr/bin/fc-match")
        with pytest.raises(fonts.FontNotFoundError, match="fonts-wqy-zenhei"):
            fonts.find_font("zh")
        with pytest.raises(fonts.FontNotFoundError, match="fonts-dejavu-core"):
            fonts.find_font("en")
        monkeypatch.setattr(fonts.shutil, "which", lambda name: None)
        with pytest.raises(fonts.FontNotFoundError, match="fontconfig"):
            fonts.find_font("zh")
    finally:
        fonts.find_face.cache_clear()


# --------------------------------------------------------------------------- contracts


@pytest.fixture(scope="module")
def contract_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ContractSpec]]:
    """12 pages: zh/en alternating, half scanned — covers every scan profile (skew, blur, noise,
    JPEG, 90/270 and 180 rotation) and every seal style (round/oval, red/blue)."""
    if not (fonts.have_font("zh") and fonts.have_font("en")):
        pytest.skip(f"no CJK/English font ({DEPS_HINT})")
    out = tmp_path_factory.mktemp("contracts")
    return out, make_contracts(out, 12, seed=11, scan_ratio=0.5)


@needs_fonts
def test_contracts_are_deterministic(tmp_path: Path) -> None:
    a = make_contracts(tmp_path / "a", 4, seed=3)
    b = make_contracts(tmp_path / "b", 4, seed=3)
    assert [s.file for s in a] == [s.file for s in b]
    assert _tree_digests(tmp_path / "a") == _tree_digests(tmp_path / "b")
    # page i doesn't depend on n
    make_contracts(tmp_path / "c", 2, seed=3)
    for s in a[:2]:
        assert _sha(tmp_path / "a" / s.file) == _sha(tmp_path / "c" / s.file)
    # another seed gives other pages
    other = make_contracts(tmp_path / "d", 2, seed=4, sidecar=None)
    assert other[0].party_a != a[0].party_a or other[0].sign_date != a[0].sign_date
    assert not (tmp_path / "d" / "contracts.jsonl").exists()


def test_contract_set_covers_the_variants(contract_set: tuple[Path, list[ContractSpec]]) -> None:
    _, specs = contract_set
    assert {s.lang for s in specs} == {"zh", "en"}
    scanned = [s for s in specs if s.scanned]
    assert {s.lang for s in scanned} == {"zh", "en"}
    assert any(s.rotation in (90, 270) for s in specs)
    assert any(s.rotation == 180 for s in specs)
    assert any(s.skew_deg != 0 and s.rotation == 0 for s in specs)
    assert any(s.format == "jpeg" for s in specs) and any(s.format == "png" for s in specs)
    ops = {o["op"] for s in specs for o in s.variant_ops}
    assert ops == {"paper_tint", "skew", "gaussian_blur", "gaussian_noise", "rotate", "jpeg"}
    assert {s.seal_colour for s in specs} == {"red", "blue"}
    assert {seal.shape for s in specs for seal in s.seals} == {"round", "oval"}
    for s in specs:
        assert all(abs(o["degrees"]) <= 3 for o in s.variant_ops if o["op"] == "skew")
        if s.rotation in (90, 270):
            assert (s.width, s.height) == (1754, 1240)
        else:
            assert (s.width, s.height) == (1240, 1754)


def _ink_mask(arr: np.ndarray, colour: str) -> np.ndarray:
    r, g, b = (arr[..., k].astype(np.int16) for k in range(3))
    if colour == "red":
        return (r > 120) & (r - g > 60) & (r - b > 50)
    return (b > 120) & (b - r > 60) & (b - g > 30)


def test_seal_bbox_covers_the_seal_ink(contract_set: tuple[Path, list[ContractSpec]]) -> None:
    out, specs = contract_set
    for s in specs:
        arr = np.asarray(Image.open(out / s.file).convert("RGB"))
        assert arr.shape[:2] == (s.height, s.width), s.file
        ink = _ink_mask(arr, s.seal_colour)
        inside = np.zeros_like(ink)
        for seal in s.seals:
            x0, y0, x1, y1 = seal.bbox
            assert 0 <= x0 < x1 <= s.width and 0 <= y0 < y1 <= s.height, (s.file, seal.bbox)
            inside[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
            sub = ink[y0:y1, x0:x1]
            assert sub.sum() > 1500, (s.file, "too little seal ink in the box", int(sub.sum()))
            ys, xs = np.nonzero(sub)
            # the box is tight: ink reaches within a few pixels of every side
            slack = (xs.min(), ys.min(), (x1 - x0 - 1) - xs.max(), (y1 - y0 - 1) - ys.max())
            assert max(slack) <= 10, (s.file, slack)
        total = int(ink.sum())
        assert total > 0
        covered = int((ink & inside).sum()) / total
        assert covered >= 0.995, (s.file, s.variant_ops, covered)
        assert s.seal_bbox == s.seals[0].bbox
        where = [q for q in s.qa if q.field == "seals"]
        assert where and all(q.answer_bbox == s.seal_bbox for q in where)


def _template_score(page: np.ndarray, box: list[int], text: str, lang: str, size: int,
                    bold: bool) -> float:
    """Render `text` as the builder does and match it inside `box` (grey, normalised correlation)."""
    import cv2

    font, stroke = fonts.load_font(lang, size, bold)  # type: ignore[arg-type]
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    tmpl = Image.new("L", (right - left + 2, bottom - top + 2), 255)
    ImageDraw.Draw(tmpl).text((1 - left, 1 - top), text, font=font, fill=0, stroke_width=stroke,
                              stroke_fill=0)
    x0, y0, x1, y1 = box
    pad = 6
    crop = page[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad]
    t_arr = np.asarray(tmpl)
    if crop.shape[0] < t_arr.shape[0] or crop.shape[1] < t_arr.shape[1]:
        return -1.0
    return float(cv2.matchTemplate(crop, t_arr, cv2.TM_CCOEFF_NORMED).max())


def test_party_names_are_printed_where_the_sidecar_says(
    contract_set: tuple[Path, list[ContractSpec]],
) -> None:
    out, specs = contract_set
    clean = [s for s in specs if not s.scanned]
    assert clean
    for s in clean:
        page = np.asarray(Image.open(out / s.file).convert("L"))
        for name in ("party_a", "party_b", "sign_date", "amount", "title"):
            f = s.fields[name]
            score = _template_score(page, f.bbox, f.text, s.lang, f.size, f.bold)
            assert score > 0.9, (s.file, name, f.text, score)
        assert s.fields["party_a"].text == s.party_a and s.fields["party_b"].text == s.party_b
        # the check discriminates: Party B's name is not what is printed at Party A's place
        fa, fb = s.fields["party_a"], s.fields["party_b"]
        wrong = _template_score(page, fa.bbox, fb.text, s.lang, fa.size, fa.bold)
        assert wrong < 0.8, (s.file, wrong)
    # on scanned pages (skewed, rotated, noisy) the transformed boxes still hold dark text
    for s in specs:
        if not s.scanned:
            continue
        page = np.asarray(Image.open(out / s.file).convert("L"))
        for name in ("party_a", "party_b", "sign_date"):
            x0, y0, x1, y1 = s.fields[name].bbox
            crop = page[y0:y1, x0:x1].astype(np.int16)
            assert crop.size, (s.file, name)
            dark = (crop < np.median(crop) - 60).mean()  # ink clearly darker than the paper
            assert dark > 0.08, (s.file, name, dark)
        # the text lines are all inside the page
        for ln in s.lines:
            x0, y0, x1, y1 = ln.bbox
            assert 0 <= x0 <= x1 <= s.width and 0 <= y0 <= y1 <= s.height


def test_contract_ground_truth_and_qa(contract_set: tuple[Path, list[ContractSpec]]) -> None:
    out, specs = contract_set
    again = read_contracts(out)
    assert [s.model_dump() for s in again] == [s.model_dump() for s in specs]
    lines = (out / "contracts.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == len(specs)
    assert {json.loads(x)["file"] for x in lines} == {p.name for p in out.iterdir() if p.suffix != ".jsonl"}
    for s in specs:
        d = date.fromisoformat(s.sign_date)
        assert 2019 <= d.year <= 2025
        assert s.party_a != s.party_b
        qa = {q.query: q for q in s.qa}
        if s.lang == "zh":
            assert qa["甲方是谁"].answer == s.party_a
            assert qa["乙方是谁"].answer == s.party_b
            assert s.sign_date_text == f"{d.year}年{d.month}月{d.day}日"
            assert s.amount_words == "人民币" + cny_uppercase(s.amount)
            assert s.amount_text.startswith("人民币") and s.amount_text.endswith("元")
            assert any(s.party_a in ln.text for ln in s.lines)
        else:
            assert qa["who is Party A"].answer == s.party_a
            assert qa["who is Party B"].answer == s.party_b
            assert any(ln.text == f"dated {s.sign_date_text}" for ln in s.lines)
        assert len(s.clauses) >= 4 and any(s.amount_text in c for c in s.clauses)
        assert s.clauses[0].startswith("第一条" if s.lang == "zh" else "1. ")
        date_q = qa["合同签订日期"]
        assert date_q.answer == s.sign_date
        assert f"{d.year}年{d.month}月{d.day}日" in date_q.answer_aliases
        assert s.seal_colour in ("red", "blue")


# --------------------------------------------------------------------------- document pages


@needs_docs
def test_doc_pages(tmp_path: Path) -> None:
    from imgrag.evals.datasets.docpages import find_doc_pdfs, make_doc_pages, pdf_page_count, read_doc_pages

    pdfs = find_doc_pdfs()
    assert set(pdfs) == {"en", "zh"}
    assert pdf_page_count(pdfs["en"]) > 100 and pdf_page_count(pdfs["zh"]) > 100
    files = make_doc_pages(tmp_path / "a", 2, dpi=100, pdf_pages=2)
    pngs = [f for f in files if f.suffix == ".png"]
    pdf = [f for f in files if f.suffix == ".pdf"]
    assert len(pngs) == 4 and len(pdf) == 1
    for f in pngs:
        with Image.open(f) as im:
            assert im.size == (827, 1170)  # A4 at 100 dpi
    recs = {r.file: r for r in read_doc_pages(tmp_path / "a")}
    assert set(recs) == {f.name for f in files}
    zh = [r for r in recs.values() if r.lang == "zh" and r.kind == "page"]
    en = [r for r in recs.values() if r.lang == "en" and r.kind == "page"]
    assert len(zh) == 2 and len(en) == 2
    assert all(sum("\u4e00" <= c <= "\u9fff" for c in r.text) > 50 for r in zh)
    assert all(len(r.text.split()) > 100 for r in en)
    # the cut PDF is a real 2-page PDF a loader can open
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf[0]))
    assert len(doc) == 2
    doc.close()
    # same bytes on a rebuild (the PDF's /ID and /CreationDate are pinned)
    files_b = make_doc_pages(tmp_path / "b", 2, dpi=100, pdf_pages=2)
    assert [f.name for f in files] == [f.name for f in files_b]
    assert _tree_digests(tmp_path / "a") == _tree_digests(tmp_path / "b")


def test_doc_pages_missing_deps_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgrag.evals.datasets import docpages

    monkeypatch.setattr(docpages, "DOC_PDFS", {"en": ("debian-reference-en", Path("/nonexistent.pdf"), "x")})
    with pytest.raises(docpages.DocDepsMissing, match="debian-reference-en"):
        docpages.find_doc_pdfs()


# --------------------------------------------------------------------------- photos


def test_photos(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    from imgrag.evals.datasets.photos import make_photos, read_photos, upright_rocket

    files = make_photos(tmp_path / "a")
    names = {f.name for f in files}
    assert {"astronaut.jpg", "coffee.jpg", "chelsea.png", "moon_coins.tif", "motorcycle.webp",
            "camera.bmp", "rocket_exif6.jpg"} <= names
    fmts = {}
    for f in files:
        with Image.open(f) as im:
            im.load()
            fmts[f.name] = im.format
    assert fmts["motorcycle.webp"] == "WEBP" and fmts["camera.bmp"] == "BMP"
    with Image.open(tmp_path / "a" / "moon_coins.tif") as im:
        assert im.n_frames == 2
        sizes = []
        for k in range(2):
            im.seek(k)
            sizes.append(im.size)
        assert sizes == [(512, 512), (384, 303)]
    # EXIF orientation 6: stored sideways, upright once the orientation is applied
    with Image.open(tmp_path / "a" / "rocket_exif6.jpg") as im:
        assert im.getexif().get(0x0112) == 6
        stored = im.convert("RGB")
        shown = ImageOps.exif_transpose(im).convert("RGB")
    up = upright_rocket().convert("RGB")
    assert stored.size == (up.height, up.width)
    assert shown.size == up.size
    diff = np.abs(np.asarray(shown, np.int16) - np.asarray(up, np.int16)).mean()
    wrong = np.abs(np.asarray(shown.rotate(180), np.int16) - np.asarray(up, np.int16)).mean()
    assert diff < 4 < wrong, (diff, wrong)
    recs = {r.file: r for r in read_photos(tmp_path / "a")}
    assert recs["rocket_exif6.jpg"].exif_orientation == 6
    assert (recs["rocket_exif6.jpg"].upright_width, recs["rocket_exif6.jpg"].upright_height) == up.size
    assert recs["moon_coins.tif"].frames == 2
    assert all(r.caption_en and r.caption_zh for r in recs.values())
    make_photos(tmp_path / "b")
    assert _tree_digests(tmp_path / "a") == _tree_digests(tmp_path / "b")


# --------------------------------------------------------------------------- demo + system deps


@needs_fonts
@needs_docs
def test_demo_builder_small(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "imgrag.evals.datasets.demo", str(out), "--small"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "built demo corpus" in r.stdout
    corpus = out / "corpus"
    photos = {p.name for p in (corpus / "photos").iterdir()}
    assert photos == {"astronaut.jpg", "moon_coins.tif", "motorcycle.webp", "camera.bmp", "rocket_exif6.jpg"}
    docs = sorted(p.name for p in (corpus / "docs").iterdir())
    assert len([d for d in docs if d.endswith(".png")]) == 2
    assert len([d for d in docs if d.endswith(".pdf")]) == 1
    assert any(".en-" in d for d in docs) and any(".zh-cn-" in d for d in docs)
    contracts = sorted(p.name for p in (corpus / "contracts").iterdir())
    assert len(contracts) == 2
    assert any("_zh" in c for c in contracts) and any("_en" in c for c in contracts)
    assert any("_scan" in c for c in contracts)
    assert not list(corpus.rglob("*.jsonl")), "ground truth must stay out of the indexed folder"
    for name in ("photos.jsonl", "docpages.jsonl", "contracts.jsonl"):
        assert (out / "meta" / name).stat().st_size > 0
    truth = [json.loads(x) for x in (out / "meta" / "contracts.jsonl").read_text("utf-8").splitlines()]
    assert truth[0]["lang"] == "zh" and truth[0]["sign_date"] == "2023-05-12"
    assert truth[0]["sign_date_text"] == "2023年5月12日"
    stamp = json.loads((out / "demo-stamp.json").read_text())
    assert stamp["recipe"] and stamp["small"] is True
    before = _tree_digests(out)
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}

    r2 = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r2.returncode == 0 and "up to date" in r2.stdout, r2.stdout + r2.stderr
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == mtimes

    r3 = subprocess.run(cmd + ["--force"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r3.returncode == 0, r3.stderr
    assert _tree_digests(out) == before  # a rebuild gives the same bytes

    # a damaged file makes the next run rebuild
    victim = corpus / "photos" / "astronaut.jpg"
    victim.write_bytes(b"broken")
    r4 = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r4.returncode == 0 and "built demo corpus" in r4.stdout
    assert _tree_digests(out) == before


def test_system_deps_script_cli() -> None:
    script = REPO / "evals" / "datasets" / "system_deps.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    r = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "openclipart" in r.stdout
    r = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    assert r.stdout.startswith("system_deps:")


def test_pii_pages_ground_truth(tmp_path: Path) -> None:
    """Forms hold their planted values where the sidecar says, negatives hold none, both conditions
    occur, and the detector reads exactly the planted values off the printed text (no OCR)."""
    from imgrag.evals.datasets.pii_pages import make_pii_pages, read_pii_pages
    from imgrag.indexing.pii import find_spans

    specs = make_pii_pages(tmp_path / "a", 4, 2, seed=2)
    assert [s.model_dump() for s in read_pii_pages(tmp_path / "a")] == [s.model_dump() for s in specs]
    again = make_pii_pages(tmp_path / "b", 4, 2, seed=2, sidecar=None)
    assert all((tmp_path / "a" / s.file).read_bytes() == (tmp_path / "b" / s.file).read_bytes() for s in again)
    assert {(s.page_kind, s.scanned) for s in specs} == {("form", True), ("form", False), ("negative", True), ("negative", False)}
    for s in specs:
        with Image.open(tmp_path / "a" / s.file) as im:
            assert im.size == (s.width, s.height)
        assert bool(s.pii) == (s.page_kind == "form")
        planted = {(p.kind, p.value) for p in s.pii}
        for p in s.pii:
            assert p.value in p.line and 0 <= p.bbox[0] < p.bbox[2] <= s.width and 0 <= p.bbox[1] < p.bbox[3] <= s.height
        read = {(k, ln.text[a:b]) for ln in s.lines for k, a, b in find_spans(ln.text)}
        assert read == planted
