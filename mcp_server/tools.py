"""The MCP tools' parameter types and output models.

Each tool is a typed function (``server.py``) whose parameters are the ``Annotated`` types below, so
the SDK publishes their descriptions and bounds as ``inputSchema``, and the output models as
``outputSchema``. The descriptions are what a model reads before it calls a tool, so they say what
to pass and what comes back in plain words, units and limits included.
Every bbox is ``[x0, y0, x1, y1]`` in original-image pixels (x right, y down) unless a tool says
otherwise: the same coordinates search hits, metadata, crops and OCR lines use.

Arguments are strict, as the schema says: numbers and booleans are not parsed from strings
(``k="2"``, ``k=true`` are refused), and unknown arguments are refused (``additionalProperties:
false``, set on each tool's argument model in ``server.py``). Every string and list is bounded.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from imgrag.indexing.limits import (
    MAX_ACL,
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_ID_CHARS,
    MAX_INDEX_PATHS,
    MAX_META,
    MAX_OCR_LINES,
    MAX_PATH_CHARS,
    MAX_QUERY_CHARS,
    MAX_TAGS,
    MAX_THUMBNAILS,
    OCR_TARGET_TEXT_PX,
    THUMB_SIDE,
)
from imgrag.indexing.links import LinkedItem
from imgrag.indexing.models import DateMention, Enhancement, LayoutBlock, PiiFinding, QualityClass, Seal, TableResult
from imgrag.indexing.stores.base import Filters, Label, MetaValue

StrictFloat = Annotated[float, Field(strict=True)]

MAX_ECHO_CHARS = 80  # a client's own text (a name, a key, a URI) as an error quotes it


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text``, cut to ``limit`` characters (the cut marked with an ellipsis)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
BBoxIn = Annotated[list[StrictFloat], Field(description=_BBOX_DESC, min_length=4, max_length=4), AfterValidator(_check_bbox)]
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
        description="next_cursor from a previous call, to get the next page: the next slice of the same ranked list "
        "(every hit once, in one order). Repeat the same query, filters, mode and similar_to with it; k may differ.",
        max_length=1000,
    ),
]
WithThumbnails = Annotated[
    bool,
    Field(
        strict=True,
        description=f"Attach a small PNG thumbnail ({THUMB_SIDE} px) of each of the first {MAX_THUMBNAILS} hits "
        "as image content (over HTTP, as many as fit in the response).",
    ),
]


def hits_k(max_k: int) -> object:
    """The ``k`` parameter with the server's configured ``max_k`` in its published bounds."""
    return Annotated[int, Field(strict=True, ge=1, le=max_k, description=f"Number of hits to return, 1-{max_k}.")]


class Region(BaseModel):
    bbox: tuple[float, float, float, float] = Field(description="[x0, y0, x1, y1] in original-image pixels")
    kind: str = Field(
        description="line (one OCR line), block (a layout block), lines (grouped OCR lines), tile (image grid cell) "
        "or label (a visual the page shows, e.g. a chart or a seal; no text: read it with ocr_region)"
    )
    label: str = Field(default="", description="layout class (title, text, table, ...), tile name or visual kind (bar_chart, seal, ...)")
    text: str = Field(default="", description="the region's OCR text, if any")


class SearchHit(BaseModel):
    image_id: str = Field(description="pass this to crop_region, ocr_region and get_metadata")
    score: float = Field(description="fused relevance score; only the order within one result matters")
    snippet: str = Field(default="", description="the OCR line that best matches the query (quote it as evidence)")
    region: Region | None = Field(default=None, description="where in the image the match is; crop it to look closer")
    doc_id: str = Field(description="id of the source file; pages of one PDF share it")
    file: str = Field(description="source file name")
    page: int = Field(description="1-based page number within the source file")
    n_pages: int = Field(description="pages in the source file")
    width: int = Field(description="image width in pixels")
    height: int = Field(description="image height in pixels")
    quality: QualityClass = Field(description="born_digital, scanned, handwritten or photo")
    dates: list[str] = Field(default_factory=list, description="dates found on the page, YYYY-MM-DD")
    caption: str = Field(default="", description="what the image shows: from a DICOM image's tags, else the image embedder's labels (may be empty)")
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
    query: str | None = Field(description="the query as searched (trimmed)")
    hits: list[SearchHit] = Field(description="best first")
    offset: int = Field(description="how many hits earlier pages returned")
    candidates: int = Field(description="images the retrieval routes found before paging")
    next_cursor: str | None = Field(default=None, description="pass as cursor to get the next page; null when there are no more hits")
    thumbnail_ids: list[str] = Field(
        default_factory=list, description="image ids whose thumbnails are attached as image content, in this order"
    )
    timings_ms: dict[str, float] = Field(default_factory=dict, description="milliseconds spent per retrieval step")
    note: str = Field(
        default="",
        description="what was changed about the query: without PII clearance, terms that are personal data are left out",
    )


# -- crop_region ----------------------------------------------------------------------------
CropScale = Annotated[
    float,
    Field(
        strict=True, ge=1.0, le=MAX_CROP_SCALE,
        description=f"Zoom factor 1-{MAX_CROP_SCALE:g} applied to the crop. The returned PNG is capped at "
        f"{MAX_CROP_SIDE} px on its long side (and over HTTP to what fits in one response), so a large box may "
        "come back with a smaller scale.",
    ),
]
Enhance = Annotated[bool, Field(strict=True, description="Stretch contrast and sharpen: helps faint or blurry print.")]


class CropRegionOutput(BaseModel):
    image_id: str = Field(description="the image cropped")
    bbox: tuple[int, int, int, int] = Field(description="the box actually cropped, [x0, y0, x1, y1] in original-image pixels, clipped to the image")
    requested_bbox: tuple[float, float, float, float] = Field(description="the requested box converted to pixels, before clipping")
    clipped: bool = Field(description="true if the requested box reached outside the image")
    image_width: int = Field(description="width of the whole image in pixels")
    image_height: int = Field(description="height of the whole image in pixels")
    scale: float = Field(description="zoom actually applied: output pixels per original pixel")
    requested_scale: float = Field(description="the scale asked for")
    width: int = Field(description="width of the returned PNG")
    height: int = Field(description="height of the returned PNG")
    enhanced: bool = Field(description="whether contrast stretching and sharpening were applied")
    png_bytes: int = Field(description="size of the returned PNG in bytes")
    note: str = Field(default="", description="why the box or the scale differ from the request, if they do")


# -- ocr_region -----------------------------------------------------------------------------
OcrBBox = Annotated[
    list[StrictFloat] | None,
    Field(description=_BBOX_DESC + " Omit it to read the whole image.", min_length=4, max_length=4),
    AfterValidator(lambda v: None if v is None else _check_bbox(v)),
]
OcrScale = Annotated[
    Annotated[float, Field(strict=True, ge=1.0, le=MAX_CROP_SCALE)] | Literal["auto"],
    Field(
        description=f"Upscaling before OCR, 1-{MAX_CROP_SCALE:g}. auto (default) zooms until text lines are about "
        f"{OCR_TARGET_TEXT_PX} px tall, which re-reads small print the page-level OCR missed.",
    ),
]


class OcrLineOut(BaseModel):
    text: str = Field(description="the line as read")
    bbox: tuple[float, float, float, float] = Field(description="[x0, y0, x1, y1] in original-image pixels")
    confidence: float = Field(description="recogniser confidence 0..1")


class OcrRegionOutput(BaseModel):
    image_id: str = Field(description="the image read")
    bbox: tuple[int, int, int, int] = Field(description="the region read, in original-image pixels, clipped to the image")
    clipped: bool = Field(description="true if the requested box reached outside the image")
    scale: float = Field(description="upscaling applied before OCR")
    engine: str = Field(description="the OCR engine that read it")
    lines: list[OcrLineOut] = Field(description="lines top to bottom")
    text: str = Field(description="all lines joined with newlines")


# -- get_metadata ---------------------------------------------------------------------------
MaxOcrLines = Annotated[
    int,
    Field(
        strict=True, ge=0, le=MAX_OCR_LINES,
        description="Return at most this many OCR lines (top to bottom); the rest are counted in ocr_lines_omitted "
        "(over HTTP fewer may come back, to fit in one response).",
    ),
]


class OcrSummary(BaseModel):
    lines: int = Field(description="OCR lines on the page")
    chars: int = Field(description="characters of OCR text on the page")
    mean_confidence: float | None = Field(description="mean recogniser confidence 0..1; null without text")
    engine: str = Field(default="", description="the OCR engine used at indexing")


class MetadataOutput(BaseModel):
    image_id: str = Field(description="the image described")
    doc_id: str = Field(description="id of the source file (content hash); pages of one PDF share it")
    source: str = Field(
        description="the indexed file: its path relative to the server's index root (absolute only for the operator)"
    )
    page: int = Field(description="1-based page number within the source file")
    n_pages: int = Field(description="pages in the source file")
    format: str = Field(description="file format: png, jpeg, tiff, pdf, ...")
    width: int = Field(description="image width in pixels")
    height: int = Field(description="image height in pixels")
    dpi: float | None = Field(description="resolution from the file (PDF: the render dpi); null when unknown")
    file_size: int = Field(description="size of the source file in bytes")
    quality: QualityClass = Field(description="born_digital, scanned, handwritten or photo")
    quality_stats: dict[str, float] = Field(description="the measurements the quality class was decided on (sharpness, noise, ...)")
    enhancements: list[Enhancement] = Field(description="preprocessing applied before OCR, in order")
    ocr_summary: OcrSummary = Field(description="counts over all OCR lines of the page")
    ocr_lines: list[OcrLineOut] = Field(description="OCR lines top to bottom, at most max_ocr_lines")
    ocr_lines_omitted: int = Field(description="OCR lines not returned (raise max_ocr_lines, or use ocr_region on a part)")
    ocr_text: str = Field(description="all OCR text of the page, lines joined with newlines")
    ocr_text_truncated: bool = Field(description="true if ocr_text was cut to the response limit")
    layout: list[LayoutBlock] = Field(description="layout blocks (title, text, table, figure, ...) with boxes and text")
    tables: list[TableResult] = Field(description="tables recognised on the page, as HTML with their boxes")
    seals: list[Seal] = Field(description="red or blue ink stamps found on the page, with boxes")
    dates: list[DateMention] = Field(description="dates found in the OCR text")
    has_pii: bool = Field(default=False, description="personal data was found on the page (filter with filters.has_pii)")
    pii: list[PiiFinding] = Field(
        default_factory=list,
        description="personal data found in the OCR lines: kind (cn_id, cn_mobile, cn_landline, bank_card, email, "
        "passport, us_ssn, iban, phone), the text, its OCR line index and character offsets, and its estimated bbox; "
        "and personal data the file carries in named fields (DICOM patient name, ID, birth date: kind person_name, "
        "patient_id, birth_date, address or phone, field = the DICOM tag, no line or box). The texts are masked "
        "for callers not cleared to see personal data; none of it is searchable",
    )
    caption: str = Field(description="what the image shows, from the image embedder's labels (may be empty)")
    meta: dict[str, str] = Field(description="user metadata given at indexing")
    file_meta: dict[str, str] = Field(
        default_factory=dict,
        description="what the file carries itself (DICOM tags: modality, body_part, study_description, accession, "
        "study_uid, ...; a sidecar; its case) or what was read off the page to link it (accession, part_number)",
    )
    links: list[LinkedItem] = Field(
        default_factory=list, description="linked images / documents you may read, with why they are linked"
    )
    tags: list[str] = Field(description="tags given at indexing")
    acl: list[str] = Field(
        description="principals/groups allowed to see it; empty means everyone (indexed as public), @operator "
        "operators only. A caller who is not the operator sees only the entries that admit them"
    )
    indexed_at: datetime = Field(description="when the page was indexed (UTC)")
    index_version: int | None = Field(description="current version of the index")
    models: dict[str, str] = Field(description="the models that produced the OCR, layout and vectors")


# -- write tools ----------------------------------------------------------------------------
IndexPaths = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]],
    Field(
        min_length=1, max_length=MAX_INDEX_PATHS,
        description="Files or folders on the server, absolute or relative to the index root (folders are indexed "
        "recursively). Unchanged files are skipped; links leading outside the index roots are skipped unread.",
    ),
]
IndexMeta = Annotated[
    dict[Label, MetaValue], Field(max_length=MAX_META, description="user metadata key/value pairs stored with every page")
]
IndexAcl = Annotated[
    list[Label],
    Field(
        max_length=MAX_ACL,
        description="principals or groups allowed to see these images; it must include you (your name or one of "
        "your groups). Empty (default): new images are visible to you alone, indexed ones keep their ACL.",
    ),
]
IndexTags = Annotated[list[Label], Field(max_length=MAX_TAGS, description="tags stored with every page")]


# One call over a folder of 20,000 broken files listed 4.5 MB of failures: over the HTTP response
# budget, so the call answered only an error (after indexing what it could). image_ids: the same cap.
MAX_FAILED_SHOWN = 200


class IndexFailure(BaseModel):
    path: str = Field(description="the file (relative to the index root) or file#page=N that was not indexed")
    reason: str = Field(description="why, and what to do about it")


class IndexImagesOutput(BaseModel):
    indexed: int = Field(description="pages indexed by this call")
    unchanged: int = Field(description="pages you can see that were already indexed from the same file")
    duplicates: int = Field(description="pages whose content you can already see indexed from another file")
    replaced: int = Field(description="pages of edited files whose old version this call replaced")
    updated_metadata: int = Field(default=0, description="unchanged pages whose acl / meta / tags this call replaced (only pages the caller can read)")
    failed: list[IndexFailure] = Field(description=f"files or pages not indexed, with reasons (the first {MAX_FAILED_SHOWN})")
    failed_count: int = Field(default=0, description="how many files or pages were not indexed in all")
    seconds: float = Field(description="time the call took")
    version: int | None = Field(description="the index version this call created; null if it changed nothing")
    image_ids: list[str] = Field(description="ids of the pages indexed in this call (first 200)")


DeleteId = Annotated[
    str,
    Field(description="id of the image to soft-delete (the server's operator can restore it)", min_length=1, max_length=MAX_ID_CHARS),
]


class DeleteImageOutput(BaseModel):
    image_id: str = Field(description="the image deleted")
    deleted: bool = Field(description="true when this call deleted it")
    version: int | None = Field(description="the index version this call created")
