"""Reading the index: search and show."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imgrag.indexing.errors import ImgragError

from .common import AsUser, Groups, app, facade, fail, out, parse_filters, principal



@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="text query (Chinese or English)")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="number of hits")] = 10,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="key=value: year, date_from, date_to, quality, tag, path, doc, seal, pii (true/false), or a metadata key")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid | vector | keyword")] = "hybrid",
    similar_to: Annotated[str | None, typer.Option("--like", help="image id: visually similar images")] = None,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="skip the region re-rank")] = False,
    no_links: Annotated[bool, typer.Option("--no-links", help="do not rank pages linked to a hit with it (an X-ray's report, a photo's SOP); hits still list their links")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"hits\": [...]} as JSON")] = False,
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Hybrid search: image-text vectors, BM25 and OCR-text vectors fused by RRF, re-ranked by region."""
    from imgrag.indexing.search import SearchRequest

    try:
        if mode not in ("hybrid", "vector", "keyword"):
            raise ImgragError(f"unknown --mode {mode!r}", "use hybrid, vector or keyword")
        req = SearchRequest(
            query=query, k=k, filters=parse_filters(filter_), mode=mode, similar_to=similar_to, rerank=not no_rerank,  # type: ignore[arg-type]
            follow_links=not no_links,
        )
        result = facade().search(req, principal(as_user, group))
    except ImgragError as e:
        fail(e)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    if result.note:
        out.print(f"note: {result.note}", markup=False)
    if not result.hits:
        out.print("no hits")
        return
    from rich.text import Text

    from imgrag.indexing.loader import shown_path

    table = Table(show_lines=False, header_style="bold")
    linked = any(h.links for h in result.hits)
    for col in ("#", "score", "image id", "file", "page", "snippet", "region", *(["linked"] if linked else [])):
        table.add_column(col, overflow="fold")
    for i, h in enumerate(result.hits, 1):
        region = ",".join(f"{v:.0f}" for v in h.region.bbox) if h.region else ""
        links = "; ".join(f"{shown_path(ln.file)} ({shown_path(ln.why)})" for ln in h.links[:3]) + (f"; +{len(h.links) - 3}" if len(h.links) > 3 else "")
        # a name's escape sequences and newlines print as text, not to the terminal; names, snippets
        # and links are Text, never markup: a page reading "[/b]" crashed the table (MarkupError),
        # a file named "[bold]x.png" showed as a bold "x.png"
        cells = (h.image_id, shown_path(Path(h.path).name), str(h.page), h.snippet[:80], region, *([links] if linked else []))
        table.add_row(str(i), f"{h.score:.4f}", *(Text(c) for c in cells))
    out.print(table)
    out.print(f"[dim]{result.candidates} candidates · {result.timings_ms.get('total', 0):.0f} ms[/]")


@app.command()
def show(
    image_id: Annotated[str, typer.Argument(help="image id")],
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Print an image's stored record (without vectors) as JSON; personal data masked for a principal
    other than the operator, links only to pages that principal may read."""
    try:
        rec = facade().record_for(image_id, principal(as_user, group))
    except ImgragError as e:
        fail(e)
    print(rec.model_dump_json(indent=2))

