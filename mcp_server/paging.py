"""Paging cursors: opaque, signed tokens that pin a search's ranked list for its later pages.

A cursor carries what decides the order of the hits besides the request itself: the routes' depth
and the re-rank block fixed at page 1 (so page n is a slice of the same ranked list, whatever k
it asks for), where the next page starts, a digest of the list's ids up to there (the next page
is served only if its list still begins with them: otherwise the index changed in between and the
pages would repeat or skip hits), the search (query, filters, mode, similar_to) and who asked.

Cursors come from clients, so they are untrusted: each is signed (HMAC-SHA256 with a key drawn
when the server starts), and one that was changed, forged or made by another server process is
refused before anything in it is used. A cursor only ever narrows what its caller may search —
the search still runs under the caller's own ACL — but the signature also keeps a client from
choosing its own depth or offset past the bounds (:func:`imgrag.indexing.search.check_paging`).

:func:`search_page` is the one place a page is searched that way: the MCP tool ``search_images``
follows ``next_cursor``; the web viewer also steps back, with the cursor of the page it shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from imgrag.indexing.app import Imgrag
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.limits import MAX_OFFSET
from imgrag.indexing.search import SearchRequest, SearchResult, block_of, depth_of
from imgrag.indexing.stores.base import Principal

_KEY = secrets.token_bytes(32)  # this server process's; cursors end when it restarts
_MAC_BYTES = 16
NOT_OURS = ("cursor is not one this server issued (or the server has restarted since)",
            "pass next_cursor exactly as returned, or omit cursor to start the search over")


@dataclass(frozen=True)
class Cursor:
    offset: int  # where the next page starts in the ranked list
    depth: int  # how deep each route reads: page 1's
    block: int  # how many candidates are re-ranked together: page 1's
    seen: str  # digest of the list's ids before ``offset`` (SearchResult.through of the page that made it)


def query_key(payload: dict[str, Any]) -> str:
    """Short stable hash of everything that defines a result list (not k: pages may differ in size)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def principal_key(principal: Principal) -> str:
    """Short stable hash of who asks (name, groups, clearances): a cursor is its caller's alone."""
    return hashlib.sha256(principal.model_dump_json().encode()).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(body: str) -> bytes:
    return hmac.new(_KEY, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(cur: Cursor, key: str, who: str) -> str:
    body = _b64(json.dumps({"o": cur.offset, "d": cur.depth, "b": cur.block, "h": cur.seen, "q": key, "p": who},
                           separators=(",", ":")).encode())
    return f"{body}.{_b64(_mac(body))}"


def decode_cursor(cursor: str, key: str, who: str) -> Cursor:
    """The cursor's contents, once its signature, its search (``key``) and its caller (``who``) check
    out; ImgragError (one line, with the fix) otherwise."""
    body, _, mac = cursor.partition(".")
    try:
        ok = hmac.compare_digest(_unb64(mac), _mac(body))
        data = json.loads(_unb64(body)) if ok else None
        fields = (data["o"], data["d"], data["b"], data["h"], data["q"], data["p"]) if ok else None
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise ImgragError(*NOT_OURS) from e
    if fields is None:
        raise ImgragError(*NOT_OURS)
    offset, depth, block, seen, qk, pk = fields
    if not (all(type(v) is int and v >= 0 for v in (offset, depth, block)) and all(isinstance(v, str) for v in (seen, qk, pk))):
        raise ImgragError(*NOT_OURS)  # signed by us, so never: a bug, not a forgery
    if qk != key:
        raise ImgragError(
            "cursor belongs to a different search",
            "repeat the same query, filters, mode and similar_to with it, or omit cursor to start over",
        )
    if pk != who:
        raise ImgragError("cursor was issued to another caller", "omit cursor to start the search over with your own")
    return Cursor(offset=offset, depth=depth, block=block, seen=seen)


RESULTS_CHANGED = (
    "the results changed since the previous page (the index was written to), so later pages would repeat or skip hits",
    "omit cursor to start the search over",
)


@dataclass(frozen=True)
class Page:
    result: SearchResult  # the search at the page's offset (its hits are the page)
    offset: int  # where the page starts in the ranked list
    cursor: str  # this page's own cursor: the same page again, or (``back``) the page before it
    next_cursor: str | None  # the page after it; None at the list's end or past MAX_OFFSET


def search_page(app: Imgrag, req: SearchRequest, principal: Principal, cursor: str | None = None, *, back: bool = False) -> Page:
    """One page of ``req``'s ranked list as ``principal`` sees it: page 1 without ``cursor``; with
    one, the page that starts at the cursor's offset (``back``: the ``req.k`` hits that end there),
    at page 1's depth and re-rank block. Served only if the list still holds exactly the hits the
    cursor's digest covers (all hits before the page; ``back``: before the page the cursor is for),
    else ImgragError :data:`RESULTS_CHANGED`: a write in between would make pages repeat or skip hits.

    ``req``: query, k, filters, mode and similar_to as the caller gave them (its offset, depth and
    block are the cursor's); a ``path_prefix`` from a caller who is not the operator is a path as
    the caller is shown them, under the index root.
    """
    key = query_key({"q": (req.query or "").strip(), "f": req.filters.model_dump(mode="json"), "m": req.mode, "s": req.similar_to})
    who = principal_key(principal)
    cur = decode_cursor(cursor, key, who) if cursor else None
    # Page 1 fixes the routes' depth and the re-rank block for every later page: each page is then
    # the next slice of one ranked list (the digest checks the list is unchanged).
    depth, block = (cur.depth, cur.block) if cur else (depth_of(req), block_of(req))
    k, offset = req.k, cur.offset if cur else 0
    if cur is not None and back:
        if cur.offset == 0:
            raise ImgragError("there is no page before the first", "omit cursor for the first page")
        offset = max(0, cur.offset - req.k)
        k = cur.offset - offset  # the hits up to where the cursor's page starts
    where = req.filters
    if where.path_prefix and not principal.all_access:  # given as get_metadata and the viewer show paths
        where = where.model_copy(update={"path_prefix": app.root_path(where.path_prefix)})
    res = app.search(req.model_copy(update={"k": k, "offset": offset, "depth": depth, "block": block, "filters": where}), principal)
    if cur is not None and (res.through if back else res.before) != cur.seen:
        raise ImgragError(*RESULTS_CHANGED)
    n = len(res.hits)
    more = n == k and offset + n < res.candidates and offset + n <= MAX_OFFSET
    return Page(
        result=res,
        offset=offset,
        cursor=encode_cursor(Cursor(offset, depth, block, res.before), key, who),
        next_cursor=encode_cursor(Cursor(offset + n, depth, block, res.through), key, who) if more else None,
    )
