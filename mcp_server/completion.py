"""``completion/complete``: suggestions for the resource templates' ``image_id`` and the prompts'
document arguments, as a client's argument box types them.

Everything suggested comes from what the caller can see, through the same ACL'd reads as the tools:
an id or file the caller may not see is never offered, so a prefix that matches only other
principals' images answers exactly like a prefix that matches nothing (an empty list). The scan is
bounded (``SCAN_LIMIT`` visible pages, newest first as the store lists them) and so is the answer
(100 values, the protocol's limit; ``total`` / ``has_more`` say when there are more).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, Completion, PromptReference, ResourceTemplateReference

from imgrag.indexing.app import Imgrag
from imgrag.indexing.errors import AuditError, ImgragError
from imgrag.indexing.limits import MAX_ID_CHARS
from imgrag.indexing.stores.base import Filters, Principal

from .auditing import client_text, log

MAX_VALUES = 100  # the protocol's cap on one completion answer
SCAN_LIMIT = 5000  # visible pages read to answer one completion request
PAGE = 500

# prompt arguments that name a document: an image id, or words that find it (a file name works)
DOCUMENT_ARGS = {("compare_documents", "first"), ("compare_documents", "second"), ("where_is_the_seal", "document")}
ASPECTS = (
    "parties, amounts and dates",
    "payment terms",
    "dates and deadlines",
    "seals and signatures",
    "termination and liability",
    "governing law and disputes",
)


def _matches(prefix: str, app: Imgrag, principal: Principal, with_files: bool) -> tuple[list[str], int, list[str]]:
    """Visible image ids (and, ``with_files``, file names) starting with ``prefix``; (values,
    total, the image ids among the values)."""
    p = prefix.strip().lower()
    ids: list[str] = []
    files: dict[str, None] = {}
    offset = 0
    while offset < SCAN_LIMIT:
        recs = app.list_images(principal, Filters(), offset=offset, limit=PAGE)
        for r in recs:
            if r.image_id.lower().startswith(p):
                ids.append(r.image_id)
            if with_files:
                name = PurePosixPath(app.display_path(r.path) if not principal.all_access else r.path).name
                if name.lower().startswith(p) or (p and p in name.lower()):
                    files.setdefault(name)
        if len(recs) < PAGE:
            break
        offset += PAGE
    values = sorted(dict.fromkeys(ids)) + [f for f in files if f not in ids]
    shown = set(ids)
    return values[:MAX_VALUES], len(values), [v for v in values[:MAX_VALUES] if v in shown]


def register_completion(mcp: Any, app: Imgrag, resolve_principal: Callable[[], Principal]) -> None:
    """Install the ``completion/complete`` handler (and so advertise the completions capability).
    It runs on the server's worker pool like a cheap tool call (``mcp.pool``): fair, and bounded."""

    @mcp.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        value = (argument.value or "")[:MAX_ID_CHARS]
        if isinstance(ref, ResourceTemplateReference):
            if ref.uri not in ("imgrag://image/{image_id}", "imgrag://thumbnail/{image_id}") or argument.name != "image_id":
                return None
            with_files = False
        elif isinstance(ref, PromptReference):
            if (ref.name, argument.name) == ("compare_documents", "aspect"):
                hits = [a for a in ASPECTS if a.startswith(value.strip().lower())]
                return Completion(values=hits, total=len(hits), has_more=False)
            if (ref.name, argument.name) not in DOCUMENT_ARGS:
                return None
            with_files = True
        else:
            return None
        principal = resolve_principal()
        t0 = time.perf_counter()
        name = f"{getattr(ref, 'name', None) or getattr(ref, 'uri', '?')} {argument.name}"
        try:
            values, total, ids = await mcp.pool.run(principal, lambda: _matches(value, app, principal, with_files))
        except ImgragError as e:
            raise MCPError(code=INTERNAL_ERROR, message=f"completing {argument.name}: {client_text(e, principal)}") from None
        # on record like a read: which ids (and file names) a caller was shown; unrecorded, withheld
        try:
            await mcp.recorder.done("completion", name, {"value": value}, t0, ids)
        except AuditError as e:
            log.error("audit log: %s", e)
            raise MCPError(code=INTERNAL_ERROR, message=f"completing {argument.name}: {client_text(e, principal)}") from None
        return Completion(values=values, total=total, has_more=total > len(values))
