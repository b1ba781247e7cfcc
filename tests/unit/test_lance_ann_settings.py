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


def test_ef_narrows_with_the_partitions_a_search_probes() -> None:
    """IMGRAG_LANCE_ANN_EF is the walk of an index probed in up to 12 partitions (~50k pages); a larger
    one walks each probed partition ef x 12 / probed wide (200 at 100k pages: 24 partitions, all probed)."""
    from imgrag.indexing.stores.lance import _ef, _nprobes, _partitions

    assert [_ef(400, rows) for rows in (300, 10_000, 49_152, 53_248)] == [400, 400, 400, 370]
    assert (_partitions(100_000), _nprobes(100_000), _ef(400, 100_000)) == (24, 25, 200)
    assert _ef(250, 100_000) == 125  # the setting scales the same way
    # past 25 partitions a search probes 25 of them (10 % from 250): ef stops falling there
    assert _ef(400, 1_000_000) == _ef(400, 200_000) == 192
