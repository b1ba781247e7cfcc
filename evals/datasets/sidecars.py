"""The ground-truth sidecars the case generators write: one pydantic model per JSONL line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def write_sidecar(path: Path, specs: Sequence[BaseModel]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in specs:
            fh.write(s.model_dump_json() + "\n")


def read_sidecar(path: str | Path, model: type[M]) -> list[M]:
    return [model.model_validate_json(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]
