"""`imgrag serve`: the MCP server over stdio or streamable HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from imgrag.indexing.errors import ImgragError

from .common import AsUser, Groups, app, err, fail, principal



@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="serve streamable HTTP instead of stdio")] = False,
    host: Annotated[str, typer.Option("--host", help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 8765,
    tokens: Annotated[Path | None, typer.Option("--tokens", envvar="IMGRAG_TOKENS_FILE", help="HTTP: JSON file mapping bearer tokens to principals (required with --http)")] = None,
    allow_write: Annotated[bool, typer.Option("--allow-write", help="add the index_images and delete_image tools")] = False,
    index_root: Annotated[list[Path] | None, typer.Option("--index-root", help="folders index_images may read, and the base of the paths callers who are not the operator see (repeatable); HTTP default: the current folder")] = None,
    warm_up: Annotated[bool, typer.Option("--warm-up/--no-warm-up", help="load the models in the background right after start")] = True,
    web: Annotated[bool, typer.Option("--web/--no-web", help="HTTP: also serve the web viewer at / (log in with a token from --tokens)")] = True,
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """Serve the index over MCP: stdio (Claude Desktop) or streamable HTTP with bearer tokens."""
    try:
        from imgrag.mcp_server.auth import TokenFileVerifier, bearer_principal, fixed_principal
        from imgrag.mcp_server.server import build_server, serve_http, serve_stdio, start_warm_up

        from imgrag.indexing.app import Imgrag
        from imgrag.indexing.threads import set_arena_default

        set_arena_default(False)  # before any OCR session exists (IMGRAG_ORT_ARENA=1 keeps it on)

        roots = [p.expanduser().resolve() for p in index_root] if index_root else None
        if http:
            if tokens is None:
                raise ImgragError("--http needs bearer tokens", "pass --tokens tokens.json (or set IMGRAG_TOKENS_FILE): {\"<token>\": {\"name\": \"alice\", \"groups\": [\"legal\"]}}")
            if as_user or group:
                raise ImgragError("--as/--group only apply to stdio", "over HTTP each bearer token names its principal in the token file")
            verifier = TokenFileVerifier(tokens.expanduser())
            if roots is None:  # what index_images may read, and what remote callers' paths are relative to
                roots = [Path.cwd().resolve()]
            mcp = build_server(
                Imgrag(index_roots=roots), bearer_principal, allow_write=allow_write,
                token_verifier=verifier, server_url=f"http://{host}:{port}",
            )
            if web:
                mount_viewer(mcp, verifier, host, port)
            err.print(f"imgrag MCP server on http://{host}:{port}/mcp (bearer tokens from {tokens})", highlight=False)
            if web:
                err.print(f"web viewer on http://{host}:{port}/ (log in with a token from {tokens})", highlight=False)
        else:
            mcp = build_server(Imgrag(index_roots=roots), fixed_principal(principal(as_user, group)), allow_write=allow_write)
        mcp.app.audit.check()  # a log it cannot write would refuse every call: say so now
        if warm_up:
            start_warm_up(mcp.app)
        if http:
            serve_http(mcp, host, port)
        else:
            serve_stdio(mcp)
    except ImgragError as e:
        fail(e)
    except KeyboardInterrupt:
        pass


def mount_viewer(mcp: Any, verifier: Any, host: str, port: int) -> None:
    """The web viewer on the MCP server's port: a browser logs in with a token from the same file
    and sees what that token's agent sees."""
    from imgrag.mcp_server.web import WebViewer

    from .ui import default_eval_dir, web_asker

    def authenticate(token: str) -> Any:
        entry = verifier.entry(token)
        return entry.principal() if entry is not None else None

    loopback = host in ("127.0.0.1", "localhost", "::1")
    WebViewer(
        mcp.app,
        authenticate,
        asker=web_asker(mcp.app),  # type: ignore[arg-type]
        eval_dir=default_eval_dir(),
        allowed_hosts=WebViewer.loopback_hosts(port) if loopback else None,
        port=port,
    ).mount(mcp)
