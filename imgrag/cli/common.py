"""What every command shares: the Typer app, consoles, the one-line error exit, the acting
principal and the ``--filter`` parser. Every user-caused error prints one line naming the problem
and the fix and exits 2; tracebacks are for bugs only (``IMGRAG_DEBUG=1`` shows them for errors too)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from imgrag.indexing.errors import ImgragError


class OneLineErrors(TyperGroup):
    """Usage errors of every command (a bad ``-k``, ``--workers 0``, ``rollback abc``, an unknown
    option) print one line naming the problem and where to look, and exit 2, like every other error
    a user can cause; click's usage box is for nobody's terminal log."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as e:  # typer's own click: UsageError, BadParameter, NoSuchOption, ...
            code = int(getattr(e, "exit_code", 2))
            if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed already
                sys.exit(code)
            ctx = getattr(e, "ctx", None)
            where = f" — see `{ctx.command_path} --help`" if ctx is not None else ""
            message = " ".join(str(getattr(e, "format_message", e.__str__)()).split())
            err.print(f"[bold red]error:[/] {escape(message + where)}", highlight=False, soft_wrap=True)
            sys.exit(code)
        except typer.Abort:
            err.print("[bold red]aborted[/]", highlight=False)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        # typer turns a KeyboardInterrupt into a silent exit 130 (its main catches it before ours):
        # a long command stopped by Ctrl-C (or SIGTERM where a command treats it so) says in one
        # line what it left behind. `imgrag index` prints its own line (pages kept) before this.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            command = ctx.invoked_subcommand or ""
            err.print(f"interrupted: {INTERRUPTED.get(command, 'imgrag ' + command + ' stopped before it finished')}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as e:
            # A full disk is the machine's state, not a bug: one line, not LanceDB's chained traceback
            # (a real 40 MB tmpfs as IMGRAG_HOME: `imgrag index` ended in three RuntimeErrors).
            full = _disk_full(e)
            if full is None:
                raise
            fail(full)


# What an interrupted command leaves behind, by command (see docs/robustness.md); the others only read.
INTERRUPTED: dict[str, str] = {
    "eval": "imgrag eval stopped before it wrote results — the pages its index run wrote stay in the set's "
            "eval index (recorded as a version), and the same command run again indexes only the rest",
    "reembed": "imgrag reembed stopped before it finished — what it changed is recorded as a version "
               "(`imgrag versions`); run the same command again to finish the switch, or `imgrag rollback` to undo it",
    "align": "imgrag align stopped before it saved an adapter — nothing was written to --out; run it again "
             "(a smaller --epochs stops sooner)",
}


app = typer.Typer(
    name="imgrag",
    cls=OneLineErrors,
    help="Multimodal RAG over image collections: index, search, ask, and serve over MCP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def console(stderr: bool = False) -> Console:
    """Tables piped into a log or CI (no terminal, no COLUMNS) get 160 columns instead of rich's 80,
    where every column name and number was wrapped beyond reading."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=160 if wide else None)


out = console()
err = console(stderr=True)


def fail(e: Exception) -> NoReturn:
    if _debug():
        raise e
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _disk_full(e: Exception) -> ImgragError | None:
    from imgrag.indexing.errors import disk_full_error

    try:
        from imgrag.indexing.config import get_settings

        where: object = get_settings().home
    except ImgragError:
        where = "IMGRAG_HOME"
    return disk_full_error(e, where)


def _debug() -> bool:
    """``IMGRAG_DEBUG``; off when the settings themselves are what failed (that error is one line)."""
    from imgrag.indexing.config import get_settings

    try:
        return get_settings().debug
    except ImgragError:
        return False


def facade() -> Any:
    """The application (``imgrag.indexing.app.Imgrag``) over the configured index."""
    from imgrag.indexing.app import Imgrag

    return Imgrag()


def principal(as_user: str | None, groups: list[str] | None) -> Any:
    from imgrag.indexing.config import get_settings
    from imgrag.indexing.stores.base import OPERATOR, Principal

    s = get_settings()
    name = as_user or s.principal
    grp = groups or s.groups
    if name is None and not grp:
        return OPERATOR
    return Principal(name=name, groups=list(grp))


def kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise ImgragError(f"{what} {p!r} is not key=value", f"write it like {what} year=2023")
        k, v = p.split("=", 1)
        result[k.strip()] = v.strip()
    return result


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE or v in _FALSE:
        return v in _TRUE
    raise ImgragError(f"--filter {key}={value} is not true or false", f"write --filter {key}=true or --filter {key}=false")


def parse_filters(pairs: list[str] | None) -> Any:
    """``--filter`` pairs → Filters. Known keys: date_from, date_to, year, quality, tag, path,
    doc, seal, pii, linked (words a linked page contains); anything else is a metadata key (the
    user's, or the file's own: modality, body_part, accession, part_number, ...)."""
    from imgrag.indexing.stores.base import Filters

    data: dict[str, Any] = {"meta": {}}
    for k, v in kv(pairs, "--filter").items():
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
                data["has_seal"] = _flag(k, v)
            elif k == "pii":
                data["has_pii"] = _flag(k, v)
            elif k == "linked":
                data["linked_text"] = v
            else:
                data["meta"][k] = v
        except ValueError as e:
            raise ImgragError(f"--filter {k}={v}: {e}", "dates are YYYY-MM-DD, year is a number") from e
    try:
        return Filters.model_validate(data)
    except ValidationError as e:
        bad = "; ".join(f"{er['loc'][0]}={er.get('input')!r}: {er['msg']}" for er in e.errors())
        raise ImgragError(
            f"bad --filter {bad}", "quality is any of born_digital, scanned, handwritten, photo (comma-separated)"
        ) from e


AsUser = Annotated[str | None, typer.Option("--as", help="act as this principal (ACL); default IMGRAG_PRINCIPAL")]
Groups = Annotated[list[str] | None, typer.Option("--group", help="groups of the principal (repeatable)")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log to stderr")] = False) -> None:
    from imgrag.indexing.logs import setup_logging

    setup_logging(logging.INFO if verbose else logging.WARNING)  # names and text in records print escaped
    from imgrag.indexing.audit import Caller, set_caller
    from imgrag.indexing.config import get_settings

    set_caller(Caller(transport="cli"))  # the audit log names writes made from here (serve's calls name their own)
    try:
        get_settings()  # a bad IMGRAG_* value: one line naming it, before any command starts
    except ImgragError as e:
        fail(e)

