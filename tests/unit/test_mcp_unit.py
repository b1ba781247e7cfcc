"""Fast tests of the MCP server's pieces: geometry, PNG caps, cursors, tokens, error wording, and the
tools wired through an in-process MCP session over a small fake store (no models, no real index).
The end-to-end tests with real models, a real index and real transports are in test_mcp_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.loader import file_digest
from imgrag.indexing.models import OcrLine
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import OPERATOR, ImageRecord, Principal, Stats
from imgrag.indexing import imaging
from imgrag.indexing.app import Imgrag
from imgrag.indexing.limits import MAX_CROP_BYTES, MAX_CROP_SIDE
from imgrag.mcp_server import paging
from imgrag.mcp_server.auth import TokenFileVerifier, fixed_principal, load_tokens, principal_from_settings
from imgrag.mcp_server.server import build_server, format_validation_error
from imgrag.mcp_server.tools import BBoxIn, CropScale, ImageId

# -- geometry -----------------------------------------------------------------------------------


def test_to_pixels_relative_and_px() -> None:
    assert imaging.to_pixels([0.1, 0.2, 0.5, 1.0], "relative", 1000, 500) == (100.0, 100.0, 500.0, 500.0)
    assert imaging.to_pixels([1, 2, 3, 4], "px", 10, 10) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ImgragError, match="empty or inverted"):
        imaging.to_pixels([5, 5, 5, 9], "px", 10, 10)
    with pytest.raises(ImgragError, match="relative units"):
        imaging.to_pixels([10, 10, 200, 300], "relative", 1000, 1000)


def test_clamp_box_clips_and_rounds_outwards() -> None:
    assert imaging.clamp_box((10.4, 20.6, 30.2, 40.9), 100, 100) == ((10, 20, 31, 41), False)
    assert imaging.clamp_box((-5, -5, 150, 50), 100, 80) == ((0, 0, 100, 50), True)
    with pytest.raises(ImgragError, match="outside the image \\(100x80 px\\)"):
        imaging.clamp_box((120, 10, 200, 20), 100, 80)


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img


def test_render_crop_scale_and_cap() -> None:
    page = np.full((1000, 800, 3), 255, np.uint8)
    data, img, applied, note = imaging.render_crop(page, (100, 100, 300, 200), 3.0, do_enhance=True, max_side=1600, max_bytes=10**7)
    assert _decode(data).size == (600, 300) and applied == 3.0 and not note
    data, img, applied, note = imaging.render_crop(page, (0, 0, 800, 1000), 4.0, do_enhance=False, max_side=1600, max_bytes=10**7)
    assert _decode(data).size == (1280, 1600) and applied == pytest.approx(1.6) and "reduced" in note


def test_fit_png_respects_byte_cap() -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8))
    data, img = imaging.fit_png(noise, 1600, 300_000)
    assert len(data) <= 300_000 and max(img.size) < 900


def test_auto_ocr_scale() -> None:
    assert imaging.auto_ocr_scale([8, 8, 10], (0, 0, 500, 40), target=40, max_scale=4) == 4.0
    assert imaging.auto_ocr_scale([20], (0, 0, 500, 40), target=40, max_scale=4) == 2.0
    assert imaging.auto_ocr_scale([80], (0, 0, 500, 40), target=40, max_scale=4) == 1.0
    assert imaging.auto_ocr_scale([], (0, 0, 600, 100), target=40, max_scale=4) == 2.0


def test_cursor_roundtrip_and_mismatch() -> None:
    key, who = paging.query_key({"q": "合同", "m": "hybrid"}), paging.principal_key(OPERATOR)
    cur = paging.encode_cursor(paging.Cursor(20, 50, 30, "h"), key, who)
    assert paging.decode_cursor(cur, key, who) == paging.Cursor(20, 50, 30, "h")
    with pytest.raises(ImgragError, match="different search"):
        paging.decode_cursor(cur, paging.query_key({"q": "other"}), who)
    with pytest.raises(ImgragError, match="not one this server issued"):
        paging.decode_cursor("!!garbage!!", key, who)


# -- tokens and principals ------------------------------------------------------------------------


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"a" * 20: {"name": "alice", "groups": ["legal"]}}))
    tokens = load_tokens(f)
    assert [e.name for e in tokens.values()] == ["alice"]
    v = TokenFileVerifier(f)
    tok = asyncio.run(v.verify_token("a" * 20))
    assert tok is not None and tok.subject == "alice"
    assert tok.claims == {"groups": ["legal"], "all_access": False, "pii": False}
    assert asyncio.run(v.verify_token("b" * 20)) is None
    f.write_text(json.dumps({"short": {"name": "x"}}))
    with pytest.raises(ImgragError, match="shorter than"):
        load_tokens(f)
    f.write_text("{not json")
    with pytest.raises(ImgragError, match="not readable JSON"):
        load_tokens(f)
    with pytest.raises(ImgragError, match="does not exist"):
        load_tokens(tmp_path / "missing.json")


def test_token_file_pii_clearance(tmp_path: Path) -> None:
    """``"pii": true`` clears a principal to see personal data; an operator always may; nobody else."""
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

    from imgrag.mcp_server.auth import bearer_principal

    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"a" * 20: {"name": "dpo", "pii": True}, "b" * 20: {"name": "bob"}}))
    v = TokenFileVerifier(f)
    seen = {}
    for token in ("a" * 20, "b" * 20):
        access = asyncio.run(v.verify_token(token))
        assert access is not None
        ctx = auth_context_var.set(AuthenticatedUser(access))
        try:
            seen[access.subject] = bearer_principal()
        finally:
            auth_context_var.reset(ctx)
    assert seen["dpo"].pii_clearance and seen["dpo"].sees_pii
    assert not seen["bob"].sees_pii
    assert OPERATOR.sees_pii and not Principal(name="x").sees_pii
    f.write_text(json.dumps({"a" * 20: {"name": "dpo", "pii": "maybe"}}))
    with pytest.raises(ImgragError, match="bad entry"):
        load_tokens(f)


def test_token_file_reload_revokes(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"a" * 20: {"name": "alice"}}))
    v = TokenFileVerifier(f)
    assert v.entry("a" * 20) is not None
    f.write_text(json.dumps({"c" * 20: {"name": "carol"}, "pad": None}))  # invalid: keeps the old tokens
    assert v.entry("a" * 20) is not None
    f.write_text(json.dumps({"c" * 24: {"name": "carol"}}))
    assert v.entry("a" * 20) is None and v.entry("c" * 24).name == "carol"  # type: ignore[union-attr]


def test_stdio_principal_defaults_to_operator() -> None:
    assert principal_from_settings(None, []) == OPERATOR
    assert principal_from_settings("bob", ["hr"]) == Principal(name="bob", groups=["hr"])


def test_validation_error_wording() -> None:
    from pydantic import ValidationError

    from pydantic import ConfigDict, create_model

    crop_args = create_model(
        "crop_region", __config__=ConfigDict(extra="forbid"), image_id=(ImageId, ...), bbox=(BBoxIn, ...), scale=(CropScale, 1.0)
    )
    with pytest.raises(ValidationError) as ei:
        crop_args.model_validate({"bbox": [3, 3, 1, 1], "scale": 9, "extra": 1})
    text = format_validation_error("crop_region", ei.value)
    assert "image_id: missing" in text and "empty or inverted" in text and "scale:" in text
    assert "unknown argument(s) extra" in text and "pydantic.dev" not in text


# -- tools through an in-process session over a fake store ----------------------------------------


class FakeStore:
    """Just enough of the store protocol for crop/ocr/metadata/resources, with the same ACL rule."""

    backend = "fake"

    def __init__(self, records: list[ImageRecord]) -> None:
        self.records = {r.image_id: r for r in records}
        self.deleted: set[str] = set()

    def get(self, image_id: str, principal: Principal) -> ImageRecord | None:
        r = self.records.get(image_id)
        return r if r is not None and image_id not in self.deleted and principal.admits(r.acl) else None

    def get_many(self, ids: list[str], principal: Principal) -> dict[str, ImageRecord]:
        return {i: r for i in ids if (r := self.get(i, principal)) is not None}

    def list_images(self, principal: Principal, filters: Any, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        visible = [r for i, r in self.records.items() if i not in self.deleted and principal.admits(r.acl)]
        return visible[offset : offset + limit]

    def versions(self) -> list:
        return []

    def stats(self, principal: Principal) -> Stats:
        visible = [r for r in self.records.values() if principal.admits(r.acl)]
        return Stats(backend="fake", images=len(visible), documents=len(visible), deleted=0, regions=0,
                     by_quality={}, by_format={}, version=None, spaces=None)


class BoxOcr:
    """Reports one line covering the dark pixels it is given: checks the coordinate mapping."""

    name = "box-ocr"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def recognize(self, img: np.ndarray) -> list[OcrLine]:
        self.seen.append(img.shape[:2])
        ys, xs = np.nonzero(img.min(axis=2) < 100)
        if not len(xs):
            return []
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return [OcrLine(text="INK", bbox=box, confidence=0.9)]


@pytest.fixture()
def fake_server(tmp_path: Path):
    img = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(img).rectangle((200, 300, 299, 319), fill="black")  # a 100x20 "line" at (200,300)
    path = tmp_path / "page.png"
    img.save(path)

    def rec(image_id: str, acl: list[str]) -> ImageRecord:
        return ImageRecord(
            image_id=image_id, doc_id=file_digest(path), path=str(path), format="png", width=800, height=600,
            quality="born_digital", indexed_at=datetime.now(timezone.utc), acl=acl,
            ocr_lines=[OcrLine(text=f"line {i}", bbox=(10, 10 + 12 * i, 200, 20 + 12 * i), confidence=0.8) for i in range(300)],
            ocr_text="\n".join(f"line {i}" for i in range(300)),
        )

    store = FakeStore([rec("pub", []), rec("legal1", ["legal"])])
    rt = Runtime(Settings(home=tmp_path / "home"), store=store)  # type: ignore[arg-type]
    ocr = BoxOcr()
    rt.__dict__["ocr"] = ocr
    return rt, ocr


def _run(mcp, fn):
    from mcp import Client

    async def main():
        async with Client(mcp) as c:
            return await fn(c)

    return asyncio.run(main())


def test_crop_png_matches_bbox_and_scale(fake_server) -> None:
    rt, _ = fake_server
    mcp = build_server(Imgrag(runtime=rt), fixed_principal(OPERATOR))

    async def calls(c):
        a = await c.call_tool("crop_region", {"image_id": "pub", "bbox": [100, 50, 300, 150], "scale": 2.5})
        b = await c.call_tool("crop_region", {"image_id": "pub", "bbox": [0.5, 0.5, 1.2, 1.3], "units": "relative"})
        d = await c.call_tool("crop_region", {"image_id": "pub", "bbox": [0, 0, 800, 600], "scale": 4, "enhance": True})
        return a, b, d

    a, b, d = _run(mcp, calls)
    assert not a.is_error
    png = [c for c in a.content if c.type == "image"][0]
    assert png.mime_type == "image/png"
    assert _decode(base64.b64decode(png.data)).size == (500, 250)
    assert a.structured_content["bbox"] == [100, 50, 300, 150] and a.structured_content["scale"] == 2.5
    assert b.structured_content["bbox"] == [400, 300, 800, 600] and b.structured_content["clipped"] is True
    img = _decode(base64.b64decode([c for c in d.content if c.type == "image"][0].data))
    assert max(img.size) <= MAX_CROP_SIDE and d.structured_content["png_bytes"] <= MAX_CROP_BYTES
    assert img.size == (d.structured_content["width"], d.structured_content["height"])


def test_ocr_region_maps_boxes_back(fake_server) -> None:
    rt, ocr = fake_server
    mcp = build_server(Imgrag(runtime=rt), fixed_principal(OPERATOR))
    r = _run(mcp, lambda c: c.call_tool("ocr_region", {"image_id": "pub", "bbox": [150, 280, 350, 340], "scale": 3}))
    assert not r.is_error, r.content
    (line,) = r.structured_content["lines"]
    assert line["text"] == "INK"
    assert line["bbox"] == pytest.approx([200, 300, 300, 320], abs=1.0)
    assert ocr.seen[-1] == (60 * 3 + 16, 200 * 3 + 16)  # upscaled ×3 plus the 8 px margin
    auto = _run(mcp, lambda c: c.call_tool("ocr_region", {"image_id": "pub", "bbox": [150, 280, 350, 340]}))
    assert auto.structured_content["scale"] == 4.0  # no known lines there: a small region is zoomed to the cap


def test_acl_unknown_and_forbidden_read_the_same(fake_server) -> None:
    rt, _ = fake_server
    bob = build_server(Imgrag(runtime=rt), fixed_principal(Principal(name="bob", groups=["hr"])))

    async def calls(c):
        out = {}
        for image_id in ("legal1", "nope"):
            r = await c.call_tool("get_metadata", {"image_id": image_id})
            out[image_id] = r.content[0].text.replace(repr(image_id), "ID")
        ok = await c.call_tool("get_metadata", {"image_id": "pub", "max_ocr_lines": 5})
        from mcp.shared.exceptions import MCPError

        errs = []
        for uri in ("imgrag://image/legal1", "imgrag://image/nope"):
            try:
                await c.read_resource(uri)
            except MCPError as e:
                errs.append(str(e).replace("'legal1'", "ID").replace("'nope'", "ID"))
        col = await c.read_resource("imgrag://collection")
        return out, ok, errs, col

    out, ok, errs, col = _run(bob, calls)
    assert out["legal1"] == out["nope"] and "no image with id ID" in out["legal1"]
    assert len(errs) == 2 and errs[0] == errs[1]
    assert ok.structured_content["ocr_lines_omitted"] == 295 and len(ok.structured_content["ocr_lines"]) == 5
    assert json.loads(col.contents[0].text)["images"] == 1


def test_a_clients_own_text_comes_back_short_in_errors(fake_server) -> None:
    """Names and URIs a client sends are quoted in errors cut short: a 3.9 MB argument name, tool
    name or resource URI came back whole (a URI twice, in the message and the data: 7.8 MB), over
    the response budget and the SDK client's 1 MiB event limit."""
    from mcp.shared.exceptions import MCPError

    rt, _ = fake_server
    mcp = build_server(Imgrag(runtime=rt), fixed_principal(OPERATOR))
    big = 300_000

    async def calls(c):
        texts = [
            (await c.call_tool("search_images", {"query": "x", "q" * big: 1})).content[0].text,
            (await c.call_tool("search_images", {"query": "x", **{f"k{i}": 1 for i in range(5000)}})).content[0].text,
            (await c.call_tool("search_images", {"query": "x", "filters": {"meta": {"m" * big: "v"}}})).content[0].text,
            (await c.call_tool("search_images", {"query": "x", "filters": {"f" * big: 1}})).content[0].text,
            (await c.call_tool("z" * big, {})).content[0].text,
        ]
        errors = []
        for uri in ("imgrag://zz/" + "u" * big, "imgrag://image/" + "i" * big):
            with pytest.raises(MCPError) as ei:
                await c.read_resource(uri)
            errors.append(ei.value.error)
        for args in ({"question": "q", "a" * big: "1"}, {"question": "q", **{f"a{i}": "1" for i in range(5000)}}):
            with pytest.raises(MCPError) as ei:
                await c.get_prompt("find_and_cite", args)
            errors.append(ei.value.error)
        return texts, errors

    texts, errors = _run(mcp, calls)
    assert all(len(t) <= 2000 for t in texts), [len(t) for t in texts]
    assert "unknown argument(s) qqq" in texts[0] and "and 4990 more" in texts[1] and "filters.meta.mmm" in texts[2]
    assert texts[4].startswith("Unknown tool: zzz")
    for e in errors:
        assert len(e.message) <= 2000 and len(json.dumps(e.data)) <= 400, (len(e.message), len(json.dumps(e.data)))
    assert errors[0].message.startswith("Unknown resource: imgrag://zz/uuu") and errors[1].message.startswith("Unknown resource: imgrag://image/iii")
    assert "invalid arguments for prompt find_and_cite: aaa" in errors[2].message


# -- the same tools over each real backend (conftest's `store`: LanceDB and Elasticsearch) ---------


def _indexed(image_id: str, path: Path, text: str, acl: list[str]) -> Any:
    from imgrag.indexing.stores.base import ImageVectors, Indexed, RegionRecord

    rng = np.random.default_rng(sum(map(ord, image_id)))

    def vec(n: int) -> np.ndarray:
        v = rng.normal(size=n).astype(np.float32)
        return v / np.linalg.norm(v)

    rec = ImageRecord(
        image_id=image_id, doc_id=file_digest(path), path=str(path), format="png", width=200, height=100,
        quality="born_digital", ocr_text=text, ocr_lines=[OcrLine(text=text, bbox=(10, 10, 190, 30), confidence=0.9)],
        acl=acl, indexed_at=datetime.now(timezone.utc),
    )
    block = RegionRecord(region_id=f"{image_id}:b0", image_id=image_id, kind="block", label="b0", bbox=(10, 10, 190, 30), text=text, vector=vec(8))
    return Indexed(record=rec, vectors=ImageVectors(image=vec(8), feature=vec(8), text=vec(8)), regions=[block])


def test_tools_over_each_backend(store: Any, tmp_path: Path) -> None:
    from imgrag.indexing.stores.base import ModelSpaces

    paths = {}
    for name, colour in (("legal", "white"), ("hr", "ivory")):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (200, 100), colour).save(paths[name])
    store.ensure_spaces(ModelSpaces(image="t-img", image_dim=8, feature="t-feat", feature_dim=8, text="t-txt", text_dim=8))
    store.write([
        _indexed("legal-1", paths["legal"], "service agreement between the parties", ["legal"]),
        _indexed("hr-1", paths["hr"], "employee agreement and handbook", ["hr"]),
    ])
    store.commit("index", {"indexed": 2})
    rt = Runtime(Settings(home=tmp_path / "home"), store=store)
    alice, bob = Principal(name="alice", groups=["legal"]), Principal(name="bob", groups=["hr"])
    for principal, mine, theirs in ((alice, "legal-1", "hr-1"), (bob, "hr-1", "legal-1")):
        mcp = build_server(Imgrag(runtime=rt), fixed_principal(principal))

        async def calls(c: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            out["search"] = await c.call_tool("search_images", {"query": "agreement", "mode": "keyword"})
            out["crop"] = await c.call_tool("crop_region", {"image_id": mine, "bbox": [0, 0, 100, 50], "scale": 2})
            for image_id in (theirs, "missing-1"):
                for tool, args in (("get_metadata", {}), ("crop_region", {"bbox": [0, 0, 10, 10]}), ("ocr_region", {})):
                    r = await c.call_tool(tool, {"image_id": image_id, **args})
                    out[(tool, image_id)] = r.content[0].text.replace(repr(image_id), "ID") if r.is_error else "visible"
            out["collection"] = json.loads((await c.read_resource("imgrag://collection")).contents[0].text)
            return out

        out = _run(mcp, calls)
        assert [h["image_id"] for h in out["search"].structured_content["hits"]] == [mine]
        (png,) = [c for c in out["crop"].content if c.type == "image"]
        assert _decode(base64.b64decode(png.data)).size == (200, 100)
        for tool in ("get_metadata", "crop_region", "ocr_region"):
            assert out[(tool, theirs)] == out[(tool, "missing-1")] and "no image with id ID" in out[(tool, theirs)]
        assert out["collection"]["images"] == 1


def test_linked_text_does_not_confirm_personal_data_a_caller_sees_masked(store: Any, tmp_path: Path) -> None:
    """filters.linked_text looked for its words in a report's stored text: bob, not cleared for
    personal data, saw "[cn_mobile redacted]" on the report but got the linked photo back for its
    phone number and nothing for any other (an oracle for the masked value). Now the words are
    looked for in the report as he may read it; a cleared caller still finds it by the number."""
    from imgrag.indexing.links import relink
    from imgrag.indexing.models import PiiFinding
    from imgrag.indexing.stores.base import ModelSpaces

    photo, report = tmp_path / "case7.jpg", tmp_path / "case7.report.png"
    Image.new("RGB", (200, 100), "gray").save(photo)
    Image.new("RGB", (200, 100), "white").save(report)
    store.ensure_spaces(ModelSpaces(image="t-img", image_dim=8, feature="t-feat", feature_dim=8, text="t-txt", text_dim=8))
    image = _indexed("ph-1", photo, "", [])
    image.record = image.record.model_copy(update={"format": "jpeg", "quality": "photo", "ocr_lines": [], "caption": "a dented door"})
    text = "incident report contact 13812345678"
    rep = _indexed("rep-1", report, text, [])
    rep.record = rep.record.model_copy(update={"pii": [PiiFinding(kind="cn_mobile", text="13812345678", start=24, end=35, line=0)], "has_pii": True})
    store.write([image, rep])
    assert relink(store, ["ph-1", "rep-1"], OPERATOR) == 2
    store.commit("index", {"indexed": 2})
    rt = Runtime(Settings(home=tmp_path / "home"), store=store)

    def linked(principal: Principal, words: str) -> list[str]:
        mcp = build_server(Imgrag(runtime=rt), fixed_principal(principal))
        r = _run(mcp, lambda c: c.call_tool("search_images", {"query": "door", "mode": "keyword", "filters": {"linked_text": words}}))
        assert not r.is_error, r.content[0].text
        return [h["image_id"] for h in r.structured_content["hits"]]

    bob, carol = Principal(name="bob"), Principal(name="carol", pii_clearance=True)
    assert linked(bob, "incident report") == ["ph-1"]  # what he may read still finds it
    assert linked(bob, "report 13812345678") == linked(bob, "report 13812345679") == []
    assert linked(carol, "report 13812345678") == ["ph-1"] and linked(carol, "report 13812345679") == []


def test_path_prefix_does_not_read_out_a_path_a_caller_sees_masked(store: Any, tmp_path: Path) -> None:
    """A file named after an e-mail address shows as ``people/[email redacted]`` to a caller without
    PII clearance, but filters.path_prefix matched the stored path: ``people/jane.d`` found it and
    ``people/jane.x`` did not, so the name could be read off a character at a time. Now the prefix
    is matched against the path as the caller sees it; a cleared caller still finds it by name."""
    from imgrag.indexing.stores.base import ModelSpaces

    root = tmp_path / "root"
    (root / "people").mkdir(parents=True)
    named, plain = root / "people" / "jane.doe@example.com.png", root / "people" / "jd-notes.png"
    Image.new("RGB", (200, 100), "white").save(named)
    Image.new("RGB", (200, 100), "ivory").save(plain)
    store.ensure_spaces(ModelSpaces(image="t-img", image_dim=8, feature="t-feat", feature_dim=8, text="t-txt", text_dim=8))
    store.write([_indexed("p-1", named, "receipt for gardening", []), _indexed("p-2", plain, "receipt for paint", [])])
    store.commit("index", {"indexed": 2})
    rt = Runtime(Settings(home=tmp_path / "home"), store=store)

    def found(principal: Principal, prefix: str) -> list[str]:
        app = Imgrag(runtime=rt, index_roots=[root])
        mcp = build_server(app, fixed_principal(principal))
        r = _run(mcp, lambda c: c.call_tool("search_images", {"query": "receipt", "mode": "keyword", "filters": {"path_prefix": prefix}}))
        assert not r.is_error, r.content[0].text
        return sorted(h["image_id"] for h in r.structured_content["hits"])

    bob, carol = Principal(name="bob"), Principal(name="carol", pii_clearance=True)
    assert found(bob, "people/") == ["p-1", "p-2"]
    assert found(bob, "people/j") == ["p-2"] and found(bob, "people/jane.d") == found(bob, "people/jane.x") == []
    assert found(carol, "people/jane.d") == ["p-1"] and found(carol, "people/jane.x") == []


def test_links_dicom_pages_and_personal_data_over_each_backend(store: Any, tmp_path: Path) -> None:
    """A DICOM image and its report through the MCP tools: hits and get_metadata carry the links the
    caller may read, the patient tags (PII findings with a ``field``) are masked for a caller
    without PII clearance, and crop_region cuts the windowed DICOM page like any other."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from imgrag.indexing.links import relink
    from imgrag.indexing.models import PiiFinding
    from imgrag.indexing.stores.base import ModelSpaces

    ct = tmp_path / "ct.dcm"
    ct.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    report = tmp_path / "ct.report.png"
    Image.new("RGB", (200, 100), "white").save(report)
    store.ensure_spaces(ModelSpaces(image="t-img", image_dim=8, feature="t-feat", feature_dim=8, text="t-txt", text_dim=8))
    image = _indexed("ct-1", ct, "", [])
    image.record = image.record.model_copy(update={
        "format": "dicom", "quality": "photo", "width": 128, "height": 128, "ocr_lines": [],
        "caption": "CT computed tomography scan", "file_meta": {"modality": "CT"},
        "pii": [PiiFinding(kind="person_name", text="DOE JANE", start=0, end=8, field="PatientName")],
    })
    secret = _indexed("rep-secret", tmp_path / "ct.report.png", "secret nodule", ["oncology"])
    secret.record = secret.record.model_copy(update={"path": str(tmp_path / "ct.notes.png"), "doc_id": "other"})
    store.write([image, _indexed("rep-1", report, "report: a nodule in the right upper lobe", []), secret])
    assert relink(store, ["ct-1", "rep-1", "rep-secret"], OPERATOR) == 3  # ct.notes.png shares the stem too
    store.commit("index", {"indexed": 3})
    rt = Runtime(Settings(home=tmp_path / "home"), store=store)
    cleared = Principal(name="carol", pii_clearance=True)  # carol: no oncology, cleared for personal data
    for principal, masked in ((OPERATOR, False), (Principal(name="bob"), True), (cleared, False)):  # bob: neither
        limited = principal is not OPERATOR
        mcp = build_server(Imgrag(runtime=rt), fixed_principal(principal))

        async def calls(c: Any) -> dict[str, Any]:
            return {
                "search": await c.call_tool("search_images", {"query": "nodule upper lobe", "mode": "keyword"}),
                "filtered": await c.call_tool("search_images", {"query": "CT", "mode": "keyword", "filters": {"linked_text": "nodule"}}),
                "meta": await c.call_tool("get_metadata", {"image_id": "ct-1"}),
                "crop": await c.call_tool("crop_region", {"image_id": "ct-1", "bbox": [0, 0, 64, 64], "scale": 2}),
            }

        out = _run(mcp, calls)
        hits = out["search"].structured_content["hits"]
        assert [h["image_id"] for h in hits][:2] == ["rep-1", "ct-1"] and ("rep-secret" in [h["image_id"] for h in hits]) != limited
        assert hits[0]["links"] == [{"image_id": "ct-1", "kind": "image", "why": "stem", "file": "ct.dcm", "page": 1}]
        assert "linked image image_id=ct-1" in out["search"].content[0].text
        assert [h["image_id"] for h in out["filtered"].structured_content["hits"]] == ["ct-1"]
        meta = out["meta"].structured_content
        # a link to a page the caller may not read is not shown
        assert meta["file_meta"] == {"modality": "CT"}
        assert [ln["image_id"] for ln in meta["links"]] == (["rep-1"] if limited else ["rep-1", "rep-secret"])
        assert meta["has_pii"] and [(f["kind"], f["field"]) for f in meta["pii"]] == [("person_name", "PatientName")]
        assert meta["pii"][0]["text"] == ("[person_name redacted]" if masked else "DOE JANE")
        assert ("DOE" in str(out["meta"].content)) != masked
        (png,) = [c for c in out["crop"].content if c.type == "image"]
        assert _decode(base64.b64decode(png.data)).size == (128, 128)
