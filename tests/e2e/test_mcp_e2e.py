"""End-to-end: a real index built by `imgrag index` (real OCR and embedders), served by `imgrag serve`
over stdio and over streamable HTTP with bearer tokens, driven by the MCP SDK's client — plus the MCP
Inspector's CLI when npx is installed.

The corpus is shared_corpus.py's, indexed once per session (tests/conftest.py): two contract-like pages
visible to group `legal`, an HR memo and a photo (scikit-image's cat) visible to group `hr`, a public
notice left for the write tools to index. This module works on its own copy of the index.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mcp_http import finish, http_session, imgrag_cmd, served_http
from shared_corpus import SMALL_PRINT, copy_index

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LEGAL_TOKEN = "legal-token-" + "a" * 24
HR_TOKEN = "hr-token-" + "b" * 24
OPS_TOKEN = "ops-token-" + "c" * 24


@pytest.fixture(scope="session")
def mcp_index(shared_corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """This module's (and test_mcp_niceties') copy of the shared index: the tests here write to it."""
    return copy_index(shared_corpus, tmp_path_factory.mktemp("mcp-corpus"))


# -- a client session usable from synchronous tests ------------------------------------------------


class SyncSession:
    """Runs an MCP client session on its own event-loop thread, so one server process (and its loaded
    models) serves a whole module of plain synchronous tests."""

    def __init__(self, factory: Callable[[], Any], timeout: float = 600) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client", daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._main = asyncio.run_coroutine_threadsafe(self._run(factory), self._loop)
        self.session = self._ready.result(timeout)

    async def _run(self, factory: Callable[[], Any]) -> None:
        self._stop = asyncio.Event()
        try:
            async with factory() as session:
                self._ready.set_result(session)
                await self._stop.wait()
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e)
            raise

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop).result(self.timeout)

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        return self.run(self.session.call_tool, tool, args)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main.result(60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture(scope="module")
def stdio(mcp_index: dict[str, Any]):
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    cmd = imgrag_cmd()
    log = (mcp_index["work"] / "stdio-server.log").open("w")
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "serve", "--allow-write", "--index-root", str(mcp_index["root"] / "extra")],
        env=mcp_index["env"],
        cwd=str(mcp_index["work"]),
    )

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        async with stdio_client(params, errlog=log) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                yield s

    s = SyncSession(factory)
    yield s
    s.close()
    log.close()


@pytest.fixture(scope="module")
def http_server(mcp_index: dict[str, Any]):
    tokens = mcp_index["work"] / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                LEGAL_TOKEN: {"name": "alice", "groups": ["legal"]},
                HR_TOKEN: {"name": "bob", "groups": ["hr"]},
                OPS_TOKEN: {"name": "ops", "all_access": True},
            }
        )
    )
    tokens.chmod(0o600)
    with served_http(["--tokens", str(tokens)], mcp_index["env"], mcp_index["work"], mcp_index["work"] / "http-server.log") as url:
        yield url


# -- helpers -------------------------------------------------------------------------------------


def png_of(result: Any) -> list[Image.Image]:
    out = []
    for c in result.content:
        if c.type == "image":
            assert c.mime_type == "image/png"
            img = Image.open(io.BytesIO(base64.b64decode(c.data)))
            assert img.format == "PNG"
            out.append(img)
    return out


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    assert "Traceback" not in result.content[0].text
    return result.content[0].text


def squash(text: str) -> str:
    return "".join(text.split()).lower()


# -- stdio ---------------------------------------------------------------------------------------


def test_stdio_lists_tools_and_schemas(stdio: SyncSession) -> None:
    tools = {t.name: t for t in stdio.run(stdio.session.list_tools).tools}
    assert set(tools) == {"search_images", "crop_region", "ocr_region", "get_metadata", "index_images", "delete_image"}
    for t in tools.values():
        assert t.description and t.output_schema and t.output_schema.get("type") == "object"
        for name, prop in t.input_schema["properties"].items():
            assert prop.get("description"), f"{t.name}.{name} has no description"
    crop = tools["crop_region"].input_schema
    assert set(crop["required"]) == {"image_id", "bbox"}
    assert crop["properties"]["scale"]["maximum"] == 4 and crop["properties"]["scale"]["minimum"] == 1
    assert crop["properties"]["bbox"]["minItems"] == 4 == crop["properties"]["bbox"]["maxItems"]
    assert tools["search_images"].input_schema["properties"]["k"]["maximum"] == 100
    assert {"hits", "next_cursor"} <= set(tools["search_images"].output_schema["properties"])
    assert {"bbox", "scale", "width", "height"} <= set(tools["crop_region"].output_schema["properties"])
    assert tools["search_images"].annotations.read_only_hint is True
    templates = {t.uri_template for t in stdio.run(stdio.session.list_resource_templates).resource_templates}
    assert templates == {"imgrag://image/{image_id}", "imgrag://thumbnail/{image_id}"}
    assert [str(r.uri) for r in stdio.run(stdio.session.list_resources).resources] == ["imgrag://collection"]


def test_stdio_search_paging_and_thumbnails(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    ids = mcp_index["ids"]
    r = stdio.call("search_images", {"query": "Total amount 128,000 RMB contract", "k": 1, "with_thumbnails": True})
    assert not r.is_error, r.content
    out = r.structured_content
    assert [h["image_id"] for h in out["hits"]] == [ids["contract"]]
    hit = out["hits"][0]
    assert hit["file"] == "contract.png" and hit["width"] == 1200 and hit["region"]["bbox"]
    assert "128,000" in hit["snippet"]
    thumbs = png_of(r)
    assert len(thumbs) == len(out["thumbnail_ids"]) == 1 and max(thumbs[0].size) <= 192
    assert ids["contract"] in r.content[0].text and "next_cursor=" in r.content[0].text
    seen = [hit["image_id"]]
    cursor = out["next_cursor"]
    while cursor:
        page = stdio.call("search_images", {"query": "Total amount 128,000 RMB contract", "k": 1, "cursor": cursor})
        assert not page.is_error, page.content
        assert page.structured_content["offset"] == len(seen)
        seen += [h["image_id"] for h in page.structured_content["hits"]]
        cursor = page.structured_content["next_cursor"]
    assert len(seen) == len(set(seen)) >= 3  # paging never repeats a hit
    wrong = stdio.call("search_images", {"query": "something else", "cursor": out["next_cursor"]})
    assert "different search" in error_text(wrong)


def test_stdio_keyword_filters_and_similar(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    ids = mcp_index["ids"]
    r = stdio.call("search_images", {"query": "INV-2023-0042", "mode": "keyword", "k": 3})
    assert r.structured_content["hits"][0]["image_id"] == ids["invoice"]
    r = stdio.call("search_images", {"query": "days", "k": 5, "filters": {"tags": ["nope"]}})
    assert r.structured_content["hits"] == [] and "No hits" in r.content[0].text
    r = stdio.call("search_images", {"similar_to": ids["contract"], "k": 3})
    hits = [h["image_id"] for h in r.structured_content["hits"]]
    assert ids["contract"] not in hits and hits


def test_stdio_crop_png_size_matches_bbox_and_scale(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    cid = mcp_index["ids"]["contract"]
    r = stdio.call("crop_region", {"image_id": cid, "bbox": [80, 160, 480, 210], "scale": 2.5})
    assert not r.is_error, r.content
    (img,) = png_of(r)
    assert img.size == (1000, 125)
    s = r.structured_content
    assert s["bbox"] == [80, 160, 480, 210] and s["scale"] == 2.5 and not s["clipped"] and (s["width"], s["height"]) == img.size
    r = stdio.call("crop_region", {"image_id": cid, "bbox": [0.5, 0.5, 1.25, 1.5], "units": "relative", "enhance": True})
    (img,) = png_of(r)
    assert r.structured_content["bbox"] == [600, 450, 1200, 900] and r.structured_content["clipped"]
    assert img.size == (600, 450) and "clipped" in r.content[0].text
    r = stdio.call("crop_region", {"image_id": cid, "bbox": [0, 0, 1200, 900], "scale": 4})
    (img,) = png_of(r)
    assert max(img.size) <= 1600 and r.structured_content["scale"] < 4 and r.structured_content["note"]


def test_stdio_ocr_region_rereads_small_print(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    x0, y0, x1, y1 = mcp_index["small_print_box"]
    box = [x0 - 6, y0 - 6, x1 + 6, y1 + 6]
    r = stdio.call("ocr_region", {"image_id": mcp_index["ids"]["contract"], "bbox": box})
    assert not r.is_error, r.content
    s = r.structured_content
    assert s["scale"] > 1.5  # auto zoom on 9 px print
    assert squash(SMALL_PRINT) in squash(s["text"])
    (line,) = [ln for ln in s["lines"] if "QX" in ln["text"]]
    lx0, ly0, lx1, ly1 = line["bbox"]  # mapped back to original-image pixels
    assert abs(lx0 - x0) < 8 and abs(ly0 - y0) < 8 and abs(lx1 - x1) < 8 and abs(ly1 - y1) < 8
    whole = stdio.call("ocr_region", {"image_id": mcp_index["ids"]["invoice"]})
    assert "INV-2023-0042" in whole.structured_content["text"]


def test_stdio_get_metadata(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    r = stdio.call("get_metadata", {"image_id": mcp_index["ids"]["contract"], "max_ocr_lines": 2})
    assert not r.is_error, r.content
    m = r.structured_content
    assert (m["width"], m["height"]) == (1200, 900) and m["acl"] == ["legal"] and m["quality"] == "born_digital"
    assert len(m["ocr_lines"]) == 2 and m["ocr_lines_omitted"] == m["ocr_summary"]["lines"] - 2 > 0
    assert "128,000" in m["ocr_text"] and m["index_version"] >= 2
    assert not {"vector", "vectors", "img_vec"} & set(m)
    cat = stdio.call("get_metadata", {"image_id": mcp_index["ids"]["cat"]}).structured_content
    assert cat["quality"] == "photo" and cat["format"] == "jpeg"


def test_stdio_resources(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    ids = mcp_index["ids"]
    r = stdio.run(stdio.session.read_resource, f"imgrag://image/{ids['invoice']}")
    (c,) = r.contents
    assert c.mime_type == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(c.blob))).size == (1000, 700)
    t = stdio.run(stdio.session.read_resource, f"imgrag://thumbnail/{ids['cat']}")
    assert max(Image.open(io.BytesIO(base64.b64decode(t.contents[0].blob))).size) == 256
    col = json.loads(stdio.run(stdio.session.read_resource, "imgrag://collection").contents[0].text)
    assert col["images"] >= 4 and col["principal"] == "operator"


def test_stdio_bad_arguments_are_tool_errors(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    cid = mcp_index["ids"]["contract"]
    cases = [
        ("crop_region", {"image_id": "0123456789abcdef0000", "bbox": [0, 0, 10, 10]}, "no image with id"),
        ("get_metadata", {"image_id": "nope"}, "use an image_id returned by search_images"),
        ("ocr_region", {"image_id": "nope"}, "no image with id"),
        ("crop_region", {"image_id": cid, "bbox": [2000, 2000, 2100, 2100]}, "outside the image (1200x900 px)"),
        ("crop_region", {"image_id": cid, "bbox": [100, 100, 50, 200]}, "empty or inverted"),
        ("crop_region", {"image_id": cid, "bbox": [0, 0, 10, 10], "scale": 10}, "scale: Input should be less than or equal to 4"),
        ("crop_region", {"image_id": cid, "bbox": "top left"}, "bbox:"),
        ("crop_region", {"image_id": cid, "bbox": [0, 0, 10]}, "bbox:"),
        ("crop_region", {"image_id": cid, "bbox": [0, 0, 10, 10], "zoom": 2}, "unknown argument(s) zoom"),
        ("search_images", {"query": "   "}, "empty query"),
        ("search_images", {"query": "x" * 2001}, "at most 2000 characters"),
        ("search_images", {"query": "contract", "k": 101}, "k: Input should be less than or equal to 100"),
        ("search_images", {"query": "contract", "k": "many"}, "k: Input should be a valid integer"),
        ("search_images", {"query": "contract", "mode": "fuzzy"}, "mode:"),
        ("search_images", {"query": "contract", "filters": {"colour": "red"}}, "filters.colour"),
        ("search_images", {"similar_to": "nope"}, "no image with id"),
        ("ocr_region", {"image_id": cid, "scale": 9}, "scale"),
    ]
    for tool, args, expected in cases:
        text = error_text(stdio.call(tool, args))
        assert expected in text, (tool, args, text)
        assert "pydantic.dev" not in text


def test_stdio_write_tools(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    nid = mcp_index["ids"]["notice"]
    outside = stdio.call("index_images", {"paths": [str(mcp_index["root"] / "hr")]})
    assert "outside the folders this server may index" in error_text(outside)
    r = stdio.call("index_images", {"paths": [str(mcp_index["root"] / "extra")], "acl": ["legal"], "tags": ["notice"]})
    assert not r.is_error, r.content
    assert r.structured_content["indexed"] == 1 and r.structured_content["image_ids"] == [nid]
    m = stdio.call("get_metadata", {"image_id": nid}).structured_content
    assert m["acl"] == ["legal"] and m["tags"] == ["notice"]
    hits = stdio.call("search_images", {"query": "office closed", "filters": {"tags": ["notice"]}}).structured_content["hits"]
    assert [h["image_id"] for h in hits] == [nid]
    d = stdio.call("delete_image", {"image_id": nid})
    assert d.structured_content["deleted"] is True
    assert "no image with id" in error_text(stdio.call("get_metadata", {"image_id": nid}))
    assert "no image with id" in error_text(stdio.call("delete_image", {"image_id": nid}))


def test_stdio_server_survives_a_purge_by_another_process(stdio: SyncSession, mcp_index: dict[str, Any]) -> None:
    """`imgrag purge` erases the old table versions a running server may have open, quietly (no
    LanceDB warning about concurrent readers), and the server keeps answering. (The moment of the
    race, a read in the same second as the purge, is pinned down by the store contract test
    test_a_reader_keeps_working_across_a_purge_by_another_handle.)"""
    ids = mcp_index["ids"]
    nid = ids["notice"]
    stdio.call("index_images", {"paths": [str(mcp_index["root"] / "extra")]})
    stdio.call("delete_image", {"image_id": nid})
    before = stdio.call("search_images", {"query": "INV-2023-0042", "mode": "keyword", "k": 3})
    assert before.structured_content["hits"][0]["image_id"] == ids["invoice"]  # the server has the tables open
    p = subprocess.run([*imgrag_cmd(), "purge"], env=mcp_index["env"], cwd=mcp_index["work"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.startswith("purged 1"), p.stdout + p.stderr
    assert p.stderr == ""
    for args in ({"query": "INV-2023-0042", "mode": "keyword", "k": 3}, {"query": "Total amount 128,000 RMB", "k": 3},
                 {"similar_to": ids["contract"], "k": 3}):
        r = stdio.call("search_images", args)
        assert not r.is_error, r.content
        assert r.structured_content["hits"] and nid not in {h["image_id"] for h in r.structured_content["hits"]}
    m = stdio.call("get_metadata", {"image_id": ids["contract"]})
    assert not m.is_error and m.structured_content["image_id"] == ids["contract"]


def test_stdio_stdout_carries_only_protocol(mcp_index: dict[str, Any]) -> None:
    """Raw pipes: every line the server writes to stdout is JSON-RPC, even while models load and log."""
    errlog = (mcp_index["work"] / "raw-stdio.log").open("w")
    proc = subprocess.Popen(
        [*imgrag_cmd(), "-v", "serve"], env=mcp_index["env"], cwd=mcp_index["work"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True,
    )
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search_images", "arguments": {"query": "annual leave", "k": 1}}},
    ]
    assert proc.stdin is not None and proc.stdout is not None
    replies: dict[Any, Any] = {}
    try:
        for m in msgs:
            proc.stdin.write(json.dumps(m) + "\n")
            proc.stdin.flush()
            if "id" in m:
                while m["id"] not in replies:
                    line = proc.stdout.readline()
                    assert line, "server closed stdout"
                    msg = json.loads(line)  # raises on any stray, non-protocol line
                    replies[msg.get("id")] = msg
    finally:
        proc.stdin.close()
        finish(proc, 60)
        errlog.close()
    assert replies[1]["result"]["serverInfo"]["name"] == "imgrag"
    assert len(replies[2]["result"]["tools"]) == 4  # read-only by default
    assert replies[3]["result"]["structuredContent"]["hits"][0]["image_id"] == mcp_index["ids"]["memo"]


# -- HTTP with bearer tokens --------------------------------------------------------------------


def test_http_refuses_missing_or_invalid_token(http_server: str) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    for auth in (None, "Bearer wrong-token-xxxxxxxxxxxxxxxx", f"Basic {LEGAL_TOKEN}"):
        h = dict(headers, **({"Authorization": auth} if auth else {}))
        r = httpx.post(http_server, json=init, headers=h, timeout=30)
        assert r.status_code == 401, (auth, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    ok = httpx.post(http_server, json=init, headers=dict(headers, Authorization=f"Bearer {LEGAL_TOKEN}"), timeout=30)
    assert ok.status_code == 200
    with pytest.raises(Exception):
        http_session(http_server, "wrong-token-xxxxxxxxxxxxxxxx", lambda c: c.list_tools())


UNKNOWN_ID = "ffffffffffffffffffff"
QUERIES = ["contract", "合同 甲方", "invoice amount", "employee handbook annual leave", "a cat", "2023", "RMB"]


def _visible(c: Any, ids: dict[str, str]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        seen: set[str] = set()
        for q in QUERIES:
            r = await c.call_tool("search_images", {"query": q, "k": 10})
            assert not r.is_error, r.content
            seen |= {h["image_id"] for h in r.structured_content["hits"]}
        meta, crop, res = {}, {}, {}
        for name, iid in [*ids.items(), ("unknown", UNKNOWN_ID)]:
            m = await c.call_tool("get_metadata", {"image_id": iid})
            meta[name] = m.content[0].text if m.is_error else "ok"
            cr = await c.call_tool("crop_region", {"image_id": iid, "bbox": [0, 0, 50, 50]})
            crop[name] = cr.content[0].text if cr.is_error else "ok"
            try:
                await c.read_resource(f"imgrag://thumbnail/{iid}")
                res[name] = "ok"
            except Exception as e:  # noqa: BLE001 - the error text is what is compared
                res[name] = str(e)
        col = json.loads((await c.read_resource("imgrag://collection")).contents[0].text)
        tools = [t.name for t in (await c.list_tools()).tools]
        return {"search": seen, "meta": meta, "crop": crop, "res": res, "collection": col, "tools": tools}

    return go()


def test_http_tokens_see_disjoint_images(http_server: str, mcp_index: dict[str, Any]) -> None:
    ids = {k: v for k, v in mcp_index["ids"].items() if k != "notice"}
    legal_ids, hr_ids = {ids["contract"], ids["invoice"]}, {ids["memo"], ids["cat"]}
    alice = http_session(http_server, LEGAL_TOKEN, lambda c: _visible(c, ids))
    bob = http_session(http_server, HR_TOKEN, lambda c: _visible(c, ids))
    ops = http_session(http_server, OPS_TOKEN, lambda c: _visible(c, ids))
    assert alice["search"] == legal_ids and bob["search"] == hr_ids and ops["search"] == legal_ids | hr_ids
    assert alice["tools"] == bob["tools"] == ["search_images", "crop_region", "ocr_region", "get_metadata"]
    for who, mine in ((alice, {"contract", "invoice"}), (bob, {"memo", "cat"})):
        assert who["collection"]["images"] == 2
        for kind in ("meta", "crop", "res"):
            for name, iid in ids.items():
                if name in mine:
                    assert who[kind][name] == "ok", (kind, name, who[kind][name])
                else:  # another group's image answers exactly like an id that does not exist
                    assert f"no image with id '{iid}'" in who[kind][name]
                    assert who[kind][name].replace(iid, "X") == who[kind]["unknown"].replace(UNKNOWN_ID, "X")


def test_http_audit_log_says_who_saw_an_image(http_server: str, mcp_index: dict[str, Any]) -> None:
    """Two tokens call the real server — one call denied by the ACL, one with a bad argument — and a
    request with an unknown token is refused; then `imgrag audit`, in another process, answers who
    saw the contract and what bob did."""
    import hashlib
    from datetime import datetime, timezone

    since = datetime.now(timezone.utc).isoformat()
    contract, memo = mcp_index["ids"]["contract"], mcp_index["ids"]["memo"]

    async def alice(c: Any) -> Any:
        hits = await c.call_tool("search_images", {"query": "service contract", "k": 3})
        await c.call_tool("get_metadata", {"image_id": contract})
        return hits

    async def bob(c: Any) -> list[Any]:
        return [
            await c.call_tool("search_images", {"query": "employee handbook annual leave", "k": 3}),
            await c.call_tool("get_metadata", {"image_id": contract}),  # legal's: "no image with id"
            await c.call_tool("crop_region", {"image_id": memo, "bbox": [0, 0, 50, 50], "scale": 99}),
        ]

    hits = http_session(http_server, LEGAL_TOKEN, alice)
    assert contract in [h["image_id"] for h in hits.structured_content["hits"]]
    found, denied, invalid = http_session(http_server, HR_TOKEN, bob)
    assert contract not in [h["image_id"] for h in found.structured_content["hits"]]
    assert denied.is_error and invalid.is_error
    time.sleep(1.1)  # refusals from one peer are recorded at most once a second (the rest counted)
    bad = "not-a-token-" + "d" * 20
    assert httpx.post(http_server, json={}, headers={"Authorization": f"Bearer {bad}"}, timeout=30).status_code == 401

    def audit(*args: str) -> list[dict[str, Any]]:
        r = subprocess.run(
            [*imgrag_cmd(), "audit", "--since", since, "--json", *args],
            env=mcp_index["env"], cwd=mcp_index["work"], capture_output=True, text=True, timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout)

    saw = audit("--image", contract)
    assert [(r["principal"], r["name"], r["outcome"]) for r in saw] == [
        ("alice", "search_images", "ok"), ("alice", "get_metadata", "ok"), ("bob", "get_metadata", "denied"),
    ]
    bobs = audit("--principal", "bob")
    assert [(r["name"], r["outcome"], r.get("error")) for r in bobs] == [
        ("search_images", "ok", None), ("get_metadata", "denied", "acl"), ("crop_region", "error", "invalid_arguments"),
    ]
    assert bobs[0]["image_ids"] == [h["image_id"] for h in found.structured_content["hits"]]
    assert bobs[0]["args_sha256"] == hashlib.sha256(
        json.dumps({"query": "employee handbook annual leave", "k": 3}, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert all(r["transport"] == "http" and r["client"].startswith("127.0.0.1:") and r["groups"] == ["hr"] for r in bobs)
    assert "annual leave" not in (mcp_index["home"] / "audit" / "audit.jsonl").read_text()
    (refused,) = audit("--tool", "bearer_token")
    assert (refused["outcome"], refused["error"], refused.get("principal")) == ("denied", "unknown_token", None)
    assert refused["args_sha256"] == hashlib.sha256(bad.encode()).hexdigest()


# -- MCP Inspector CLI ---------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_inspector_cli_lists_and_calls_tools(mcp_index: dict[str, Any]) -> None:
    base = ["npx", "-y", "@modelcontextprotocol/inspector", "--cli", "-e", f"IMGRAG_HOME={mcp_index['home']}", *imgrag_cmd(), "serve"]
    env = dict(os.environ, IMGRAG_HOME=str(mcp_index["home"]))
    r = subprocess.run([*base, "--method", "tools/list"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    names = [t["name"] for t in json.loads(r.stdout)["tools"]]
    assert names == ["search_images", "crop_region", "ocr_region", "get_metadata"]
    r = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "get_metadata", "--tool-arg", f"image_id={mcp_index['ids']['memo']}"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["structuredContent"]["width"] == 1000
