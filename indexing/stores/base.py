"""The contract every index backend fulfils (LanceDB embedded, Elasticsearch distributed).

Backends store and retrieve; they never rank across routes. Fusion (RRF), region re-ranking and
snippets live in :mod:`indexing.search`, so both backends rank identically. Access control is a
required argument of every read, translated by each backend into a filter *inside* the query,
never applied afterwards.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import date, datetime
from collections.abc import Callable, Generator, Sequence
from typing import Annotated, Any, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, computed_field, model_validator

from ..limits import MAX_FILTER_IDS, MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_META, MAX_META_VALUE_CHARS, MAX_PATH_CHARS, MAX_TAGS
from ..models import (
    BBox, DateMention, Enhancement, LayoutBlock, OcrLine, PiiFinding, PiiKind, QualityClass, Seal, TableResult, VisualMark,
)
from ..text import normalize
from ..visual import marks_text
from ..pii import is_personal_key


Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS)]
"""A tag, an ACL entry or a metadata key."""
MetaValue = Annotated[str, StringConstraints(max_length=MAX_META_VALUE_CHARS)]
Identifier = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]


class Principal(BaseModel):
    """Who is asking. ``None`` name with ``all_access`` is the local operator."""

    name: str | None = None
    groups: list[str] = Field(default_factory=list)
    all_access: bool = False
    pii_clearance: bool = Field(default=False, description="may see personal data unmasked (operators always may)")

    @property
    def sees_pii(self) -> bool:
        """Whether texts and pixels go to this principal unredacted (see :mod:`indexing.pii`)."""
        return self.all_access or self.pii_clearance

    def tokens(self) -> list[str]:
        return [t for t in [self.name, *self.groups] if t and not t.startswith("@")]  # "@…" is reserved

    def admits(self, acl: list[str]) -> bool:
        return self.all_access or not acl or bool(set(acl) & set(self.tokens()))


OPERATOR = Principal(all_access=True)

OPERATOR_ONLY = "@operator"
"""The ACL entry an operator's index call gives new pages when it names no ACL (default deny):
only principals with ``all_access`` see them until ``--acl`` names who may, or ``--public``
(an empty ACL) opens them to everyone. No principal's name or group may start with ``@``, so no
token can claim it."""


class Filters(BaseModel):
    """Metadata filters shared by every route; all given conditions must hold. Every list and string
    is bounded (``limits``): each becomes a term of a backend query. ``linked_text`` is resolved by
    the search (:meth:`indexing.search.Searcher.resolve_filters`) into ``image_ids`` before any
    backend sees the filters."""

    model_config = ConfigDict(extra="forbid")

    date_from: date | None = Field(default=None, description="some date found on the page is on or after this (YYYY-MM-DD)")
    date_to: date | None = Field(default=None, description="some date found on the page is on or before this (YYYY-MM-DD)")
    quality: list[QualityClass] | None = Field(
        default=None, max_length=4, description="any of these quality classes: born_digital, scanned, handwritten, photo"
    )
    tags: list[Label] | None = Field(default=None, max_length=MAX_TAGS, description="has any of these tags")
    meta: dict[Label, MetaValue] = Field(
        default_factory=dict, max_length=MAX_META,
        description="metadata key=value, all must match: the user's metadata or what the file carries "
        "(DICOM: modality, body_part, study_description, accession, study_uid, ...)",
    )
    path_prefix: str | None = Field(
        default=None, min_length=1, max_length=MAX_PATH_CHARS,
        description="the source file's path starts with this (over MCP: relative to the server's index root)",
    )
    doc_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS,
        description="pages of this source file only (doc_id from a hit or get_metadata)",
    )
    has_seal: bool | None = Field(default=None, strict=True, description="true: pages with a detected seal; false: without")
    has_pii: bool | None = Field(
        default=None, strict=True,
        description="true: pages where personal data (ID, phone, card, e-mail, ...) was found; false: none",
    )
    image_ids: list[Identifier] | None = Field(
        default=None, max_length=MAX_FILTER_IDS, description=f"restrict to these ids (at most {MAX_FILTER_IDS})"
    )
    linked_text: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="only images or pages linked to one whose text contains all these words "
        "(e.g. images whose report mentions 'nodule')",
    )

    @model_validator(mode="after")
    def _dates_in_order(self) -> Filters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}: swap them")
        return self

    def is_empty(self) -> bool:
        return self == Filters()

    def restricted_to(self, image_ids: Sequence[str]) -> Filters:
        """These filters, and only these pages (within the filter's own ``image_ids``, if any)."""
        allowed = None if self.image_ids is None else set(self.image_ids)
        ids = [i for i in dict.fromkeys(image_ids) if allowed is None or i in allowed]
        return self.model_copy(update={"image_ids": ids})


LinkKind = Literal["image", "document"]


class Link(BaseModel):
    """A stored link from one page to another (an X-ray and its report, a defect photo and its SOP)."""

    image_id: str = Field(description="the linked image or page")
    kind: LinkKind = Field(description="what the linked item is: image (a picture, DICOM or photo) or document")
    why: str = Field(description="what they share, e.g. accession=A123, study_uid=1.2.3, part_number=BRK-204, stem, case=...")


class ImageRecord(BaseModel):
    """One page or image as stored, without vectors."""

    image_id: str
    doc_id: str
    path: str
    page: int = 1
    n_pages: int = 1
    format: str
    width: int
    height: int
    dpi: float | None = None
    file_size: int = 0
    mtime: float = 0.0
    quality: QualityClass
    quality_stats: dict[str, float] = Field(default_factory=dict)
    # What the image embedder measured on the page for the search (``transfer``: the mean and spread of
    # its features' cosines with random exemplars, which the exemplar term standardises by, and its
    # colour layout, 48 numbers 0-255, which the colour term compares with the query's exemplar).
    feature_stats: dict[str, float | list[int]] = Field(default_factory=dict)
    enhancements: list[Enhancement] = Field(default_factory=list)
    ocr_lines: list[OcrLine] = Field(default_factory=list)
    ocr_text: str = ""
    layout: list[LayoutBlock] = Field(default_factory=list)
    tables: list[TableResult] = Field(default_factory=list)
    seals: list[Seal] = Field(default_factory=list)
    # What the page shows (charts, maps, tables, photos, seals, handwriting ...): indexing.visual.
    visual: list[VisualMark] = Field(default_factory=list)
    dates: list[DateMention] = Field(default_factory=list)
    pii: list[PiiFinding] = Field(default_factory=list)
    caption: str = ""
    # Who wrote ``caption``: "file" (a DICOM image's tags, a sidecar), "model" (the image embedder's
    # labels: a guess, weak evidence for the search, see Searcher.rank), "" (no caption, or a page
    # indexed before this was stored: treated as the file's).
    caption_source: Literal["", "file", "model"] = ""
    meta: dict[str, str] = Field(default_factory=dict)
    # What the file says about itself (DICOM tags, a sidecar, its case folder) or what was read off
    # the page to link it (accession, part number): filterable and searchable like ``meta``, but
    # recomputed from the file, never replaced by the user's metadata.
    file_meta: dict[str, str] = Field(default_factory=dict)
    links: list[Link] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    acl: list[str] = Field(default_factory=list)
    deleted: bool = False
    indexed_at: datetime
    models: dict[str, str] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_pii(self) -> bool:
        return bool(self.pii)

    def all_meta(self) -> dict[str, str]:
        """What metadata filters and full text see: the file's own metadata under the user's."""
        return {**self.file_meta, **self.meta}



def meta_kv(rec: ImageRecord) -> list[str]:
    """The ``key=value`` terms metadata filters match on every backend: the user's metadata over
    what the file carries (DICOM tags, sidecar, link keys read off the page)."""
    return [f"{k}={v}" for k, v in sorted(rec.all_meta().items())]


def meta_words(rec: ImageRecord) -> str:
    """The page's metadata values as words it says (a sidecar's lot and station, DICOM tags, the
    user's metadata). Values under a personal metadata key (a patient's name) are stored, never
    searchable: a name is no query an uncleared caller may test."""
    return " ".join(v for k, v in rec.all_meta().items() if not is_personal_key(k))


def fts_source(rec: ImageRecord) -> str:
    """What BM25 indexes for a page on every backend: OCR text, caption, the names of what it shows
    (in English and Chinese: "bar chart 柱状图", :mod:`indexing.visual`), tags and metadata values
    (:func:`meta_words`), normalised. Elasticsearch analyses it with its analyser; LanceDB, which
    has no CJK analyser, stores its :func:`~indexing.text.fts_text` tokens."""
    return normalize(" ".join([rec.ocr_text, rec.caption, marks_text(rec.visual), " ".join(rec.tags), meta_words(rec)]))


class ImageVectors(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: np.ndarray  # joint image-text space
    feature: np.ndarray  # backbone features, image-to-image
    text: np.ndarray  # OCR text space


# "label": the names of a visual mark ("bar chart 柱状图", indexing/visual.py) over the figure's box:
# matched by the region routes and the re-rank like text, but no words the page prints, so never a
# snippet, a quote or a region's text shown to a caller.
RegionKind = Literal["tile", "block", "lines", "label"]


class RegionRecord(BaseModel):
    """A part of an image that can be matched on its own: a grid tile (image vector) or a text block."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    region_id: str
    image_id: str
    kind: RegionKind
    label: str
    bbox: BBox
    text: str = ""
    pii_kinds: list[PiiKind] = Field(default_factory=list)  # personal data inside this text region
    vector: np.ndarray  # joint space for tiles, text space for blocks/lines


class Indexed(BaseModel):
    """What a backend writes for one page: the record, its vectors and its regions."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    record: ImageRecord
    vectors: ImageVectors
    regions: list[RegionRecord]


class MetadataUpdate(BaseModel):
    """New user metadata for pages whose content did not change; ``None`` keeps the stored value.

    A given field *replaces* the stored one (``acl=[]`` makes a page public, ``meta={}`` drops all
    metadata). ACL and tags compare as sets, so a different order is not a change.
    """

    model_config = ConfigDict(extra="forbid")

    acl: list[str] | None = None
    meta: dict[str, str] | None = None
    tags: list[str] | None = None
    links: list[Link] | None = None

    def is_empty(self) -> bool:
        return self.acl is None and self.meta is None and self.tags is None and self.links is None

    def apply(self, rec: ImageRecord) -> ImageRecord | None:
        """The record with this update applied, or ``None`` when it would not change anything."""
        changes: dict[str, object] = {}
        if self.acl is not None and sorted(set(self.acl)) != sorted(set(rec.acl)):
            changes["acl"] = list(dict.fromkeys(self.acl))
        if self.tags is not None and sorted(set(self.tags)) != sorted(set(rec.tags)):
            changes["tags"] = list(dict.fromkeys(self.tags))
        if self.meta is not None and self.meta != rec.meta:
            changes["meta"] = dict(self.meta)
        if self.links is not None and self.links != rec.links:
            changes["links"] = list(self.links)
        return rec.model_copy(update=changes) if changes else None


class ModelSpaces(BaseModel):
    """Identities and dimensions of the vector spaces an index was built with."""

    image: str
    image_dim: int
    feature: str
    feature_dim: int
    text: str
    text_dim: int


def check_same_spaces(current: ModelSpaces, configured: ModelSpaces, new_index_hint: str) -> None:
    """Refuse to mix vector spaces: one message for every backend, naming each differing model."""
    if current == configured:
        return
    from ..errors import ImgragError

    diff = [
        f"{k}: index has {getattr(current, k)!r}, configured {getattr(configured, k)!r}"
        for k in ModelSpaces.model_fields
        if getattr(current, k) != getattr(configured, k)
    ]
    raise ImgragError(
        "the index was built with other embedding models (" + "; ".join(diff) + ")",
        f"use the models it was built with, re-index into a new {new_index_hint}, "
        "or `imgrag rollback N` to a version built with the configured models",
    )


ImageSpaceFn = Callable[[np.ndarray, list[ImageRecord]], tuple[np.ndarray, list[dict[str, np.ndarray]]]]
"""``(features (n, feature_dim), records) -> (whole-image vectors (n, image_dim), per record its
grid tiles' new vectors by region label)``; called on batches of pages, soft-deleted ones included."""


class ImageSpaceReplaced(BaseModel):
    """What :meth:`IndexStore.replace_image_space` did."""

    images: int = 0
    tiles_from_pixels: int = 0  # tiles whose new vector the callback gave
    tiles_placeholder: int = 0  # tiles it gave none for: they get their page's new whole-image vector


def check_same_base_spaces(current: ModelSpaces, new: ModelSpaces) -> None:
    """An image space can only be replaced on the features and text space it was derived from."""
    if (current.feature, current.feature_dim, current.text, current.text_dim) != (
        new.feature, new.feature_dim, new.text, new.text_dim
    ):
        from ..errors import ImgragError

        raise ImgragError(
            f"the index's features ({current.feature}) or text model ({current.text}) differ from the new "
            f"ones ({new.feature}, {new.text})",
            "an adapter can only re-embed an index built on the features it was trained on; re-index instead",
        )


def check_query_space(stored: ModelSpaces | None, kind: Literal["image", "text"], identity: str, dim: int) -> None:
    """Refuse to query a vector space with another model's vectors: one message for every backend,
    naming both spaces and the fixes, instead of the backend's dimension error or silent nonsense."""
    if stored is None:
        return
    have, have_dim = (stored.image, stored.image_dim) if kind == "image" else (stored.text, stored.text_dim)
    if (have, have_dim) == (identity, dim):
        return
    from ..errors import ImgragError

    memories = [m.group(1) for m in (re.match(r"transfer\[memory=([0-9a-f]+)\|", x) for x in (have, identity)) if m]
    if kind == "image" and len(memories) == 2 and re.sub(r"memory=[0-9a-f]+", "", have) == re.sub(r"memory=[0-9a-f]+", "", identity):
        # the same transfer embedder over another memory file (an upgrade ships a new one): its vectors
        # are the memory's, so nothing but indexing the pictures again moves the index over
        raise ImgragError(
            f"the index was built with another transfer memory (file {memories[0]}; the configured one is {memories[1]})",
            "re-index the folders into a new index (`IMGRAG_HOME=NEW imgrag index FOLDER`), or set "
            "IMGRAG_TRANSFER_MEMORY to the memory file the index was built with",
        )
    if kind == "image":
        hint = (
            "run `imgrag reembed --adapter DIR` to move the index to the configured adapter, or set "
            "IMGRAG_IMAGE_EMBEDDER / IMGRAG_ADAPTER / IMGRAG_CLIP_MODEL back to the model the index was "
            "built with (see `imgrag stats`)"
        )
    else:
        hint = (
            "set IMGRAG_TEXT_EMBEDDER back to the model the index was built with (see `imgrag stats`), or "
            "re-index into a new index (`imgrag reembed` replaces only the image space)"
        )
    raise ImgragError(
        f"the index's {kind} space is {have!r} ({have_dim} dimensions) but the configured {kind} embedder "
        f"is {identity!r} ({dim} dimensions)",
        hint,
    )


class Version(BaseModel):
    version: int
    time: datetime
    op: str
    summary: dict[str, int | str] = Field(default_factory=dict)
    spaces: ModelSpaces | None = None


class Stats(BaseModel):
    backend: str
    images: int
    documents: int
    deleted: int
    regions: int
    by_quality: dict[str, int]
    by_format: dict[str, int]
    pii_pages: int = 0  # pages with personal data found
    pii_by_kind: dict[str, int] = Field(default_factory=dict)  # pages holding each kind
    version: int | None
    spaces: ModelSpaces | None
    by_year: dict[str, int] = Field(
        default_factory=dict, description="pages that mention a date in each year (a page counts once per year it mentions)"
    )


VectorField = Literal["image", "feature", "text"]


class RouteHit(BaseModel):
    image_id: str
    score: float


class WeightedTerms(BaseModel):
    """More words for a full-text search, each voting ``weight`` × what one of the query's own
    words does (a translated query: the search sets the weight)."""

    text: str
    weight: float = Field(gt=0, le=100)


_LEGACY_MARK = re.compile(r"v\d+")


def region_kind(kind: str, label: str) -> str:
    """A stored region's kind as read back. Indexes written before the ``label`` kind existed
    stored a visual mark's names ("bar chart 柱状图", region ``v<n>``) as a ``block``; read them
    as the label they are, so they never show as page text before the collection is re-indexed."""
    return "label" if kind == "block" and _LEGACY_MARK.fullmatch(label) else kind


class RegionHit(BaseModel):
    region_id: str
    image_id: str
    kind: RegionKind
    label: str
    bbox: BBox
    text: str
    score: float
    pii_kinds: list[PiiKind] = Field(default_factory=list)


def page_order(h: RouteHit) -> tuple[float, str]:
    """A route's total order: best score first, a tie by page id. A store's own order among
    exactly tied rows depends on its data files and threads (Lance with two compute threads
    swapped two tied pages), and a result's order must not: clients page through it."""
    return -h.score, h.image_id


def region_order(h: RegionHit) -> tuple[float, str, str]:
    """A region route's total order: best score first, then page id, then region id."""
    return -h.score, h.image_id, h.region_id


H = TypeVar("H", RouteHit, RegionHit)

TIE_REFETCHES = 3  # how many times a route may double its fetch to see the end of a tie at its cut-off


def tie_margin(k: int) -> int:
    """The rows a route whose extra rows are cheap fetches past ``k``: a quarter more. Pages with
    the same words (copies, templates) tie on full text in groups; a group across the cut-off
    mostly ends within it, and the route asks once (1k-page bench: 57 BM25 queries for 30 with 1)."""
    return max(1, k // 4)


def cut_steps(k: int, key: Callable[[H], tuple[Any, ...]], extra: int = 1, cap: int | None = None) -> Generator[int, list[H], list[H]]:
    """The cut-off of :func:`top_k` as steps, for a store whose fetches are themselves steps
    (Elasticsearch's batched reads): yields how many rows to fetch, is sent those rows (in any
    order among ties), returns the ``k`` best in ``key``'s order. ``cap``: the most a fetch may ask."""
    if k <= 0:
        return []
    n = k + max(1, extra)
    n = min(n, cap) if cap else n
    for attempt in range(TIE_REFETCHES + 1):
        hits = sorted((yield n), key=key)
        if len(hits) < n or (cap and n >= cap) or hits[k - 1].score != hits[-1].score or attempt == TIE_REFETCHES:
            return hits[:k]
        n = min(2 * n, cap) if cap else 2 * n
    return hits[:k]  # pragma: no cover - the loop returns


def top_k(fetch: Callable[[int], list[H]], k: int, key: Callable[[H], tuple[Any, ...]], extra: int = 1) -> list[H]:
    """The ``k`` best of ``fetch(n)`` (a store's ``n`` best, in any order among ties) in ``key``'s
    total order. Which rows make the cut-off must not depend on the store's order either: ``extra``
    rows more are fetched (>= 1), and while the k-th row ties with the last one fetched (a tie group
    may run on past it), the fetch doubles, at most ``TIE_REFETCHES`` times (a tie of thousands —
    many pages with the same vector — then cuts where that fetch ends). A larger ``extra`` where
    more rows cost next to nothing (full text, exact region scans) saves most second queries."""
    steps = cut_steps(k, key, extra)
    try:
        n = next(steps)
        while True:
            n = steps.send(fetch(n))
    except StopIteration as done:
        return done.value


class Read(NamedTuple):
    """One read of :meth:`IndexStore.read_many`: a read method's name (``knn``, ``knn_stats``,
    ``bm25``, ``bm25_records``, ``knn_regions``, ``get_many``) and its positional arguments."""

    method: str
    args: tuple[Any, ...]


# ``ImageRecord.feature_stats`` alone: a store that keeps them apart from the record (LanceDB's
# ``feature_stats`` column) validates what it reads back with this, as the record's field would be.
FEATURE_STATS: TypeAdapter[dict[str, float | list[int]]] = TypeAdapter(dict[str, float | list[int]])


@runtime_checkable
class IndexStore(Protocol):
    """Storage and single-route retrieval. Every read takes the principal and applies its ACL inside.

    Optional: a store whose reads cost a round trip each may also have ``batches_reads`` (true
    when it pays), ``read_many(reads: Sequence[Read]) -> list`` (several reads at once, each what
    its method returns) and ``bm25_records(query, k, filters, principal, extra, records)`` (BM25
    hits and the records of the first ``records`` of them); the search then sends its
    independent reads together (Elasticsearch: one ``_msearch``)."""

    backend: str

    def ensure_spaces(self, spaces: ModelSpaces) -> None:
        """Record the spaces on first use; refuse (ImgragError) to mix with different ones later."""

    def spaces(self) -> ModelSpaces | None: ...

    def live_ids(self, image_ids: list[str]) -> set[str]:
        """Which of these ids are stored and not soft-deleted (for incremental indexing)."""

    def live_ids_for_path(self, path: str) -> dict[str, str]:
        """``image_id -> doc_id`` of live records indexed from ``path``."""

    # Optional: ``live_pages(paths, doc_ids) -> list[tuple[str, str, str]]``, the (image_id, doc_id,
    # path) of every live record whose path is one of ``paths`` or whose doc_id is one of
    # ``doc_ids``, in one query: an index run asks it once for a run of files instead of
    # ``live_ids_for_path`` and ``live_ids`` for each (``Indexer._look_ahead``). A store without it
    # is asked those two per file and page.

    def write(self, items: list[Indexed]) -> None:
        """Insert or replace these pages and all their regions, atomically per page."""

    def get(self, image_id: str, principal: Principal) -> ImageRecord | None: ...

    def get_many(self, image_ids: list[str], principal: Principal) -> dict[str, ImageRecord]: ...

    def get_vectors(self, image_id: str, principal: Principal) -> ImageVectors | None: ...

    def list_images(
        self, principal: Principal, filters: Filters, *, offset: int = 0, limit: int = 100
    ) -> list[ImageRecord]: ...

    def update_metadata(self, image_ids: list[str], update: MetadataUpdate) -> int:
        """Apply ``update`` to these live pages and their regions in place, without re-embedding.

        Pages it would not change are left alone; returns how many pages changed. The change is
        visible to every read (ACL filters included) as soon as this returns, and is part of the
        next :meth:`commit`, so ``rollback`` to an earlier version restores the old metadata.
        """

    def soft_delete(self, image_ids: list[str]) -> int: ...

    def purge(self) -> int:
        """Remove soft-deleted records physically; return how many."""

    def knn(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> list[RouteHit]: ...

    def knn_stats(
        self, field: VectorField, vector: np.ndarray, k: int, filters: Filters, principal: Principal
    ) -> tuple[list[RouteHit], dict[str, dict[str, float | list[int]]]]:
        """:meth:`knn`, and each hit's ``ImageRecord.feature_stats`` (``{}``: none) from the same
        query. The search's exemplar term needs them for up to 400 candidates a query: whole records
        cost ~15x more to read and parse, and a read of its own waited for both kNNs (docs/performance.md,
        session 19)."""
        ...

    def bm25(
        self, query: str, k: int, filters: Filters, principal: Principal, extra: Sequence[WeightedTerms] = ()
    ) -> list[RouteHit]:
        """BM25 over the page text; a page's score is its BM25 for ``query`` plus ``weight`` × its
        BM25 for each of ``extra`` (a page matching only ``extra`` is found too)."""
        ...

    def knn_regions(
        self,
        kind: Literal["tile", "text"],
        vector: np.ndarray,
        k: int,
        filters: Filters,
        principal: Principal,
        image_ids: Sequence[str] | None = None,
    ) -> list[RegionHit]:
        """Nearest regions: ``tile`` searches tile vectors (joint space), ``text`` block/line vectors.

        ``image_ids``: only these pages' regions, scored exactly (no vector index): the second stage
        of a two-stage search (:meth:`indexing.search.Searcher.recall`), a few hundred pages at most.

        A hit with an empty ``region_id`` ranks its page by its best region without naming it (no
        box, no text): Elasticsearch names only the best ``IMGRAG_ES_REGION_NAMED_PAGES`` pages'
        regions, since naming costs a sub-query per page."""

    def regions_of(self, image_ids: list[str]) -> list[RegionHit]:
        """All regions of these (already ACL-checked) images, score 0, for re-ranking and snippets."""

    def count(self, principal: Principal, filters: Filters) -> int: ...

    def data_version(self) -> str | None:
        """A token that changes whenever what reads return may change (any write, metadata update,
        delete, purge, rollback or re-embedding, by this process or, once reads see it, another),
        cheap enough to ask before every search: the search caches results under it. ``None``: the
        backend cannot tell cheaply, and nothing is cached."""

    def stats(self, principal: Principal) -> Stats: ...

    def replace_image_space(self, spaces: ModelSpaces, new_vectors: ImageSpaceFn) -> ImageSpaceReplaced:
        """Move every page (soft-deleted ones too) to a new image-text space computed from its stored
        features: whole-image and tile vectors change, features, text vectors and text regions do
        not. ``spaces`` must keep the index's feature and text spaces (ImgragError otherwise).
        Reads see the new space when this returns; the next :meth:`commit` records it, and
        ``rollback`` to an earlier version restores the old space."""

    def commit(self, op: str, summary: dict[str, int | str]) -> Version:
        """Record a logical version after a write operation."""

    def writer(self) -> AbstractContextManager[None]:
        """Hold the index for one whole write operation (read what is there, change it, commit).

        On entry, first :meth:`recover`. The embedded store lets one process write at a time and
        refuses another (ImgragError naming the holder); Elasticsearch has no cross-process lock.
        Changes made inside the block that no :meth:`commit` recorded when it ends (it raised) are
        recorded as version ``interrupted``, so every change that stays visible has a version.
        """

    def recover(self) -> Version | None:
        """Record, as version ``recovered``, changes a writer that is gone (killed) left without a
        version, so ``versions`` lists them and ``rollback`` undoes them; ``None`` if there are
        none. When no version existed yet, version 0 (the empty index) is recorded first, so
        ``rollback 0`` undoes even an interrupted first run."""

    def versions(self) -> list[Version]: ...

    def rollback(self, version: int) -> Version: ...

    def close(self) -> None: ...
