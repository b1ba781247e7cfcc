"""The documentation is checked like code: the site builds with no broken link or anchor, the
README's relative links resolve, and every setting, environment variable, CLI command and option is
written down somewhere in docs/ or README.md (and the CLI reference names no option that is gone).

These read the real objects — ``Settings.model_fields``, the Typer app as click sees it — so a new
field or flag without documentation fails here, with the name and where to write it."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
CLI_PAGE = DOCS / "cli.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _all_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in _pages())


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) chunks of a Markdown text, headings in fenced code ignored."""
    masked = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    starts = [m.start() for m in _HEADING.finditer(masked)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    out = []
    for a, b in zip(starts, [*starts[1:], len(text)]):
        chunk = text[a:b]
        first = chunk.split("\n", 1)[0]
        out.append((first.lstrip("#").strip() if first.startswith("#") else "", chunk))
    return out


# -- (a) the site ---------------------------------------------------------------------------------


def test_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` fails on a link to a missing page or heading, a bad config, or any
    other warning; a new page in docs/ needs no registration (mkdocs.yml has no nav)."""
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, (
        f"mkdocs build --strict failed (is mkdocs installed? it is in the dev extra):\n{r.stdout}{r.stderr}"
    )
    for page in sorted(DOCS.rglob("*.md")):
        built = site / page.relative_to(DOCS).with_suffix(".html")
        assert built.is_file(), f"{page.relative_to(REPO)} was not built into the site"


# -- (b) the README's links -----------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = text.lower().replace("`", "")
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in _HEADING.finditer(text):
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(text: str) -> list[str]:
    text = _INLINE_CODE.sub("", _FENCE.sub("", text))
    return [*_LINK.findall(text), *_REF_DEF.findall(text)]


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Relative links (and their #anchors, for Markdown targets) of ``path`` that do not resolve
    to a file under ``root``."""
    bad = []
    for target in _links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path.resolve()
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif not dest.is_relative_to(root.resolve()):
            bad.append(f"{target} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no heading with anchor #{anchor} in {dest.relative_to(root.resolve())})")
    return bad


def test_readme_links_resolve() -> None:
    assert _links(README.read_text(encoding="utf-8")), "the README should link into docs/"
    assert not broken_links(README), f"README.md has broken links: {broken_links(README)}"


def test_link_checker_catches_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# There\n\n## A `code` heading, with punctuation!\n")
    page.write_text(
        "[ok](there.md) [ok](there.md#a-code-heading-with-punctuation) [web](https://example.org/x)\n"
        "[gone](missing.md) [bad anchor](there.md#nope) `[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up.md").write_text("[up](../there.md) [out](../../elsewhere.md)\n")
    assert sorted(b.split(" ")[0] for b in broken_links(page, tmp_path)) == ["missing.md", "there.md#nope"]
    assert [b.split(" ")[0] for b in broken_links(tmp_path / "sub" / "up.md", tmp_path / "sub")] == [
        "../there.md", "../../elsewhere.md"]


# -- (c) everything a user can set is documented ---------------------------------------------------


def _mentions(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_every_setting_is_documented() -> None:
    from imgrag.indexing.config import Settings

    text = _all_text()
    missing = [f"IMGRAG_{f.upper()}" for f in Settings.model_fields if not _mentions(f"IMGRAG_{f.upper()}", text)]
    assert not missing, f"settings with no documentation: {missing}; add them to the table in docs/settings.md"



_SETTING_ROW = re.compile(r"^\| `IMGRAG_([A-Z0-9_]+)` \| `([^`]*)` \|", re.M)


def documented_defaults(text: str) -> dict[str, str]:
    """``IMGRAG_X`` → the default its settings-table row shows."""
    return {m.group(1).lower(): m.group(2) for m in _SETTING_ROW.finditer(text)}


def wrong_number_defaults(documented: dict[str, str], fields: dict[str, Any]) -> list[str]:
    """Numeric settings whose documented default is not the code's (other kinds are written freely)."""
    bad = []
    for name, shown in documented.items():
        f = fields.get(name)
        if f is None or type(f.default) not in (int, float):
            continue
        try:
            value = float(shown.replace("_", "").replace(",", ""))
        except ValueError:
            continue
        if value != float(f.default):
            bad.append(f"IMGRAG_{name.upper()}: docs {shown}, code {f.default}")
    return bad


def test_documented_number_defaults_are_the_code_defaults() -> None:
    from imgrag.indexing.config import Settings

    documented = documented_defaults((DOCS / "settings.md").read_text(encoding="utf-8"))
    assert len(documented) > 50, "the settings table was not found"
    bad = wrong_number_defaults(documented, Settings.model_fields)
    assert not bad, f"documented defaults differ from the code: {bad}; fix docs/settings.md or the default"


def test_default_check_catches_a_wrong_number() -> None:
    from imgrag.indexing.config import Settings

    rows = "| `IMGRAG_TWO_STAGE_PAGES` | `123` | x |\n| `IMGRAG_MAX_K` | `100` | y |\n"
    assert wrong_number_defaults(documented_defaults(rows), Settings.model_fields) == [
        f"IMGRAG_TWO_STAGE_PAGES: docs 123, code {Settings.model_fields['two_stage_pages'].default}"
    ]

def _code_files() -> Iterator[Path]:
    """Files that read environment variables: the product, its scripts and the test harness (not the
    test modules themselves, which may set made-up names on purpose)."""
    for folder in ("imgrag", "indexing", "mcp_server", "agent", "evals", "benchmarks", "tests", ".ci"):
        for p in sorted((REPO / folder).rglob("*")):
            if p.is_file() and (p.suffix in (".py", ".sh") or p.name == "run") and not p.name.startswith("test_"):
                yield p
    yield REPO / "Makefile"


_ENV_NAME = re.compile(r"\bIMGRAG_[A-Z0-9_]*[A-Z0-9]\b")


def test_every_environment_variable_is_documented() -> None:
    """Beyond the settings object: IMGRAG_DEBUG, IMGRAG_LLM_*, the test harness's IMGRAG_TEST_ES_URL, ..."""
    text = _all_text()
    used: dict[str, str] = {}
    for p in _code_files():
        for name in _ENV_NAME.findall(p.read_text(encoding="utf-8", errors="replace")):
            used.setdefault(name, str(p.relative_to(REPO)))
    missing = {n: f for n, f in sorted(used.items()) if not _mentions(n, text)}
    assert not missing, f"environment variables read by the code but documented nowhere (name: first file): {missing}"


def test_no_documented_variable_is_stale() -> None:
    """Every IMGRAG_* name the docs mention is a setting or is read somewhere in the code."""
    from imgrag.indexing.config import Settings

    known = {f"IMGRAG_{f.upper()}" for f in Settings.model_fields}
    code = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in _code_files())
    known |= set(_ENV_NAME.findall(code))
    stale = {}
    for page in _pages():
        for name in _ENV_NAME.findall(page.read_text(encoding="utf-8")):
            if name not in known:
                stale.setdefault(name, str(page.relative_to(REPO)))
    assert not stale, f"documented variables that nothing reads (renamed or removed?): {stale}"


def cli_commands() -> list[tuple[str, list[str]]]:
    """('imgrag eval tune', ['--set', ...]) for the root, every command and every sub-command."""
    import typer.main

    from imgrag.cli import app

    out: list[tuple[str, list[str]]] = []

    def walk(cmd: Any, path: str) -> None:
        opts = [o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)]
        out.append((path, [o for o in opts if o.startswith("--")]))
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            if not getattr(sub, "hidden", False):
                walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "imgrag")
    return out


def undocumented_cli(commands: list[tuple[str, list[str]]], text: str) -> list[str]:
    """Commands never named as ``imgrag CMD``, and options that appear in no section (heading to next
    heading) naming their command; the root's options may appear anywhere."""
    sections = [body for _, body in _sections(text)]
    missing = []
    for path, opts in commands:
        if path == "imgrag":
            where = [text]
        else:
            where = [s for s in sections if _mentions(path, s)]
            if not where:
                missing.append(path)
                continue
        missing += [f"{path} {o}" for o in opts if not any(_mentions(o, s) for s in where)]
    return missing


def test_every_cli_command_and_option_is_documented() -> None:
    commands = cli_commands()
    assert len(commands) > 10 and any(p == "imgrag eval tune" for p, _ in commands), "the CLI walk found too little"
    missing = undocumented_cli(commands, "\n".join(p.read_text(encoding="utf-8") for p in _pages()))
    assert not missing, (
        f"CLI commands/options with no documentation: {missing}; describe each in docs/cli.md under "
        "the command's heading (a section that names `imgrag COMMAND`)"
    )


def _own_text(body: str, path: str, paths: list[str]) -> str:
    """``body`` without the code (inline spans, fenced lines) that quotes *another* command, such
    as ``imgrag serve --http`` in the section of ``imgrag ask``."""

    def named(code: str) -> str | None:
        code = code.strip().strip("`").strip()
        hits = [p for p in paths if code == p or code.startswith(p + " ")]
        return max(hits, key=len) if hits and code.startswith("imgrag ") else None

    def keep(code: str) -> bool:
        cmd = named(code)
        return cmd is None or cmd == path or cmd.startswith(path + " ")

    body = _INLINE_CODE.sub(lambda m: m.group(0) if keep(m.group(0)) else "", body)
    return "\n".join(line for line in body.split("\n") if keep(line))


def stale_cli_options(page_text: str, commands: list[tuple[str, list[str]]]) -> list[str]:
    """Options a command-headed section of the CLI reference shows that the command does not have."""
    options = dict(commands)
    stale = []
    for heading, body in _sections(page_text):
        path = heading.strip("`").strip()
        if path not in options:
            continue
        allowed = set(options[path]) | set(options.get("imgrag", []))
        for sub, sub_opts in options.items():  # a group's section shows its sub-commands' options
            if sub.startswith(path + " "):
                allowed |= set(sub_opts)
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", _own_text(body, path, list(options))))
        stale += [f"{path} {o}" for o in sorted(shown - allowed)]
    return stale


def test_cli_reference_names_no_missing_option() -> None:
    """In docs/cli.md, a section headed by a command mentions only options that command has."""
    stale = stale_cli_options(CLI_PAGE.read_text(encoding="utf-8"), cli_commands())
    assert not stale, f"docs/cli.md documents options these commands do not have: {stale}"


def test_stale_option_check() -> None:
    commands = [("imgrag", ["--verbose"]), ("imgrag ask", ["--server"]), ("imgrag serve", ["--http"])]
    page = "## `imgrag ask`\n`--server URL`: a running `imgrag serve --http`; `--gone`\n```\nimgrag ask --old\n```\n"
    assert stale_cli_options(page, commands) == ["imgrag ask --gone", "imgrag ask --old"]


def test_coverage_check_catches_an_undocumented_option() -> None:
    commands = [("imgrag", ["--verbose"]), ("imgrag index", ["--acl", "--tag"]), ("imgrag eval tune", ["--grid"])]
    text = "# CLI\n`--verbose`\n## `imgrag index`\n`--acl`\n## Other\n`--tag` and `--grid`\n"
    assert undocumented_cli(commands, text) == ["imgrag index --tag", "imgrag eval tune"]


@pytest.mark.parametrize("heading, slug", [
    ("Claude Desktop (stdio)", "claude-desktop-stdio"),
    ("Agent: `imgrag ask`", "agent-imgrag-ask"),
    ("imgrag eval tune", "imgrag-eval-tune"),
])
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug
