"""End-to-end: the MCP server treats every client as untrusted. A real index (real OCR and embedders,
built by `python -m imgrag index`) served by `python -m imgrag serve --http --allow-write` to two
principals through the unmodified MCP SDK client, and by `python -m imgrag serve` over stdio to raw
pipes:

* every tool and resource, read and write, aimed at the other principal's images answers exactly
  like an id or file nobody indexed, and what one indexes the other cannot see;
* a symbolic link under the index root that leads out of it is skipped, unread and unnamed;
* crops at scale 4, page images of a large scan and long metadata fit the SDK client's default
  1 MiB server-sent-event limit;
* malformed JSON-RPC on stdio gets -32700 / -32600 instead of silence.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgrag.indexing.limits import HTTP_BUDGET, SSE_EVENT_LIMIT
from imgrag.indexing.loader import file_digest

from mcp_http import finish, http_session, imgrag_cmd, served_http

pytestmark = pytest.mark.slow

ALICE = "alice-token-" + "a" * 24
BOB = "bob-token-" + "b" * 24
UNKNOWN_ID = "ffffffffffffffffffff"


def _page(path: Path, lines: list[str], size: tuple[int, int] = (900, 500), grain: float = 0.0) -> None:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        d.text((50, 50 + 70 * i), text, fill=(20, 20, 20), font=ImageFont.load_default(34))
    if grain:  # a scan: grainy paper makes a big PNG
        arr = np.asarray(img).astype(np.float32) + np.random.default_rng(0).normal(0, grain, (size[1], size[0], 1))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    img.save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("hostile")
    root, outside = work / "root", work / "outside"
    for d in (root / "alice", root / "bob" / "sub", outside):
        d.mkdir(parents=True)
    _page(root / "alice" / "contract.png", ["ALICE CONFIDENTIAL CONTRACT", "Total: 128,000 RMB"])
    _page(root / "alice" / "scan.png", ["SCANNED LEDGER PAGE", "Entry 7: 4,250 RMB"], size=(1400, 1900), grain=18)
    _page(root / "bob" / "memo.png", ["BOB MEMO", "Annual leave: 15 days"])
    _page(root / "bob" / "new.png", ["BOB NEW NOTE", "never indexed before"])
    _page(outside / "secret.png", ["OUTSIDE SECRET", "must never be indexed"])
    shutil.copyfile(root / "alice" / "contract.png", root / "bob" / "copy.png")  # byte-identical to alice's
    (root / "bob" / "sub" / "x.png").symlink_to(outside / "secret.png")
    (root / "bob" / "sub" / "p.png").symlink_to("/etc/passwd")
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
    env.update(IMGRAG_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    for files, acl in (([root / "alice" / "contract.png", root / "alice" / "scan.png"], "alice"), ([root / "bob" / "memo.png"], "bob")):
        r = subprocess.run(
            [*imgrag_cmd(), "index", *map(str, files), "--acl", acl, "--json"],
            env=env, cwd=work, capture_output=True, text=True, timeout=1200,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout)["indexed"] == len(files), r.stdout
    ids = {name: file_digest(p) for name, p in (("contract", root / "alice" / "contract.png"), ("scan", root / "alice" / "scan.png"), ("memo", root / "bob" / "memo.png"))}
    return {"work": work, "root": root, "home": home, "env": env, "ids": ids}


@pytest.fixture(scope="module")
def http_url(world: dict[str, Any]):
    tokens = world["work"] / "tokens.json"
    tokens.write_text(json.dumps({ALICE: {"name": "alice"}, BOB: {"name": "bob"}}))
    tokens.chmod(0o600)
    args = ["--tokens", str(tokens), "--allow-write", "--index-root", str(world["root"])]
    with served_http(args, world["env"], world["work"], world["work"] / "http-server.log") as url:
        yield url


def _text(r: Any) -> str:
    return r.content[0].text if r.is_error else "ok"


async def _probe(c: Any, image_id: str) -> dict[str, str]:
    """Every read and write aimed at one image id, as the caller sees the answers."""
    from mcp.shared.exceptions import MCPError

    out: dict[str, str] = {}
    for tool, args in (
        ("get_metadata", {}),
        ("crop_region", {"bbox": [0, 0, 50, 50]}),
        ("ocr_region", {"bbox": [0, 0, 50, 50], "scale": 1}),
    ):
        out[tool] = _text(await c.call_tool(tool, {"image_id": image_id, **args}))
    out["similar_to"] = _text(await c.call_tool("search_images", {"similar_to": image_id}))
    r = await c.call_tool("search_images", {"query": "contract memo ledger", "filters": {"image_ids": [image_id]}})
    out["filter"] = json.dumps(r.structured_content["hits"])
    for kind in ("image", "thumbnail"):
        try:
            await c.read_resource(f"imgrag://{kind}/{image_id}")
            out[kind] = "ok"
        except MCPError as e:
            out[kind] = f"{e.error.code}: {e.error.message}"
    out["delete_image"] = _text(await c.call_tool("delete_image", {"image_id": image_id}))
    return {k: v.replace(image_id, "ID") for k, v in out.items()}


def test_the_other_principals_images_answer_like_absent_ones(http_url: str, world: dict[str, Any]) -> None:
    ids = world["ids"]

    async def as_bob(c: Any) -> dict[str, Any]:
        theirs = {name: await _probe(c, ids[name]) for name in ("contract", "scan")}
        absent = await _probe(c, UNKNOWN_ID)
        col = json.loads((await c.read_resource("imgrag://collection")).contents[0].text)
        hits = (await c.call_tool("search_images", {"query": "ALICE CONFIDENTIAL CONTRACT", "k": 10})).structured_content["hits"]
        mine = _text(await c.call_tool("get_metadata", {"image_id": ids["memo"]}))
        return {"theirs": theirs, "absent": absent, "collection": col, "hits": hits, "mine": mine}

    bob = http_session(http_url, BOB, as_bob)
    for name, answers in bob["theirs"].items():
        assert answers == bob["absent"], (name, answers, bob["absent"])
    assert "no image with id 'ID'" in bob["absent"]["get_metadata"] and bob["absent"]["filter"] == "[]"
    assert bob["absent"]["image"].startswith("-32602")
    assert bob["collection"]["images"] == 1 and bob["mine"] == "ok"
    assert not {h["image_id"] for h in bob["hits"]} & {ids["contract"], ids["scan"]}

    def alice_sees(c: Any) -> Any:
        return c.call_tool("get_metadata", {"image_id": ids["contract"]})

    still = http_session(http_url, ALICE, alice_sees)  # bob's delete_image did nothing to alice's page
    assert not still.is_error and still.structured_content["acl"] == ["alice"]


def test_indexing_what_others_indexed_reveals_nothing_and_stays_private(http_url: str, world: dict[str, Any]) -> None:
    ids = world["ids"]

    async def as_bob(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, path in (("theirs", "alice/scan.png"), ("copy", "bob/copy.png"), ("absent", "bob/new.png"), ("twin", "alice/contract.png")):
            r = await c.call_tool("index_images", {"paths": [path]})
            assert not r.is_error, r.content
            out[name] = r.structured_content
        out["meta"] = {
            name: (await c.call_tool("get_metadata", {"image_id": s["image_ids"][0]})).structured_content
            for name, s in out.items() if name in ("theirs", "copy", "absent")
        }
        out["again"] = (await c.call_tool("index_images", {"paths": ["bob/new.png"]})).structured_content
        out["not_me"] = _text(await c.call_tool("index_images", {"paths": ["bob/new.png"], "acl": ["alice"]}))
        out["strict"] = _text(await c.call_tool("search_images", {"query": "memo", "k": "2"}))
        out["escape"] = [_text(await c.call_tool("index_images", {"paths": [p]})) for p in ("../outside/secret.png", "/etc")]
        return out

    bob = http_session(http_url, BOB, as_bob)

    def shape(summary: dict[str, Any]) -> dict[str, Any]:
        return {k: (len(v) if k == "image_ids" else v) for k, v in summary.items() if k not in ("seconds", "version")}

    assert shape(bob["theirs"]) == shape(bob["copy"]) == shape(bob["absent"]) == {
        "indexed": 1, "unchanged": 0, "duplicates": 0, "replaced": 0, "updated_metadata": 0, "failed": [], "failed_count": 0,
        "image_ids": 1,
    }
    assert bob["twin"]["duplicates"] == 1 and bob["twin"]["indexed"] == 0  # the same content as his copy.png, which he can see
    new_ids = {name: bob[name]["image_ids"][0] for name in ("theirs", "copy", "absent")}
    assert not {ids["contract"], ids["scan"]} & set(new_ids.values()) and len(set(new_ids.values())) == 3
    for name, m in bob["meta"].items():  # bob's own copies: visible to him, to him alone
        assert m["acl"] == ["bob"], (name, m["acl"])
    assert bob["meta"]["theirs"]["source"] == "alice/scan.png" and bob["meta"]["absent"]["source"] == "bob/new.png"
    assert "CONFIDENTIAL" in bob["meta"]["copy"]["ocr_text"].upper()
    assert bob["again"]["unchanged"] == 1 and bob["again"]["indexed"] == 0
    assert "does not include you" in bob["not_me"]
    assert "k: Input should be a valid integer (got '2')" in bob["strict"]
    for text in bob["escape"]:  # refused, without telling where the index root is on the server
        assert "outside the folders this server may index" in text and str(world["root"]) not in text

    async def as_alice(c: Any) -> dict[str, str]:
        out = {name: _text(await c.call_tool("get_metadata", {"image_id": i})) for name, i in new_ids.items()}
        out["own"] = json.dumps((await c.call_tool("get_metadata", {"image_id": ids["contract"]})).structured_content["acl"])
        return out

    alice = http_session(http_url, ALICE, as_alice)
    for name in new_ids:
        assert alice[name].startswith("no image with id"), (name, alice[name])
    assert alice["own"] == '["alice"]'  # bob indexing her files left her pages alone


def test_links_out_of_the_index_root_are_skipped_unread(http_url: str, world: dict[str, Any]) -> None:
    async def as_bob(c: Any) -> Any:
        r = await c.call_tool("index_images", {"paths": ["bob/sub"]})
        hits = (await c.call_tool("search_images", {"query": "OUTSIDE SECRET must never be indexed", "mode": "keyword"})).structured_content
        return r, hits

    r, hits = http_session(http_url, BOB, as_bob)
    assert not r.is_error, r.content
    out = r.structured_content
    assert out["indexed"] == 0 and sorted(f["path"] for f in out["failed"]) == ["bob/sub/p.png", "bob/sub/x.png"]
    assert all("outside the folders" in f["reason"] for f in out["failed"])
    text = json.dumps(out) + r.content[0].text
    assert "passwd" not in text and "outside/" not in text and str(world["work"]) not in text
    assert not [h for h in hits["hits"] if "SECRET" in h["snippet"].upper() or h["file"] in ("x.png", "secret.png")]


def test_payloads_fit_the_sdk_clients_default_limit(http_url: str, world: dict[str, Any]) -> None:
    scan = world["ids"]["scan"]
    on_disk = (world["root"] / "alice" / "scan.png").stat().st_size
    assert on_disk > SSE_EVENT_LIMIT  # the page image as stored would not fit in one event

    async def as_alice(c: Any) -> dict[str, Any]:
        return {
            "crop": await c.call_tool("crop_region", {"image_id": scan, "bbox": [0, 0, 1400, 1900], "scale": 4, "enhance": True}),
            "small": await c.call_tool("crop_region", {"image_id": scan, "bbox": [40, 40, 440, 240], "scale": 4}),
            "image": await c.read_resource(f"imgrag://image/{scan}"),
            "meta": await c.call_tool("get_metadata", {"image_id": scan, "max_ocr_lines": 2000}),
            "search": await c.call_tool("search_images", {"query": "ledger contract", "k": 100, "with_thumbnails": True}),
        }

    out = http_session(http_url, ALICE, as_alice)  # the SDK client raises on an event over 1 MiB
    for name in ("crop", "small", "meta", "search"):
        r = out[name]
        assert not r.is_error, (name, r.content)
        assert len(r.model_dump_json(by_alias=True, exclude_none=True).encode()) < HTTP_BUDGET.response_bytes, name
    for name in ("crop", "small"):
        (png,) = [c for c in out[name].content if c.type == "image"]
        img = Image.open(io.BytesIO(base64.b64decode(png.data)))
        assert img.format == "PNG" and img.size == (out[name].structured_content["width"], out[name].structured_content["height"])
    assert out["small"].structured_content["scale"] == 4  # a grey page goes out as a grey PNG, so a small region keeps its zoom
    blob = base64.b64decode(out["image"].contents[0].blob)
    img = Image.open(io.BytesIO(blob))
    assert img.format == "PNG" and len(blob) <= HTTP_BUDGET.resource_bytes and img.size[0] / img.size[1] == pytest.approx(1400 / 1900, rel=0.01)
    assert out["meta"].structured_content["source"] == "alice/scan.png"


# -- stdio: raw pipes -----------------------------------------------------------------------------


def test_stdio_answers_malformed_jsonrpc(world: dict[str, Any]) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    lines = [
        json.dumps(init),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        '{"jsonrpc": "2.0", "id": 2, "method": "tools/list"',
        '{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search_images", "arguments": {"query": "\\ud800"}}}',
        '{"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"x": ' + "[" * 5000 + "]" * 5000 + "}}",
        '{"jsonrpc": "2.0", "id": 5}',
        "[1, 2]",
        '{"jsonrpc": "2.0", "id": 6, "method": "prompts/list"}',
        '{"jsonrpc": "2.0", "id": 7, "method": "tools/list"}',
    ]
    with (world["work"] / "stdio-raw.log").open("w") as errlog:
        proc = subprocess.Popen(
            [*imgrag_cmd(), "serve", "--no-warm-up"], env=world["env"], cwd=world["work"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog,
        )
    assert proc.stdin is not None and proc.stdout is not None
    replies: list[dict[str, Any]] = []
    try:
        proc.stdin.write(("\n".join(lines) + "\n").encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while len(replies) < 8 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
            replies.append(json.loads(line))
    finally:
        proc.stdin.close()
        finish(proc, 60)
    by_id = {r.get("id"): r for r in replies}
    assert len(replies) == 8, replies
    assert "prompts" in by_id[1]["result"]["capabilities"]  # advertised: the prompts exist
    assert by_id[2]["error"]["code"] == -32700
    assert by_id[3]["error"]["code"] == -32600
    assert by_id[4]["error"]["code"] == -32700
    assert by_id[5]["error"]["code"] == -32600
    assert by_id[None]["error"]["code"] == -32600  # the batch: no id to answer
    assert by_id[6]["result"]["prompts"]  # the viewer's prompts are listed
    assert len(by_id[7]["result"]["tools"]) == 4 and all(t["inputSchema"]["additionalProperties"] is False for t in by_id[7]["result"]["tools"])
    assert not re.search(r"Traceback", (world["work"] / "stdio-raw.log").read_text())
