"""IMGRAG_LANCE_ANN_EF / IMGRAG_LANCE_ANN_REFINE reach the LanceDB store the runtime opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from imgrag.indexing.config import Settings
from imgrag.indexing.runtime import open_store


def test_defaults_and_environment_reach_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(Settings(home=tmp_path / "a"))
    try:
        assert (store.ann_ef, store.ann_refine) == (400, 1)  # type: ignore[attr-defined]
    finally:
        store.close()
    monkeypatch.setenv("IMGRAG_LANCE_ANN_EF", "250")
    monkeypatch.setenv("IMGRAG_LANCE_ANN_REFINE", "3")
    store = open_store(Settings(home=tmp_path / "b"))
    try:
        assert (store.ann_ef, store.ann_refine) == (250, 3)  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.parametrize("field, value", [("lance_ann_ef", 0), ("lance_ann_refine", 0), ("lance_ann_refine", 101)])
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
