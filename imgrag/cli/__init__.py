"""The ``imgrag`` command line, one module per command group; ``common`` holds what they share."""

from __future__ import annotations

from . import index, search, ask, align, serve, audit, eval  # noqa: F401  (registration order = help order)
from .common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
