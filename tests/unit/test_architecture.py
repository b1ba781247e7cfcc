"""The layout is the architecture: imports flow one way (indexing ← mcp_server ← agent ← evals ← cli),
no module imports itself back through others, and the product installs under the one name ``imgrag``.

Read from the source with ``ast`` (imports inside functions count too: a lazy import is still a
dependency), so a violation fails here instead of surfacing as an import-order bug later."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# package → folder, exactly as pyproject maps them
LAYERS = ["indexing", "mcp_server", "agent", "evals", "cli"]
FOLDERS = {"indexing": "indexing", "mcp_server": "mcp_server", "agent": "agent", "evals": "evals", "cli": "imgrag/cli"}


def _module_name(path: Path, layer: str) -> str:
    rel = path.relative_to(REPO / FOLDERS[layer]).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["imgrag", layer, *parts])


def _modules() -> dict[str, tuple[Path, str]]:
    mods: dict[str, tuple[Path, str]] = {}
    for layer in LAYERS:
        for path in sorted((REPO / FOLDERS[layer]).rglob("*.py")):
            mods[_module_name(path, layer)] = (path, layer)
    return mods


def _imports(path: Path, modname: str) -> set[str]:
    """Absolute names of every imgrag module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    package = modname if is_pkg else modname.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m == "imgrag" or m.startswith("imgrag.")}


def _layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_import_uses_the_imgrag_namespace() -> None:
    bad = []
    for name, (path, _) in _modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for m in mods:
                if m.split(".")[0] in ("indexing", "mcp_server", "agent", "evals", "cli"):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {m}")
    assert not bad, "import the product as imgrag.*:\n" + "\n".join(bad)


def test_imports_flow_one_way() -> None:
    bad = []
    for name, (path, layer) in _modules().items():
        for dep in _imports(path, name):
            dep_layer = _layer_of(dep)
            if dep_layer and LAYERS.index(dep_layer) > LAYERS.index(layer):
                bad.append(f"{name} ({layer}) imports {dep} ({dep_layer})")
    assert not bad, "indexing ← mcp_server ← agent ← evals ← cli:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, _) in mods.items():
        deps = set()
        for dep in _imports(path, name):
            # `from pkg import name` names a submodule or an attribute: keep the longest module prefix
            while dep and dep not in mods:
                dep = dep.rpartition(".")[0]
            # a package's __init__ is not a cycle with its own submodules
            if dep and dep != name and not name.startswith(dep + ".") and not dep.startswith(name + "."):
                deps.add(dep)
        graph[name] = deps

    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_distribution_installs_only_the_imgrag_name() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "imgrag" or p.startswith("imgrag.") for p in cfg["packages"])
    for pkg, folder in cfg["package-dir"].items():
        assert pkg.startswith("imgrag") and (REPO / folder / "__init__.py").is_file(), (pkg, folder)
    # every package folder that holds code is listed, so nothing is silently left out of a wheel
    listed = set(cfg["packages"])
    for layer in LAYERS:
        for init in (REPO / FOLDERS[layer]).rglob("__init__.py"):
            assert _module_name(init, layer) in listed, init
    assert cfg is not None
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"imgrag": "imgrag.cli:main"}


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (no __init__.py): two test_x.py in different folders
    stop the whole suite at collection."""
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    clashes = {n: p for n, p in names.items() if len(p) > 1}
    assert not clashes, f"rename one of each: {clashes}"
