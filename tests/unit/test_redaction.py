"""The masking layer the facade applies for a principal without PII clearance (indexing/redaction.py
and its wiring in indexing/app.py): records, regions, OCR re-reads, crops, thumbnails, page images,
search guard, audit digests. A small in-memory store and a scripted OCR engine stand in for the
models; the real pages, models and transports are tested in tests/e2e/test_pii_e2e.py."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing import redaction
from imgrag.indexing.app import Imgrag
from imgrag.indexing.audit import args_digest, make_record
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.loader import file_digest
from imgrag.indexing.models import OcrLine
from imgrag.indexing.pii import detect_lines, is_personal_key, mask_record, mask_values
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.search import Hit, RegionOut, SearchRequest, SearchResult
from imgrag.indexing.stores.base import OPERATOR, Filters, ImageRecord, Principal, RegionHit, RouteHit, fts_source

CLERK = Principal(name="clerk", groups=["team"])
DPO = Principal(name="dpo", groups=["team"], pii_clearance=True)
MOBILE, PASSPORT = "13812345678", "E12345678"
LINES = [
    OcrLine(text=f"Tel {MOBILE}", bbox=(100, 100, 500, 140)),
    OcrLine(text="护照号码：", bbox=(100, 200, 300, 240)),
    OcrLine(text=PASSPORT, bbox=(100, 260, 400, 300)),
    OcrLine(text="Invoice total 4,250 RMB", bbox=(100, 400, 600, 440)),
]
GREY = 128


class MemStore:
    """The store calls the facade makes here, with the ACL rule of the real stores."""

    backend = "mem"

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = {r.image_id: r for r in records}

    def get(self, image_id: str, principal: Principal) -> ImageRecord | None:
        r = self.records.get(image_id)
        return r if r is not None and principal.admits(r.acl) else None

    def get_many(self, ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        return {i: r for i in ids if (r := self.get(i, principal)) is not None}

    def list_images(self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        return [r for r in self.records.values() if principal.admits(r.acl)][offset : offset + limit]

    def regions_of(self, ids: list[str]) -> list[RegionHit]:
        return [
            RegionHit(region_id=f"{i}:{n}", image_id=i, kind="lines", label="ocr", bbox=ln.bbox, text=ln.text, score=0.0)
            for i in ids for n, ln in enumerate(self.records[i].ocr_lines)
        ]

    def bm25(self, query: str, k: int, filters: Filters, principal: Principal, extra: Any = ()) -> list[RouteHit]:
        terms = query.split()
        return [
            RouteHit(image_id=r.image_id, score=1.0)
            for r in self.records.values()
            if principal.admits(r.acl) and (filters.has_pii is None or r.has_pii == filters.has_pii)
            and any(t in r.ocr_text for t in terms)
        ][:k]


class ScriptedOcr:
    """Reads back whatever the test says the pixels hold."""

    name = "scripted"

    def __init__(self) -> None:
        self.lines: list[OcrLine] = []
        self.seen: list[np.ndarray] = []

    def recognize(self, img: np.ndarray) -> list[OcrLine]:
        self.seen.append(img)
        return list(self.lines)


@pytest.fixture()
def app(tmp_path: Path) -> tuple[Imgrag, ScriptedOcr]:
    page = np.full((600, 800, 3), 255, np.uint8)
    for ln in LINES:
        x0, y0, x1, y1 = (int(v) for v in ln.bbox)
        page[y0:y1, x0:x1] = GREY  # "ink" where each line is
    path = tmp_path / "form.png"
    Image.fromarray(page).save(path)
    rec = ImageRecord(
        image_id="form", doc_id=file_digest(path), path=str(path), format="png", width=800, height=600,
        quality="born_digital", indexed_at=datetime.now(timezone.utc), acl=["team"],
        ocr_lines=LINES, ocr_text="\n".join(ln.text for ln in LINES), pii=detect_lines(LINES),
        meta={"patient_name": "Zhang San", "contact": f"call {MOBILE}", "year": "2023"},
    )
    assert [f.kind for f in rec.pii] == ["cn_mobile", "passport"]
    rt = Runtime(Settings(home=tmp_path / "home", audit=False), store=MemStore([rec]))  # type: ignore[arg-type]
    ocr = ScriptedOcr()
    rt.__dict__["ocr"] = ocr
    return Imgrag(runtime=rt), ocr


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_records_and_regions_masked_for_the_uncleared(app: tuple[Imgrag, ScriptedOcr]) -> None:
    ig, _ = app
    for who in (OPERATOR, DPO):
        rec = ig.get("form", who)
        assert MOBILE in rec.ocr_text and rec.pii[0].text == MOBILE and rec.meta["patient_name"] == "Zhang San"
    for rec in (ig.get("form", CLERK), ig.get_many(["form"], CLERK)["form"], ig.list_images(CLERK, Filters())[0]):
        dump = rec.model_dump_json()
        assert MOBILE not in dump and PASSPORT not in dump and "Zhang San" not in dump, dump
        assert rec.ocr_lines[0].text == "Tel [cn_mobile redacted]" and rec.ocr_lines[2].text == "[passport redacted]"
        assert rec.meta == {"patient_name": "[personal redacted]", "contact": "call [cn_mobile redacted]", "year": "2023"}
        assert [f.bbox for f in rec.pii] == [f.bbox for f in ig.get("form", OPERATOR).pii]  # where, not what
        assert rec.ocr_lines[3].text == "Invoice total 4,250 RMB"  # the rest untouched
    regions = ig.regions("form", CLERK)
    assert [r.text for r in regions][:3] == ["Tel [cn_mobile redacted]", "护照号码：", "[passport redacted]"]
    assert ig.regions("form", DPO)[0].text == f"Tel {MOBILE}"


def test_pixels_blacked_out_for_the_uncleared(app: tuple[Imgrag, ScriptedOcr]) -> None:
    ig, _ = app
    box = ig.get("form", OPERATOR).pii[0].bbox
    assert box is not None
    x0, y0, x1, y1 = (int(v) for v in box)
    inner = (slice(y0 + 2, y1 - 2), slice(x0 + 2, x1 - 2))
    for who, expect in ((DPO, GREY), (CLERK, 0), (OPERATOR, GREY)):
        crop = ig.crop("form", [x0 - 10, y0 - 10, x1 + 10, y1 + 10], who)
        arr = _png(crop.png)
        assert arr[12:-12, 12:-12].max() == expect and arr[12:-12, 12:-12].min() == expect, who
        page = _png(ig.image_png("form", who))
        assert page[inner].max() == expect
        assert page[420, 300] == GREY  # the invoice line: never redacted
    # thumbnails are cached: each clearance gets its own, in either order
    for order in ((CLERK, DPO), (DPO, CLERK)):
        ig._thumbs.clear()
        for who in order:
            th = _png(ig.thumbnail(ig.get("form", who), 400, who))  # 800x600 → 400x300
            cell = th[(y0 + y1) // 4, (x0 + x1) // 4]
            assert (cell == 0) == (who is CLERK), (order, who, cell)


def test_ocr_region_reads_redacted_pixels_and_masks_what_it_reads(app: tuple[Imgrag, ScriptedOcr]) -> None:
    ig, ocr = app
    # what OCR "reads": a fresh mobile number (detected), the stored passport value without its
    # label (only the stored finding knows it), and ordinary text
    ocr.lines = [
        OcrLine(text="Mobile 139 8765 4321", bbox=(0, 0, 100, 10)),
        OcrLine(text=f"No {PASSPORT}", bbox=(0, 20, 100, 30)),
        OcrLine(text="Invoice total", bbox=(0, 40, 100, 50)),
    ]
    clerk = ig.ocr_region("form", CLERK, [90, 90, 510, 150], scale=1)
    assert [ln.text for ln in clerk.lines] == ["Mobile [cn_mobile redacted]", "No [passport redacted]", "Invoice total"]
    assert ocr.seen[-1].min() == 0  # the canvas OCR got was already blacked out
    dpo = ig.ocr_region("form", DPO, [90, 90, 510, 150], scale=1)
    assert dpo.lines[0].text == "Mobile 139 8765 4321" and ocr.seen[-1].min() == GREY


def _hit(image_id: str, snippet: str) -> Hit:
    return Hit(
        image_id=image_id, doc_id="d", path="/x.png", page=1, n_pages=1, score=1.0, snippet=snippet, quality="scanned",
        region=RegionOut(bbox=(0, 0, 1, 1), kind="line", label="ocr", text=snippet), width=10, height=10,
        dates=[], caption="",
    )


def test_search_guard_drops_personal_terms(app: tuple[Imgrag, ScriptedOcr]) -> None:
    ig, _ = app
    rec = ig.get("form", OPERATOR)
    asked: list[str | None] = []

    def run(req: SearchRequest) -> SearchResult:
        asked.append(req.query)
        return SearchResult(query=req.query, hits=[_hit("form", f"Tel {MOBILE}")], candidates=1)

    def guarded(query: str, probe: list[ImageRecord] | None = None) -> SearchResult:
        return redaction.guarded_search(
            SearchRequest(query=query), run, lambda terms: [rec] if probe is None else probe, lambda ids: {"form": rec}
        )

    r = guarded(f"invoice {MOBILE}")  # detected in the query
    assert asked[-1] == "invoice" and "1 term(s)" in r.note and r.hits[0].snippet == "Tel [cn_mobile redacted]"
    assert r.hits[0].region is not None and MOBILE not in r.hits[0].region.text
    r = guarded("invoice 12345678")  # part of a stored value: found by the probe
    assert asked[-1] == "invoice" and r.note
    r = guarded(f"invoice {PASSPORT}")  # an unlabelled passport number is not detected; the stored one is
    assert asked[-1] == "invoice" and r.note
    r = guarded("invoice 12345678", probe=[])  # the probe missed it; the hits hold it: searched again without
    assert asked[-2:] == ["invoice 12345678", "invoice"] and r.note
    r = guarded("invoice 20230512017")  # a contract number nobody's personal data contains: kept
    assert asked[-1] == "invoice 20230512017" and not r.note
    n = len(asked)
    r = guarded(MOBILE)  # nothing left: nothing is searched
    assert len(asked) == n and r.hits == [] and r.candidates == 0 and "nothing else" in r.note
    with pytest.raises(ImgragError, match="personal data"):
        redaction.guarded_search(SearchRequest(query="x", filters=Filters(meta={"patient_name": "Zhang San"})), run, lambda t: [], lambda i: {})
    with pytest.raises(ImgragError, match="personal data"):
        redaction.guarded_search(SearchRequest(query="x", filters=Filters(meta={"contact": MOBILE})), run, lambda t: [], lambda i: {})


def test_facade_search_guard_uses_the_store(app: tuple[Imgrag, ScriptedOcr], monkeypatch: pytest.MonkeyPatch) -> None:
    ig, _ = app
    seen: list[str | None] = []

    def fake_search(req: SearchRequest, principal: Principal) -> SearchResult:
        seen.append(req.query)
        return SearchResult(query=req.query, hits=[_hit("form", f"Tel {MOBILE}")], candidates=1)

    monkeypatch.setattr(ig.searcher, "search", fake_search)
    r = ig.search(SearchRequest(query="Tel 12345678"), CLERK)
    assert seen[-1] == "Tel" and r.note and MOBILE not in r.model_dump_json()
    r = ig.search(SearchRequest(query="Tel 12345678"), DPO)
    assert seen[-1] == "Tel 12345678" and not r.note and r.hits[0].snippet == f"Tel {MOBILE}"


def test_personal_meta_keys_masked_and_not_searchable() -> None:
    assert is_personal_key("Patient-Name") and is_personal_key("patient_birth_date") and is_personal_key("姓名")
    assert not is_personal_key("year") and not is_personal_key("name")
    rec = ImageRecord(
        image_id="a", doc_id="a", path="/a.png", format="png", width=1, height=1, quality="photo",
        indexed_at=datetime.now(timezone.utc), meta={"patient_name": "Li Si", "modality": "CR"},
    )
    assert "li si" not in fts_source(rec) and "cr" in fts_source(rec)
    masked = mask_record(rec)
    assert masked.meta == {"patient_name": "[personal redacted]", "modality": "CR"}
    assert mask_record(masked) == masked  # masking twice changes nothing


def test_audit_digest_of_an_uncleared_caller_holds_no_personal_data() -> None:
    args = {"query": f"who has {MOBILE}", "k": 5}
    masked = {"query": "who has [cn_mobile redacted]", "k": 5}
    assert mask_values(args) == masked
    assert make_record(event="tool", name="search_images", outcome="ok", principal=CLERK, args=args).args_sha256 == args_digest(masked)
    assert make_record(event="tool", name="search_images", outcome="ok", principal=None, args=args).args_sha256 == args_digest(masked)
    for who in (DPO, OPERATOR):
        assert make_record(event="tool", name="search_images", outcome="ok", principal=who, args=args).args_sha256 == args_digest(args)


def test_file_names_and_link_reasons_masked_for_the_uncleared(tmp_path: Path) -> None:
    """A file or case folder named after the patient (a DICOM PatientName field, a personal meta
    value) or holding a detected number is masked in the path, the link reason and the linked
    file's name; the stored record keeps them, and its pixels still open for a thumbnail."""
    from imgrag.indexing.links import visible_links
    from imgrag.indexing.models import PiiFinding
    from imgrag.indexing.stores.base import Link

    folder = tmp_path / "case_Zhang_San"
    folder.mkdir()
    img, rep = folder / f"zhang-san_{MOBILE}_chest.png", folder / "ZHANG_SAN_report.png"
    for p in (img, rep):
        Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(p)
    name = PiiFinding(kind="person_name", text="ZHANG^SAN", start=0, end=9)

    def rec(i: str, path: Path, other: str, **kw: Any) -> ImageRecord:
        return ImageRecord(
            image_id=i, doc_id=file_digest(path), path=str(path), format="png", width=40, height=40, quality="photo",
            indexed_at=datetime.now(timezone.utc), acl=["team"], links=[Link(image_id=other, kind="document", why="case=case_Zhang_San")], **kw,
        )

    xray = rec("x", img, "r", pii=[name])
    report = rec("r", rep, "x", meta={"patient_name": "Zhang San"})
    for r in (xray, report):
        masked = mask_record(r)
        assert "zhang" not in masked.model_dump_json().lower() and MOBILE not in masked.path, masked.path
        assert masked.path.endswith("_chest.png") or masked.path.endswith("_report.png")
        assert mask_record(masked) == masked
    store = MemStore([xray, report])
    for who, seen in ((CLERK, False), (DPO, True), (OPERATOR, True)):
        items = visible_links(store, [xray], who)["x"]  # type: ignore[arg-type]
        assert [i.image_id for i in items] == ["r"]
        assert ("zhang" in (items[0].file + items[0].why).lower()) is seen, items
    ig = Imgrag(runtime=Runtime(Settings(home=tmp_path / "home", audit=False), store=store))  # type: ignore[arg-type]
    shown = ig.get("x", CLERK)
    assert "zhang" not in shown.path.lower() and ig.get("x", DPO).path == str(img)
    assert _png(ig.thumbnail(shown, 32, CLERK)).shape[:2] == (32, 32)  # opened from the stored path
    hit = redaction.mask_hit(Hit(image_id="x", doc_id="d", path=str(img), page=1, n_pages=1, width=40, height=40, score=1.0, quality="photo"), xray)
    assert "zhang" not in hit.path.lower() and MOBILE not in hit.path
