"""Records that cross module boundaries: what each pipeline stage produces and what the index stores.

Every bbox is ``[x0, y0, x1, y1]`` in *original-image* pixel coordinates (before any
preprocessing), so a client can crop the file it has without knowing what we did to it.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

BBox = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in original-image pixels, x to the right, y down."""

QualityClass = Literal["born_digital", "scanned", "handwritten", "photo"]


class OcrLine(BaseModel):
    text: str
    bbox: BBox
    polygon: list[tuple[float, float]] = Field(default_factory=list)
    confidence: float = 0.0


class LayoutBlock(BaseModel):
    """A CDLA layout block (title, text, figure, table, caption, header, footer, ...)."""

    kind: str
    bbox: BBox
    confidence: float = 0.0
    text: str = ""
    line_ids: list[int] = Field(default_factory=list, description="indices into the record's OCR lines")


class TableResult(BaseModel):
    bbox: BBox
    html: str


class Seal(BaseModel):
    """A red or blue ink stamp found by colour masks and ellipse fitting."""

    bbox: BBox
    color: Literal["red", "blue"]
    shape: Literal["round", "oval", "square"] = "round"
    confidence: float


VisualKind = Literal[
    "chart", "bar_chart", "pie_chart", "line_chart", "map", "floor_plan", "diagram", "table", "photo", "seal", "logo",
    "handwriting", "signature", "figure",
]  # fmt: skip


class VisualMark(BaseModel):
    """Something a page shows (indexing.visual): a chart, map, plan, diagram, table, photo, seal, logo,
    handwriting or another figure, where it is, and how sure the finder was."""

    kind: VisualKind
    bbox: BBox
    confidence: float = 0.0


class DateMention(BaseModel):
    text: str
    date: date
    line_index: int | None = None
    precision: Literal["day", "month", "year"] = Field(
        default="day", description="'month'/'year': only that much was written; date is its first day"
    )


class Enhancement(BaseModel):
    """One preprocessing step that was applied, with its parameters, in order."""

    name: str
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


PiiKind = Literal[
    "cn_id", "cn_mobile", "cn_landline", "bank_card", "email", "passport", "us_ssn", "iban", "phone"
]
"""Personal data found in OCR text; :mod:`indexing.pii` says how each is recognised and validated."""

FieldPiiKind = Literal["person_name", "patient_id", "birth_date", "address"]
"""Personal data a file carries in named fields (DICOM patient name, ID, birth date, address):
nothing to detect, so these kinds are never looked for in text."""


class PiiFinding(BaseModel):
    """One piece of personal data: in one OCR line (what it is, where in the line, where on the
    page), or in one of the file's own fields (``field``; no line, no box)."""

    kind: PiiKind | FieldPiiKind
    text: str = Field(description="the span as OCR read it (separators included), or the field's value")
    line: int | None = Field(default=None, description="index into the record's OCR lines; None for free text or a field")
    start: int = Field(description="character offset of the span in the line")
    end: int = Field(description="offset one past the span's last character")
    bbox: BBox | None = Field(
        default=None, description="the span's box in original-image pixels, estimated from the line box and the offsets"
    )
    field: str | None = Field(default=None, description="the file's field it was read from (a DICOM tag keyword), if not OCR")


class FileInfo(BaseModel):
    """What a file says about itself beside its pixels (DICOM tags, a sidecar, its case folder).

    Kept apart from the user's metadata: ``imgrag index --meta`` replaces the user's metadata of
    unchanged pages, never what the file itself carries."""

    caption: str = Field(default="", description="words for what the image shows, from its tags (searched, embedded)")
    meta: dict[str, str] = Field(default_factory=dict, description="filterable key/values (modality, accession, ...)")
    dates: list[DateMention] = Field(default_factory=list, description="dates from the tags (the study date)")
    pii: list[PiiFinding] = Field(
        default_factory=list,
        description="personal data from the file's fields (patient name, ID, birth date): stored with the page's "
        "other findings (so masked like them), never indexed",
    )
    quality: QualityClass | None = Field(default=None, description="the quality class the file implies (a DICOM image is a picture)")
