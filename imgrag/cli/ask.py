"""`imgrag ask`: the bundled agent, over a stdio, HTTP or in-process MCP session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from imgrag.indexing.errors import ImgragError

from .common import app, err, facade, fail, parse_filters, principal



@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, Chinese or English")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="hits kept per sub-question")] = 5,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="key=value, as for `imgrag search` (repeatable)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json | markdown")] = "text",
    report: Annotated[Path | None, typer.Option("--report", help="also write a report: out.md (Markdown tables) or out.pdf (with the cited crops)")] = None,
    trace: Annotated[bool, typer.Option("--trace", help="print each node's decisions and timings to stderr")] = False,
    server: Annotated[str | None, typer.Option("--server", help="URL of a running `imgrag serve --http` (default: start `imgrag serve` over stdio)")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="IMGRAG_TOKEN", help="bearer token for --server")] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="extractive answer even when an LLM is configured")] = False,
    in_process: Annotated[bool, typer.Option("--in-process", help="run the MCP server inside this process instead of a subprocess")] = False,
) -> None:
    """Answer a question with checked citations: plan, search, crop and re-read, answer, self-check.

    Uses the LLM at OPENAI_BASE_URL / IMGRAG_LLM_MODEL when set, else answers extractively."""
    import asyncio

    from imgrag.agent.ask import ask as run_ask
    from imgrag.agent.graph import AgentConfig, TraceEvent
    from imgrag.agent.llm import LLMConfig

    try:
        if fmt not in ("text", "json", "markdown"):
            raise ImgragError(f"unknown --format {fmt!r}", "use text, json or markdown")
        if report is not None and report.suffix.lower() not in (".md", ".pdf"):
            raise ImgragError(f"--report {report} is neither .md nor .pdf", "name the report out.md or out.pdf")
        if token and not server:
            raise ImgragError("--token without --server", "pass --server http://HOST:PORT/mcp, or drop --token for the local stdio server")
        filters = parse_filters(filter_).model_dump(mode="json", exclude_defaults=True)
        config = AgentConfig(k=k, filters=filters)
        llm_config = None if no_llm else LLMConfig.from_settings()
        server_obj = None
        if in_process:
            from imgrag.mcp_server.auth import fixed_principal
            from imgrag.mcp_server.server import build_server

            server_obj = build_server(facade(), fixed_principal(principal(None, None)))

        def tracer(ev: TraceEvent) -> None:
            err.print(f"[trace] {ev.node} · round {ev.round} · {ev.ms:.0f} ms", markup=False, highlight=False)
            for d in ev.decisions:
                err.print(f"          {d}", markup=False, highlight=False, soft_wrap=True)

        answer, notes, tool_ms = asyncio.run(
            run_ask(
                question, config=config, llm_config=llm_config, server=server, token=token,
                in_process=server_obj, report=report, tracer=tracer if trace else None,
            )
        )
    except ImgragError as e:
        fail(e)
    from imgrag.agent.report import checks_line, to_markdown, usage_line

    if trace:
        nodes = ", ".join(f"{n} {v:.0f} ms" for n, v in answer.timings_ms.items())
        err.print(f"[trace] node totals: {nodes}", markup=False, highlight=False)
        tools_ms = ", ".join(f"{t} {len(v)}× {sum(v) / len(v):.0f} ms avg" for t, v in sorted(tool_ms.items()) if v)
        err.print(f"[trace] tool calls: {tools_ms}", markup=False, highlight=False)
    if fmt == "json":
        print(json.dumps(answer.public(), ensure_ascii=False, indent=2))
    elif fmt == "markdown":
        print(to_markdown(answer))
    else:
        from imgrag.indexing.loader import shown_path

        print(answer.answer)
        if answer.citations:
            print("\nCitations:")
            for n, c in enumerate(answer.citations, 1):
                box = "[" + ", ".join(f"{v:.0f}" for v in c.bbox) + "]" if c.bbox else "—"
                what = "seal bbox (seal detector)" if c.kind == "seal" else "bbox"
                # a file name's newlines and escape sequences print as text (as in imgrag search), so
                # a citation stays one line and nothing reaches the terminal
                print(f"  [{n}] {c.image_id} · {shown_path(c.path)} · page {c.page} · {what} {box}")
                print(f"      \u201c{shown_path(c.snippet)}\u201d" + (" (OCR line nearest the seal)" if c.kind == "seal" and c.snippet else "")
                      + (f" (linked to [{linked_ref(answer, c)}]: {shown_path(c.why)})" if c.kind == "linked" else ""))
        print(f"\n{answer.mode} · {checks_line(answer)}")
        print(usage_line(answer))
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
    if report is not None:
        err.print(f"report written to {report}", markup=False, highlight=False)


def linked_ref(answer: Any, c: Any) -> str:
    """The number of the citation a linked one belongs to (the quoted page it is linked to)."""
    return next((str(n) for n, x in enumerate(answer.citations, 1) if x.image_id == c.linked_to and x.kind != "linked"), "?")
