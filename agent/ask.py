"""What ``imgrag ask`` does, as one async function: open an MCP session (stdio subprocess, HTTP, or
an in-process server object), set up the LLM if one is configured, run the graph, write the report
while the session is still open (the report's crops come from ``crop_region``), close everything."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from imgrag.indexing.errors import ImgragError

from .graph import AgentConfig, TraceEvent, run_agent
from .llm import LLMClient, LLMConfig
from .mcp_client import ToolClient
from .schemas import Answer, Usage


@contextlib.asynccontextmanager
async def open_tools(
    server: str | None = None, token: str | None = None, in_process: Any = None, usage: Usage | None = None
) -> AsyncIterator[ToolClient]:
    """The MCP session: ``in_process`` (a server object) > ``server`` URL (HTTP) > stdio subprocess."""
    if in_process is not None:
        async with ToolClient.in_memory(in_process, usage) as tools:
            yield tools
    elif server:
        async with ToolClient.http(server, token, usage) as tools:
            yield tools
    else:
        async with ToolClient.stdio(usage=usage) as tools:
            yield tools


async def ask(
    question: str,
    *,
    config: AgentConfig | None = None,
    llm_config: LLMConfig | None = None,
    server: str | None = None,
    token: str | None = None,
    in_process: Any = None,
    report: Path | None = None,
    tracer: Callable[[TraceEvent], None] | None = None,
) -> tuple[Answer, list[str], dict[str, list[float]]]:
    """Answer ``question``; returns the answer, report notes and per-tool call latencies (ms)."""
    usage = Usage()
    llm = LLMClient(llm_config, usage) if llm_config is not None else None
    notes: list[str] = []
    try:
        async with open_tools(server, token, in_process, usage) as tools:
            answer, _agent = await run_agent(question, tools, llm, config, tracer)
            if report is not None:
                from .report import write_report

                notes = await write_report(tools, answer, report)
            timings = dict(tools.timings_ms)
    except BaseExceptionGroup as eg:  # anyio task groups wrap what the session raised
        raise unwrap(eg) from eg
    finally:
        if llm is not None:
            await llm.close()
    return answer, notes, timings


def unwrap(e: BaseException) -> BaseException:
    """The first ImgragError inside nested exception groups, else the first leaf exception."""
    stack = [e]
    leaves: list[BaseException] = []
    while stack:
        x = stack.pop(0)
        if isinstance(x, ImgragError):
            return x
        subs = getattr(x, "exceptions", None)
        if subs:
            stack.extend(subs)
        else:
            leaves.append(x)
    return leaves[0] if leaves else e
