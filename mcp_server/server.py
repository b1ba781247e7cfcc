"""The imgrag MCP server: typed tools and resources over the ``Imgrag`` facade, for stdio and
streamable HTTP.

``build_server(app, resolve_principal)`` registers one typed function per tool. Nothing heavy happens
at build or start-up: the store opens and models load on first use (or in a background warm-up
thread a moment after start), so ``initialize`` and ``tools/list`` answer at once. Tool failures come
back as ``isError`` results carrying the ``ImgragError`` text (what is wrong — what to do);
unexpected crashes are logged to stderr and reported by type only, never as a traceback. Every tool
call and resource read, rejected ones included, is recorded in the audit log before it is answered
(``auditing``).

Every client is untrusted: arguments are validated strictly against the published schemas
(unknown ones refused), every response fits the transport's ``PayloadBudget``, a caller who is not
the operator sees paths relative to the index root and no server internals, and malformed
JSON-RPC on stdio gets a JSON-RPC error instead of silence.

No ``from __future__ import annotations`` here: the SDK reads each tool's signature, and ``k``'s
bounds come from the configured ``max_k`` at build time.
"""

import base64
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
import mcp_types
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from starlette.applications import Starlette
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from imgrag import __version__
from imgrag.indexing.app import Imgrag
from imgrag.indexing.audit import calling_as
from imgrag.indexing.errors import AuditError, ImgragError, NotFoundError
from imgrag.indexing.limits import (
    DEFAULT_OCR_LINES,
    HTTP_BUDGET,
    MAX_CROP_BYTES,
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_OFFSET,
    MAX_RESOURCE_SIDE,
    MAX_TEXT_CHARS,
    MAX_THUMBNAILS,
    MAX_WAIT_SECONDS,
    MAX_WAITING_CALLS,
    OCR_SLOTS,
    PER_PRINCIPAL_CALLS,
    RESOURCE_THUMB_SIDE,
    STDIO_BUDGET,
    THUMB_SIDE,
    PayloadBudget,
)
from imgrag.indexing.loader import shown_path
from imgrag.indexing.models import OcrLine
from imgrag.indexing.pipeline import IndexOptions
from imgrag.indexing.search import SearchRequest
from imgrag.indexing.stores.base import Filters, ImageRecord, Principal

from . import paging
from .auditing import CallRecorder, HttpAuditMiddleware, client_text as _client_text, resource_name, returned_ids
from .auth import PrincipalResolver, TokenFileVerifier
from .cancel import CANCELLED, CallCancelled, Calls, HangupWatch, Stop, register_cancel_notifications
from .completion import register_completion
from .notify import CALL_CONTEXT, CallNotifier, ClientLevels
from .pool import WorkerPool
from .prompts import prompt_error, register_prompts
from .tools import (
    MAX_ECHO_CHARS,
    BBoxIn,
    CropRegionOutput,
    CropScale,
    Cursor,
    DeleteId,
    DeleteImageOutput,
    Enhance,
    ImageId,
    IndexAcl,
    MAX_FAILED_SHOWN,
    IndexFailure,
    IndexImagesOutput,
    IndexMeta,
    IndexPaths,
    IndexTags,
    MaxOcrLines,
    MetadataOutput,
    OcrBBox,
    OcrLineOut,
    OcrRegionOutput,
    OcrScale,
    OcrSummary,
    Query,
    Region,
    SearchFilters,
    SearchHit,
    SearchImagesOutput,
    SearchMode,
    SimilarTo,
    Units,
    WithThumbnails,
    clip,
    hits_k,
)

log = logging.getLogger("imgrag.mcp")
audit = logging.getLogger("imgrag.audit")

INSTRUCTIONS = """\
imgrag searches an indexed collection of images (scanned documents, contracts, photos, DICOM X-rays / CT /
MRI) by their text and content. Typical loop: search_images → look at hits' snippet and region → crop_region
the region (scale 2-4 for small print) → ocr_region to re-read it exactly → cite image_id and the OCR text.
Hits carry their links (an X-ray and its report, a defect photo and its SOP page): when a question needs
both, read the linked page too and cite both image_ids.
All boxes are [x0, y0, x1, y1] in original-image pixels unless units='relative'."""


def _short(value: Any, limit: int = 80) -> str:
    return clip(json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value), limit)


_UNION_ARM = re.compile(r"[^A-Za-z0-9_]")  # pydantic names union arms like "constrained-float", "literal['auto']"

# A client's own text comes back in errors (an argument's name, a metadata key, a tool name, a
# resource URI): each echo is cut to MAX_ECHO_CHARS (tools.clip), and a whole error text to
# MAX_ERROR_CHARS. A 3.9 MB argument name, tool name or resource URI came back whole (a URI twice:
# 7.8 MB), far over the response budget and the SDK client's 1 MiB event limit.
MAX_ERROR_CHARS = 2000
MAX_UNKNOWN_SHOWN = 10


def _clip_data(data: Any, depth: int = 0) -> Any:
    """An error's ``data`` with every string (keys too) and list cut short; None past a few levels."""
    if isinstance(data, str):
        return clip(data)
    if isinstance(data, dict):
        return None if depth > 3 else {clip(str(k)): _clip_data(v, depth + 1) for k, v in list(data.items())[:20]}
    if isinstance(data, list | tuple):
        return None if depth > 3 else [_clip_data(v, depth + 1) for v in data[:20]]
    return data


async def bounded_errors(ctx: Any, call_next: Any) -> Any:
    """Server middleware (around every request, the SDK's own errors included: an unknown method
    or resource, bad prompt arguments): a JSON-RPC error's message and data stay short, whatever
    the client sent to provoke it."""
    try:
        return await call_next(ctx)
    except MCPError as e:
        message, data = e.error.message, e.error.data
        if len(message) <= MAX_ERROR_CHARS and len(json.dumps(data, default=str)) <= 4 * MAX_ECHO_CHARS:
            raise
        raise MCPError(code=e.error.code, message=clip(message, MAX_ERROR_CHARS), data=_clip_data(data)) from None


def format_validation_error(tool: str, err: ValidationError, accepted: list[str] | None = None) -> str:
    """One clause per bad field, naming the field, the rule and the value given; no pydantic URLs.
    The arms of a union (``scale``: a number or 'auto') are merged into one clause."""
    clauses: dict[str, list[str]] = {}
    unknown: list[str] = []
    for e in err.errors(include_url=False):
        # a name in loc may be the client's (an unknown argument, a metadata key): shortened
        path = [clip(str(p), 40) for p in e["loc"] if isinstance(p, int) or not _UNION_ARM.search(str(p))]
        loc = ".".join(path) or "arguments"
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "missing":
            text = "missing (required)"
        elif e["type"] == "extra_forbidden":
            if len(path) == 1:
                unknown.append(loc)
                continue
            text = "unknown field"
        elif e["type"] == "value_error":
            text = msg
        else:
            text = f"{msg} (got {_short(e.get('input'))})"
        clauses.setdefault(loc, []).append(text)
    parts = [f"{loc}: " + ", or ".join(dict.fromkeys(texts)) for loc, texts in clauses.items()]
    if len(parts) > MAX_UNKNOWN_SHOWN:
        parts = [*parts[:MAX_UNKNOWN_SHOWN], f"and {len(parts) - MAX_UNKNOWN_SHOWN} more"]
    if unknown:
        shown = ", ".join(unknown[:MAX_UNKNOWN_SHOWN]) + (f" and {len(unknown) - MAX_UNKNOWN_SHOWN} more" if len(unknown) > MAX_UNKNOWN_SHOWN else "")
        parts.append(f"unknown argument(s) {shown}" + (f" (accepted: {', '.join(accepted)})" if accepted else ""))
    tail = " — check the tool's inputSchema"
    return clip(f"invalid arguments for {tool}: " + "; ".join(parts), MAX_ERROR_CHARS - len(tail)) + tail


class ImgragMCP(MCPServer):
    """``MCPServer`` with strict tool arguments (``additionalProperties: false``, no coercion
    beyond what the schema says), validation errors worded for a model to fix, error texts without
    the SDK's "Error executing tool X:" prefix, and
    every call and resource read recorded in the audit log before it is answered."""

    app: Imgrag
    recorder: CallRecorder
    pool: WorkerPool
    levels: ClientLevels
    calls: Calls

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Register ``fn`` as the SDK does, then forbid unknown arguments in its argument model,
        so validation refuses them and ``inputSchema`` says ``additionalProperties: false``."""
        super().add_tool(fn, name=name, **kwargs)
        tool = self._tool_manager.get_tool(name or fn.__name__)
        assert tool is not None
        base = tool.fn_metadata.arg_model
        strict = type(base.__name__, (base,), {"model_config": ConfigDict(extra="forbid"), "__module__": base.__module__})
        tool.fn_metadata.arg_model = strict
        tool.parameters = strict.model_json_schema(by_alias=True)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:  # type: ignore[override]
        t0 = time.perf_counter()
        known = self._tool_manager.get_tool(name) is not None
        # an unknown tool's name is the client's free text: only its digest is kept
        label, args = (name, arguments) if known else ("unknown", {"name": name, "arguments": arguments})
        CALL_CONTEXT.set(context)  # this task's call: progress and log messages go to its client
        stop = self.calls.start(context)  # its client hanging up or cancelling stops it (cancel.py)
        with calling_as(self.recorder.caller()):
            try:
                with stop.scope:
                    result = await self._call_tool(name, arguments, context)
            except anyio.get_cancelled_exc_class():  # the SDK cancelled the handler: its client went, or the server stops
                await self._cancelled("tool", label, args, t0, stop)
                raise
            except Exception as e:
                if stop.reason is not None:  # stopped in a worker at a step boundary (CallCancelled)
                    await self._cancelled("tool", label, args, t0, stop)
                    raise ToolError(str(CallCancelled(stop.reason))) from None
                kind = None if known else "unknown_tool"  # bad arguments: classified by their ValidationError
                target = arguments.get("image_id") if known else None
                await self._recorded(self.recorder.failed("tool", label, args, t0, e, kind=kind, target=target), ToolError)
                raise
            finally:
                self.calls.end(stop)
            if stop.scope.cancelled_caught:  # our own scope: the client went while the call awaited (queued)
                await self._cancelled("tool", label, args, t0, stop)
                raise ToolError(str(CallCancelled(stop.reason or CANCELLED)))
            ids = returned_ids(getattr(result, "structured_content", None))
            await self._recorded(self.recorder.done("tool", label, args, t0, ids), ToolError)
            return result

    async def read_resource(self, uri: Any, context: Context | None = None) -> Any:  # type: ignore[override]
        t0 = time.perf_counter()
        name, image_id = resource_name(uri)
        args = {"uri": str(uri)}
        CALL_CONTEXT.set(context)
        stop = self.calls.start(context)
        with calling_as(self.recorder.caller()):
            try:
                with stop.scope:
                    result = await super().read_resource(uri, context)
            except anyio.get_cancelled_exc_class():
                await self._cancelled("resource", name, args, t0, stop)
                raise
            except Exception as e:
                if stop.reason is not None:
                    await self._cancelled("resource", name, args, t0, stop)
                    raise ResourceError(str(CallCancelled(stop.reason))) from None
                await self._recorded(self.recorder.failed("resource", name, args, t0, e, target=image_id), ResourceError)
                raise
            finally:
                self.calls.end(stop)
            if stop.scope.cancelled_caught:
                await self._cancelled("resource", name, args, t0, stop)
                raise ResourceError(str(CallCancelled(stop.reason or CANCELLED)))
            await self._recorded(self.recorder.done("resource", name, args, t0, [image_id] if image_id else []), ResourceError)
            return result

    async def _cancelled(self, event: Any, name: str, args: Any, t0: float, stop: Stop) -> None:
        """Record a call stopped because its client went (shielded: the handler may be cancelled).
        Nobody waits for its answer, so a record that cannot be written is only logged."""
        with anyio.CancelScope(shield=True):
            try:
                await self.recorder.cancelled(event, name, args, t0, stop.reason or CANCELLED)
            except AuditError as e:
                log.error("audit log: a cancelled %s could not be recorded: %s", name, e)

    async def _recorded(self, record: Any, error: type[Exception]) -> None:
        """Await the audit record; if it cannot be written, the call fails with that instead (a
        result is withheld, never handed out unrecorded)."""
        try:
            await record
        except AuditError as e:
            log.error("audit log: %s", e)
            raise error(_client_text(e, self.recorder.principal())) from None

    def streamable_http_app(self, **kwargs: Any) -> Starlette:  # type: ignore[override]
        http = super().streamable_http_app(**kwargs)
        http.add_middleware(HangupWatch)  # inside the audit layer: each request's disconnect reaches its call
        http.add_middleware(HttpAuditMiddleware, recorder=self.recorder)  # outermost: sees every 401
        return http

    async def _call_tool(self, name: str, arguments: dict[str, Any], context: Context | None) -> Any:
        """The SDK's call (arguments validated by the strict model ``add_tool`` installed), its
        errors reworded: validation errors for a model to fix, others without the SDK's prefix."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError):
                tool = self._tool_manager.get_tool(name)
                accepted = list(tool.parameters.get("properties", {})) if tool is not None else None
                raise ToolError(format_validation_error(name, e.__cause__, accepted)) from e.__cause__
            text = str(e).removeprefix(f"Error executing tool {name}: ")
            if self._tool_manager.get_tool(name) is None:  # the SDK's "Unknown tool: <the whole name>"
                text = f"Unknown tool: {clip(name)}"
            raise type(e)(clip(text, MAX_ERROR_CHARS)) from e.__cause__

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Context | None = None) -> Any:  # type: ignore[override]
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as e:
            raise prompt_error(name, e) from None


def _png(data: bytes) -> ImageContent:
    return ImageContent(data=base64.b64encode(data).decode(), mime_type="image/png")


def _bbox(b: Any) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in b) + "]"


# -- short text renderings, for clients that only pass `content` to the model -------------------
def render_search(o: SearchImagesOutput) -> str:
    # file names print escaped (shown_path): a name holding a newline forged a hit line of its own,
    # one holding an escape sequence reached the client's terminal as it is
    note = f"Note: {o.note}." if o.note else ""
    if not o.hits:
        return " ".join(filter(None, [f"No hits for {o.query!r}." if o.query else "No hits.", note]))
    lines = [*([note] if note else []), f"{len(o.hits)} hit(s) {o.offset + 1}-{o.offset + len(o.hits)} of {o.candidates} candidates for {o.query!r}:"]
    for i, h in enumerate(o.hits, o.offset + 1):
        where = f" region {h.region.kind} {_bbox(h.region.bbox)}" if h.region else ""
        lines.append(
            f"{i}. image_id={h.image_id} score={h.score:.4f} {shown_path(h.file)} p{h.page}/{h.n_pages} {h.width}x{h.height} "
            f"{h.quality}{where}" + (f'\n   "{h.snippet[:200]}"' if h.snippet else "")
            + "".join(f"\n   linked {ln.kind} image_id={ln.image_id} {shown_path(ln.file)} p{ln.page} ({shown_path(ln.why)})" for ln in h.links[:5])
        )
    if o.thumbnail_ids:
        lines.append(f"Thumbnails attached in order for: {', '.join(o.thumbnail_ids)}")
    lines.append(f"next_cursor={o.next_cursor}" if o.next_cursor else "No more hits.")
    return "\n".join(lines)


def render_crop(o: CropRegionOutput) -> str:
    return (
        f"Crop of {o.image_id} {_bbox(o.bbox)} (image {o.image_width}x{o.image_height}) at scale {o.scale:g}"
        f" → {o.width}x{o.height} PNG{' enhanced' if o.enhanced else ''}" + (f". Note: {o.note}" if o.note else "")
    )


def render_ocr(o: OcrRegionOutput) -> str:
    head = f"OCR of {o.image_id} {_bbox(o.bbox)} at scale {o.scale:g} ({o.engine}): {len(o.lines)} line(s)"
    return "\n".join([head, *(f"{ln.text}\t{_bbox(ln.bbox)} conf={ln.confidence:.2f}" for ln in o.lines)])


def render_metadata(o: MetadataOutput) -> str:
    return o.model_dump_json(exclude_none=True)


def render_json(o: BaseModel) -> str:
    return o.model_dump_json()


def _who(principal: Principal) -> str:
    return principal.name or ("operator" if principal.all_access else "anonymous")


def _thumbnails(app: Imgrag, hit_ids: list[str], principal: Principal, room: int) -> tuple[list[str], list[bytes]]:
    """Thumbnails of the first hits, as many as fit in ``room`` bytes of response (base64)."""
    recs = app.get_many(hit_ids[:MAX_THUMBNAILS], principal)
    ids, pngs = [], []
    for image_id in hit_ids[:MAX_THUMBNAILS]:
        rec = recs.get(image_id)
        if rec is None:
            continue
        try:
            png = app.thumbnail(rec, THUMB_SIDE, principal)
        except ImgragError as e:
            log.warning("no thumbnail for %s: %s", image_id, e)
            continue
        room -= _b64_len(png) + 64
        if room < 0:
            break
        pngs.append(png)
        ids.append(image_id)
    return ids, pngs


def _b64_len(data: bytes) -> int:
    return 4 * ((len(data) + 2) // 3)


def response_bytes(result: CallToolResult) -> int:
    """Size of the JSON-RPC response carrying ``result``, as the transport writes it."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode()) + 64


def _shown(app: Imgrag, principal: Principal, path: str, text: str) -> str:
    """``text`` as a caller who is not the operator may see it: the server path made relative."""
    if principal.all_access:
        return text
    bare = path.split("#page=", 1)[0]
    return text.replace(bare, app.display_path(bare))


def _line_out(ln: OcrLine) -> OcrLineOut:
    return OcrLineOut(text=ln.text, bbox=tuple(round(float(v), 1) for v in ln.bbox), confidence=round(float(ln.confidence), 4))  # type: ignore[arg-type]


def metadata_output(
    app: Imgrag, rec: ImageRecord, max_ocr_lines: int, principal: Principal, text_chars: int = MAX_TEXT_CHARS
) -> MetadataOutput:
    """The record as ``principal`` may see it: not the operator → the source relative to the index
    root and only the ACL entries that admit them (who else may see a page is not theirs to know)."""
    confs = [ln.confidence for ln in rec.ocr_lines]
    tables = [
        t if len(t.html) <= text_chars else t.model_copy(update={"html": t.html[:text_chars] + "<!-- truncated -->"})
        for t in rec.tables
    ]
    shown = rec.ocr_lines[:max_ocr_lines]
    mine = set(principal.tokens())
    return MetadataOutput(
        image_id=rec.image_id,
        doc_id=rec.doc_id,
        source=rec.path if principal.all_access else app.display_path(rec.path),
        page=rec.page,
        n_pages=rec.n_pages,
        format=rec.format,
        width=rec.width,
        height=rec.height,
        dpi=rec.dpi,
        file_size=rec.file_size,
        quality=rec.quality,
        quality_stats=rec.quality_stats,
        enhancements=rec.enhancements,
        ocr_summary=OcrSummary(
            lines=len(rec.ocr_lines),
            chars=len(rec.ocr_text),
            mean_confidence=round(sum(confs) / len(confs), 4) if confs else None,
            engine=rec.models.get("ocr", ""),
        ),
        ocr_lines=[_line_out(ln) for ln in shown],
        ocr_lines_omitted=len(rec.ocr_lines) - len(shown),
        ocr_text=rec.ocr_text[:text_chars],
        ocr_text_truncated=len(rec.ocr_text) > text_chars,
        layout=rec.layout,
        tables=tables,
        seals=rec.seals,
        dates=rec.dates,
        has_pii=rec.has_pii,
        pii=rec.pii,
        caption=rec.caption,
        meta=rec.meta,
        file_meta=rec.file_meta,
        links=app.links(rec, principal),
        tags=rec.tags,
        acl=rec.acl if principal.all_access else [a for a in rec.acl if a in mine],
        indexed_at=rec.indexed_at,
        index_version=app.current_version(),
        models=rec.models,
    )


def fit_metadata(app: Imgrag, rec: ImageRecord, max_ocr_lines: int, principal: Principal, budget: PayloadBudget) -> MetadataOutput:
    """``metadata_output`` cut to fit one response: fewer OCR lines first (``ocr_lines_omitted``
    counts them), then shorter text and table HTML (``ocr_text_truncated``)."""
    lines, chars = max_ocr_lines, MAX_TEXT_CHARS
    while True:
        out = metadata_output(app, rec, lines, principal, chars)
        # the text rendering repeats the structured content, so the response holds it twice
        if 2 * len(out.model_dump_json(exclude_none=True).encode()) + 4096 <= budget.response_bytes or (lines == 0 and chars <= 1000):
            return out
        if lines > 0:
            lines //= 2
        else:
            chars //= 4


def build_server(
    app: Imgrag,
    resolve_principal: PrincipalResolver,
    *,
    allow_write: bool = False,
    token_verifier: TokenFileVerifier | None = None,
    server_url: str = "http://127.0.0.1",
    budget: PayloadBudget | None = None,
) -> ImgragMCP:
    """The MCP server over ``app``. ``resolve_principal`` says whom each request acts for; with a
    ``token_verifier`` (HTTP) every request must carry a bearer token it accepts. ``budget``: the
    bytes one response may take (default: ``HTTP_BUDGET`` with a token verifier, else
    ``STDIO_BUDGET``). Each tool below is one typed function over the facade: its parameters are
    the published ``inputSchema``, its return annotation the ``outputSchema``."""
    budget = budget or (HTTP_BUDGET if token_verifier is not None else STDIO_BUDGET)
    auth = None
    if token_verifier is not None:
        auth = AuthSettings(issuer_url=server_url, resource_server_url=None)  # type: ignore[arg-type]
    mcp = ImgragMCP(
        "imgrag",
        title="imgrag image search",
        instructions=INSTRUCTIONS,
        version=__version__,
        token_verifier=token_verifier,
        auth=auth,
        log_level="WARNING",
    )
    mcp.app = app
    mcp.recorder = CallRecorder(app, resolve_principal, "http" if token_verifier is not None else "stdio")
    mcp.pool = pool = WorkerPool(
        app.settings.server_workers,
        max_waiting=app.settings.server_queue,
        heavy_per_principal=PER_PRINCIPAL_CALLS,
        heavy_max_waiting=MAX_WAITING_CALLS,
        max_wait=MAX_WAIT_SECONDS,
        ocr=OCR_SLOTS,
    )
    mcp._lowlevel_server.middleware.append(bounded_errors)
    register_prompts(mcp)
    register_completion(mcp, app, resolve_principal)
    mcp.levels = levels = ClientLevels()
    register_log_level(mcp, levels)
    mcp.calls = Calls()
    register_cancel_notifications(mcp._lowlevel_server, mcp.calls)
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def run(
        name: str,
        work: Callable[[Principal], tuple[BaseModel, list[Any]]],
        render: Callable[[Any], str],
        *,
        heavy: bool = False,
        ocr: bool = False,
        note: CallNotifier | None = None,
    ) -> CallToolResult:
        """Resolve the caller, run the work on a pool worker (``heavy``: in the heavy lane), map
        errors to tool errors, audit the call; its client hears of its wait and outcome (``note``)."""
        t0 = time.perf_counter()
        who = "?"
        note = note or CallNotifier.current(levels, name)
        try:
            principal = resolve_principal()
            who = _who(principal)
            out, extra = await pool.run(
                principal, lambda: work(principal), heavy=heavy, ocr=ocr, on_wait=note.queued, client=note.client
            )
            result = CallToolResult(content=[TextContent(text=render(out)), *extra], structured_content=out.model_dump(mode="json"))
            if (size := response_bytes(result)) > budget.response_bytes:  # the tools fit themselves; this is the backstop
                raise ImgragError(
                    f"the {name} result would be {size:,} bytes, over the {budget.response_bytes:,}-byte limit of one "
                    f"{budget.transport} response",
                    "ask for less: fewer hits, fewer OCR lines or a smaller region",
                )
        except CallCancelled:  # its client went: nobody to tell (call_tool records it)
            audit.info("%s %s cancelled %.0fms", who, name, (time.perf_counter() - t0) * 1000)
            raise
        except ImgragError as e:
            audit.info("%s %s error %.0fms: %s", who, name, (time.perf_counter() - t0) * 1000, e)
            text = _client_text(e, principal if who != "?" else None)
            await note.alog("warning", f"{name} failed: {text}")
            raise ToolError(text) from None
        except Exception as e:
            log.exception("%s crashed", name)
            audit.info("%s %s crash %.0fms", who, name, (time.perf_counter() - t0) * 1000)
            text = f"internal error ({type(e).__name__}); the server log has the details"
            await note.alog("error", f"{name} failed: {text}")
            raise ToolError(text) from None
        audit.info("%s %s ok %.0fms", who, name, (time.perf_counter() - t0) * 1000)
        await note.alog("debug", f"{name} done in {(time.perf_counter() - t0) * 1000:.0f} ms")
        return result

    max_k = app.settings.max_k
    K = hits_k(max_k)

    @mcp.tool(
        name="search_images",
        title="Search images",
        description=f"Search the indexed images by text on the page and by what they show (Chinese or English). Returns "
        f"hits with image_id, score, the best-matching OCR snippet and the region bbox where it matched, plus "
        f"next_cursor for the next page. k is 1-{max_k}; paging stops after {MAX_OFFSET} hits. "
        f"with_thumbnails attaches {THUMB_SIDE}px PNG thumbnails of the first {MAX_THUMBNAILS} hits. "
        "Use similar_to=<image_id> to find look-alikes.",
        annotations=read_only,
    )
    async def search_images(
        query: Query = None,
        k: K = 10,  # type: ignore[valid-type]
        filters: SearchFilters = None,
        mode: SearchMode = "hybrid",
        similar_to: SimilarTo = None,
        cursor: Cursor = None,
        with_thumbnails: WithThumbnails = False,
    ) -> Annotated[CallToolResult, SearchImagesOutput]:
        flt = filters or Filters()

        def work(principal: Principal) -> tuple[BaseModel, list[Any]]:
            req = SearchRequest(query=query, k=k, filters=flt, mode=mode, similar_to=similar_to)
            page = paging.search_page(app, req, principal, cursor)
            res, offset = page.result, page.offset
            hits = [
                SearchHit(
                    image_id=h.image_id,
                    score=h.score,
                    snippet=h.snippet,
                    region=Region(bbox=h.region.bbox, kind=h.region.kind, label=h.region.label, text=h.region.text[:500])
                    if h.region
                    else None,
                    doc_id=h.doc_id,
                    file=Path(h.path).name,
                    page=h.page,
                    n_pages=h.n_pages,
                    width=h.width,
                    height=h.height,
                    quality=h.quality,  # type: ignore[arg-type]
                    dates=h.dates,
                    caption=h.caption,
                    routes=h.ranks,
                    links=h.links,
                )
                for h in res.hits
            ]
            out = SearchImagesOutput(
                query=res.query,
                hits=hits,
                offset=offset,
                candidates=res.candidates,
                next_cursor=page.next_cursor,
                thumbnail_ids=[h.image_id for h in hits[:MAX_THUMBNAILS]] if with_thumbnails else [],
                timings_ms=res.timings_ms,
                note=res.note,
            )
            if not (with_thumbnails and hits):
                return out, []
            # what the hits take, twice (structured and as text), leaves the room for thumbnails
            room = budget.response_bytes - 2 * len(out.model_dump_json().encode()) - 4096
            thumb_ids, thumbs = _thumbnails(app, [h.image_id for h in hits], principal, room)
            return out.model_copy(update={"thumbnail_ids": thumb_ids}), [_png(t) for t in thumbs]

        return await run("search_images", work, render_search, heavy=similar_to is not None or with_thumbnails)

    @mcp.tool(
        name="crop_region",
        title="Crop and zoom a region",
        description=f"Return part of an image as a PNG, to look closely at a region (e.g. a hit's region bbox, a seal, a "
        f"signature, a table cell). bbox is in original-image pixels (or relative 0..1); it is clipped to the "
        f"image and the box used is returned. scale 1-{MAX_CROP_SCALE:g} zooms in; enhance sharpens faint "
        f"print. The PNG is capped at {MAX_CROP_SIDE}px on its long side and {MAX_CROP_BYTES // 1000} kB.",
        annotations=read_only,
    )
    async def crop_region(
        image_id: ImageId, bbox: BBoxIn, units: Units = "px", scale: CropScale = 1.0, enhance: Enhance = False
    ) -> Annotated[CallToolResult, CropRegionOutput]:
        def work(principal: Principal) -> tuple[BaseModel, list[Any]]:
            c = app.crop(image_id, bbox, principal, units=units, scale=scale, enhance=enhance, budget=budget)
            out = CropRegionOutput(**c.model_dump(exclude={"png"}), png_bytes=len(c.png))
            return out, [_png(c.png)]

        return await run("crop_region", work, render_crop, heavy=True)

    @mcp.tool(
        name="ocr_region",
        title="Re-read text in a region",
        description="Run OCR again on a region of an image, upscaled first (scale=auto makes text lines ~32 px tall), to "
        "read small or unclear print exactly. Returns lines with text, confidence and bbox in original-image pixels. "
        "Omit bbox to re-read the whole image.",
        annotations=read_only,
    )
    async def ocr_region(
        image_id: ImageId, bbox: OcrBBox = None, units: Units = "px", scale: OcrScale = "auto"
    ) -> Annotated[CallToolResult, OcrRegionOutput]:
        note = CallNotifier.current(levels, "ocr_region")

        def work(principal: Principal) -> tuple[BaseModel, list[Any]]:
            r = app.ocr_region(image_id, principal, bbox, units=units, scale=scale, on_step=note.step)
            lines = [_line_out(ln) for ln in r.lines]
            out = OcrRegionOutput(
                image_id=r.image_id, bbox=r.bbox, clipped=r.clipped, scale=r.scale, engine=r.engine,
                lines=lines, text="\n".join(ln.text for ln in lines),
            )
            return out, []

        return await run("ocr_region", work, render_ocr, heavy=True, ocr=True, note=note)

    @mcp.tool(
        name="get_metadata",
        title="Image metadata",
        description="Everything indexed about one image: source file and page, size, dpi, quality class and the "
        "preprocessing applied, OCR lines with boxes, layout blocks (title/text/table/figure...), tables as "
        "HTML, seals, dates, personal data found (kind and box, or the file field it came from), caption, user "
        "metadata, the file's own metadata (DICOM tags), tags, ACL, and its links to images / documents (an "
        "X-ray's report, a defect photo's SOP page) with why they are linked.",
        annotations=read_only,
    )
    async def get_metadata(
        image_id: ImageId, max_ocr_lines: MaxOcrLines = DEFAULT_OCR_LINES
    ) -> Annotated[CallToolResult, MetadataOutput]:
        return await run(
            "get_metadata", lambda p: (fit_metadata(app, app.record_for(image_id, p), max_ocr_lines, p, budget), []), render_metadata
        )

    if allow_write:

        @mcp.tool(
            name="index_images",
            title="Index images",
            description="Index image files or folders on the server (recursive; unchanged files are skipped, changed ones "
            "replaced). meta, tags and acl are stored with every page. Without acl, new pages are visible to you "
            "alone; a given acl must include you. Files you cannot see that others indexed are indexed again for you.",
            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        )
        async def index_images(
            paths: IndexPaths, meta: IndexMeta = {}, acl: IndexAcl = [], tags: IndexTags = []  # noqa: B006 (validated copies)
        ) -> Annotated[CallToolResult, IndexImagesOutput]:
            note = CallNotifier.current(levels, "index_images")

            def work(principal: Principal) -> tuple[BaseModel, list[Any]]:
                log.info("index_images by %s: %s", _who(principal), paths)
                # empty = not given: an index call without an ACL must not make indexed pages public,
                # and a caller never changes the ACL or metadata of pages they cannot read
                opts = IndexOptions(meta=meta or None, tags=tags or None, acl=acl or None, principal=principal)
                summary = app.index(paths, opts, progress=index_progress(app, principal, note))
                failed = [IndexFailure(path=_shown(app, principal, f.path, f.path), reason=_shown(app, principal, f.path, f.reason))
                          for f in summary.failed[:MAX_FAILED_SHOWN]]
                return IndexImagesOutput(
                    indexed=summary.indexed,
                    unchanged=summary.unchanged,
                    duplicates=summary.duplicates,
                    replaced=summary.replaced,
                    updated_metadata=summary.updated_metadata,
                    failed=failed,
                    failed_count=len(summary.failed),
                    seconds=summary.seconds,
                    version=summary.version,
                    image_ids=summary.indexed_ids[:200],
                ), []

            return await run("index_images", work, render_json, heavy=True, note=note)

        @mcp.tool(
            name="delete_image",
            title="Delete an image",
            description="Soft-delete one image you can see from the index (hidden at once, for everyone who could see it; "
            "the server's operator can restore it).",
            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        )
        async def delete_image(image_id: DeleteId) -> Annotated[CallToolResult, DeleteImageOutput]:
            def work(principal: Principal) -> tuple[BaseModel, list[Any]]:
                rec = app.get(image_id, principal)
                d = app.delete([rec.image_id], principal)
                return DeleteImageOutput(image_id=rec.image_id, deleted=bool(d.deleted), version=d.version), []

            return await run("delete_image", work, render_json)

    async def _resource(fn: Callable[[Principal], bytes | str], what: str, heavy: bool = False) -> bytes | str:
        principal: Principal | None = None
        try:
            principal = resolve_principal()
            note = CallNotifier.current(levels, "resource")
            return await pool.run(principal, lambda: fn(principal), heavy=heavy, on_wait=note.queued, client=note.client)  # type: ignore[arg-type]
        except CallCancelled:
            raise
        except NotFoundError as e:
            raise ResourceNotFoundError(str(e)) from None
        except ImgragError as e:
            raise ResourceError(_client_text(e, principal)) from None
        except Exception as e:
            log.exception("reading %s crashed", what)
            raise ResourceError(f"internal error ({type(e).__name__}) reading {what}; the server log has the details") from None

    @mcp.resource(
        "imgrag://image/{image_id}",
        name="image",
        title="Original image",
        description=f"The indexed page as PNG (downscaled beyond {MAX_RESOURCE_SIDE} px, and to what fits in one "
        "response: about 740 kB over HTTP); crop_region shows details at full resolution.",
        mime_type="image/png",
    )
    async def image_resource(image_id: str) -> bytes:
        return await _resource(lambda p: app.image_png(image_id, p, budget), f"imgrag://image/{image_id}", heavy=True)  # type: ignore[return-value]

    @mcp.resource(
        "imgrag://thumbnail/{image_id}",
        name="thumbnail",
        title="Thumbnail",
        description=f"A {RESOURCE_THUMB_SIDE} px PNG thumbnail of the image.",
        mime_type="image/png",
    )
    async def thumbnail_resource(image_id: str) -> bytes:
        return await _resource(lambda p: app.thumbnail(app.get(image_id, p), RESOURCE_THUMB_SIDE, p), f"imgrag://thumbnail/{image_id}", heavy=True)  # type: ignore[return-value]

    @mcp.resource(
        "imgrag://collection",
        name="collection",
        title="Collection summary",
        description="How many images and documents you can see, by quality class and format; index version and models.",
        mime_type="application/json",
    )
    async def collection_resource() -> str:
        return await _resource(lambda p: json.dumps(collection(app, p), ensure_ascii=False, indent=2), "imgrag://collection")  # type: ignore[return-value]

    return mcp


def index_progress(app: Imgrag, principal: Principal, note: CallNotifier) -> Callable[[str, dict[str, Any]], None]:
    """The indexer's progress events as progress notifications: one step per file (``total`` = the
    files found), paths as the caller sees them."""
    state = {"files": 0, "done": 0}

    def on(event: str, data: dict[str, Any]) -> None:
        if event == "start":
            state["files"] = int(data.get("files", 0))
            note.progress(0, state["files"] or None, f"{state['files']} file(s) to index")
        elif event == "file":
            note.check()  # between files: a call whose client went stops here (what was written stays, versioned)
            path = str(data.get("path", ""))
            shown = path if principal.all_access else app.display_path(path)
            note.progress(state["done"], state["files"] or None, f"indexing {shown}")
            state["done"] += 1
        elif event == "fail":
            path = str(data.get("path", ""))
            note.log("warning", f"index_images: {_shown(app, principal, path, path)} failed")
        elif event == "done":
            note.progress(state["files"], state["files"] or None, "done")

    return on


def register_log_level(mcp: ImgragMCP, levels: ClientLevels) -> None:
    """``logging/setLevel`` (protocol versions before 2026-07-28): the level of the log messages
    this connection's calls send it; advertising it turns on the logging capability."""
    from mcp_types import EmptyResult, SetLevelRequestParams

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        levels.set(ctx.session, params.level)
        return EmptyResult()

    mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)




def collection(app: Imgrag, principal: Principal) -> dict[str, Any]:
    st = app.stats(principal)
    return {
        "images": st.images,
        "documents": st.documents,
        "by_quality": st.by_quality,
        "by_format": st.by_format,
        "regions": st.regions,
        "version": st.version,
        "backend": st.backend,
        "models": st.spaces.model_dump() if st.spaces else None,
        "principal": principal.name or ("operator" if principal.all_access else None),
    }


def start_warm_up(app: Imgrag, delay: float = 1.0) -> threading.Thread:
    """Load the store and models on a daemon thread shortly after start, so the handshake is not
    slowed and the first search does not wait; failures are only logged (the call that needs the
    model will report them properly)."""

    def work() -> None:
        time.sleep(delay)
        t0 = time.perf_counter()
        try:
            app.warm_up()
            log.info("models warm in %.1fs", time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - reported again, properly, by the first call that needs it
            log.warning("warm-up failed: %s", e)

    t = threading.Thread(target=work, name="imgrag-warm-up", daemon=True)
    t.start()
    return t


def _top_level_id(line: str) -> int | str | None:
    """The ``id`` of a JSON-RPC object that will not parse (too deep, a bad escape further on), read
    by a scan of its top level, so the client waiting on that id gets an answer; None if unsure."""
    depth, i, n = 0, 0, min(len(line), 1 << 20)
    while i < n:
        ch = line[i]
        if ch == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if depth == 1 and line[i + 1 : j] == "id":
                m = re.match(r'\s*:\s*(-?\d{1,18}(?![\d.eE])|"[^"\\]{0,200}")', line[j + 1 :])
                if m:
                    value = m.group(1)
                    return value[1:-1] if value.startswith('"') else int(value)
            i = j + 1
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        i += 1
    return None


def malformed_reply(line: str) -> mcp_types.JSONRPCError | None:
    """The JSON-RPC error a stdin line deserves, or None if it is a well-formed message.

    The SDK's stdio transport drops lines it cannot parse without a word, and the client waits
    forever: bad JSON, a lone surrogate escape, nesting deeper than the parser allows, or JSON
    that is not a JSON-RPC message. These get -32700 (parse error) or -32600 (invalid request),
    with the request's id when it can be read."""
    try:
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        return None
    except ValidationError as e:
        kind = e.errors()[0]["type"]
    try:
        data: Any = json.loads(line)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        rid = data.get("id")
    else:
        rid = _top_level_id(line) if data is None and line.lstrip().startswith("{") else None
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        rid = None
    if data is None:
        code, message = mcp_types.PARSE_ERROR, "Parse error: the line is not valid JSON (or nests too deeply)"
    elif kind == "json_invalid":
        code, message = mcp_types.INVALID_REQUEST, "Invalid request: unpaired surrogate escape or nesting too deep"
    else:
        code, message = mcp_types.INVALID_REQUEST, "Invalid request: not a JSON-RPC 2.0 request, notification or response"
    return mcp_types.JSONRPCError(jsonrpc="2.0", id=rid, error=mcp_types.ErrorData(code=code, message=message))


class _CheckedStdin:
    """stdin lines for the SDK's stdio transport; a malformed line is answered here instead of
    being dropped by the transport."""

    def __init__(self) -> None:
        self._source = anyio.wrap_file(io.TextIOWrapper(os.fdopen(os.dup(0), "rb"), encoding="utf-8", errors="replace"))
        self.write: Any = None
        self.ready = anyio.Event()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        await self.ready.wait()
        async for line in self._source:
            if not line.strip():
                continue
            reply = malformed_reply(line)
            if reply is None:
                yield line
            else:
                log.warning("answered a malformed stdin line (%d chars) with JSON-RPC error %d", len(line), reply.error.code)
                await self.write.send(SessionMessage(reply))


async def _run_stdio(mcp: ImgragMCP) -> None:
    stdin = _CheckedStdin()
    async with stdio_server(stdin=stdin) as (read_stream, write_stream):  # type: ignore[arg-type]
        stdin.write = write_stream
        stdin.ready.set()
        server = mcp._lowlevel_server
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_stdio(mcp: ImgragMCP) -> None:
    """Serve on stdin/stdout (stdout carries only the protocol; logs go to stderr)."""
    anyio.run(_run_stdio, mcp)


def serve_http(mcp: ImgragMCP, host: str, port: int, *, path: str = "/mcp") -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``."""
    anyio.run(lambda: mcp.run_streamable_http_async(host=host, port=port, streamable_http_path=path))
