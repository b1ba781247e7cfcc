"""The ground-truth sidecar every corpus builder writes next to its files: one JSON line per record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def write_sidecar(out_dir: Path, sidecar: str | Path, records: Sequence[BaseModel]) -> None:
    """One JSON line per record, in order; a relative `sidecar` is taken relative to `out_dir`."""
    sc = Path(sidecar)
    sc = sc if sc.is_absolute() else out_dir / sc
    sc.parent.mkdir(parents=True, exist_ok=True)
    with sc.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.model_dump(mode="json"), ensure_ascii=False) + "\n")


def read_sidecar(path: str | Path, name: str, model: type[M]) -> list[M]:
    """Read a sidecar (or the folder holding one named `name`) back into records."""
    p = Path(path)
    if p.is_dir():
        p = p / name
    return [model.model_validate_json(line) for line in p.read_text("utf-8").splitlines() if line]
