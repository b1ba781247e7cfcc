"""The ``imgrag ask`` agent as a LangGraph state machine.

    plan → retrieve → inspect → answer → self_check ─┬─ retry ─→ retrieve (with feedback)
                                                      └─ finalize → END

Why each step exists: *plan* splits the question so each part gets its own search (and a year in
the question becomes a date filter instead of noise in the query); *retrieve* searches each part
and fuses the queries' rankings; *inspect* zooms in — it crops the best regions and re-reads them
with ``ocr_region`` at a higher scale, because page-level OCR misses small print, and asks a vision
model about the crop when one is configured; *answer* writes claims that cite image ids and verbatim
OCR snippets (an LLM, or the extractive answerer that quotes the best lines); *self_check* refuses
anything it cannot verify — a cited image that was not inspected in this run, a snippet that is not
in that image's OCR text, a claim an LLM judges unsupported — and sends the failing parts back to
retrieve once more with feedback, dropping them if they still fail.

The nodes live in :mod:`agent.nodes`; everything a run learns is in its :class:`AgentState`, and
what it calls out to (the MCP tools, the LLM, the knobs, the tracer, the clock) is the
:class:`Deps` given to LangGraph as the run context. The agent sees the index only through MCP tools
(:class:`agent.mcp_client.ToolClient`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from imgrag.indexing.errors import ImgragError

from . import nodes
from .evidence import ImageInfo
from .llm import LLMClient
from .schemas import Answer
from .state import (
    AgentConfig,
    AgentState,
    Crop,
    Deps,
    Note,
    Tools,
    TraceEvent,
    initial_state,
    log,
)

__all__ = ["AgentConfig", "AgentRun", "AgentState", "Deps", "TraceEvent", "build_graph", "run_agent"]

Node = Callable[[AgentState, Deps, Note], Awaitable[dict[str, Any]]]
NODES: tuple[tuple[str, Node], ...] = (
    ("plan", nodes.plan),
    ("retrieve", nodes.retrieve),
    ("inspect", nodes.inspect),
    ("answer", nodes.answer),
    ("self_check", nodes.self_check),
    ("finalize", nodes.finalize),
)


def traced(name: str, fn: Node) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The node as LangGraph calls it: deps from the run context, its decisions and time added to
    the state's trace and timings, and handed to the tracer."""
    from langgraph.runtime import Runtime

    async def node(state: AgentState, runtime: Runtime[Deps]) -> dict[str, Any]:
        deps = runtime.context
        decisions: list[str] = []

        def note(msg: str) -> None:
            decisions.append(msg)
            log.debug(msg)

        t = deps.clock()
        update = await fn(state, deps, note)
        ms = round((deps.clock() - t) * 1000, 1)
        timings = dict(state.get("timings_ms", {}))
        timings[name] = round(timings.get(name, 0.0) + ms, 1)
        ev = TraceEvent(node=name, round=state.get("round", 0), ms=ms, decisions=decisions)
        if deps.tracer is not None:
            deps.tracer(ev)
        return {**update, "trace": [ev], "timings_ms": timings}

    node.__name__ = name
    return node


@cache
def build_graph() -> Any:
    """The compiled graph; it holds no run and no deps, so one serves every run."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(AgentState, context_schema=Deps)
    for name, fn in NODES:
        g.add_node(name, traced(name, fn))
    g.add_edge(START, "plan")
    g.add_edge("plan", "retrieve")
    g.add_edge("retrieve", "inspect")
    g.add_edge("inspect", "answer")
    g.add_edge("answer", "self_check")
    g.add_conditional_edges("self_check", lambda s: s["verdict"], {"retry": "retrieve", "finalize": "finalize"})
    g.add_edge("finalize", END)
    return g.compile()


@dataclass(frozen=True)
class AgentRun:
    """A finished run: its final state, with the parts callers read most."""

    state: AgentState

    @property
    def trace(self) -> list[TraceEvent]:
        return self.state.get("trace", [])

    @property
    def images(self) -> dict[str, ImageInfo]:
        return self.state.get("images", {})

    @property
    def inspected(self) -> set[str]:
        return self.state.get("inspected", set())

    @property
    def crops(self) -> dict[str, Crop]:
        return self.state.get("crops", {})


async def run_agent(
    question: str,
    tools: Tools,
    llm: LLMClient | None = None,
    config: AgentConfig | None = None,
    tracer: Callable[[TraceEvent], None] | None = None,
) -> tuple[Answer, AgentRun]:
    """Ask once; returns the answer (with node timings and usage filled in) and the run (trace,
    images, crops). The LLM's token counts go to the tool client's usage, so one record sums both."""
    question = question.strip()
    if not question:
        raise ImgragError("empty question", "ask something, e.g. imgrag ask \"甲方是谁\"")
    if llm is not None:
        llm.usage = tools.usage
    deps = Deps(tools=tools, llm=llm, config=config or AgentConfig(), tracer=tracer)
    limit = 6 * (deps.config.max_retries + 2)
    state: AgentState = await build_graph().ainvoke(initial_state(question), {"recursion_limit": limit}, context=deps)
    answer = state["result"]
    answer.timings_ms = dict(state.get("timings_ms", {}))
    answer.usage = tools.usage
    return answer, AgentRun(state)
