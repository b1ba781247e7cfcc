"""Paging cursors: opaque tokens that bind an offset to the search that produced it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from imgrag.indexing.errors import ImgragError


def query_key(payload: dict[str, Any]) -> str:
    """Short stable hash of everything that defines a result list (not k: pages may differ in size)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def encode_cursor(offset: int, key: str) -> str:
    raw = json.dumps({"o": offset, "q": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, key: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        offset, qk = data["o"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise ImgragError("cursor is not one this server issued", "pass next_cursor exactly as returned, or omit it") from e
    if type(offset) is not int or not isinstance(qk, str):  # a forged cursor: 2.5, true, "3"
        raise ImgragError("cursor is not one this server issued", "pass next_cursor exactly as returned, or omit it")
    if qk != key:
        raise ImgragError(
            "cursor belongs to a different search",
            "repeat the same query, filters, mode and similar_to with it, or omit cursor to start over",
        )
    if offset < 0:
        raise ImgragError("cursor is not one this server issued", "pass next_cursor exactly as returned, or omit it")
    return offset
