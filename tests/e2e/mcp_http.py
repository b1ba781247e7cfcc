"""Helpers the MCP end-to-end tests share: the CLI of this checkout, a real `imgrag serve --http`
subprocess, and a session of the MCP SDK's own streamable-HTTP client with its defaults."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def imgrag_cmd() -> list[str]:
    # not the console script: an editable install may point at another checkout than this one
    return [sys.executable, "-m", "imgrag"]


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served_http(args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> Iterator[str]:
    """`imgrag serve --http --port <free> ARGS` until the block ends; yields the /mcp URL once it answers."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*imgrag_cmd(), "serve", "--http", "--port", str(port), *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_listening(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        finish(proc, 30)


def wait_listening(url: str, proc: subprocess.Popen[Any], log_path: Path, seconds: float = 600) -> None:
    """Until ``url`` answers over HTTP (any status). ``seconds`` only guards against a hang: a server
    that has not started yet on a loaded box is waited for, one that exited fails at once. (The loop
    used to give up after 600 tries and yield the URL anyway: the test then failed far from the cause.)"""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"imgrag serve --http exited ({proc.returncode}): " + log_path.read_text()[-3000:])
        try:
            httpx.get(url, timeout=10)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {seconds:.0f} s: " + log_path.read_text()[-3000:]) from None
            time.sleep(0.2)


def finish(proc: subprocess.Popen[Any], seconds: float) -> None:
    """Wait for a server to exit (after its stdin closed or it was told to), kill it after ``seconds``."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()


def http_session(url: str, token: str, fn: Callable[[Any], Any]) -> Any:
    """One SDK client session over streamable HTTP with a bearer token: the Client's default protocol
    negotiation and the transport's defaults (server-sent events up to 1 MiB)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        async with httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=600)
        ) as hc:
            async with Client(streamable_http_client(url, http_client=hc)) as c:
                return await fn(c)

    return asyncio.run(main())
