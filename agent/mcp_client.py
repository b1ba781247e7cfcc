"""The agent's only way into the index: an MCP client session with the imgrag server.

Three ways to get one: ``stdio()`` starts ``imgrag serve`` as a subprocess (the default, so the
agent works exactly like Claude Desktop would), ``http(url, token)`` talks to a running
``imgrag serve --http`` with a bearer token, and ``in_memory(server)`` connects to a server object
in this process (tests, notebooks). Whatever the transport, calls go through ``call()``, which
shapes arguments to the tool's advertised ``inputSchema``, counts and times every call, and turns
an ``isError`` result into an :class:`ToolError` carrying the server's message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field

from imgrag.indexing.errors import ImgragError

from .schemas import Usage

REQUIRED_TOOLS = ("search_images", "crop_region", "ocr_region", "get_metadata")


class ToolError(ImgragError):
    """A tool call came back with ``isError``; ``message`` is the server's text."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool


class ToolCall(BaseModel):
    """One call as made (arguments after shaping), for showing an agent's trace; kept only when
    ``ToolClient.record_calls`` is on."""

    tool: str
    args: dict[str, Any]
    ms: float
    error: str = ""
    result: dict[str, Any] = Field(default_factory=dict, description="the call's structured content")


# -- typed views of tool results (lenient: the server may add fields) ---------------------------
class RegionView(BaseModel):
    bbox: tuple[float, float, float, float]
    kind: str = ""
    label: str = ""
    text: str = ""


class LinkView(BaseModel):
    """A linked page as the server lists it (an X-ray and its report, a defect photo and its SOP)."""

    image_id: str
    kind: str = ""
    why: str = ""
    file: str = ""
    page: int = 1


class HitView(BaseModel):
    image_id: str
    score: float = 0.0
    snippet: str = ""
    region: RegionView | None = None
    doc_id: str = ""
    file: str = ""
    path: str = ""
    page: int = 1
    n_pages: int = 1
    width: int = 0
    height: int = 0
    dates: list[str] = Field(default_factory=list)
    caption: str = ""
    links: list[LinkView] = Field(default_factory=list)


class SearchView(BaseModel):
    hits: list[HitView] = Field(default_factory=list)
    next_cursor: str | None = None
    candidates: int = 0


class LineView(BaseModel):
    text: str
    bbox: tuple[float, float, float, float]
    confidence: float = 0.0


class OcrView(BaseModel):
    image_id: str
    bbox: tuple[float, float, float, float] | None = None
    scale: float | None = None
    lines: list[LineView] = Field(default_factory=list)
    text: str = ""


class CropView(BaseModel):
    image_id: str
    bbox: tuple[float, float, float, float] | None = None
    scale: float | None = None
    width: int = 0
    height: int = 0
    png: bytes = b""


class DateView(BaseModel):
    text: str = ""
    date: str = ""
    line_index: int | None = None


class MetadataView(BaseModel):
    image_id: str
    source: str = ""
    page: int = 1
    n_pages: int = 1
    width: int = 0
    height: int = 0
    quality: str = ""
    ocr_lines: list[LineView] = Field(default_factory=list)
    ocr_text: str = ""
    dates: list[DateView] = Field(default_factory=list)
    layout: list[dict[str, Any]] = Field(default_factory=list)
    seals: list[dict[str, Any]] = Field(default_factory=list)
    caption: str = ""
    file_meta: dict[str, str] = Field(default_factory=dict)
    links: list[LinkView] = Field(default_factory=list)


# -- argument shaping ----------------------------------------------------------------------------
def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {})
        return _resolve(node, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            for option in schema[key]:
                opt = _resolve(option, root)
                if opt.get("type") == "object" or "properties" in opt:
                    return opt
    return schema


def shape_arguments(input_schema: dict[str, Any] | None, args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Fit our arguments to a tool's ``inputSchema``: flat parameters, or one object parameter that
    wraps them (``{"params": {...}}``, as servers taking a single pydantic model advertise). Keys the
    tool does not know are left out and returned, so the caller can say so in the trace."""
    args = {k: v for k, v in args.items() if v is not None}
    if not input_schema:
        return args, []
    props = input_schema.get("properties", {}) or {}
    if any(k in props for k in args):
        known = {k: v for k, v in args.items() if k in props}
        return known, [k for k in args if k not in props]
    if len(props) == 1:
        (name, sub), = props.items()
        inner = _resolve(sub, input_schema)
        inner_props = inner.get("properties", {}) or {}
        if inner_props:
            known = {k: v for k, v in args.items() if k in inner_props}
            return {name: known}, [k for k in args if k not in inner_props]
    return args, []


def _structured(result: Any) -> dict[str, Any]:
    """The tool's structured result, or the JSON in its first text block for servers without one."""
    data = getattr(result, "structured_content", None)
    if isinstance(data, dict):
        # Servers that wrap non-object returns put them under "result".
        if set(data) == {"result"} and isinstance(data["result"], dict):
            return data["result"]
        return data
    for block in getattr(result, "content", []) or []:
        if getattr(block, "type", None) == "text":
            try:
                value = json.loads(block.text)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def _error_text(result: Any) -> str:
    texts = [b.text for b in getattr(result, "content", []) or [] if getattr(b, "type", None) == "text"]
    return " ".join(texts).strip() or "the tool reported an error without a message"


# -- the session ---------------------------------------------------------------------------------
class ToolClient:
    """A connected MCP session plus per-tool call counts and timings (``usage``, ``timings_ms``)."""

    def __init__(self, client: Any, description: str, usage: Usage | None = None, errlog: Any = None) -> None:
        self._client = client
        self.description = description
        self.usage = usage if usage is not None else Usage()
        self.timings_ms: dict[str, list[float]] = {}
        self.schemas: dict[str, dict[str, Any]] = {}
        self.dropped_args: dict[str, list[str]] = {}
        self.record_calls = False
        self.calls: list[ToolCall] = []
        self._errlog = errlog

    # construction -------------------------------------------------------------------------
    @staticmethod
    def stdio_params(extra_env: dict[str, str] | None = None, command: list[str] | None = None) -> Any:
        """How to start the server: this Python running ``agent.cli serve``, with our environment
        (``IMGRAG_HOME``, principal, config) so it opens the same index."""
        from mcp.client.stdio import StdioServerParameters

        cmd = command or [sys.executable, "-m", "imgrag", "serve"]
        env = {**os.environ, **(extra_env or {})}
        return StdioServerParameters(command=cmd[0], args=cmd[1:], env=env, cwd=os.getcwd())

    @classmethod
    @contextlib.asynccontextmanager
    async def stdio(
        cls, extra_env: dict[str, str] | None = None, command: list[str] | None = None, usage: Usage | None = None
    ) -> AsyncIterator[ToolClient]:
        """Start ``imgrag serve`` (stdio) as a subprocess for the life of the block; its log goes to a
        temporary file whose tail is shown if it fails to start."""
        from mcp.client import Client
        from mcp.client.stdio import stdio_client

        params = cls.stdio_params(extra_env, command)
        connected = False
        with tempfile.TemporaryFile("w+", encoding="utf-8", prefix="imgrag-serve-") as errlog:
            try:
                async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=600) as client:
                    tc = cls(client, "stdio: " + " ".join([params.command, *params.args]), usage, errlog)
                    await tc._discover()
                    connected = True
                    yield tc
            except ImgragError:
                raise
            except Exception as e:
                if not connected and _is_connection_failure(e):
                    raise ImgragError(
                        f"the imgrag MCP server did not start ({_root_cause(e)}); its log: {_tail(errlog)}",
                        "run `imgrag serve` by hand to see why, or pass --server URL",
                    ) from e
                raise

    @classmethod
    @contextlib.asynccontextmanager
    async def http(cls, url: str, token: str | None = None, usage: Usage | None = None) -> AsyncIterator[ToolClient]:
        """Connect to a running streamable-HTTP server, sending ``Authorization: Bearer <token>``."""
        import httpx2
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {"Authorization": f"Bearer {token}"} if token else None
        http_client = create_mcp_http_client(headers=headers, timeout=httpx2.Timeout(30.0, read=600.0))
        connected = False
        try:
            async with http_client:
                async with Client(streamable_http_client(url, http_client=http_client), read_timeout_seconds=600) as client:
                    tc = cls(client, f"http: {url}", usage)
                    await tc._discover()
                    connected = True
                    yield tc
        except ImgragError:
            raise
        except Exception as e:
            if not connected and _is_connection_failure(e):
                status = await _probe_status(url, token)
                if status in (401, 403):
                    raise ImgragError(
                        f"the MCP server at {url} refused the bearer token (HTTP {status})",
                        "pass a token from its token file with --token or IMGRAG_TOKEN" if token else "pass --token (or set IMGRAG_TOKEN)",
                    ) from e
                cause = _root_cause(e) + (f", HTTP {status}" if status else "")
                raise ImgragError(f"cannot use the MCP server at {url} ({cause})", "start it with `imgrag serve --http` or fix --server") from e
            raise

    @classmethod
    @contextlib.asynccontextmanager
    async def in_memory(cls, server: Any, usage: Usage | None = None) -> AsyncIterator[ToolClient]:
        """Connect to an ``MCPServer``/``Server`` object in this process."""
        from mcp.client import Client

        async with Client(server, read_timeout_seconds=600) as client:
            tc = cls(client, f"in-memory: {type(server).__name__}", usage)
            await tc._discover()
            yield tc

    async def _discover(self) -> None:
        cursor: str | None = None
        for _ in range(20):
            page = await self._client.list_tools(cursor=cursor)
            for tool in page.tools:
                self.schemas[tool.name] = tool.input_schema or {}
            cursor = page.next_cursor
            if not cursor:
                break
        missing = [t for t in REQUIRED_TOOLS if t not in self.schemas]
        if missing:
            raise ImgragError(
                f"the MCP server ({self.description}) has no {', '.join(missing)} tool(s)",
                "point --server at an imgrag MCP server",
            )

    # calls --------------------------------------------------------------------------------
    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        shaped, dropped = shape_arguments(self.schemas.get(tool), args)
        if dropped:
            self.dropped_args.setdefault(tool, [])
            self.dropped_args[tool] = sorted(set(self.dropped_args[tool]) | set(dropped))
        t = time.perf_counter()
        result = None
        try:
            result = await self._client.call_tool(tool, shaped)
        finally:
            ms = (time.perf_counter() - t) * 1000
            self.usage.tool_calls[tool] = self.usage.tool_calls.get(tool, 0) + 1
            self.timings_ms.setdefault(tool, []).append(ms)
            if self.record_calls:
                failed = result is None or getattr(result, "is_error", False)
                self.calls.append(
                    ToolCall(
                        tool=tool, args=shaped, ms=round(ms, 1),
                        error=(_error_text(result) if result is not None else "no result") if failed else "",
                        result={} if failed else _structured(result),
                    )
                )
        if getattr(result, "is_error", False):
            raise ToolError(tool, _error_text(result))
        return result

    async def search_images(
        self, query: str, k: int = 10, filters: dict[str, Any] | None = None, mode: str = "hybrid"
    ) -> SearchView:
        result = await self.call("search_images", {"query": query, "k": k, "filters": filters or None, "mode": mode})
        return SearchView.model_validate(_structured(result))

    async def ocr_region(self, image_id: str, bbox: list[float] | None = None, scale: float | str = "auto") -> OcrView:
        args: dict[str, Any] = {"image_id": image_id, "bbox": [round(v, 1) for v in bbox] if bbox else None, "scale": scale}
        result = await self.call("ocr_region", args)
        return OcrView.model_validate(_structured(result))

    async def crop_region(
        self, image_id: str, bbox: list[float], scale: float = 2.0, enhance: bool = False, units: str = "px"
    ) -> CropView:
        box = [round(v, 1) for v in bbox] if units == "px" else [round(v, 4) for v in bbox]
        result = await self.call(
            "crop_region", {"image_id": image_id, "bbox": box, "scale": scale, "units": units, "enhance": enhance}
        )
        data = _structured(result)
        png = b""
        for block in getattr(result, "content", []) or []:
            if getattr(block, "type", None) == "image":
                png = base64.b64decode(block.data)
                break
        return CropView.model_validate({**data, "image_id": data.get("image_id", image_id), "png": png})

    async def get_metadata(self, image_id: str) -> MetadataView:
        result = await self.call("get_metadata", {"image_id": image_id, "max_ocr_lines": 2000})
        return MetadataView.model_validate(_structured(result))


async def _probe_status(url: str, token: str | None) -> int | None:
    """The HTTP status an MCP ``initialize`` POST gets, to explain a failed connection (None: no answer)."""
    import httpx2

    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "imgrag-probe", "version": "0"}}}
    try:
        async with httpx2.AsyncClient(timeout=10.0) as client:
            resp = await client.post(url, json=body, headers=headers)
            return resp.status_code
    except Exception:
        return None


def _exceptions(e: BaseException) -> list[BaseException]:
    out = [e]
    for sub in getattr(e, "exceptions", []) or []:
        out.extend(_exceptions(sub))
    if e.__cause__ is not None and e.__cause__ not in out:
        out.extend(_exceptions(e.__cause__))
    return out


def _is_connection_failure(e: BaseException) -> bool:
    names = {type(x).__name__ for x in _exceptions(e)}
    return bool(
        names
        & {
            "ConnectError", "ConnectionError", "ConnectionRefusedError", "OSError", "FileNotFoundError",
            "ClosedResourceError", "BrokenResourceError", "EndOfStream", "MCPError", "HTTPStatusError",
            "McpError", "RemoteProtocolError", "ReadError", "ExceptionGroup", "BaseExceptionGroup",
        }
    )


def _root_cause(e: BaseException) -> str:
    leaves = [x for x in _exceptions(e) if not getattr(x, "exceptions", None)]
    x = leaves[-1] if leaves else e
    return f"{type(x).__name__}: {str(x)[:200]}" if str(x) else type(x).__name__


def _tail(errlog: Any, n: int = 600) -> str:
    try:
        errlog.flush()
        errlog.seek(0)
        text = errlog.read()
    except (OSError, ValueError):
        return "(unavailable)"
    text = " | ".join(line.strip() for line in text.strip().splitlines()[-6:])
    return text[-n:] or "(empty)"
