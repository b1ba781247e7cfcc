"""The agent-framework recipes of docs/agent-frameworks.md, run exactly as written against a real index:
LangChain / LangGraph (langchain-mcp-adapters) and the OpenAI Agents SDK, each through its own MCP
client on the 1.x SDK (imgrag's server is on 2.x), and Pydantic AI (FastMCP, 2.x), over stdio and
streamable HTTP, from the virtual environments tests/recipes/venv.sh makes. Also: the stdio servers of the Cursor, VS Code and Claude
Desktop configurations shown in the docs start with their args and env and list the tools.

The corpus is a copy of the session's shared index (tests/e2e/shared_corpus.py): contract and invoice for
group `legal` (the token's), memo and cat photo for group `hr`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcp_http import free_port as _free_port, imgrag_cmd, wait_listening
from shared_corpus import copy_index
from test_mcp_e2e import LEGAL_TOKEN

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "agent-frameworks.md"
DOC_URL = "http://127.0.0.1:8765/mcp"
READ_TOOLS = "crop_region, get_metadata, ocr_region, search_images"


def blocks(kind: str, lang: str) -> dict[str, str]:
    """The fenced ``lang`` blocks of the docs that follow a ``<!-- kind: NAME -->`` marker."""
    text = DOC.read_text(encoding="utf-8") + "\n" + (REPO / "docs" / "mcp-server.md").read_text(encoding="utf-8")
    pattern = rf"<!-- {kind}: (\w+) -->\s*```{lang}\n(.*?)\n```"
    return {m.group(1): m.group(2) for m in re.finditer(pattern, text, re.S)}


RECIPES = blocks("recipe", "python")
CLIENTS = blocks("client", "json")
RECIPE_NAMES = [
    "langchain_stdio", "langchain_http", "openai_agents_stdio", "openai_agents_http", "pydantic_ai_stdio", "pydantic_ai_http",
]
VENV_SET = {"pydantic_ai": "mcp2"}  # recipe prefix → tests/recipes/venv.sh set (default mcp1)


def test_the_docs_have_the_recipes_and_configs() -> None:
    assert set(RECIPES) == set(RECIPE_NAMES)
    assert set(CLIENTS) == {"cursor", "vscode", "claude_desktop"}
    for name, code in RECIPES.items():
        compile(code, name, "exec")
        if name.endswith("_http"):
            assert DOC_URL in code and "IMGRAG_TOKEN" in code


_PYTHONS: dict[str, str] = {}


def recipes_python(recipe: str) -> str:
    """The python of the recipe's venv (made on first use by tests/recipes/venv.sh, from PyPI)."""
    vset = next((v for prefix, v in VENV_SET.items() if recipe.startswith(prefix)), "mcp1")
    if vset not in _PYTHONS:
        r = subprocess.run(
            ["bash", str(REPO / "tests" / "recipes" / "venv.sh"), vset], capture_output=True, text=True, timeout=1800
        )
        assert r.returncode == 0, f"tests/recipes/venv.sh {vset} failed (it installs from PyPI):\n{r.stderr[-3000:]}"
        _PYTHONS[vset] = r.stdout.strip().splitlines()[-1]
    if _PYTHONS[vset] == "skip":
        pytest.skip("agent-framework recipes skipped on request (IMGRAG_TEST_RECIPES=skip)")
    return _PYTHONS[vset]


@pytest.fixture(scope="module")
def index(shared_corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("recipes")
    corpus = copy_index(shared_corpus, root)  # the servers write their audit log into the home
    home, env = corpus["home"], corpus["env"]
    # `imgrag` on PATH for the frameworks' stdio clients: this checkout's CLI (they pass the server only a
    # minimal environment, so the checkout's path is baked in here rather than inherited)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "imgrag"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m imgrag "$@"\n')
    wrapper.chmod(0o755)
    tokens = root / "tokens.json"
    tokens.write_text(json.dumps({LEGAL_TOKEN: {"name": "alice", "groups": ["legal"]}}))
    tokens.chmod(0o600)
    port = _free_port()
    log = root / "http.log"
    proc = subprocess.Popen(
        [*imgrag_cmd(), "serve", "--http", "--port", str(port), "--tokens", str(tokens), "--no-web"],
        env=env, cwd=root, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_listening(url, proc, log)
        yield {"home": home, "bin": bin_dir, "wrapper": wrapper, "url": url, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_runs_as_written(name: str, index: dict[str, Any], tmp_path: Path) -> None:
    python = recipes_python(name)
    code = RECIPES[name].replace(DOC_URL, index["url"])  # the docs' port → this test's server
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    env = {
        "PATH": f"{index['bin']}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "IMGRAG_HOME": str(index["home"]),
        "IMGRAG_TOKEN": LEGAL_TOKEN,
        "HF_HUB_OFFLINE": "1",
    }
    r = subprocess.run([python, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    out = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert out["tools"] == READ_TOOLS, r.stdout
    assert out["top hit"] == "contract.png p1 'Total amount: 128,000 RMB'", r.stdout
    assert re.fullmatch(r"\d+x\d+ (PNG, \d+ bytes|image/png)", out["crop"]), r.stdout  # image content came through
    assert "128,000" in out["ocr"], r.stdout
    assert out["metadata"].startswith("1200x900 born_digital"), r.stdout
    if name == "langchain_stdio":
        assert out["langgraph"].startswith('{"image_id":'), r.stdout


@pytest.mark.parametrize("client", ["cursor", "vscode", "claude_desktop"])
def test_client_config_starts_the_server(client: str, index: dict[str, Any]) -> None:
    """Each stdio entry of the config, with the docs' placeholder paths replaced, starts a server that
    lists the read tools; each HTTP entry points at /mcp with a bearer header."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    config = json.loads(CLIENTS[client])
    servers = config.get("mcpServers") or config.get("servers")
    stdio = {k: v for k, v in servers.items() if "command" in v}
    http = {k: v for k, v in servers.items() if "url" in v}
    assert stdio, config
    for entry in http.values():
        assert entry["url"].endswith("/mcp") and entry["headers"]["Authorization"].startswith("Bearer ")
    for entry in stdio.values():
        assert entry["command"].endswith("/imgrag") and entry["args"][0] == "serve"
        assert "IMGRAG_HOME" in entry["env"]
        env = {**entry["env"], "IMGRAG_HOME": str(index["home"])}
        params = StdioServerParameters(command=str(index["wrapper"]), args=entry["args"], env=env)

        async def main() -> list[str]:
            async with Client(stdio_client(params)) as c:
                return sorted(t.name for t in (await c.list_tools()).tools)

        assert ", ".join(asyncio.run(main())) == READ_TOOLS
