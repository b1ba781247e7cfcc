"""`imgrag audit`: read the audit log — who saw an image, what a principal did.

For the local operator only: it reads the log directly (``IMGRAG_HOME/audit`` or the
``<prefix>-audit`` index); no MCP tool exposes it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imgrag.indexing.errors import ImgragError

from .common import app, err, fail, out


@app.command()
def audit(
    principal: Annotated[str | None, typer.Option("--principal", help="records of this principal (a token's name, `operator`, `anonymous`)")] = None,
    image: Annotated[str | None, typer.Option("--image", help="records that returned or changed this image id: who saw it")] = None,
    since: Annotated[str | None, typer.Option("--since", help="from this ISO date / date-time (local time unless it has a zone), or this long ago: 7d, 12h, 30m")] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="records of this tool, resource (image, thumbnail, collection) or write (index, delete, purge, rollback, reembed)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="show the newest N matching records")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the records as a JSON list")] = False,
) -> None:
    """Read the audit log: every MCP call, rejected request and write, oldest first."""
    from imgrag.indexing.audit import AuditQuery, open_audit, parse_since
    from imgrag.indexing.config import get_settings
    from imgrag.indexing.loader import shown_path

    try:
        q = AuditQuery(principal=principal, image_id=image, since=parse_since(since) if since else None, name=tool, limit=limit)
        log = open_audit(get_settings(), reading=True)
        try:
            page = log.query(q)
        finally:
            log.close()
    except ImgragError as e:
        fail(e)
    for problem in page.problems:
        err.print(f"[yellow]warning:[/] {escape(log.where)}: {escape(problem)}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps([r.model_dump(mode="json", exclude_none=True) for r in page.records], indent=2, ensure_ascii=False))
        return
    if not page.records:
        out.print(f"no audit records match (log: {log.where})", highlight=False)
        return
    table = Table(header_style="bold")
    for col in ("time (UTC)", "principal", "via", "call", "outcome", "images", "ms"):
        table.add_column(col, overflow="fold")
    for r in page.records:
        ids = ", ".join(r.image_ids[:3]) + (f" +{len(r.image_ids) - 3 + r.ids_omitted}" if len(r.image_ids) > 3 or r.ids_omitted else "")
        outcome = r.outcome + (f" ({r.error})" if r.error else "") + (f" ×{r.count}" if r.count > 1 else "")
        via = r.transport + (f" {r.client}" if r.client else "")
        table.add_row(  # Text, never markup: principals, client names and tool names come from callers
            *(Text(shown_path(c)) for c in (r.time.strftime("%Y-%m-%d %H:%M:%S"), r.principal or "-", via, f"{r.event} {r.name}", outcome, ids,
                                "" if r.latency_ms is None else f"{r.latency_ms:.0f}")),
        )
    out.print(table)
