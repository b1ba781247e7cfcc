"""End-to-end: the MCP niceties and the worker pool, against a real `imgrag serve` over a real index
(real OCR and embedders; the corpus and tokens of test_mcp_e2e.py), driven by the MCP SDK's client:

- ``completion/complete`` for the resource templates' ``image_id`` and the prompts' document
  arguments, ACL-aware (another principal's ids answer exactly like a prefix nobody has);
- ``notifications/progress`` for a full-page ``ocr_region`` (HTTP) and for ``index_images`` per file
  (stdio), sent only when the request carries a progress token;
- the logging capability: ``logging/setLevel`` on a handshake-era session, the per-request opt-in
  on a 2026-07-28 one, and only the caller's own calls in what it hears;
- under load: a principal past its share of heavy calls is told to retry, while another's search
  is answered meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mcp_http import http_session, imgrag_cmd, served_http
from test_mcp_e2e import HR_TOKEN, LEGAL_TOKEN, SyncSession, mcp_index  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _serve(mcp_index: dict[str, Any], workers: int, name: str) -> Any:
    """A real HTTP server over the module's index, alice (legal) and bob (hr) as bearer tokens."""
    tokens = mcp_index["work"] / f"tokens-{name}.json"
    tokens.write_text(json.dumps({LEGAL_TOKEN: {"name": "alice", "groups": ["legal"]}, HR_TOKEN: {"name": "bob", "groups": ["hr"]}}))
    tokens.chmod(0o600)
    env = {**mcp_index["env"], "IMGRAG_SERVER_WORKERS": str(workers)}
    return served_http(["--tokens", str(tokens), "--no-web"], env, mcp_index["work"], mcp_index["work"] / f"http-{name}.log")


@pytest.fixture(scope="module")
def http_url(mcp_index: dict[str, Any]):  # noqa: F811
    with _serve(mcp_index, 2, "niceties") as url:
        yield url


@pytest.fixture(scope="module")
def one_worker_url(mcp_index: dict[str, Any]):  # noqa: F811
    """The same server with one worker: a flood drains one search at a time, so the order answers
    come in shows whose turn it was rather than how fast the event loop took a request in."""
    with _serve(mcp_index, 1, "niceties-1") as url:
        yield url


def _with_client(url: str, token: str, fn: Any, **client_kw: Any) -> Any:
    """``http_session`` with extra ``Client`` options (protocol mode, logging callback and level)."""
    if not client_kw:
        return http_session(url, token, fn)
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=600)) as hc:
            async with Client(streamable_http_client(url, http_client=hc), **client_kw) as c:
                return await fn(c)

    return asyncio.run(main())


def test_capabilities_advertise_completions_and_logging(http_url: str) -> None:
    async def go(c: Any) -> Any:
        return c.server_capabilities

    caps = _with_client(http_url, LEGAL_TOKEN, go, mode="legacy")
    assert caps.completions is not None
    assert caps.logging is not None


def test_completion_offers_only_visible_ids(http_url: str, mcp_index: dict[str, Any]) -> None:  # noqa: F811
    from mcp_types import PromptReference, ResourceTemplateReference

    ids = mcp_index["ids"]
    image = ResourceTemplateReference(uri="imgrag://image/{image_id}")
    thumb = ResourceTemplateReference(uri="imgrag://thumbnail/{image_id}")
    cat_prefix = ids["cat"][:6]

    async def alice(c: Any) -> dict[str, Any]:
        out = {
            "all": await c.complete(image, {"name": "image_id", "value": ""}),
            "contract": await c.complete(thumb, {"name": "image_id", "value": ids["contract"][:5]}),
            "cat": await c.complete(image, {"name": "image_id", "value": cat_prefix}),
            "nothing": await c.complete(image, {"name": "image_id", "value": "zzzzzz"}),
            "doc": await c.complete(PromptReference(name="where_is_the_seal"), {"name": "document", "value": "contr"}),
            "memo": await c.complete(PromptReference(name="where_is_the_seal"), {"name": "document", "value": "memo"}),
            "aspect": await c.complete(PromptReference(name="compare_documents"), {"name": "aspect", "value": "pay"}),
        }
        return {k: v.completion for k, v in out.items()}

    async def bob(c: Any) -> Any:
        return (await c.complete(image, {"name": "image_id", "value": cat_prefix})).completion

    a = _with_client(http_url, LEGAL_TOKEN, alice)
    assert set(a["all"].values) == {ids["contract"], ids["invoice"]}
    assert a["contract"].values == [ids["contract"]]
    # hr's cat: answered for alice exactly as a prefix no image has
    assert a["cat"].model_dump() == a["nothing"].model_dump() == {"values": [], "total": 0, "has_more": False}
    assert "contract.png" in a["doc"].values and ids["contract"] not in a["doc"].values
    assert a["memo"].values == []
    assert a["aspect"].values == ["payment terms"]
    assert _with_client(http_url, HR_TOKEN, bob).values == [ids["cat"]]


def test_full_page_ocr_reports_progress_and_logs_to_its_caller_only(http_url: str, mcp_index: dict[str, Any]) -> None:  # noqa: F811
    ids = mcp_index["ids"]
    progress: list[tuple[float, float | None, str | None]] = []
    messages: list[Any] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    async def on_log(params: Any) -> None:
        messages.append(params)

    async def alice(c: Any) -> Any:
        r = await c.call_tool("ocr_region", {"image_id": ids["contract"]}, progress_callback=on_progress)
        missing = await c.call_tool("get_metadata", {"image_id": "0" * 16})
        quiet = await c.call_tool("get_metadata", {"image_id": ids["invoice"]})  # no progress token: no progress
        return r, missing, quiet

    async def bob(c: Any) -> None:  # at the same time, another principal's failing call
        for _ in range(3):
            await c.call_tool("get_metadata", {"image_id": ids["contract"]})

    async def both() -> Any:
        a = asyncio.to_thread(_with_client, http_url, LEGAL_TOKEN, alice, logging_callback=on_log, log_level="debug")
        b = asyncio.to_thread(http_session, http_url, HR_TOKEN, bob)
        return (await asyncio.gather(a, b))[0]

    r, missing, quiet = asyncio.run(both())
    assert not r.is_error and r.structured_content["lines"]
    steps = [p for p, _, _ in progress]
    assert len(steps) >= 3 and steps == sorted(steps), progress
    assert progress[-1][1] == 3 and "line(s) read" in (progress[-1][2] or "")
    assert missing.is_error and not quiet.is_error
    texts = [str(m.data) for m in messages]
    assert any(m.level == "warning" and "get_metadata failed: no image with id" in str(m.data) for m in messages), texts
    assert any("ocr_region done in" in t for t in texts), texts
    # bob's calls (an id alice can see, refused to bob) never reach alice
    assert sum("get_metadata failed" in t for t in texts) == 1, texts


def test_set_level_filters_a_handshake_session(http_url: str) -> None:
    got: dict[str, list[str]] = {"error": [], "debug": []}

    def collector(level: str) -> Any:
        async def on_log(params: Any) -> None:
            got[level].append(f"{params.level}: {params.data}")

        return on_log

    for level in ("error", "debug"):

        async def go(c: Any, level: str = level) -> None:
            await c.set_logging_level(level)
            await c.call_tool("get_metadata", {"image_id": "1" * 16})  # a warning
            await c.call_tool("search_images", {"query": "invoice", "k": 2})  # a debug line

        _with_client(http_url, LEGAL_TOKEN, go, mode="legacy", logging_callback=collector(level))
    assert got["error"] == []
    assert any(t.startswith("warning: get_metadata failed") for t in got["debug"]), got
    assert any(t.startswith("debug: search_images done") for t in got["debug"]), got


def test_a_principal_past_its_heavy_share_is_told_to_retry_while_others_search(http_url: str, mcp_index: dict[str, Any]) -> None:  # noqa: F811
    ids = mcp_index["ids"]

    async def alice(c: Any) -> list[Any]:
        calls = [c.call_tool("ocr_region", {"image_id": ids["contract"], "scale": 2}) for _ in range(5)]
        return list(await asyncio.gather(*calls))

    async def bob(c: Any) -> Any:
        await asyncio.sleep(1.0)  # alice's calls are queued by now
        return await c.call_tool("search_images", {"query": "annual leave", "k": 3})

    async def both() -> Any:
        return await asyncio.gather(
            asyncio.to_thread(http_session, http_url, LEGAL_TOKEN, alice), asyncio.to_thread(http_session, http_url, HR_TOKEN, bob)
        )

    ocr, search = asyncio.run(both())
    busy = [r.content[0].text for r in ocr if r.is_error]
    assert len(busy) == 2, [r.content[0].text[:200] for r in ocr]  # 3 per principal running or waiting
    assert all("you already have 3 OCR tool calls running or waiting" in t and "retry in" in t for t in busy), busy
    assert sum(not r.is_error for r in ocr) == 3
    assert not search.is_error and search.structured_content["hits"][0]["image_id"] == ids["memo"]


def test_index_images_reports_progress_per_file_over_stdio(mcp_index: dict[str, Any], tmp_path: Any) -> None:  # noqa: F811
    from contextlib import asynccontextmanager

    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from PIL import Image, ImageDraw

    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(3):
        img = Image.new("RGB", (600, 300), "white")
        ImageDraw.Draw(img).text((30, 100), f"Progress page {i} of the batch", fill="black")
        img.save(folder / f"page{i}.png")
    cmd = imgrag_cmd()
    params = StdioServerParameters(
        command=cmd[0], args=[*cmd[1:], "serve", "--allow-write", "--no-warm-up", "--index-root", str(tmp_path)],
        env={**mcp_index["env"], "IMGRAG_HOME": str(tmp_path / "home")}, cwd=str(tmp_path),
    )

    @asynccontextmanager
    async def factory() -> Any:
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                yield s

    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        seen.append((p, total, message))

    s = SyncSession(factory)
    try:
        r = s.run(s.session.call_tool, "index_images", {"paths": ["batch"]}, progress_callback=on_progress)
    finally:
        s.close()
    assert not r.is_error, r.content[0].text
    files = [m for _, _, m in seen if m and m.startswith("indexing ")]
    assert sorted(files) == [f"indexing {folder / f'page{i}.png'}" for i in range(3)], seen  # the operator: server paths
    assert all(t == 3 for _, t, _ in seen), seen
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert seen[-1][0] == 3 and seen[-1][2] == "done"



def _flood_then_one(url: str, flood_token: str, fresh_token: str, flood: int = 63, **client_kw: Any) -> tuple[int, int]:
    """Two clients: the first sends ``flood`` searches at once (one fewer than a principal's 64 calls
    running or waiting), and once the server has said of at least 45 of them "waiting for a worker"
    (a progress notification), the second asks one.
    Returns (how many of the flood were queued then, how many of the flood finished after that and
    before the second client's search): the order answers came in, not how long anything took."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    order: list[str] = []
    queued: set[int] = set()

    async def main() -> tuple[int, int]:
        timeout = httpx2.Timeout(30, read=600)
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {flood_token}"}, timeout=timeout) as h1,
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {fresh_token}"}, timeout=timeout) as h2,
            Client(streamable_http_client(url, http_client=h1), **client_kw) as first,
            Client(streamable_http_client(url, http_client=h2), **client_kw) as second,
        ):

            async def one(c: Any, query: str, who: str, i: int = -1) -> None:
                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    if message and message.startswith("waiting for a worker"):
                        queued.add(i)

                r = await c.call_tool("search_images", {"query": query, "k": 10}, progress_callback=on_progress)
                assert not r.is_error, r.content[0].text[:200]
                order.append(who)
                queued.discard(i)

            tasks = [asyncio.create_task(one(first, f"contract clause number {i}", "flood", i)) for i in range(flood)]
            for _ in range(6000):  # until 45 of the flood wait for a worker (or it is all answered)
                if len(queued) >= 45 or len(order) == flood:
                    break
                await asyncio.sleep(0.01)
            waiting, done = len(queued), len(order)
            await one(second, "annual leave policy", "fresh")
            await asyncio.gather(*tasks)
            return waiting, done

    waiting, done = asyncio.run(main())
    assert len(order) == flood + 1
    assert waiting >= 45, f"only {waiting} of the flood's {flood} searches ever waited for a worker"
    return waiting, order.index("fresh") - done


def test_another_principals_search_is_served_before_a_flood(one_worker_url: str) -> None:
    """One token queues 63 searches (the SDK's default, stateless requests); another token's search
    is served after about one call of it, not after all of it: turns go round the principals."""
    waiting, before = _flood_then_one(one_worker_url, LEGAL_TOKEN, HR_TOKEN)
    # the second call waits for about one of the flood's, plus the ones that finish while the event
    # loop (sharing the GIL with the searching worker) takes its request in: ~25 on 2 busy cores
    assert before < waiting * 2 // 3, f"{before} more of the flood's searches finished before the other principal's one ({waiting} were waiting)"


def test_a_second_session_of_a_flooding_token_is_served_before_its_flood(one_worker_url: str) -> None:
    """One token, two MCP sessions (one user's two agents, handshake-era clients): the first queues
    63 searches, the second asks one. Turns go round a principal's sessions, so the second one's
    search is served after about one call of the flood (on 2f54d01: after all of them)."""
    waiting, before = _flood_then_one(one_worker_url, LEGAL_TOKEN, LEGAL_TOKEN, mode="legacy")
    assert before < waiting * 2 // 3, f"{before} more of the first session's searches finished before the second's one ({waiting} were waiting)"
