"""`imgrag ui`: the web viewer on 127.0.0.1 for the local operator (or, with --as, as a principal)."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from imgrag.indexing.errors import ImgragError

from .common import AsUser, Groups, app, err, facade, fail, principal


def web_asker(imgrag_app: object) -> object:
    """The bundled agent for the viewer's ask view (an LLM when one is configured, else extractive)."""
    from imgrag.agent.llm import LLMConfig
    from imgrag.agent.viewer import ViewerAsker

    return ViewerAsker(imgrag_app, LLMConfig.from_settings(imgrag_app.settings))


def check_port(host: str, port: int) -> None:
    """Fail with one line before starting when the port is taken (uvicorn would exit with a log line)."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ImgragError(f"cannot listen on {host}:{port} ({e.strerror})", "pass another --port, or stop what uses it") from None


def default_eval_dir() -> Path:
    from imgrag.evals.runner import DEFAULT_OUT

    return DEFAULT_OUT.expanduser()


@app.command()
def ui(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port on 127.0.0.1")] = 8766,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="open the login link in the default browser")] = False,
    eval_dir: Annotated[Path | None, typer.Option("--eval-dir", help="folder of `imgrag eval` charts to show [default: ~/.cache/imgrag/eval/results]")] = None,
    warm_up: Annotated[bool, typer.Option("--warm-up/--no-warm-up", help="load the models in the background right after start")] = True,
    as_user: AsUser = None,
    group: Groups = None,
) -> None:
    """The web viewer for this machine: search, page view with OCR/layout/seal overlays, ask, collection.

    It listens on 127.0.0.1 only and prints a login link with a one-off key, so other users of the machine cannot use it. It acts as the operator unless --as/--group name a principal."""
    try:
        import anyio
        import uvicorn

        from imgrag.mcp_server.server import start_warm_up
        from imgrag.mcp_server.web import WebViewer, operator_login

        check_port("127.0.0.1", port)
        who = principal(as_user, group)
        imgrag_app = facade()
        key, authenticate = operator_login(who)
        viewer = WebViewer(
            imgrag_app,
            authenticate,
            asker=web_asker(imgrag_app),  # type: ignore[arg-type]
            eval_dir=(eval_dir or default_eval_dir()).expanduser(),
            allowed_hosts=WebViewer.loopback_hosts(port),
            link_login=True,
            port=port,
            title="imgrag" + (f" · {who.name}" if who.name else ""),
        )
        link = f"http://127.0.0.1:{port}/login?token={key}"
        err.print(f"imgrag viewer on http://127.0.0.1:{port}/ — open [bold]{link}[/] (key: {key})", highlight=False, soft_wrap=True)
        if warm_up:
            start_warm_up(imgrag_app)
        if open_browser:
            webbrowser.open(link)
        config = uvicorn.Config(viewer.starlette(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        anyio.run(uvicorn.Server(config).serve)
    except ImgragError as e:
        fail(e)
    except KeyboardInterrupt:
        pass
