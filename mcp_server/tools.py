"""The MCP tools' parameter types and output models.

Each tool is a typed function (``server.py``) whose parameters are the ``Annotated`` types below, so
the SDK publishes their descriptions and bounds as ``inputSchema``, and the output models as
``outputSchema``. The descriptions are what a model reads before it calls a tool, so they say what
to pass and what comes back in plain words, units and limits included.
Every bbox is ``[x0, y0, x1, y1]`` in original-image pixels (x right, y down) unless a tool says
otherwise: the same coordinates search hits, metadata, crops and OCR lines use.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from imgrag.indexing.links import LinkedItem
from imgrag.indexing.models import DateMention, Enhancement, LayoutBlock, PiiFinding, QualityClass, Seal, TableResult
from imgrag.indexing.stores.base import Filters

from imgrag.indexing.limits import (
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_ID_CHARS,
    MAX_INDEX_PATHS,
    MAX_OCR_LINES,
    MAX_QUERY_CHARS,
    MAX_THUMBNAILS,
    OCR_TARGET_TEXT_PX,
    THUMB_SIDE,
)

def _check_bbox(v: list[float]) -> list[float]:
    if len(v) != 4:
        raise ValueError(f"bbox needs exactly 4 numbers [x0, y0, x1, y1], got {len(v)}")
    if not all(math.isfinite(x) for x in v):
        raise ValueError("bbox numbers must be finite")
    x0, y0, x1, y1 = v
    if x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"bbox {v} is empty or inverted: it needs x1 > x0 and y1 > y0 ([left, top, right, bottom])"
        )
    return v


_BBOX_DESC = (
    "[x0, y0, x1, y1]: left, top, right, bottom. With units='px' in original-image pixels (as in search "
    "hits and get_metadata); with units='relative' as fractions 0..1 of the image width/height. Parts "
    "outside the image are clipped; the box actually used is returned."
)


ImageId = Annotated[str, Field(description="an image id from search_images", min_length=1, max_length=MAX_ID_CHARS)]
BBoxIn = Annotated[list[float], Field(description=_BBOX_DESC, min_length=4, max_length=4), AfterValidator(_check_bbox)]
Units = Annotated[Literal["px", "relative"], Field(description="px (default) or relative (0..1)")]


# -- search_images --------------------------------------------------------------------------
Query = Annotated[
    str | None,
    Field(
        description="What to look for, in Chinese or English: words on the page (OCR text), what the image "
        "shows, or both. May be omitted only when similar_to is given.",
        max_length=MAX_QUERY_CHARS,
    ),
]
SearchFilters = Annotated[
    Filters | None,
    Field(
        description="Optional metadata filters; every given condition must hold. Dates are YYYY-MM-DD and match "
        "dates found on the page (a DICOM image's study date too). meta matches the user's metadata and what the "
        "file carries (DICOM: modality, body_part, study_description, accession, study_uid, ...). linked_text keeps "
        "the images / pages linked to one whose text holds all its words (\"images whose report mentions nodule\").",
    ),
]
SearchMode = Annotated[
    Literal["hybrid", "vector", "keyword"],
    Field(
        description="hybrid (default): vectors + full text fused; vector: semantic only; keyword: exact words "
        "(BM25) only, best for ids, names and numbers.",
    ),
]
SimilarTo = Annotated[
    str | None,
    Field(description="An image id: find images that look like it (combined with query if both are given).", max_length=MAX_ID_CHARS),
]
Cursor = Annotated[
    str | None,
    Field(
        description="next_cursor from a previous call, to get the next page. Repeat the same query, filters, mode "
        "and similar_to with it.",
        max_length=1000,
    ),
]
WithThumbnails = Annotated[
    bool,
    Field(
        description=f"Attach a small PNG thumbnail ({THUMB_SIDE} px) of each of the first {MAX_THUMBNAILS} hits "
        "as image content.",
    ),
]


def hits_k(max_k: int) -> object:
    """The ``k`` parameter with the server's configured ``max_k`` in its published bounds."""
    return Annotated[int, Field(ge=1, le=max_k, description=f"Number of hits to return, 1-{max_k}.")]


class Region(BaseModel):
    bbox: tuple[float, float, float, float] = Field(description="[x0, y0, x1, y1] in original-image pixels")
    kind: str = Field(description="line (one OCR line), block (a layout block), lines (grouped OCR lines) or tile (image grid cell)")
    label: str = Field(default="", description="layout class (title, text, table, ...) or tile name")
    text: str = Field(default="", description="the region's OCR text, if any")


class SearchHit(BaseModel):
    image_id: str = Field(description="pass this to crop_region, ocr_region and get_metadata")
    score: float = Field(description="fused relevance score; only the order within one result matters")
    snippet: str = Field(default="", description="the OCR line that best matches the query (quote it as evidence)")
    region: Region | None = Field(default=None, description="where in the image the match is; crop it to look closer")
    doc_id: str = Field(description="id of the source file; pages of one PDF share it")
    file: str = Field(description="source file name")
    page: int = Field(description="1-based page number within the source file")
    n_pages: int
    width: int = Field(description="image width in pixels")
    height: int = Field(description="image height in pixels")
    quality: QualityClass
    dates: list[str] = Field(default_factory=list, description="dates found on the page, YYYY-MM-DD")
    caption: str = ""
    routes: dict[str, int] = Field(
        default_factory=dict,
        description="rank of this hit in each retrieval route that found it; 'links': the rank of the linked hit that brought it",
    )
    links: list[LinkedItem] = Field(
        default_factory=list,
        description="images / documents linked to this hit (an X-ray and its report, a defect photo and its SOP page), "
        "with why they are linked; call get_metadata or ocr_region on them to read the other side",
    )


class SearchImagesOutput(BaseModel):
    query: str | None
    hits: list[SearchHit]
    offset: int = Field(description="how many hits earlier pages returned")
    candidates: int = Field(description="images the retrieval routes found before paging")
    next_cursor: str | None = Field(default=None, description="pass as cursor to get the next page; null when there are no more hits")
    thumbnail_ids: list[str] = Field(
        default_factory=list, description="image ids whose thumbnails are attached as image content, in this order"
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)


# -- crop_region ----------------------------------------------------------------------------
CropScale = Annotated[
    float,
    Field(
        ge=1.0, le=MAX_CROP_SCALE,
        description=f"Zoom factor 1-{MAX_CROP_SCALE:g} applied to the crop. The returned PNG is capped at "
        f"{MAX_CROP_SIDE} px on its long side, so a large box may come back with a smaller scale.",
    ),
]
Enhance = Annotated[bool, Field(description="Stretch contrast and sharpen: helps faint or blurry print.")]


class CropRegionOutput(BaseModel):
    image_id: str
    bbox: tuple[int, int, int, int] = Field(description="the box actually cropped, [x0, y0, x1, y1] in original-image pixels, clipped to the image")
    requested_bbox: tuple[float, float, float, float] = Field(description="the requested box converted to pixels, before clipping")
    clipped: bool = Field(description="true if the requested box reached outside the image")
    image_width: int
    image_height: int
    scale: float = Field(description="zoom actually applied: output pixels per original pixel")
    requested_scale: float
    width: int = Field(description="width of the returned PNG")
    height: int = Field(description="height of the returned PNG")
    enhanced: bool
    png_bytes: int
    note: str = ""


# -- ocr_region -----------------------------------------------------------------------------
def _check_ocr_scale(v: float | str) -> float | str:
    if v != "auto" and not (1.0 <= float(v) <= MAX_CROP_SCALE):
        raise ValueError(f"scale must be 'auto' or a number from 1 to {MAX_CROP_SCALE:g}, got {v}")
    return v


OcrBBox = Annotated[
    list[float] | None,
    Field(description=_BBOX_DESC + " Omit it to read the whole image.", min_length=4, max_length=4),
    AfterValidator(lambda v: None if v is None else _check_bbox(v)),
]
OcrScale = Annotated[
    float | Literal["auto"],
    Field(
        description=f"Upscaling before OCR, 1-{MAX_CROP_SCALE:g}. auto (default) zooms until text lines are about "
        f"{OCR_TARGET_TEXT_PX} px tall, which re-reads small print the page-level OCR missed.",
    ),
    AfterValidator(_check_ocr_scale),
]


class OcrLineOut(BaseModel):
    text: str
    bbox: tuple[float, float, float, float] = Field(description="[x0, y0, x1, y1] in original-image pixels")
    confidence: float = Field(description="recogniser confidence 0..1")


class OcrRegionOutput(BaseModel):
    image_id: str
    bbox: tuple[int, int, int, int] = Field(description="the region read, in original-image pixels, clipped to the image")
    clipped: bool
    scale: float = Field(description="upscaling applied before OCR")
    engine: str
    lines: list[OcrLineOut] = Field(description="lines top to bottom")
    text: str = Field(description="all lines joined with newlines")


# -- get_metadata ---------------------------------------------------------------------------
MaxOcrLines = Annotated[
    int,
    Field(
        ge=0, le=MAX_OCR_LINES,
        description="Return at most this many OCR lines (top to bottom); the rest are counted in ocr_lines_omitted.",
    ),
]


class OcrSummary(BaseModel):
    lines: int
    chars: int
    mean_confidence: float | None
    engine: str = ""


class MetadataOutput(BaseModel):
    image_id: str
    doc_id: str
    source: str = Field(description="path of the indexed file on the server")
    page: int
    n_pages: int
    format: str
    width: int
    height: int
    dpi: float | None
    file_size: int
    quality: QualityClass = Field(description="born_digital, scanned, handwritten or photo")
    quality_stats: dict[str, float]
    enhancements: list[Enhancement] = Field(description="preprocessing applied before OCR, in order")
    ocr_summary: OcrSummary
    ocr_lines: list[OcrLineOut]
    ocr_lines_omitted: int = Field(description="OCR lines not returned (raise max_ocr_lines, or use ocr_region on a part)")
    ocr_text: str
    ocr_text_truncated: bool
    layout: list[LayoutBlock]
    tables: list[TableResult]
    seals: list[Seal]
    dates: list[DateMention]
    has_pii: bool = Field(default=False, description="personal data was found on the page (filter with filters.has_pii)")
    pii: list[PiiFinding] = Field(
        default_factory=list,
        description="personal data found in the OCR lines: kind (cn_id, cn_mobile, cn_landline, bank_card, email, "
        "passport, us_ssn, iban, phone), the text, its OCR line index and character offsets, and its estimated bbox; "
        "and personal data the file carries in named fields (DICOM patient name, ID, birth date: kind person_name, "
        "patient_id, birth_date, address or phone, field = the DICOM tag, no line or box). The texts are masked "
        "for callers not cleared to see personal data; none of it is searchable",
    )
    caption: str
    meta: dict[str, str] = Field(description="user metadata given at indexing")
    file_meta: dict[str, str] = Field(
        default_factory=dict,
        description="what the file carries itself (DICOM tags: modality, body_part, study_description, accession, "
        "study_uid, ...; a sidecar; its case) or what was read off the page to link it (accession, part_number)",
    )
    links: list[LinkedItem] = Field(
        default_factory=list, description="linked images / documents you may read, with why they are linked"
    )
    tags: list[str]
    acl: list[str] = Field(description="principals/groups allowed to see it; empty means everyone")
    indexed_at: datetime
    index_version: int | None = Field(description="current version of the index")
    models: dict[str, str]


# -- write tools ----------------------------------------------------------------------------
IndexPaths = Annotated[
    list[str],
    Field(
        min_length=1, max_length=MAX_INDEX_PATHS,
        description="Files or folders on the server (folders are indexed recursively). Unchanged files are skipped.",
    ),
]
IndexMeta = Annotated[dict[str, str], Field(description="user metadata key/value pairs stored with every page")]
IndexAcl = Annotated[list[str], Field(description="principals or groups allowed to see these images; empty = everyone")]
IndexTags = Annotated[list[str], Field(description="tags stored with every page")]


class IndexFailure(BaseModel):
    path: str
    reason: str


class IndexImagesOutput(BaseModel):
    indexed: int
    unchanged: int
    duplicates: int
    replaced: int
    updated_metadata: int = Field(default=0, description="unchanged pages whose acl / meta / tags this call replaced (only pages the caller can read)")
    failed: list[IndexFailure]
    seconds: float
    version: int | None
    image_ids: list[str] = Field(description="ids of the pages indexed in this call (first 200)")


DeleteId = Annotated[
    str,
    Field(description="id of the image to soft-delete (it can be restored with `imgrag rollback`)", min_length=1, max_length=MAX_ID_CHARS),
]


class DeleteImageOutput(BaseModel):
    image_id: str
    deleted: bool
    version: int | None
