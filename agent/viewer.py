"""The bundled agent behind the web viewer's ask view.

Each question runs in this process over an in-memory MCP session with a server built for the
asking principal, so the agent sees exactly what that principal's own agent would over MCP. The
trace is the graph's nodes with the decisions each one took and the tool calls it made (searches,
crops and OCR re-reads with their boxes), which the page draws as it arrives.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio

from imgrag.indexing.app import Imgrag
from imgrag.indexing.stores.base import Principal
from imgrag.mcp_server.web.models import AskCall, AskStep, TraceHit

from .graph import AgentConfig, TraceEvent, run_agent
from .llm import LLMClient, LLMConfig
from .mcp_client import ToolCall, ToolClient
from .schemas import Answer, Usage


def _box(v: Any) -> tuple[float, float, float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(x, (int, float)) for x in v):
        return tuple(round(float(x), 1) for x in v)  # type: ignore[return-value]
    return None


def call_view(c: ToolCall) -> AskCall:
    """What the trace shows of one tool call."""
    a, r = c.args, c.result
    view = AskCall(tool=c.tool, ms=c.ms, error=c.error[:300], image_id=a.get("image_id"))
    if c.tool == "search_images":
        view.query, view.mode, view.filters = a.get("query"), a.get("mode"), a.get("filters") or {}
        view.hits = [
            TraceHit(
                image_id=h.get("image_id", ""),
                file=h.get("file", ""),
                page=h.get("page", 1),
                snippet=(h.get("snippet") or "")[:160],
                bbox=_box((h.get("region") or {}).get("bbox")),
            )
            for h in (r.get("hits") or [])[:8]
            if isinstance(h, dict)
        ]
    elif c.tool in ("crop_region", "ocr_region"):
        view.bbox = _box(r.get("bbox")) or _box(a.get("bbox"))
        view.text = (r.get("text") or "")[:600]
    return view


class ViewerAsker:
    """:class:`imgrag.mcp_server.web.Asker` over the bundled agent, for one ``Imgrag`` application."""

    def __init__(self, app: Imgrag, llm_config: LLMConfig | None = None, config: AgentConfig | None = None) -> None:
        self.app = app
        self.llm_config = llm_config
        self.config = config or AgentConfig()
        self._servers: OrderedDict[str, Any] = OrderedDict()

    def _server(self, principal: Principal) -> Any:
        """An MCP server object acting for ``principal`` (a few are kept: building one costs a little)."""
        from imgrag.mcp_server.auth import fixed_principal
        from imgrag.mcp_server.server import build_server

        key = principal.model_dump_json()
        if key not in self._servers:
            self._servers[key] = build_server(self.app, fixed_principal(principal))
            while len(self._servers) > 16:
                self._servers.popitem(last=False)
        self._servers.move_to_end(key)
        return self._servers[key]

    async def ask(
        self, question: str, filters: dict[str, Any], principal: Principal, on_step: Callable[[AskStep], None]
    ) -> dict[str, Any]:
        usage = Usage()
        llm = LLMClient(self.llm_config, usage) if self.llm_config is not None else None
        config = self.config.model_copy(update={"filters": filters})
        try:
            async with ToolClient.in_memory(self._server(principal), usage) as tools:
                tools.record_calls = True
                seen = 0

                def tracer(ev: TraceEvent) -> None:
                    nonlocal seen
                    calls, seen = tools.calls[seen:], len(tools.calls)
                    on_step(AskStep(node=ev.node, round=ev.round, ms=ev.ms, decisions=ev.decisions, calls=[call_view(c) for c in calls]))

                answer, agent = await run_agent(question, tools, llm, config, tracer)
        finally:
            if llm is not None:
                await llm.close()
        pages = {
            iid: {"width": info.width, "height": info.height, "file": info.file, "page": info.page}
            for iid, info in agent.images.items()
            if any(c.image_id == iid for c in answer.citations)
        }
        return {"answer": answer.public(), "full": answer.model_dump(mode="json"), "pages": pages, "mode": answer.mode}

    async def export(self, result: dict[str, Any], fmt: Literal["md", "pdf"], principal: Principal) -> bytes:
        """The answer as Markdown or as a PDF with the cited crops (fetched over MCP as the principal)."""
        from .report import fetch_crops, to_markdown, write_pdf

        answer = Answer.model_validate(result["full"])
        if fmt == "md":
            return to_markdown(answer).encode("utf-8")
        async with ToolClient.in_memory(self._server(principal)) as tools:
            crops = await fetch_crops(tools, answer)
        with tempfile.TemporaryDirectory(prefix="imgrag-export-") as d:
            path = Path(d) / "answer.pdf"
            # font subsetting and layout take seconds: off the event loop the MCP server shares
            await anyio.to_thread.run_sync(lambda: write_pdf(answer, path, crops))
            return path.read_bytes()
