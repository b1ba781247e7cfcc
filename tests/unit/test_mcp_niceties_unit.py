"""Completion, progress and client logging through an in-process MCP session over the fake store of
test_mcp_unit.py (no models). The real-transport versions are in tests/e2e/test_mcp_niceties.py."""

from __future__ import annotations

import asyncio
from typing import Any

from imgrag.indexing.app import Imgrag
from imgrag.indexing.stores.base import Principal
from imgrag.mcp_server.auth import fixed_principal
from imgrag.mcp_server.server import build_server

from test_mcp_unit import fake_server  # noqa: F401 (fixture)


def _session(mcp: Any, fn: Any, **kw: Any) -> Any:
    from mcp import Client

    async def main() -> Any:
        async with Client(mcp, **kw) as c:
            return await fn(c)

    return asyncio.run(main())


def test_completion_never_offers_an_id_the_caller_cannot_see(fake_server) -> None:  # noqa: F811
    from mcp_types import PromptReference, ResourceTemplateReference

    rt, _ = fake_server
    ref = ResourceTemplateReference(uri="imgrag://image/{image_id}")

    def complete(principal: Principal, value: str, r: Any = ref, arg: str = "image_id") -> dict[str, Any]:
        mcp = build_server(Imgrag(runtime=rt), fixed_principal(principal))
        return _session(mcp, lambda c: c.complete(r, {"name": arg, "value": value})).completion.model_dump()

    bob, alice = Principal(name="bob", groups=["hr"]), Principal(name="alice", groups=["legal"])
    assert complete(alice, "leg") == {"values": ["legal1"], "total": 1, "has_more": False}
    assert complete(bob, "leg") == complete(bob, "zzz") == {"values": [], "total": 0, "has_more": False}
    assert complete(bob, "")["values"] == ["pub"]
    seal = PromptReference(name="where_is_the_seal")
    assert complete(alice, "page", seal, "document")["values"] == ["page.png"]
    assert complete(bob, "legal", seal, "document")["values"] == []
    assert complete(alice, "x", PromptReference(name="find_and_cite"), "question")["values"] == []
    # each answered completion is on record like a read: who asked, which ids they were shown
    from imgrag.indexing.audit import AuditQuery

    recs = [r for r in Imgrag(runtime=rt).audit.query(AuditQuery(limit=100)).records if r.event == "completion"]
    assert len(recs) == 6, recs  # find_and_cite has nothing to complete: no answer, no record
    first = recs[-1] if recs[0].time > recs[-1].time else recs[0]
    assert first.principal == "alice" and first.image_ids == ["legal1"] and first.name == "imgrag://image/{image_id} image_id"


def test_ocr_region_reports_its_steps_and_logs_failures_to_its_client(fake_server) -> None:  # noqa: F811
    rt, _ = fake_server
    mcp = build_server(Imgrag(runtime=rt), fixed_principal(Principal(name="bob", groups=["hr"])))
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        seen.append((p, total, message))

    async def calls(c: Any) -> Any:
        ok = await c.call_tool("ocr_region", {"image_id": "pub"}, progress_callback=on_progress)
        bad = await c.call_tool("ocr_region", {"image_id": "legal1"})
        return ok, bad

    ok, bad = _session(mcp, calls)
    assert not ok.is_error and bad.is_error
    assert [p for p, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    assert seen[-1][2] == "1 line(s) read"
