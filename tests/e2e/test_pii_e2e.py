"""End-to-end: who sees personal data. A real page with a Chinese resident ID number, a mobile number
and an e-mail address is indexed by `python -m imgrag index` (real OCR, layout and embedders), then:

* over a real `imgrag serve --http` session of the unmodified MCP SDK client, a token with
  ``"pii": true`` gets every value, and a token without it gets none — in search snippets and
  regions, a search for a value or part of one, get_metadata, ocr_region's fresh read, and black
  pixels where the values are in crops, thumbnails and the page resource;
* the web viewer of the same server gives each of them the same as its JSON and PNG routes;
* the CLI as the operator is unmasked, with ``--as`` it is masked like any uncleared principal.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgrag.indexing.loader import file_digest
from imgrag.indexing.pii import cn_id_check_char

from mcp_http import http_session, imgrag_cmd, served_http
from shared_corpus import server_env
from test_web_viewer import session_client

pytestmark = pytest.mark.slow

DPO = "dpo-token-" + "d" * 24  # "pii": true
CLERK = "clerk-token-" + "c" * 24  # same groups, no clearance
CN_ID = "11010519900307123" + cn_id_check_char("11010519900307123")
MOBILE = "13812345678"
EMAIL = "zhang.wei@example.com"
VALUES = (CN_ID, MOBILE, EMAIL)


def norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def leaked(text: str) -> list[str]:
    """The planted values found in ``text`` however spaced or punctuated."""
    t = norm(text)
    return [v for v in VALUES if norm(v) in t]


def _page(path: Path, lines: list[str], size: tuple[int, int]) -> None:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        d.text((50, 40 + 70 * i), text, fill=(20, 20, 20), font=ImageFont.load_default(34))
    img.save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("pii-e2e")
    root = work / "root"
    root.mkdir()
    form = root / "form.png"
    _page(form, ["CUSTOMER REGISTRATION FORM", f"ID No: {CN_ID}", f"Mobile: {MOBILE}", f"Email: {EMAIL}",
                 "Invoice total: 4,250 RMB"], (1100, 420))
    _page(root / "notice.png", ["PUBLIC NOTICE", "Office closed on Friday"], (900, 300))
    env = server_env(work / "home")
    r = subprocess.run([*imgrag_cmd(), "index", str(root), "--acl", "team", "--json"], env=env, cwd=work,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    image_id = file_digest(form)
    r = subprocess.run([*imgrag_cmd(), "show", image_id], env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout)  # the operator's view: everything
    assert {"cn_id", "cn_mobile", "email"} <= {f["kind"] for f in rec["pii"]}, rec["pii"]
    assert leaked(r.stdout) == list(VALUES)
    boxes = {f["kind"]: f["bbox"] for f in rec["pii"]}
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({DPO: {"name": "dpo", "groups": ["team"], "pii": True}, CLERK: {"name": "clerk", "groups": ["team"]}}))
    tokens.chmod(0o600)
    with served_http(["--tokens", str(tokens)], env, work, work / "serve.log") as url:
        yield {"work": work, "env": env, "url": url, "id": image_id, "boxes": boxes, "size": (rec["width"], rec["height"])}


def box_mean(img: Image.Image, box: list[float], view: tuple[float, float, float, float], shrink: float = 3) -> float:
    """Mean grey level inside ``box`` (original-image pixels, shrunk a little) on an image showing ``view``."""
    arr = np.asarray(img.convert("L"), dtype=np.float64)
    sx, sy = arr.shape[1] / (view[2] - view[0]), arr.shape[0] / (view[3] - view[1])
    x0, y0 = int((box[0] + shrink - view[0]) * sx), int((box[1] + shrink - view[1]) * sy)
    x1, y1 = int(np.ceil((box[2] - shrink - view[0]) * sx)), int(np.ceil((box[3] - shrink - view[1]) * sy))
    return float(arr[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].mean())


def _mcp_calls(world: dict[str, Any], token: str) -> dict[str, Any]:
    image_id, box = world["id"], world["boxes"]["cn_mobile"]
    crop_box = [box[0] - 20, box[1] - 10, box[2] + 20, box[3] + 10]

    async def calls(c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, args in (
            ("search", {"query": "Mobile Email registration", "with_thumbnails": True}),
            ("search_value", {"query": EMAIL}),
            ("search_part", {"query": f"registration {MOBILE[-8:]}", "mode": "keyword"}),
            ("metadata", {"image_id": image_id}),
            ("ocr", {"image_id": image_id}),
            ("crop", {"image_id": image_id, "bbox": crop_box, "scale": 2}),
        ):
            tool = {"search": "search_images", "search_value": "search_images", "search_part": "search_images",
                    "metadata": "get_metadata", "ocr": "ocr_region", "crop": "crop_region"}[name]
            r = await c.call_tool(tool, args)
            assert not r.is_error, (name, r.content)
            texts = " ".join(x.text for x in r.content if x.type == "text")
            images = [Image.open(io.BytesIO(base64.b64decode(x.data))) for x in r.content if x.type == "image"]
            out[name] = {"s": r.structured_content, "text": texts + json.dumps(r.structured_content, ensure_ascii=False), "images": images}
        for kind in ("image", "thumbnail"):
            res = await c.read_resource(f"imgrag://{kind}/{image_id}")
            out[kind] = Image.open(io.BytesIO(base64.b64decode(res.contents[0].blob)))
        return out

    out = http_session(world["url"], token, calls)
    out["crop_box"] = crop_box
    return out


def test_mcp_over_http_masks_for_the_uncleared_only(world: dict[str, Any]) -> None:
    image_id, (w, h) = world["id"], world["size"]
    boxes = world["boxes"]
    dpo, clerk = _mcp_calls(world, DPO), _mcp_calls(world, CLERK)

    # texts: the cleared token reads the values the page holds, the other none of them anywhere
    for name in ("search", "search_value", "search_part", "metadata", "ocr", "crop"):
        assert leaked(clerk[name]["text"]) == [], (name, clerk[name]["text"][:3000])
    assert leaked(dpo["metadata"]["text"]) == list(VALUES)
    assert leaked(dpo["ocr"]["text"]), dpo["ocr"]["s"]["text"]  # the fresh read finds them for a cleared caller
    assert "Mobile: [cn_mobile redacted]" in clerk["metadata"]["s"]["ocr_text"]
    # the re-read is of the redacted pixels: the labels are read, the values are black
    assert "Mobile" in clerk["ocr"]["s"]["text"] and "4,250" in clerk["ocr"]["s"]["text"]
    # the findings are still there for the clerk, with their boxes, without their values
    found = {f["kind"]: f for f in clerk["metadata"]["s"]["pii"]}
    assert found["cn_mobile"]["text"] == "[cn_mobile redacted]" and found["cn_mobile"]["bbox"] == pytest.approx(boxes["cn_mobile"])
    # the snippet of a search touching the lines
    hit = next(x for x in dpo["search"]["s"]["hits"] if x["image_id"] == image_id)
    chit = next(x for x in clerk["search"]["s"]["hits"] if x["image_id"] == image_id)
    assert (hit["region"] or {}).get("text") or hit["snippet"]
    assert leaked(json.dumps(chit)) == [] and not clerk["search"]["s"]["note"]

    # a search for a value: the cleared caller finds its page; the other is told it was left out
    assert dpo["search_value"]["s"]["hits"][0]["image_id"] == image_id and not dpo["search_value"]["s"]["note"]
    assert clerk["search_value"]["s"]["hits"] == [] and "personal data" in clerk["search_value"]["s"]["note"]
    # part of a stored value (8 of the mobile's digits) is not a way in either: only "registration" is searched
    assert clerk["search_part"]["s"]["query"] == "registration" and "personal data" in clerk["search_part"]["s"]["note"]
    assert dpo["search_part"]["s"]["query"] == f"registration {MOBILE[-8:]}"

    # pixels: black where every value is, for the clerk only
    (cimg,), (dimg,) = clerk["crop"]["images"], dpo["crop"]["images"]
    view = tuple(clerk["crop"]["s"]["bbox"])
    assert box_mean(cimg, boxes["cn_mobile"], view) < 8 and box_mean(dimg, boxes["cn_mobile"], view) > 100
    for kind in ("image", "thumbnail"):
        for k, box in boxes.items():
            assert box_mean(clerk[kind], box, (0, 0, w, h), shrink=6) < 30, (kind, k)
            assert box_mean(dpo[kind], box, (0, 0, w, h), shrink=6) > 100, (kind, k)
    (cthumb,), (dthumb,) = clerk["search"]["images"][:1], dpo["search"]["images"][:1]
    if clerk["search"]["s"]["thumbnail_ids"][0] == image_id:
        assert box_mean(cthumb, boxes["cn_mobile"], (0, 0, w, h), shrink=6) < 30
        assert box_mean(dthumb, boxes["cn_mobile"], (0, 0, w, h), shrink=6) > 100


def test_web_viewer_masks_for_the_uncleared_only(world: dict[str, Any]) -> None:
    base = world["url"].removesuffix("/mcp")
    image_id, (w, h), box = world["id"], world["size"], world["boxes"]["email"]
    seen: dict[str, dict[str, Any]] = {}
    for name, token in (("dpo", DPO), ("clerk", CLERK)):
        c = session_client(base, token)
        got: dict[str, Any] = {}
        for key, path in (("search", "/api/search?q=Mobile+Email+registration"), ("value", f"/api/search?q={EMAIL}"),
                          ("record", f"/api/image/{image_id}")):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text)
            got[key] = r.json()
        crop = [box[0] - 20, box[1] - 10, box[2] + 20, box[3] + 10]
        for key, path in (("page", "page.png"), ("thumb", "thumb.png?side=400"),
                          ("crop", "crop.png?bbox=" + ",".join(f"{v:.0f}" for v in crop))):
            r = c.get(f"/api/image/{image_id}/{path}")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", (path, r.text[:300])
            got[key] = Image.open(io.BytesIO(r.content))
        got["crop_view"] = tuple(float(f"{v:.0f}") for v in crop)
        seen[name] = got
    dpo, clerk = seen["dpo"], seen["clerk"]
    assert leaked(json.dumps(dpo["record"])) == list(VALUES)
    for key in ("search", "value", "record"):
        assert leaked(json.dumps(clerk[key], ensure_ascii=False)) == [], (key, json.dumps(clerk[key])[:2000])
    # the record view keeps the PII boxes (drawn as boxes) and the OCR line overlay, without the values
    assert {p["kind"] for p in clerk["record"]["pii"]} == {p["kind"] for p in dpo["record"]["pii"]}
    assert all(p["text"].endswith("redacted]") for p in clerk["record"]["pii"])
    assert any("redacted]" in ln["text"] for ln in clerk["record"]["ocr_lines"])
    assert clerk["value"]["hits"] == [] and clerk["value"]["note"] and dpo["value"]["hits"][0]["image_id"] == image_id
    for key, view in (("page", (0, 0, w, h)), ("thumb", (0, 0, w, h)), ("crop", clerk["crop_view"])):
        assert box_mean(clerk[key], box, view, shrink=6) < 30, key
        assert box_mean(dpo[key], box, view, shrink=6) > 100, key


def test_cli_is_unmasked_for_the_operator_and_masked_with_as(world: dict[str, Any]) -> None:
    def cli(*args: str) -> str:
        r = subprocess.run([*imgrag_cmd(), *args], env=world["env"], cwd=world["work"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    as_clerk = ("--as", "clerk", "--group", "team")
    assert leaked(cli("show", world["id"])) == list(VALUES)
    assert leaked(cli("show", world["id"], *as_clerk)) == []
    op = json.loads(cli("search", EMAIL, "--json"))
    assert op["hits"][0]["image_id"] == world["id"] and not op["note"]
    clerk = json.loads(cli("search", EMAIL, "--json", *as_clerk))
    assert clerk["hits"] == [] and "personal data" in clerk["note"]
    text = cli("search", "Mobile registration", *as_clerk)
    assert leaked(text) == []
