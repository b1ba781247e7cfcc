"""The ``imgrag`` command line. Every user-caused error prints one line naming the problem and
the fix and exits 2; tracebacks are for bugs only (``IMGRAG_DEBUG=1`` shows them for errors too)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from indexing.errors import ImgragError

app = typer.Typer(
    name="imgrag",
    help="Multimodal RAG over image collections: index, search, ask, and serve over MCP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _console(stderr: bool = False) -> Console:
    """Tables piped into a log or CI (no terminal, no COLUMNS) get 160 columns instead of rich's 80,
    where every column name and number was wrapped beyond reading."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=160 if wide else None)


out = _console()
err = _console(stderr=True)


def _fail(e: Exception) -> NoReturn:
    if os.environ.get("IMGRAG_DEBUG"):
        raise e
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _runtime() -> Any:
    from indexing.runtime import Runtime

    return Runtime()


def _principal(as_user: str | None, groups: list[str] | None) -> Any:
    from indexing.config import get_settings
    from indexing.stores.base import OPERATOR, Principal

    s = get_settings()
    name = as_user or s.principal
    grp = groups or s.groups
    if name is None and not grp:
        return OPERATOR
    return Principal(name=name, groups=list(grp))


def _kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise ImgragError(f"{what} {p!r} is not key=value", f"write it like {what} year=2023")
        k, v = p.split("=", 1)
        result[k.strip()] = v.strip()
    return result


def parse_filters(pairs: list[str] | None) -> Any:
    """``--filter`` pairs → Filters. Known keys: date_from, date_to, year, quality, tag, path,
    doc, seal; anything else is a user metadata key."""
    from indexing.stores.base import Filters

    data: dict[str, Any] = {"meta": {}}
    for k, v in _kv(pairs, "--filter").items():
        try:
            if k in ("date_from", "date_to"):
                data[k] = date.fromisoformat(v)
            elif k == "year":
                y = int(v)
                data["date_from"], data["date_to"] = date(y, 1, 1), date(y, 12, 31)
            elif k == "quality":
                data["quality"] = [q.strip() for q in v.split(",")]
            elif k in ("tag", "tags"):
                data["tags"] = [t.strip() for t in v.split(",")]
            elif k == "path":
                data["path_prefix"] = str(Path(v).expanduser().resolve()) if not v.startswith("/") else v
            elif k == "doc":
                data["doc_id"] = v
            elif k == "seal":
                data["has_seal"] = v.lower() in ("1", "true", "yes")
            else:
                data["meta"][k] = v
        except ValueError as e:
            raise ImgragError(f"--filter {k}={v}: {e}", "dates are YYYY-MM-DD, year is a number") from e
    try:
        return Filters.model_validate(data)
    except Exception as e:
        raise ImgragError(f"bad --filter: {e}", "quality is one of born_digital, scanned, handwritten, photo") from e


AsUser = Annotated[str | None, typer.Option("--as", help="act as this principal (ACL); default IMGRAG_PRINCIPAL")]
Groups = Annotated[list[str] | None, typer.Option("--group", help="groups of the principal (repeatable)")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log to stderr")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from indexing.config import get_settings

    try:
        get_settings()  # a bad IMGRAG_* value: one line naming it, before any command starts
    except ImgragError as e:
        _fail(e)


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (recursive)")],
    meta: Annotated[list[str] | None, typer.Option("--meta", help="user metadata key=value (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag (repeatable)")] = None,
    acl: Annotated[list[str] | None, typer.Option("--acl", help="principal or group allowed to see these (repeatable); none = public. Re-indexing unchanged files with other --acl/--meta/--tag updates them in place; --acl '' makes them public")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, max=64, help="parallel page analysis")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=256)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="use this `imgrag align` adapter (image_embedder=aligned); an existing index is re-embedded from its stored features first")] = None,
) -> None:
    """Index images and PDFs; unchanged files are skipped, changed ones replaced."""
    from indexing.pipeline import Indexer, IndexOptions

    try:
        rt = _runtime() if adapter is None else _adapter_runtime(adapter, reembed=True, quiet=as_json)
        opts = IndexOptions(
            meta=None if meta is None else _kv([m for m in meta if m], "--meta"),
            tags=None if tag is None else [t for t in tag if t],
            acl=None if acl is None else [a for a in acl if a],
            workers=workers, batch_size=batch_size,
        )
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json or not err.is_terminal,
        ) as bar:
            task = bar.add_task("loading models", total=None)

            def progress(event: str, data: dict[str, Any]) -> None:
                if event == "start":
                    bar.update(task, description="indexing", total=data["files"], completed=0)
                elif event == "file":
                    bar.update(task, advance=1 if bar.tasks[0].completed or data else 0)
                elif event == "fail":
                    err.print(f"[yellow]skipped[/] {data['path']}: {data['reason']}", highlight=False, soft_wrap=True)

            summary = Indexer(rt).index([str(p) for p in paths], opts, progress)
    except ImgragError as e:
        _fail(e)
    if as_json:
        print(summary.model_dump_json(indent=2, exclude={"indexed_ids"}))
    else:
        out.print(
            f"indexed [bold]{summary.indexed}[/] pages · unchanged {summary.unchanged} · "
            f"duplicates {summary.duplicates} · replaced {summary.replaced} · "
            f"updated metadata {summary.updated_metadata} · failed {len(summary.failed)} "
            f"· {summary.seconds:.1f}s" + (f" · version {summary.version}" if summary.version else "")
        )
        for f in summary.failed:
            out.print(f"  [red]failed[/] {f.path}: {f.reason}", highlight=False, soft_wrap=True)
    if summary.failed and not (summary.indexed or summary.unchanged or summary.duplicates or summary.updated_metadata):
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="text query (Chinese or English)")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="number of hits")] = 10,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="key=value: year, date_from, date_to, quality, tag, path, doc, seal, or a metadata key")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid | vector | keyword")] = "hybrid",
    similar_to: Annotated[str | None, typer.Option("--like", help="image id: visually similar images")] = None,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="skip the region re-rank")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print {\"hits\": [...]} as JSON")] = False,
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Hybrid search: image-text vectors, BM25 and OCR-text vectors fused by RRF, re-ranked by region."""
    from indexing.search import Searcher, SearchRequest

    try:
        if mode not in ("hybrid", "vector", "keyword"):
            raise ImgragError(f"unknown --mode {mode!r}", "use hybrid, vector or keyword")
        rt = _runtime()
        req = SearchRequest(
            query=query, k=k, filters=parse_filters(filter_), mode=mode, similar_to=similar_to, rerank=not no_rerank  # type: ignore[arg-type]
        )
        result = Searcher(rt).search(req, _principal(as_user, group))
    except ImgragError as e:
        _fail(e)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    if not result.hits:
        out.print("no hits")
        return
    table = Table(show_lines=False, header_style="bold")
    for col in ("#", "score", "image id", "file", "page", "snippet", "region"):
        table.add_column(col, overflow="fold")
    for i, h in enumerate(result.hits, 1):
        region = ",".join(f"{v:.0f}" for v in h.region.bbox) if h.region else ""
        table.add_row(str(i), f"{h.score:.4f}", h.image_id, Path(h.path).name, str(h.page), h.snippet[:80], region)
    out.print(table)
    out.print(f"[dim]{result.candidates} candidates · {result.timings_ms.get('total', 0):.0f} ms[/]")


@app.command()
def show(
    image_id: Annotated[str, typer.Argument(help="image id")],
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Print an image's stored record (without vectors) as JSON."""
    from indexing.errors import NotFoundError

    try:
        rec = _runtime().store.get(image_id, _principal(as_user, group))
        if rec is None:
            raise NotFoundError(f"no image with id {image_id!r}", "find ids with `imgrag search ... --json`")
    except ImgragError as e:
        _fail(e)
    print(rec.model_dump_json(indent=2))


@app.command()
def delete(
    image_id: Annotated[list[str] | None, typer.Argument(help="image ids")] = None,
    path: Annotated[Path | None, typer.Option("--path", help="delete every page indexed from this file")] = None,
) -> None:
    """Soft-delete images (hidden at once; `imgrag purge` removes them, `imgrag rollback` restores)."""
    try:
        store = _runtime().store
        ids = list(image_id or [])
        if path is not None:
            ids.extend(store.live_ids_for_path(str(path.expanduser().resolve())))
        if not ids:
            raise ImgragError("nothing to delete", "name image ids or --path FILE")
        known = store.live_ids(ids)
        missing = [i for i in ids if i not in known]
        if missing and not known:
            raise ImgragError(f"no live image with id {', '.join(missing)}", "check the ids with `imgrag search`")
        n = store.soft_delete(sorted(known))
        v = store.commit("delete", {"deleted": n})
    except ImgragError as e:
        _fail(e)
    out.print(f"soft-deleted {n} image(s) · version {v.version}" + (f" · unknown: {', '.join(missing)}" if missing else ""))


@app.command()
def purge() -> None:
    """Physically remove soft-deleted images."""
    try:
        store = _runtime().store
        n = store.purge()
        v = store.commit("purge", {"purged": n}) if n else None
    except ImgragError as e:
        _fail(e)
    out.print(f"purged {n} image(s)" + (f" · version {v.version}" if v else ""))


@app.command()
def versions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the index versions (one per index/delete/purge/rollback)."""
    try:
        vs = _runtime().store.versions()
    except ImgragError as e:
        _fail(e)
    if as_json:
        print(json.dumps([json.loads(v.model_dump_json()) for v in vs], indent=2, ensure_ascii=False))
        return
    table = Table(header_style="bold")
    for col in ("version", "time", "operation", "summary"):
        table.add_column(col)
    for v in vs:
        table.add_row(str(v.version), v.time.strftime("%Y-%m-%d %H:%M:%S"), v.op, json.dumps(v.summary, ensure_ascii=False))
    out.print(table)


@app.command()
def rollback(version: Annotated[int, typer.Argument(help="version number from `imgrag versions`")]) -> None:
    """Restore the index to an earlier version (recorded as a new version, so it can be undone)."""
    try:
        v = _runtime().store.rollback(version)
    except ImgragError as e:
        _fail(e)
    out.print(f"restored version {version} · now version {v.version}")


@app.command()
def stats(as_user: AsUser = None, group: Groups = None) -> None:
    """Counts by quality class and format, the models and the current version."""
    try:
        st = _runtime().store.stats(_principal(as_user, group))
    except ImgragError as e:
        _fail(e)
    print(st.model_dump_json(indent=2))


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

    from agent.ask import ask as run_ask
    from agent.graph import AgentConfig, TraceEvent
    from agent.llm import LLMConfig

    try:
        if fmt not in ("text", "json", "markdown"):
            raise ImgragError(f"unknown --format {fmt!r}", "use text, json or markdown")
        if report is not None and report.suffix.lower() not in (".md", ".pdf"):
            raise ImgragError(f"--report {report} is neither .md nor .pdf", "name the report out.md or out.pdf")
        if token and not server:
            raise ImgragError("--token without --server", "pass --server http://HOST:PORT/mcp, or drop --token for the local stdio server")
        filters = parse_filters(filter_).model_dump(mode="json", exclude_defaults=True)
        config = AgentConfig(k=k, filters=filters)
        llm_config = None if no_llm else LLMConfig.from_env()
        server_obj = None
        if in_process:
            from mcp_server.auth import fixed_principal
            from mcp_server.server import build_server

            server_obj = build_server(_runtime(), fixed_principal(_principal(None, None)))

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
        _fail(e)
    from agent.report import checks_line, to_markdown, usage_line

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
        print(answer.answer)
        if answer.citations:
            print("\nCitations:")
            for n, c in enumerate(answer.citations, 1):
                box = "[" + ", ".join(f"{v:.0f}" for v in c.bbox) + "]" if c.bbox else "—"
                what = "seal bbox (seal detector)" if c.kind == "seal" else "bbox"
                print(f"  [{n}] {c.image_id} · {c.path} · page {c.page} · {what} {box}")
                print(f"      \u201c{c.snippet}\u201d" + (" (OCR line nearest the seal)" if c.kind == "seal" and c.snippet else ""))
        print(f"\n{answer.mode} · {checks_line(answer)}")
        print(usage_line(answer))
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
    if report is not None:
        err.print(f"report written to {report}", markup=False, highlight=False)


# -- image-text alignment (indexing/align.py) -----------------------------------------------


def _adapter_runtime(adapter: Path, *, reembed: bool, quiet: bool = False) -> Any:
    """A runtime whose image embedder is ``aligned`` with ``adapter``; with ``reembed``, an existing
    index built with another image space (same features) is re-embedded first."""
    from indexing.align import reembed_index
    from indexing.config import get_settings
    from indexing.runtime import Runtime

    s = get_settings().model_copy(update={"image_embedder": "aligned", "adapter": adapter.expanduser().resolve()})
    rt = Runtime(s)
    current = rt.store.spaces()
    if reembed and current is not None and current.image != rt.image_embedder.identity:
        if not quiet:
            err.print(f"re-embedding the index for adapter {adapter} (from stored features) …", highlight=False)
        summary = reembed_index(rt)
        if not quiet:
            err.print(f"re-embedded {summary.images} images · {summary.tiles_from_pixels} tiles from decoded pages"
                      f" · version {summary.version}", highlight=False)
    return rt


@app.command()
def align(
    out_dir: Annotated[Path, typer.Option("--out", help="adapter folder to write")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help='JSONL, one {"image": path, "caption": text or list, "caption_zh": optional text or list} per line')] = None,
    from_index: Annotated[bool, typer.Option("--from-index", help="captions from indexed records, features from the store (no decoding)")] = False,
    caption_field: Annotated[str, typer.Option("--caption-field", help="with --from-index: caption, ocr_text, tags, or a metadata key (meta.KEY; several captions as a|b)")] = "caption",
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=10_000, help="at most this many epochs (early stopping on validation MRR)")] = 120,
    seed: Annotated[int, typer.Option("--seed", help="seeds the split, the initialisation and the sampling")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.01, max=0.9, help="share of images held out for validation")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
) -> None:
    """Train image/text projection heads (InfoNCE) on your own captioned images; save an adapter.

    Prints validation Recall@1/5/10 and MRR before (the current image space) and after.
    Use it with `imgrag index --adapter DIR` or IMGRAG_IMAGE_EMBEDDER=aligned IMGRAG_ADAPTER=DIR."""
    from indexing.align import TrainConfig, format_metrics, pairs_from_index, pairs_from_jsonl
    from indexing.align import align as run_align

    try:
        if (pairs is None) == (not from_index):
            raise ImgragError("give either --pairs FILE or --from-index", "e.g. imgrag align --pairs pairs.jsonl --out my-adapter")
        rt = _runtime()
        say = (lambda m: None) if as_json else (lambda m: err.print(m, highlight=False))
        if pairs is not None:
            say(f"embedding the images of {pairs} …")
            data = pairs_from_jsonl(pairs.expanduser(), settings=rt.settings)
        else:
            data = pairs_from_index(rt, caption_field)
        say(f"{len(data.keys)} images, {sum(map(len, data.captions))} captions")
        adapter, metrics = run_align(data, rt.text_embedder, out_dir.expanduser(),
                                     cfg=TrainConfig(epochs=epochs, seed=seed, val_fraction=val_fraction), log_fn=say)
    except ImgragError as e:
        _fail(e)
    if as_json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2, ensure_ascii=False))
        return
    out.print("\n".join(format_metrics(metrics)), highlight=False)
    out.print(f"saved adapter {adapter.identity} to {out_dir} (best epoch {metrics['best_epoch']}, τ {metrics['tau']:.4f})",
              highlight=False)


@app.command()
def reembed(
    adapter: Annotated[Path, typer.Option("--adapter", help="adapter folder written by `imgrag align`")],
) -> None:
    """Switch the index to another adapter using the stored features (no image is decoded for whole-image vectors)."""
    try:
        rt = _adapter_runtime(adapter, reembed=False)
        from indexing.align import reembed_index

        summary = reembed_index(rt)
    except ImgragError as e:
        _fail(e)
    if summary.version is None:
        out.print(f"already embedded with {summary.new_image_space}")
    else:
        out.print(f"re-embedded {summary.images} images · {summary.tiles_from_pixels} tiles from decoded pages · "
                  f"version {summary.version}")


# -- evaluation ------------------------------------------------------------------------------
eval_app = typer.Typer(help="Measure retrieval, answers and latency on golden sets (see README: Evaluation).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

SetOpt = Annotated[str, typer.Option("--set", help="standard set (contracts, docqa, clipart) or a JSONL golden file")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help="lancedb | elasticsearch (default: IMGRAG_BACKEND)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="folder for the JSON results and PNG charts [default: ~/.cache/imgrag/eval/results]")]
FolderOpt = Annotated[Path | None, typer.Option("--folder", help="PATH sets: the indexed folder the golden file names refer to (also limits the search to it)")]


@eval_app.command("retrieval")
def eval_retrieval(
    set_: SetOpt,
    backend: BackendOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="ranked list length written by --run-out")] = 10,
    out_dir: OutOpt = None,
    run_out: Annotated[Path | None, typer.Option("--run-out", help='write one JSON line per query: id and ranked (file names, best first; hybrid + re-rank)')] = None,
    folder: FolderOpt = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="also score hybrid + re-rank at other settings, e.g. 'image=0,0.5,1;bm25=1,2'")] = None,
) -> None:
    """Recall@1/5/10, MRR@10, nDCG@10 and latency for every route configuration, in one run."""
    from evals.runner import run_retrieval

    try:
        run_retrieval(set_, backend=backend, k=k, out=out_dir, run_out=run_out, folder=folder, sweep=sweep, console=out)
    except ImgragError as e:
        _fail(e)


@eval_app.command("answers")
def eval_answers(
    set_: SetOpt,
    backend: BackendOpt = None,
    out_dir: OutOpt = None,
    run_out: Annotated[Path | None, typer.Option("--run-out", help='write one JSON line per question: id, answer and citations (image, snippet)')] = None,
    folder: FolderOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="ask at most this many questions, balanced over kinds (0: all)")] = 0,
) -> None:
    """Answer accuracy, citation precision/recall, snippet grounding, seal IoU and latency of the agent."""
    from evals.runner import run_answers

    try:
        run_answers(set_, backend=backend, out=out_dir, run_out=run_out, folder=folder, limit=limit or None, console=out)
    except ImgragError as e:
        _fail(e)


@eval_app.command("tune")
def eval_tune(
    set_: Annotated[list[str] | None, typer.Option("--set", help="standard set(s) to tune on (repeatable; default: all three)")] = None,
    backend: BackendOpt = None,
    grid: Annotated[str | None, typer.Option("--grid", help="settings to try, e.g. 'image=0,0.25;bm25=1,2;rerank=0.3,0.6' (keys: image, bm25, text_vector, region, rerank, rrf_k, standout)")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="rows to print")] = 15,
    folder: FolderOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """Grid-search the fusion weights: each query is recalled once, every setting re-ranks it; dev/test halves."""
    from evals.runner import run_tune

    try:
        run_tune(set_, backend=backend, grid=grid, top=top, folder=folder, out=out_dir, console=out)
    except ImgragError as e:
        _fail(e)


@eval_app.command("embeddings")
def eval_embeddings(
    adapter: Annotated[list[Path] | None, typer.Option("--adapter", help="adapter folder(s) to compare (repeatable)")] = None,
    clip_model: Annotated[str | None, typer.Option("--clip-model", help="also a CLIP model folder or cached name")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the rows as JSON")] = None,
) -> None:
    """bridge vs aligned vs clip: text → image R@1/5/10 and MRR on held-out openclipart and scikit-image photos, EN + ZH."""
    from evals.embeddings import compare, format_table

    try:
        rows = compare(adapter or [], clip_model, log=lambda m: err.print(m, highlight=False))
    except ImgragError as e:
        _fail(e)
    print(format_table(rows))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=2, ensure_ascii=False))


@eval_app.command("all")
def eval_all(
    backend: BackendOpt = None,
    out_dir: OutOpt = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="weight sweep for the retrieval runs, as in `eval retrieval`")] = None,
    answers_limit: Annotated[int | None, typer.Option("--answers-limit", min=0, help="questions asked per set (default 60 contracts, 30 docqa; 0: all)")] = None,
) -> None:
    """Build (once) and index the standard sets, then run retrieval and answers on all of them."""
    from evals.runner import run_all

    try:
        run_all(backend=backend, out=out_dir, sweep=sweep, answers_limit=answers_limit, console=out)
    except ImgragError as e:
        _fail(e)


@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="serve streamable HTTP instead of stdio")] = False,
    host: Annotated[str, typer.Option("--host", help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 8765,
    tokens: Annotated[Path | None, typer.Option("--tokens", envvar="IMGRAG_TOKENS_FILE", help="HTTP: JSON file mapping bearer tokens to principals (required with --http)")] = None,
    allow_write: Annotated[bool, typer.Option("--allow-write", help="add the index_images and delete_image tools")] = False,
    index_root: Annotated[list[Path] | None, typer.Option("--index-root", help="folders index_images may read (repeatable); HTTP default: the current folder")] = None,
    warm_up: Annotated[bool, typer.Option("--warm-up/--no-warm-up", help="load the models in the background right after start")] = True,
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Serve the index over MCP: stdio (Claude Desktop) or streamable HTTP with bearer tokens."""
    try:
        from mcp_server.auth import TokenFileVerifier, bearer_principal, fixed_principal
        from mcp_server.server import build_server, serve_http, serve_stdio, start_warm_up

        rt = _runtime()
        roots = [p.expanduser().resolve() for p in index_root] if index_root else None
        if http:
            if tokens is None:
                raise ImgragError("--http needs bearer tokens", "pass --tokens tokens.json (or set IMGRAG_TOKENS_FILE): {\"<token>\": {\"name\": \"alice\", \"groups\": [\"legal\"]}}")
            if as_user or group:
                raise ImgragError("--as/--group only apply to stdio", "over HTTP each bearer token names its principal in the token file")
            verifier = TokenFileVerifier(tokens.expanduser())
            if allow_write and roots is None:
                roots = [Path.cwd().resolve()]
            mcp = build_server(
                rt, bearer_principal, allow_write=allow_write, index_roots=roots,
                token_verifier=verifier, server_url=f"http://{host}:{port}",
            )
            err.print(f"imgrag MCP server on http://{host}:{port}/mcp (bearer tokens from {tokens})", highlight=False)
        else:
            mcp = build_server(rt, fixed_principal(_principal(as_user, group)), allow_write=allow_write, index_roots=roots)
        if warm_up:
            start_warm_up(mcp.service)  # type: ignore[attr-defined]
        if http:
            serve_http(mcp, host, port)
        else:
            serve_stdio(mcp)
    except ImgragError as e:
        _fail(e)
    except KeyboardInterrupt:
        pass

if __name__ == "__main__":
    app()
