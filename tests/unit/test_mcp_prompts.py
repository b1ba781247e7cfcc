"""The MCP prompts over an in-process session: listed with their arguments, rendered into tool plans,
and bad requests answered with an invalid-params error that names the problem (no models needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imgrag.indexing.app import Imgrag
from imgrag.indexing.config import Settings
from imgrag.indexing.stores.base import OPERATOR


def test_prompts_are_listed_and_render_tool_plans(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    from imgrag.mcp_server.auth import fixed_principal
    from imgrag.mcp_server.server import build_server

    server = build_server(Imgrag(Settings(home=tmp_path / "home")), fixed_principal(OPERATOR))

    async def main() -> Any:
        async with Client(server) as c:
            listed = {p.name: p for p in (await c.list_prompts()).prompts}
            cite = await c.get_prompt("find_and_cite", {"question": "甲方是谁"})
            cmp = await c.get_prompt("compare_documents", {"first": "contract A", "second": "img123", "aspect": "amounts"})
            seal = await c.get_prompt("where_is_the_seal", {"document": "服务合同"})
            errors = []
            for name, args in (("find_and_cite", {}), ("nope", {}), ("find_and_cite", {"question": "x" * 5000})):
                with pytest.raises(MCPError) as e:
                    await c.get_prompt(name, args)
                errors.append(e.value.message)
            return listed, cite, cmp, seal, errors

    listed, cite, cmp, seal, errors = asyncio.run(main())
    assert set(listed) == {"find_and_cite", "compare_documents", "where_is_the_seal"}
    args = {a.name: (a.required, a.description) for a in listed["compare_documents"].arguments}
    assert args["first"][0] and args["second"][0] and not args["aspect"][0] and "image id" in args["first"][1]
    text = cite.messages[0].content.text
    assert cite.messages[0].role == "user" and "甲方是谁" in text
    assert all(t in text for t in ("search_images", "crop_region", "ocr_region", "[image_id, bbox]"))
    assert "contract A" in cmp.messages[0].content.text and "amounts" in cmp.messages[0].content.text
    assert '"has_seal": true' in seal.messages[0].content.text and "get_metadata" in seal.messages[0].content.text
    assert "question" in errors[0] and "unknown prompt 'nope'" in errors[1] and "at most 2000" in errors[2]


def test_an_unknown_prompt_name_is_not_echoed_whole() -> None:
    """prompts/get with a 200,000-character name answered with all of it in the error (200 kB over a
    real stdio session): an error names what was asked, shortened like every other echo."""
    from imgrag.mcp_server.prompts import prompt_error

    err = prompt_error("x" * 200_000, ValueError("unknown"))
    assert len(str(err)) < 400 and "unknown prompt 'xxx" in str(err) and "find_and_cite" in str(err)
