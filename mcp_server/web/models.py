"""What the viewer shows of an agent run, and the hook that runs one.

The viewer (``mcp_server``) cannot import the agent (imports flow one way), so whoever starts the
viewer passes an :class:`Asker`; ``imgrag.agent.viewer`` provides the bundled one. The trace is
typed here so both sides agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from imgrag.indexing.stores.base import Principal


class TraceHit(BaseModel):
    image_id: str
    file: str = ""
    page: int = 1
    snippet: str = ""
    bbox: tuple[float, float, float, float] | None = None


class AskCall(BaseModel):
    """One MCP tool call the agent made: what it asked for and the part of the answer worth showing."""

    tool: str
    ms: float
    error: str = ""
    image_id: str | None = None
    bbox: tuple[float, float, float, float] | None = Field(default=None, description="the region cropped or re-read (the box the server used)")
    query: str | None = None
    mode: str | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    hits: list[TraceHit] = Field(default_factory=list, description="search_images: the first hits")
    text: str = Field(default="", description="ocr_region: what was read")


class AskStep(BaseModel):
    """One node of the agent's graph (plan, retrieve, inspect, answer, self_check, finalize)."""

    node: str
    round: int = 0
    ms: float = 0.0
    decisions: list[str] = Field(default_factory=list)
    calls: list[AskCall] = Field(default_factory=list)


class Asker(Protocol):
    """Runs the agent for one principal. ``ask`` returns a JSON object with ``answer`` (the agent's
    answer, citations with image ids and boxes), ``pages`` (``image_id -> {width, height, file,
    page}`` of cited pages) and ``mode``; ``export`` renders an answer ``ask`` returned."""

    async def ask(
        self, question: str, filters: dict[str, Any], principal: Principal, on_step: Callable[[AskStep], None]
    ) -> dict[str, Any]: ...

    async def export(self, result: dict[str, Any], fmt: Literal["md", "pdf"], principal: Principal) -> bytes: ...
