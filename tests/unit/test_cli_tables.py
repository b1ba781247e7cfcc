"""The CLI's tables print what the index holds as text, never as rich markup: OCR snippets, file
names, linked files, audit principals and tool names come from pages, folders and callers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgrag.cli import app
from imgrag.indexing.audit import JsonlAuditLog, make_record
from imgrag.indexing.config import get_settings
from imgrag.indexing.search import Hit, SearchResult
from imgrag.indexing.stores.base import Principal


class _Searches:
    def search(self, req: Any, principal: Any) -> SearchResult:
        hit = Hit(image_id="abc", doc_id="abc", path="/data/[bold]pelican.png", page=1, n_pages=1, score=0.5,
                  snippet="Closing [/b] tag [/] and [red]x", quality="scanned", width=10, height=10)
        return SearchResult(query=req.query, hits=[hit], candidates=1)


def test_search_prints_snippets_and_names_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page reading "[/b]" crashed `imgrag search` with a traceback (rich's MarkupError); a file
    named "[bold]pelican.png" was shown as "pelican.png"."""
    import imgrag.cli.search as cli_search

    monkeypatch.setattr(cli_search, "facade", lambda: _Searches())
    result = CliRunner().invoke(app, ["search", "closing tag"], prog_name="imgrag", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "[bold]pelican.png" in result.output and "Closing [/b] tag [/] and [red]x" in result.output


def test_audit_prints_callers_names_as_they_are(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A principal named "[/x]..." in the tokens file crashed `imgrag audit` (MarkupError); control
    characters in a recorded name reached the terminal. (Unknown tool names are kept only as digests.)"""
    monkeypatch.setenv("IMGRAG_HOME", str(tmp_path))
    get_settings.cache_clear()
    log = JsonlAuditLog(tmp_path / "audit")
    log.append(make_record(event="tool", name="search_images", outcome="error", principal=Principal(name="[/x]eve\x1b[2J"), args={}))
    log.close()
    try:
        result = CliRunner().invoke(app, ["audit"], prog_name="imgrag", env={"COLUMNS": "250"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "[/x]eve\\x1b[2J" in result.output and "\x1b[2J" not in result.output


def test_ask_prints_each_citation_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`imgrag ask` printed a cited file's name raw: "crlf\\r\\nname.png" split the citation line in
    two and an escape sequence in a name reached the terminal (imgrag search escaped them already)."""
    import imgrag.agent.ask as agent_ask
    from imgrag.agent.schemas import Answer, Citation

    cite = Citation(image_id="abc", path="/data/crlf\r\nname\x1b[2J.png", page=1, snippet="crlf name")

    async def fake_ask(question: str, **kw: Any) -> tuple[Answer, list[str], dict[str, list[float]]]:
        return Answer(question=question, answer="It says crlf name [1].", mode="extractive", citations=[cite]), [], {}

    monkeypatch.setattr(agent_ask, "ask", fake_ask)
    result = CliRunner().invoke(app, ["ask", "what does it say", "--no-llm"], prog_name="imgrag")
    assert result.exit_code == 0, result.output + repr(result.exception)
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("  [1]")]
    assert line == "  [1] abc · /data/crlf\\r\\nname\\x1b[2J.png · page 1 · bbox —"
    assert "\x1b" not in result.output and "\r" not in result.output
