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


class PiiFinding(BaseModel):
    """One piece of personal data in one OCR line: what it is, where in the line, where on the page."""

    kind: PiiKind
    text: str = Field(description="the span as OCR read it (separators included)")
    line: int | None = Field(default=None, description="index into the record's OCR lines; None for free text")
    start: int = Field(description="character offset of the span in the line")
    end: int = Field(description="offset one past the span's last character")
    bbox: BBox | None = Field(
        default=None, description="the span's box in original-image pixels, estimated from the line box and the offsets"
    )
