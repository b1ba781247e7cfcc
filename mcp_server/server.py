"""The imgrag MCP server: tools and resources over a ``Runtime``, for stdio and streamable HTTP.

``build_server(rt, resolve_principal)`` wires :class:`~mcp_server.service.ImgragService` into the
SDK's ``MCPServer``. Nothing heavy happens at build or start-up: the store opens and models load
on first use (or in a background warm-up thread a moment after start), so ``initialize`` and
``tools/list`` answer at once. Tool failures come back as ``isError`` results carrying the
``ImgragError`` text (what is wrong — what to do); unexpected crashes are logged to stderr and
reported by type only, never as a traceback.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError, create_model

from imgrag.indexing.errors import ImgragError, NotFoundError
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import Principal

from .auth import PrincipalResolver, TokenFileVerifier
from .service import ImgragService
from .tools import (
    MAX_CROP_BYTES,
    MAX_CROP_SCALE,
    MAX_CROP_SIDE,
    MAX_OFFSET,
    MAX_RESOURCE_SIDE,
    MAX_THUMBNAILS,
    THUMB_SIDE,
    CropRegionInput,
    CropRegionOutput,
    DeleteImageInput,
    DeleteImageOutput,
    GetMetadataInput,
    IndexImagesInput,
    IndexImagesOutput,
    MetadataOutput,
    OcrRegionInput,
    OcrRegionOutput,
    SearchImagesInput,
    SearchImagesOutput,
)

log = logging.getLogger("imgrag.mcp")
audit = logging.getLogger("imgrag.audit")

INSTRUCTIONS = """\
imgrag searches an indexed collection of images (scanned documents, contracts, photos) by their text
and content. Typical loop: search_images → look at hits' snippet and region → crop_region the region
(scale 2-4 for small print) → ocr_region to re-read it exactly → cite image_id and the OCR text.
All boxes are [x0, y0, x1, y1] in original-image pixels unless units='relative'."""


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_validation_error(tool: str, err: ValidationError) -> str:
    """One line per bad field, naming the field, the rule and the value given; no pydantic URLs."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "arguments"
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "missing":
            parts.append(f"{loc}: missing (required)")
        elif e["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown argument")
        elif e["type"] == "value_error":
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(f"{loc}: {msg} (got {_short(e.get('input'))})")
    return f"invalid arguments for {tool}: " + "; ".join(parts) + " — check the tool's inputSchema"


class ImgragMCP(MCPServer):
    """``MCPServer`` that rejects unknown arguments and words validation errors for a model to fix."""

    input_models: dict[str, type[BaseModel]]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:  # type: ignore[override]
        model = self.input_models.get(name)
        if model is not None:
            unknown = sorted(set(arguments) - set(model.model_fields))
            if unknown:
                raise ToolError(
                    f"Error executing tool {name}: unknown argument(s) {', '.join(unknown)} — "
                    f"accepted: {', '.join(model.model_fields)}"
                )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError):
                raise ToolError(f"Error executing tool {name}: {format_validation_error(name, e.__cause__)}") from e.__cause__
            raise


def _tool_function(
    name: str,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    run: Callable[[BaseModel, Principal], tuple[BaseModel, list[Any]]],
    render: Callable[[Any], str],
    resolve_principal: PrincipalResolver,
) -> Callable[..., Any]:
    """An async tool function whose signature *is* ``input_model``'s fields, so the SDK publishes
    the model's descriptions and constraints as ``inputSchema`` and ``output_model`` as
    ``outputSchema``; the body re-validates with the model (cross-field checks), resolves the
    caller, runs the work on a thread and maps errors to tool errors."""
    params: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}
    for fname, f in input_model.model_fields.items():
        ann = Annotated[(f.annotation, *f.metadata, Field(description=f.description))]  # type: ignore[valid-type]
        default = inspect.Parameter.empty if f.is_required() else f.get_default(call_default_factory=True)
        params.append(inspect.Parameter(fname, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=default))
        annotations[fname] = ann
    params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    annotations["ctx"] = Context
    ret = Annotated[CallToolResult, output_model]
    annotations["return"] = ret

    async def tool(**kwargs: Any) -> CallToolResult:
        kwargs.pop("ctx", None)
        t0 = time.perf_counter()
        who = "?"
        try:
            principal = resolve_principal()
            who = principal.name or ("operator" if principal.all_access else "anonymous")
            try:
                inp = input_model.model_validate(kwargs)
            except ValidationError as e:
                raise ImgragError(format_validation_error(name, e)) from None
            out, extra = await anyio.to_thread.run_sync(lambda: run(inp, principal))
        except ImgragError as e:
            audit.info("%s %s error %.0fms: %s", who, name, (time.perf_counter() - t0) * 1000, e)
            raise ToolError(str(e)) from None
        except Exception as e:
            log.exception("%s crashed", name)
            audit.info("%s %s crash %.0fms", who, name, (time.perf_counter() - t0) * 1000)
            raise ToolError(f"internal error ({type(e).__name__}); the server log has the details") from None
        audit.info("%s %s ok %.0fms", who, name, (time.perf_counter() - t0) * 1000)
        structured = out.model_dump(mode="json")
        return CallToolResult(content=[TextContent(text=render(out)), *extra], structured_content=structured)

    tool.__name__ = name
    tool.__qualname__ = name
    tool.__signature__ = inspect.Signature(params, return_annotation=ret)  # type: ignore[attr-defined]
    tool.__annotations__ = annotations
    return tool


def _png(data: bytes) -> ImageContent:
    return ImageContent(data=base64.b64encode(data).decode(), mime_type="image/png")


def _bbox(b: Any) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in b) + "]"


# -- short text renderings, for clients that only pass `content` to the model -------------------
def render_search(o: SearchImagesOutput) -> str:
    if not o.hits:
        return f"No hits for {o.query!r}." if o.query else "No hits."
    lines = [f"{len(o.hits)} hit(s) {o.offset + 1}-{o.offset + len(o.hits)} of {o.candidates} candidates for {o.query!r}:"]
    for i, h in enumerate(o.hits, o.offset + 1):
        where = f" region {h.region.kind} {_bbox(h.region.bbox)}" if h.region else ""
        lines.append(
            f"{i}. image_id={h.image_id} score={h.score:.4f} {h.file} p{h.page}/{h.n_pages} {h.width}x{h.height} "
            f"{h.quality}{where}" + (f'\n   "{h.snippet[:200]}"' if h.snippet else "")
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


def build_server(
    rt: Runtime,
    resolve_principal: PrincipalResolver,
    *,
    allow_write: bool = False,
    index_roots: list[Path] | None = None,
    token_verifier: TokenFileVerifier | None = None,
    server_url: str = "http://127.0.0.1",
    service: ImgragService | None = None,
) -> ImgragMCP:
    """The MCP server over ``rt``. ``resolve_principal`` says whom each request acts for; with a
    ``token_verifier`` (HTTP) every request must carry a bearer token it accepts."""
    svc = service or ImgragService(rt, index_roots=index_roots)
    auth = None
    if token_verifier is not None:
        auth = AuthSettings(issuer_url=server_url, resource_server_url=None)  # type: ignore[arg-type]
    mcp = ImgragMCP(
        "imgrag",
        title="imgrag image search",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        token_verifier=token_verifier,
        auth=auth,
        log_level="WARNING",
    )
    mcp.service = svc  # type: ignore[attr-defined]
    mcp.input_models = {}
    max_k = rt.settings.max_k
    # The configured max_k goes into the published schema, so clients see the real limit.
    search_input = create_model(
        "SearchImagesInput",
        __base__=SearchImagesInput,
        k=(int, Field(default=10, ge=1, le=max_k, description=f"Number of hits to return, 1-{max_k}.")),
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def add(
        name: str,
        title: str,
        description: str,
        inp: type[BaseModel],
        out: type[BaseModel],
        run: Callable[[Any, Principal], tuple[BaseModel, list[Any]]],
        render: Callable[[Any], str],
        annotations: ToolAnnotations,
    ) -> None:
        mcp.input_models[name] = inp
        mcp.add_tool(
            _tool_function(name, inp, out, run, render, resolve_principal),
            name=name,
            title=title,
            description=description,
            annotations=annotations,
        )

    def run_search(inp: SearchImagesInput, p: Principal) -> tuple[BaseModel, list[Any]]:
        out, thumbs = svc.search(inp, p)
        return out, [_png(t) for t in thumbs]

    def run_crop(inp: CropRegionInput, p: Principal) -> tuple[BaseModel, list[Any]]:
        out, png = svc.crop(inp, p)
        return out, [_png(png)]

    add(
        "search_images",
        "Search images",
        f"Search the indexed images by text on the page and by what they show (Chinese or English). Returns "
        f"hits with image_id, score, the best-matching OCR snippet and the region bbox where it matched, plus "
        f"next_cursor for the next page. k is 1-{max_k}; paging stops after {MAX_OFFSET} hits. "
        f"with_thumbnails attaches {THUMB_SIDE}px PNG thumbnails of the first {MAX_THUMBNAILS} hits. "
        "Use similar_to=<image_id> to find look-alikes.",
        search_input,
        SearchImagesOutput,
        run_search,
        render_search,
        read_only,
    )
    add(
        "crop_region",
        "Crop and zoom a region",
        f"Return part of an image as a PNG, to look closely at a region (e.g. a hit's region bbox, a seal, a "
        f"signature, a table cell). bbox is in original-image pixels (or relative 0..1); it is clipped to the "
        f"image and the box used is returned. scale 1-{MAX_CROP_SCALE:g} zooms in; enhance sharpens faint "
        f"print. The PNG is capped at {MAX_CROP_SIDE}px on its long side and {MAX_CROP_BYTES // 1000} kB.",
        CropRegionInput,
        CropRegionOutput,
        run_crop,
        render_crop,
        read_only,
    )
    add(
        "ocr_region",
        "Re-read text in a region",
        "Run OCR again on a region of an image, upscaled first (scale=auto makes text lines ~32 px tall), to read small "
        "or unclear print exactly. Returns lines with text, confidence and bbox in original-image pixels. "
        "Omit bbox to re-read the whole image.",
        OcrRegionInput,
        OcrRegionOutput,
        lambda inp, p: (svc.ocr(inp, p), []),
        render_ocr,
        read_only,
    )
    add(
        "get_metadata",
        "Image metadata",
        "Everything indexed about one image: source file and page, size, dpi, quality class and the "
        "preprocessing applied, OCR lines with boxes, layout blocks (title/text/table/figure...), tables as "
        "HTML, seals, dates, personal data found (kind and box), caption, user metadata, tags and ACL.",
        GetMetadataInput,
        MetadataOutput,
        lambda inp, p: (svc.metadata(inp, p), []),
        render_metadata,
        read_only,
    )
    if allow_write:
        add(
            "index_images",
            "Index images",
            "Index image files or folders on the server (recursive; unchanged files are skipped, changed ones "
            "replaced). meta, tags and acl are stored with every page; an empty acl makes them visible to everyone.",
            IndexImagesInput,
            IndexImagesOutput,
            lambda inp, p: (svc.index(inp, p), []),
            render_json,
            ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        )
        add(
            "delete_image",
            "Delete an image",
            "Soft-delete one image from the index (hidden at once; an operator can restore it with `imgrag rollback`).",
            DeleteImageInput,
            DeleteImageOutput,
            lambda inp, p: (svc.delete(inp, p), []),
            render_json,
            ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        )

    async def _resource(fn: Callable[[Principal], bytes | str], what: str) -> bytes | str:
        try:
            principal = resolve_principal()
            return await anyio.to_thread.run_sync(lambda: fn(principal))
        except NotFoundError as e:
            raise ResourceNotFoundError(str(e)) from None
        except ImgragError as e:
            raise ResourceError(str(e)) from None
        except Exception as e:
            log.exception("reading %s crashed", what)
            raise ResourceError(f"internal error ({type(e).__name__}) reading {what}; the server log has the details") from None

    @mcp.resource(
        "imgrag://image/{image_id}",
        name="image",
        title="Original image",
        description=f"The indexed page as PNG, in original-image coordinates (downscaled beyond {MAX_RESOURCE_SIDE} px).",
        mime_type="image/png",
    )
    async def image_resource(image_id: str) -> bytes:
        return await _resource(lambda p: svc.image_png(image_id, p), f"imgrag://image/{image_id}")  # type: ignore[return-value]

    @mcp.resource(
        "imgrag://thumbnail/{image_id}",
        name="thumbnail",
        title="Thumbnail",
        description="A 256 px PNG thumbnail of the image.",
        mime_type="image/png",
    )
    async def thumbnail_resource(image_id: str) -> bytes:
        return await _resource(lambda p: svc.thumbnail_png(image_id, p), f"imgrag://thumbnail/{image_id}")  # type: ignore[return-value]

    @mcp.resource(
        "imgrag://collection",
        name="collection",
        title="Collection summary",
        description="How many images and documents you can see, by quality class and format; index version and models.",
        mime_type="application/json",
    )
    async def collection_resource() -> str:
        return await _resource(lambda p: json.dumps(svc.collection(p), ensure_ascii=False, indent=2), "imgrag://collection")  # type: ignore[return-value]

    return mcp


def start_warm_up(svc: ImgragService, delay: float = 1.0) -> threading.Thread:
    """Load the store and models on a daemon thread shortly after start, so the handshake is not
    slowed and the first search does not wait; failures are only logged (the call that needs the
    model will report them properly)."""

    def work() -> None:
        time.sleep(delay)
        t0 = time.perf_counter()
        try:
            svc.warm_up()
            log.info("models warm in %.1fs", time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - reported again, properly, by the first call that needs it
            log.warning("warm-up failed: %s", e)

    t = threading.Thread(target=work, name="imgrag-warm-up", daemon=True)
    t.start()
    return t


def serve_stdio(mcp: ImgragMCP) -> None:
    """Serve on stdin/stdout (stdout carries only the protocol; logs go to stderr)."""
    anyio.run(mcp.run_stdio_async)


def serve_http(mcp: ImgragMCP, host: str, port: int, *, path: str = "/mcp") -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``."""
    anyio.run(lambda: mcp.run_streamable_http_async(host=host, port=port, streamable_http_path=path))
