"""What a generation index holds: its mapping, and the row document of one page."""

from __future__ import annotations

import base64
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ...text import Precision, last_day
from ..base import Indexed, ModelSpaces, VectorField, fts_source

if TYPE_CHECKING:
    from ...config import Settings

SCHEMA = 1
# Fields added after the first release; an older generation gets them on its next ensure_spaces
# (adding a field to a mapping is allowed; its older rows simply lack it).
ADDED_FIELDS: dict[str, Any] = {"has_pii": {"type": "boolean"}, "pii_kinds": {"type": "keyword"}}
ADDED_BLOCK_FIELDS: dict[str, Any] = {"pii_kinds": {"type": "keyword"}}
VEC_FIELD: dict[VectorField, str] = {"image": "img_vec", "feature": "feat_vec", "text": "text_vec"}
SPACE_DIM: dict[str, str] = {"img_vec": "image_dim", "feat_vec": "feature_dim", "text_vec": "text_dim"}
VERSIONS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "version": {"type": "integer"},
        "time": {"type": "date"},
        "op": {"type": "keyword"},
        "generation": {"type": "integer"},
        "index": {"type": "keyword"},
    },
}


def index_mappings(settings: Settings, spaces: ModelSpaces, generation: int) -> dict[str, Any]:
    """The mapping of one generation index, its models recorded in ``_meta``."""
    s = settings

    def vector(dim: int) -> dict[str, Any]:
        return {
            "type": "dense_vector",
            "dims": dim,
            "similarity": "cosine",
            "index": True,
            "index_options": {"type": s.es_index_options},
        }

    keyword = {"type": "keyword"}
    stored = {"type": "keyword", "index": False, "doc_values": False}
    bbox = {"type": "float", "index": False, "doc_values": False}
    return {
        "dynamic": "strict",
        "_meta": {
            "imgrag": {
                "schema": SCHEMA,
                "generation": generation,
                "spaces": spaces.model_dump(),
                "created": datetime.now(timezone.utc).isoformat(),
            }
        },
        "properties": {
            "image_id": keyword,
            "doc_id": keyword,
            "path": keyword,
            "page": {"type": "integer"},
            "format": keyword,
            "quality": keyword,
            "tags": keyword,
            "meta_kv": keyword,
            "acl": keyword,
            "has_seal": {"type": "boolean"},
            **ADDED_FIELDS,
            "dates": {"type": "date_range", "format": "strict_date"},
            "deleted": {"type": "boolean"},
            "deleted_in": {"type": "integer"},
            "current": {"type": "boolean"},
            "v_from": {"type": "integer"},
            "v_to": {"type": "integer"},
            "fts": {"type": "text", "analyzer": s.es_analyzer},
            "record": {"type": "object", "enabled": False},
            "img_vec": vector(spaces.image_dim),
            "feat_vec": vector(spaces.feature_dim),
            "text_vec": vector(spaces.text_dim),
            "tiles": {
                "type": "nested",
                "properties": {"region_id": keyword, "label": stored, "bbox": bbox, "vector": vector(spaces.image_dim)},
            },
            "blocks": {
                "type": "nested",
                "properties": {
                    "region_id": keyword,
                    "kind": keyword,
                    "label": stored,
                    "bbox": bbox,
                    "text": {"type": "text", "index": False},
                    **ADDED_BLOCK_FIELDS,
                    "vector": vector(spaces.text_dim),
                },
            },
        },
    }


def date_interval(d: date, precision: Precision) -> dict[str, str]:
    """The days a mention stands for: a day, its whole month or its whole year."""
    return {"gte": d.isoformat(), "lte": last_day(d, precision).isoformat()}


def vec_list(v: np.ndarray) -> list[float]:
    return np.asarray(v, dtype=np.float32).ravel().tolist()


def source_vec(v: Any) -> np.ndarray:
    """A vector as read back from ``_source``: a float list, or base64 big-endian float32."""
    if isinstance(v, str):
        return np.frombuffer(base64.b64decode(v), dtype=">f4").astype(np.float32)
    return np.asarray(v, np.float32)


def vec_b64(v: np.ndarray) -> str:
    """Big-endian float32, base64: what Elasticsearch ≥ 9.3 accepts for a dense_vector, ~4× smaller than JSON."""
    return base64.b64encode(np.asarray(v, dtype=">f4").ravel().tobytes()).decode("ascii")


def row_document(item: Indexed, version: int, *, base64_vectors: bool = False) -> dict[str, Any]:
    """The row for one page; ``base64_vectors`` for servers that accept base64 vectors (9.3+)."""
    rec = item.record
    enc = vec_b64 if base64_vectors else vec_list
    tiles, blocks = [], []
    for r in item.regions:
        region = {"region_id": r.region_id, "label": r.label, "bbox": [float(x) for x in r.bbox], "vector": enc(r.vector)}
        if r.kind == "tile":
            tiles.append(region)
        else:
            blocks.append({**region, "kind": r.kind, "text": r.text, "pii_kinds": list(r.pii_kinds)})
    dates = {(m.date, getattr(m, "precision", "day")) for m in rec.dates}
    return {
        "image_id": rec.image_id,
        "doc_id": rec.doc_id,
        "path": rec.path,
        "page": rec.page,
        "format": rec.format,
        "quality": rec.quality,
        "tags": rec.tags,
        "meta_kv": [f"{k}={v}" for k, v in sorted(rec.meta.items())],
        "acl": rec.acl,
        "has_seal": bool(rec.seals),
        "has_pii": bool(rec.pii),
        "pii_kinds": sorted({f.kind for f in rec.pii}),
        "dates": [date_interval(d, p) for d, p in sorted(dates)],
        "deleted": bool(rec.deleted),
        "current": True,
        "v_from": version,
        "fts": fts_source(rec),
        "record": rec.model_dump(mode="json"),
        "img_vec": enc(item.vectors.image),
        "feat_vec": enc(item.vectors.feature),
        "text_vec": enc(item.vectors.text),
        "tiles": tiles,
        "blocks": blocks,
    }
