"""The article's two cases through the real CLI on real models: DICOM studies with their reports,
defect photos with their SOP pages. One small corpus (the demo's studies and parts, plus two of
pydicom's test files that cannot be indexed) is indexed once; each test checks one thing a user
relies on: links on both sides, joint retrieval, the tag filters, the linked-text filter, the patient
tags stored as masked PII findings, and crops of a DICOM page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pydicom = pytest.importorskip("pydicom")

ROOT = Path(__file__).resolve().parents[2]


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("IMGRAG_PRINCIPAL", None)
    env.pop("IMGRAG_GROUPS", None)
    p = subprocess.run([sys.executable, "-m", "imgrag", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if check and p.returncode != 0:
        raise AssertionError(f"imgrag {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def hits(home: Path, query: str, *extra: str) -> list[dict]:
    return json.loads(run(home, "search", query, "--json", *extra).stdout)["hits"]


def names(hs: list[dict]) -> list[str]:
    return [Path(h["path"]).name for h in hs]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    from pydicom.data import get_testdata_file

    from imgrag.evals.datasets.defects import make_defects
    from imgrag.evals.datasets.radiology import make_studies

    root = tmp_path_factory.mktemp("cases")
    corpus = root / "corpus"
    studies = make_studies(root, 4, 7301, corpus=corpus / "xray", sidecar=root / "meta" / "studies.jsonl")
    parts = make_defects(root, 4, 7302, corpus=corpus / "defects", sidecar=root / "meta" / "defects.jsonl")
    bad = corpus / "bad"
    bad.mkdir()
    for name in ("MR_truncated.dcm", "reportsi.dcm"):
        shutil.copy(get_testdata_file(name), bad / name)
    home = tmp_path_factory.mktemp("home")
    summary = json.loads(run(home, "index", str(corpus), "--public", "--json", check=False).stdout)
    knee = next(s for s in studies if s.study_id == "S002")
    flange = next(d for d in parts if d.part_id == "D004")
    gear = next(d for d in parts if d.part_id == "D002")
    return home, corpus, {"summary": summary, "knee": knee, "flange": flange, "gear": gear}, {s.study_id: s for s in studies}


def test_index_links_both_cases_and_names_what_it_cannot_read(indexed: tuple) -> None:
    home, _, ctx, _ = indexed
    s = ctx["summary"]
    assert s["indexed"] >= 16 and s["linked"] >= 16, s
    reasons = {Path(f["path"].split("#")[0]).name: f["reason"] for f in s["failed"]}
    assert set(reasons) == {"MR_truncated.dcm", "reportsi.dcm"}, reasons
    assert "truncated" in reasons["MR_truncated.dcm"] and "without pixel data" in reasons["reportsi.dcm"]
    assert all("\n" not in r for r in reasons.values())


def test_the_report_brings_its_image_and_the_photo_its_sop(indexed: tuple) -> None:
    home, _, ctx, _ = indexed
    knee, flange = ctx["knee"], ctx["flange"]
    found = hits(home, knee.key_finding, "-k", "5")
    assert names(found)[:2] == ["S002.report.png", "S002.dcm"], names(found)
    image = found[1]
    assert image["ranks"].get("links") == 1 and [ln["why"] for ln in image["links"]] == ["stem"]
    assert "MRI" in image["caption"] and "knee" in image["caption"]
    alone = names(hits(home, knee.key_finding, "-k", "5", "--no-links"))
    assert "S002.dcm" not in alone[:2]  # the words are only in the report
    sop = Path(flange.sop).name
    found = hits(home, f"SOP for the part photographed at station {flange.station}", "-k", "3")
    assert sop in names(found), names(found)
    sop_hit = next(h for h in found if Path(h["path"]).name == sop)
    photo = Path(flange.photo).name
    assert any(ln["file"] == photo and ln["why"] == f"part_number={flange.part_number}" for ln in sop_hit["links"]), sop_hit["links"]


def test_dicom_tags_filter_and_describe(indexed: tuple) -> None:
    home, _, ctx, studies = indexed
    mr = hits(home, "MRI of the left knee", "-k", "3", "--filter", "modality=MR")
    assert names(mr) == ["S002.dcm"]  # the only MR; its report is no MR image
    # found by its tags' Chinese caption, ahead of every other image (its own report, which says the
    # same words, may tie with it: without links the two are separate hits)
    zh = hits(home, "左手正位X光片", "-k", "3", "--no-links")
    assert [n for n in names(zh) if n.endswith(".dcm")][0] == Path(studies["S003"].dicom).name, names(zh)
    linked = hits(home, "image", "--filter", "linked=bone bruise lateral femoral condyle")
    assert names(linked) == ["S002.dcm"]


def test_personal_data_is_stored_masked_and_never_searchable(indexed: tuple) -> None:
    home, _, ctx, _ = indexed
    knee = ctx["knee"]
    image_id = next(h["image_id"] for h in hits(home, knee.key_finding, "-k", "2") if h["path"].endswith(".dcm"))
    operator = json.loads(run(home, "show", image_id).stdout)
    fields = {f["field"]: f for f in operator["pii"]}
    assert fields["PatientID"]["kind"] == "patient_id" and fields["PatientID"]["text"] == knee.patient_id
    assert fields["PatientName"]["kind"] == "person_name" and operator["has_pii"]
    assert operator["file_meta"]["accession"] == knee.accession and operator["file_meta"]["modality"] == "MR"
    bob = json.loads(run(home, "show", image_id, "--as", "bob").stdout)
    assert {f["field"]: f["text"] for f in bob["pii"]}["PatientID"] == "[patient_id redacted]"
    assert knee.patient_id not in json.dumps(bob) and str(fields["PatientName"]["text"]) not in json.dumps(bob)
    assert image_id in [h["image_id"] for h in hits(home, "MRI knee", "--filter", "pii=true", "--no-links")]
    # the patient ID is printed on the report (so found there), never on the image's record
    assert image_id not in [h["image_id"] for h in hits(home, knee.patient_id, "--mode", "keyword", "--no-links")]


def test_crop_and_ocr_a_dicom_page_through_the_facade(indexed: tuple) -> None:
    import io

    from PIL import Image

    from imgrag.indexing.app import Imgrag
    from imgrag.indexing.config import Settings
    from imgrag.indexing.stores.base import OPERATOR, Filters

    home, corpus, ctx, _ = indexed
    app = Imgrag(Settings(home=home))
    rec = app.store.list_images(OPERATOR, Filters(meta={"modality": "MR"}))[0]
    crop = app.crop(rec.image_id, [0, 0, rec.width / 2, rec.height / 2], OPERATOR, scale=2)
    im = Image.open(io.BytesIO(crop.png))
    assert crop.bbox == (0, 0, rec.width // 2, rec.height // 2) and im.size == (rec.width, rec.height)
    text = app.ocr_region(rec.image_id, OPERATOR)
    assert text.bbox == (0, 0, rec.width, rec.height)


def ask(home: Path, question: str) -> dict:
    return json.loads(run(home, "ask", question, "--format", "json", "--in-process").stdout)


def cited(answer: dict, kind: str, file: str) -> list[dict]:
    return [c for c in answer["citations"] if c["kind"] == kind and Path(c["path"]).name == file]


def test_ask_cites_the_report_sentence_and_its_image(indexed: tuple) -> None:
    """A question that needs both sides: the answer quotes the report's sentence and cites the MR
    image it is linked to, each a checked citation of the one claim."""
    home, _, ctx, _ = indexed
    knee = ctx["knee"]
    out = ask(home, "What does the report say about the bone bruise in the knee MRI?")
    assert out["checks"]["passed"], out["checks"]
    report = cited(out, "text", Path(knee.report).name)
    assert report and any("bone bruise" in c["snippet"].lower() for c in report), out["citations"]
    image = cited(out, "linked", Path(knee.dicom).name)
    assert image, out["citations"]
    assert "knee" in image[0]["snippet"].lower() and image[0]["why"] == "stem"
    assert image[0]["linked_to"] in {c["image_id"] for c in report}
    claim = next(cl for cl in out["claims"] if any(out["citations"][n - 1] in report for n in cl["citations"]))
    assert any(out["citations"][n - 1] in image for n in claim["citations"]), out["claims"]  # one claim, both sides


def test_ask_cites_the_sop_step_and_the_defect_photo(indexed: tuple) -> None:
    home, _, ctx, _ = indexed
    gear = ctx["gear"]
    out = ask(home, f"Which SOP step fixes the {gear.defect_en} on part {gear.part_number}?")
    assert out["checks"]["passed"], out["checks"]
    sop = cited(out, "text", Path(gear.sop).name)
    assert sop and any("rework" in c["snippet"].lower() for c in sop), out["citations"]
    photo = cited(out, "linked", Path(gear.photo).name)
    assert photo and photo[0]["why"] == f"part_number={gear.part_number}", out["citations"]
