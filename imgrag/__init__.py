"""imgrag: multimodal RAG over image collections, served to agents over MCP.

The distribution installs one top-level name, ``imgrag``; the build configuration maps the product's
folders into it: ``imgrag.indexing`` (pipeline, stores, search and the ``Imgrag`` facade),
``imgrag.mcp_server``, ``imgrag.agent``, ``imgrag.evals`` and ``imgrag.cli`` (this folder).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.2.0"

# In a source checkout those folders sit beside this one: let the package find them there, so that
# `python -m imgrag` and the tests run *this* checkout (a worktree, a CI clone) rather than whichever
# checkout an editable install points at. An installed wheel has them inside the package and never
# reaches this fallback.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "indexing" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821


def __getattr__(name: str) -> object:
    """``from imgrag import Imgrag``: the application facade, imported on first use so the CLI starts fast."""
    if name == "Imgrag":
        from imgrag.indexing.app import Imgrag

        return Imgrag
    raise AttributeError(f"module 'imgrag' has no attribute {name!r}")
