"""Link keys read off pages and files, and which pages link (store-level behaviour: test_store_contract)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from imgrag.indexing.links import compute_links, file_keys, keys_of, link_kind, read_off
from imgrag.indexing.models import PiiFinding
from imgrag.indexing.pii import mask_record
from imgrag.indexing.stores.base import ImageRecord


def rec(image_id: str, *, path: str, fmt: str = "png", quality: str = "scanned", doc: str | None = None, **meta: str) -> ImageRecord:
    return ImageRecord(image_id=image_id, doc_id=doc or image_id, path=path, format=fmt, width=10, height=10,
                       quality=quality, file_meta=meta, indexed_at=datetime(2026, 1, 1, tzinfo=timezone.utc))  # type: ignore[arg-type]


def test_read_off_labels_in_english_and_chinese() -> None:
    assert read_off("RADIOLOGY REPORT\nAccession No: acc-2021 77\nExam: CT") == {"accession": "ACC-2021"}
    assert read_off("检查号：ACC210304512") == {"accession": "ACC210304512"}
    assert read_off("P/N: BRK-5269\nLOT: L2408-00132") == {"part_number": "BRK-5269"}
    assert read_off("零件号：ＧＲ－９１９４") == {"part_number": "GR-9194"}  # full-width OCR output
    assert read_off("Part No. FLG-1234 Rev B") == {"part_number": "FLG-1234"}
    # a table header is not a value: label and value must share a line
    assert read_off("Defect code\nDefect\nDF-S01") == {}
    assert read_off("no labels here, just a part and 2021-03-04") == {}


def test_file_keys_from_case_marker_and_sidecar(tmp_path: Path) -> None:
    case = tmp_path / "patient-17" / "ct"
    case.mkdir(parents=True)
    (tmp_path / "patient-17" / ".imgrag-case").write_text("P17\n")
    img = case / "a.dcm"
    img.write_bytes(b"")
    assert file_keys(img) == {"case": "P17"}
    (case / "a.dcm.imgrag.json").write_text('{"part_number": "BRK-1", "lot": 7, "bad": {"x": 1}}')
    assert file_keys(img) == {"case": "P17", "part_number": "BRK-1", "lot": "7"}
    (case / "a.dcm.imgrag.json").write_text("[1, 2]")  # not an object: ignored, not fatal
    assert file_keys(img) == {"case": "P17"}
    other = tmp_path / "b.png"
    other.write_bytes(b"")
    assert file_keys(other) == {}


def test_file_keys_read_nothing_outside_the_index_roots(tmp_path: Path) -> None:
    """A server given index roots reads no case marker above them and no sidecar linked out of them."""
    from imgrag.indexing.links import clear_caches

    outside, root = tmp_path / "outside", tmp_path / "outside" / "root"
    (root / "x").mkdir(parents=True)
    (outside / ".imgrag-case").write_text("SECRET first line\n")
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "s3cr3t"}')
    img = root / "x" / "a.png"
    img.write_bytes(b"")
    (root / "x" / "a.png.imgrag.json").symlink_to(secret)
    clear_caches()
    assert file_keys(img) == {"case": "SECRET first line", "token": "s3cr3t"}  # no roots: the operator's CLI
    clear_caches()
    assert file_keys(img, [root.resolve()]) == {}
    (root / ".imgrag-case").write_text("inside\n")
    clear_caches()
    assert file_keys(img, [root.resolve()]) == {"case": "inside"}


def test_links_join_images_and_documents_sharing_a_key() -> None:
    ct = rec("ct", path="/d/images/IM1.dcm", fmt="dicom", quality="photo", accession="ACC1", study_uid="1.2")
    ct2 = rec("ct2", path="/d/images/IM2.dcm", fmt="dicom", quality="photo", study_uid="1.2")
    report = rec("rep", path="/d/reports/r1.png", accession="acc1")  # values compare normalised
    stem_img = rec("s", path="/d/studies/S2.dcm", fmt="dicom", quality="photo")
    stem_rep = rec("sr", path="/d/studies/S2.report.png")
    pdf_p1 = rec("pdf-p1", path="/d/studies/S2.pdf", doc="pdf")
    pdf_p2 = rec("pdf-p2", path="/d/studies/S2.pdf", doc="pdf")
    photo_as_doc = rec("ph", path="/d/x/ph.jpg", quality="scanned", kind="image", part_number="P1")
    sop = rec("sop", path="/d/sops/sop.png", part_number="P1")
    dated_photo = rec("dp", path="/d/cam/IMG_2023.01.05.jpg", quality="photo")  # names with dots, not one stem
    dated_doc = rec("dd", path="/d/cam/IMG_2023.02.07.pdf")
    recs = [ct, ct2, report, stem_img, stem_rep, pdf_p1, pdf_p2, photo_as_doc, sop, dated_photo, dated_doc]
    groups: dict[tuple[str, str], list[ImageRecord]] = {}
    for r in recs:
        for k in keys_of(r):
            groups.setdefault(k, []).append(r)
    links = compute_links(recs, groups)
    assert [(ln.image_id, ln.kind, ln.why) for ln in links["rep"]] == [("ct", "image", "accession=ACC1")]
    assert links["ct2"] == []  # images of one study are not linked to each other
    assert {ln.image_id for ln in links["s"]} == {"sr", "pdf-p1", "pdf-p2"}
    assert [ln.why for ln in links["sr"]] == ["stem"] and [ln.image_id for ln in links["pdf-p1"]] == ["s"]  # pages of one file: no link
    assert link_kind(photo_as_doc) == "image" and [ln.image_id for ln in links["sop"]] == ["ph"]
    assert links["dp"] == [] and links["dd"] == []


def test_personal_fields_are_findings_masked_like_ocr_ones() -> None:
    """DICOM patient tags are stored as the page's PII findings (no line, no box, ``field`` = the
    tag), so :func:`mask_record` masks their values and any copy of them in the page's texts."""
    name = PiiFinding(kind="person_name", text="DOE JANE", start=0, end=8, field="PatientName")
    pid = PiiFinding(kind="patient_id", text="P1234567", start=0, end=8, field="PatientID")
    r = rec("x", path="/a.dcm", institution="Riverside").model_copy(
        update={"pii": [name, pid], "ocr_text": "DOE JANE  ID P1234567  L", "caption": "CT of the chest"})
    assert r.has_pii and r.model_dump()["has_pii"]
    m = mask_record(r)
    assert [(f.kind, f.text, f.field) for f in m.pii] == [
        ("person_name", "[person_name redacted]", "PatientName"), ("patient_id", "[patient_id redacted]", "PatientID")]
    assert m.ocr_text == "[person_name redacted]  ID [patient_id redacted]  L"
    assert "DOE" not in m.model_dump_json() and "P1234567" not in m.model_dump_json()
    assert m.caption == "CT of the chest" and m.file_meta == {"institution": "Riverside"}
    assert mask_record(m) == m  # masking twice changes nothing
    assert r.pii[0].text == "DOE JANE"  # a copy


def test_a_file_name_too_long_for_a_sidecar_has_none_and_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 255-byte file name is valid; ``NAME.imgrag.json`` is not (ENAMETOOLONG). That is no broken
    sidecar: indexing such a file printed a WARNING line among the run's report."""
    img = tmp_path / ("x" * 251 + ".png")
    img.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="imgrag.indexing.links"):
        assert file_keys(img) == {}
    assert not caplog.records, caplog.text


def test_a_sidecar_nested_too_deep_is_ignored_not_the_files_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 60 KB sidecar of nested brackets (under the size limit) raised RecursionError out of the
    JSON parser: its image failed as "analysis failed: RecursionError ... report it"."""
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    (tmp_path / "a.png.imgrag.json").write_text('{"k": ' + "[" * 30000 + "]" * 30000 + "}")
    with caplog.at_level(logging.WARNING, logger="imgrag.indexing.links"):
        assert file_keys(img) == {}
    assert "ignored" in caplog.text


def test_a_huge_case_marker_is_not_read_whole(tmp_path: Path) -> None:
    """Only a case marker's first line counts, but the whole file was read into memory (a 2 GB file
    named .imgrag-case, a link to a log, cost 2 GB and more for every run)."""
    import tracemalloc

    from imgrag.indexing.links import clear_caches

    with (tmp_path / ".imgrag-case").open("wb") as f:
        f.write(b"LOT-7\n")
        f.truncate(64 * 2**20)  # sparse: 64 MiB long, nothing on disk
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    clear_caches()
    tracemalloc.start()
    try:
        assert file_keys(img) == {"case": "LOT-7"}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak
