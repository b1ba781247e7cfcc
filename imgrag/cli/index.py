"""Commands that change or inspect the index as a whole: index, delete, purge, versions, rollback, stats."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from imgrag.indexing.errors import ImgragError

from .common import AsUser, Groups, app, err, facade, fail, kv, out, principal


@contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, ``docker stop``, systemd) stops a write like Ctrl-C: the batch in flight
    is written and the run's pages are recorded as its version, instead of the process dying where
    it stands and the next command recording them as ``recovered``."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)



@app.command()
def index(
    paths: Annotated[list[str], typer.Argument(help="files or folders (recursive)")],  # str: Path("") would be "."
    meta: Annotated[list[str] | None, typer.Option("--meta", help="user metadata key=value (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag (repeatable)")] = None,
    acl: Annotated[list[str] | None, typer.Option("--acl", help="principal or group allowed to see these (repeatable). None: new pages are visible to operators only (default deny). Re-indexing unchanged files with other --acl/--meta/--tag/--public updates them in place")] = None,
    public: Annotated[bool, typer.Option("--public", help="every principal may see these (an empty ACL; the same as --acl '')")] = False,
    link: Annotated[str | None, typer.Option("--link", help="link these files as one case (an X-ray with its report, a photo with its SOP): the same as --meta case=CASE")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, max=64, help="parallel page analysis")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=256)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="use this `imgrag align` adapter (image_embedder=aligned); an existing index is re-embedded from its stored features first")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="after indexing, soft-delete the pages of files that are gone from the named folders (as `imgrag delete` does: `imgrag rollback` restores them). A folder that is missing, empty or not fully listable is left alone")] = False,
) -> None:
    """Index images and PDFs; unchanged files are skipped, changed ones replaced."""
    from imgrag.indexing.loader import shown_path
    from imgrag.indexing.pipeline import IndexOptions

    from .align import adapter_facade

    try:
        ig = facade() if adapter is None else adapter_facade(adapter, reembed=True, quiet=as_json)
        user_meta = None if meta is None else kv([m for m in meta if m], "--meta")
        if link is not None:
            if not link.strip():
                raise ImgragError("--link needs a case name", "write it like --link patient-17 or --link lot-2024-0412")
            user_meta = {**(user_meta or {}), "case": link.strip()}
        if public and any(acl or []):
            raise ImgragError("--public and --acl contradict each other", "give --public for everyone, or --acl for the principals and groups who may see them")
        opts = IndexOptions(
            meta=user_meta,
            tags=None if tag is None else [t for t in tag if t],
            acl=[] if public else None if acl is None else [a for a in acl if a],
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
            written = 0

            def progress(event: str, data: dict[str, Any]) -> None:
                nonlocal written
                if event == "written":
                    written += int(data.get("count", 0))
                elif event == "start":
                    bar.update(task, description="indexing", total=data["files"], completed=0)
                elif event == "file":
                    bar.update(task, advance=1 if bar.tasks[0].completed or data else 0)
                elif event == "fail":
                    err.print(f"[yellow]skipped[/] {escape(data['path'])}: {escape(data['reason'])}", highlight=False, soft_wrap=True)

            try:
                with _sigterm_stops_like_ctrl_c():
                    summary = ig.index(list(paths), opts, progress)
            except KeyboardInterrupt:  # the pipeline wrote the batch in flight and recorded a version first
                bar.stop()
                err.print(f"interrupted: the {written} page(s) written before the stop stay indexed"
                          + (" (recorded as a version: `imgrag versions`)" if written else "")
                          + " — run the same command again to index the rest (it skips what is indexed)",
                          highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None
        pruned = None
        if prune:
            pruned = ig.prune(list(paths))
            for r in pruned.refused:
                err.print(f"[yellow]not pruned[/] {escape(r.folder)}: {escape(r.reason)}", highlight=False, soft_wrap=True)
            for p, n in pruned.files.items():
                err.print(f"[yellow]pruned[/] {escape(shown_path(p))}: the file is gone ({n} page(s))", highlight=False, soft_wrap=True)
    except ImgragError as e:
        fail(e)
    if as_json and pruned is None:
        print(summary.model_dump_json(indent=2, exclude={"indexed_ids", "updated_ids"}))
    elif as_json:
        doc = json.loads(summary.model_dump_json(exclude={"indexed_ids", "updated_ids"}))
        doc["pruned"] = json.loads(pruned.model_dump_json())  # type: ignore[union-attr]
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        out.print(
            f"indexed [bold]{summary.indexed}[/] pages · unchanged {summary.unchanged} · "
            f"duplicates {summary.duplicates} · replaced {summary.replaced} · "
            f"updated metadata {summary.updated_metadata} · linked {summary.linked} · failed {len(summary.failed)} "
            + (f"· pruned {len(pruned.files)} " if pruned is not None else "")
            + f"· {summary.seconds:.1f}s" + (f" · version {summary.version}" if summary.version else "")
            + (f" · prune version {pruned.version}" if pruned is not None and pruned.version else "")
        )
    if acl is None and not public and summary.indexed and not as_json:
        err.print("new pages are visible to operators only; give --acl NAME or --public to share them with token holders", style="dim")
    # each failure was printed once on stderr as it happened ("skipped PATH: reason — hint")
    if summary.failed and not (summary.indexed or summary.unchanged or summary.duplicates or summary.updated_metadata):
        raise typer.Exit(2)  # nothing could be indexed: a user error, like every other (docs/robustness.md)



@app.command()
def delete(
    image_id: Annotated[list[str] | None, typer.Argument(help="image ids")] = None,
    path: Annotated[Path | None, typer.Option("--path", help="delete every page indexed from this file")] = None,
) -> None:
    """Soft-delete images (hidden at once; `imgrag purge` removes them, `imgrag rollback` restores)."""
    try:
        ig = facade()
        ids = list(image_id or [])
        if path is not None:
            ids.extend(ig.ids_for_path(path))
        if not ids:
            raise ImgragError("nothing to delete", "name image ids or --path FILE")
        d = ig.delete(ids)
        if not d.deleted:
            raise ImgragError(f"no live image with id {', '.join(d.unknown)}", "check the ids with `imgrag search`")
    except ImgragError as e:
        fail(e)
    out.print(f"soft-deleted {len(d.deleted)} image(s) · version {d.version}" + (f" · unknown: {', '.join(d.unknown)}" if d.unknown else ""))


@app.command()
def purge() -> None:
    """Physically remove soft-deleted images."""
    try:
        n, version = facade().purge()
    except ImgragError as e:
        fail(e)
    out.print(f"purged {n} image(s)" + (f" · version {version}" if version else ""))


@app.command()
def versions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the index versions (one per index/delete/purge/rollback)."""
    try:
        vs = facade().versions()
    except ImgragError as e:
        fail(e)
    if as_json:
        print(json.dumps([json.loads(v.model_dump_json()) for v in vs], indent=2, ensure_ascii=False))
        return
    table = Table(header_style="bold")
    for col in ("version", "time", "operation", "summary"):
        table.add_column(col)
    for v in vs:
        table.add_row(str(v.version), v.time.strftime("%Y-%m-%d %H:%M:%S"), v.op, Text(json.dumps(v.summary, ensure_ascii=False)))
    out.print(table)


@app.command()
def rollback(version: Annotated[int, typer.Argument(help="version number from `imgrag versions`")]) -> None:
    """Restore the index to an earlier version (recorded as a new version, so it can be undone)."""
    try:
        v = facade().rollback(version)
    except ImgragError as e:
        fail(e)
    out.print(f"restored version {version} · now version {v.version}")


@app.command()
def stats(as_user: AsUser = None, group: Groups = None) -> None:
    """Counts by quality class and format, pages with personal data by kind, the models and the current version."""
    try:
        st = facade().stats(principal(as_user, group))
    except ImgragError as e:
        fail(e)
    print(st.model_dump_json(indent=2))

