"""End-to-end: a client that has gone costs nothing more (mcp_server/cancel.py), against a real
`imgrag serve` with one worker over a real index (the corpus and tokens of test_mcp_e2e.py).

A full-page ``ocr_region`` holds the one worker, the same client queues searches behind it, then
goes: its process is killed (HTTP, a handshake-era session and the SDK's default 2026-07-28
requests) or it cancels its calls (stdio: the SDK sends ``notifications/cancelled``). Every
assertion reads the server's own record, the audit log: the queued searches are recorded
``cancelled`` and did not run; the OCR, if still running when the client went, stopped at its next
step (``cancelled`` too); another client is served after. Nothing here depends on who finished
first at a client or on how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp_http import http_session, imgrag_cmd
from test_mcp_e2e import HR_TOKEN, LEGAL_TOKEN, SyncSession, mcp_index  # noqa: F401 (fixture)
from test_mcp_niceties import _serve

pytestmark = pytest.mark.slow

FLOOD = 30

# The client that goes away: queues an OCR and FLOOD searches, says so on stdout once the OCR runs
# and the searches wait for a worker (the server's progress notifications), then waits to be killed.
CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    url, token, mode, tag, image_id, n = sys.argv[1:7]

    async def main():
        ocr_runs, waiting = asyncio.Event(), set()

        async def on_ocr(p, total, message):
            if message and message.startswith("reading the page"):
                ocr_runs.set()

        def on_search(i):
            async def f(p, total, message):
                if message and message.startswith("waiting for a worker"):
                    waiting.add(i)
            return f

        kw = {"mode": "legacy"} if mode == "legacy" else {}
        timeout = httpx2.Timeout(30, read=600)
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as hc:
            async with Client(streamable_http_client(url, http_client=hc), **kw) as c:
                ocr = asyncio.create_task(c.call_tool("ocr_region", {"image_id": image_id, "scale": 4}, progress_callback=on_ocr))
                await asyncio.wait([ocr, asyncio.create_task(ocr_runs.wait())], return_when=asyncio.FIRST_COMPLETED)
                calls = [
                    asyncio.create_task(c.call_tool("search_images", {"query": f"{tag} {i}", "k": 5}, progress_callback=on_search(i)))
                    for i in range(int(n))
                ]
                while len(waiting) < int(n) and not all(t.done() for t in calls):
                    await asyncio.sleep(0.01)
                print(json.dumps({"waiting": len(waiting), "ocr_done": ocr.done()}), flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def one_worker_url(mcp_index: dict[str, Any]):  # noqa: F811
    with _serve(mcp_index, 1, "cancel-1") as url:
        yield url


def _audit(mcp_index: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: F811
    path = mcp_index["home"] / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _flood_records(mcp_index: dict[str, Any], tag: str, n: int, need: int) -> dict[str, dict[str, Any]]:  # noqa: F811
    """The audit records of the flood's searches (found by their arguments' digest), waiting until
    ``need`` of them are written (a cancelled call is recorded when the server sees its client go)."""
    from imgrag.indexing.audit import args_digest

    digests = {args_digest({"query": f"{tag} {i}", "k": 5}): f"{tag} {i}" for i in range(n)}
    for _ in range(1200):
        found = {digests[r["args_sha256"]]: r for r in _audit(mcp_index) if r.get("args_sha256") in digests}
        if len(found) >= need:
            return found
        time.sleep(0.05)
    return found


def _at(r: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(r["time"])


def _check(mcp_index: dict[str, Any], tag: str, reason: str, ocr_args: dict[str, Any], since: datetime) -> dict[str, Any]:  # noqa: F811
    """The server's account of the flood: every search recorded once; none started once the
    server knew its client had gone (one worker: at most the one running then finishes, and it
    ends before the first cancelled record plus that one search); the OCR stopped at a step unless
    it had finished before."""
    from collections import Counter

    from imgrag.indexing.audit import args_digest

    found = _flood_records(mcp_index, tag, FLOOD, FLOOD)
    assert len(found) == FLOOD, f"only {len(found)} of the {FLOOD} searches were recorded"
    outcomes = Counter((r["outcome"], r.get("error")) for r in found.values())
    cancelled = [r for r in found.values() if r["outcome"] == "cancelled"]
    assert cancelled, f"every queued search ran although its client had gone: {outcomes}"
    assert all(r.get("error") == reason for r in cancelled), outcomes
    assert set(outcomes) <= {("ok", None), ("cancelled", reason)}, outcomes
    first = min(_at(r) for r in cancelled)
    late = [r for r in found.values() if r["outcome"] == "ok" and _at(r) > first]
    assert len(late) <= 1, f"{len(late)} searches of a client that had gone ran after the server knew it: {outcomes}"
    ocr = [r for r in _audit(mcp_index) if r["name"] == "ocr_region" and r.get("args_sha256") == args_digest(ocr_args) and _at(r) > since]
    assert len(ocr) == 1, ocr
    if _at(ocr[0]) > first:  # it was still running when the client went: it stops at its next step
        assert (ocr[0]["outcome"], ocr[0].get("error")) == ("cancelled", reason), ocr[0]
    return dict(outcomes)


@pytest.mark.parametrize("mode", ["legacy", "modern"])
def test_a_killed_http_client_s_queued_calls_do_not_run(one_worker_url: str, mcp_index: dict[str, Any], tmp_path: Path, mode: str) -> None:  # noqa: F811
    """The client process dies with an OCR running and 30 searches queued behind it on the one
    worker. On 9078cc8 a handshake-era session's 30 searches all ran afterwards (recorded ``ok``),
    and a 2026-07-28 client's were left unrecorded."""
    tag = f"hung up {mode} {uuid.uuid4().hex[:8]}"
    ocr_args = {"image_id": mcp_index["ids"]["contract"], "scale": 4}
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    since = datetime.now().astimezone()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, str(script), one_worker_url, LEGAL_TOKEN, mode, tag, ocr_args["image_id"], str(FLOOD)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        assert line, f"the client never queued its calls: {proc.stderr.read() if proc.poll() is not None else 'no answer'}"  # type: ignore[union-attr]
    finally:
        proc.kill()  # all its connections close at once, nothing more is sent
        proc.wait(30)
    seen = json.loads(line)
    # another principal is served after (and so is the same token, from a fresh client)
    for token in (HR_TOKEN, LEGAL_TOKEN):
        r = http_session(one_worker_url, token, lambda c: c.call_tool("search_images", {"query": "annual leave", "k": 3}))
        assert not r.is_error, r.content[0].text[:200]
    outcomes = _check(mcp_index, tag, "disconnected", ocr_args, since)
    print(mode, seen, outcomes)


def test_cancelled_calls_over_stdio_leave_the_queue(mcp_index: dict[str, Any]) -> None:  # noqa: F811
    """stdio, one worker: the client cancels its running OCR and its 30 queued searches (the SDK
    sends ``notifications/cancelled`` for each); they are recorded ``cancelled`` and did not run, and
    the session's next call is answered."""
    from contextlib import asynccontextmanager

    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    cmd = imgrag_cmd()
    env = {**mcp_index["env"], "IMGRAG_SERVER_WORKERS": "1"}
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", "--no-warm-up"], env=env, cwd=str(mcp_index["work"]))

    @asynccontextmanager
    async def factory() -> Any:
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            yield s

    tag = f"stdio cancel {uuid.uuid4().hex[:8]}"
    ocr_args = {"image_id": mcp_index["ids"]["contract"], "scale": 4}
    since = datetime.now().astimezone()

    async def go(s: Any) -> Any:
        await s.call_tool("search_images", {"query": "warm up", "k": 1})  # models loaded before the clock matters
        ocr_runs, waiting = asyncio.Event(), set()

        async def on_ocr(p: float, total: float | None, message: str | None) -> None:
            if message and message.startswith("reading the page"):
                ocr_runs.set()

        def on_search(i: int) -> Any:
            async def f(p: float, total: float | None, message: str | None) -> None:
                if message and message.startswith("waiting for a worker"):
                    waiting.add(i)

            return f

        ocr = asyncio.create_task(s.call_tool("ocr_region", ocr_args, progress_callback=on_ocr))
        await asyncio.wait([ocr, asyncio.create_task(ocr_runs.wait())], return_when=asyncio.FIRST_COMPLETED)
        calls = [
            asyncio.create_task(s.call_tool("search_images", {"query": f"{tag} {i}", "k": 5}, progress_callback=on_search(i)))
            for i in range(FLOOD)
        ]
        while len(waiting) < FLOOD and not all(t.done() for t in calls):
            await asyncio.sleep(0.01)
        for t in [*calls, ocr]:
            t.cancel()
        await asyncio.gather(*calls, ocr, return_exceptions=True)
        return await s.call_tool("search_images", {"query": "annual leave", "k": 3})

    s = SyncSession(factory)
    try:
        after = s.run(go, s.session)
    finally:
        s.close()
    assert not after.is_error, after.content[0].text[:200]
    outcomes = _check(mcp_index, tag, "cancelled", ocr_args, since)
    print(outcomes)
