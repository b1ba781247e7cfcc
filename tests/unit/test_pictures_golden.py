"""The hand-written picture descriptions (`pictures-dev` / `pictures-heldout`): a fixed split by picture,
both languages written, every picture named in the clipart corpus."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from imgrag.evals import embeddings as E
from imgrag.evals.golden import clipart, pictures
from imgrag.evals.splits import question_split
from imgrag.evals.standard import ALL_SETS, HANDWRITTEN_SETS
from imgrag.indexing.errors import ImgragError


def test_two_languages_per_picture_and_a_split_by_picture() -> None:
    items = pictures.items()
    assert len(items) >= 400 and len({it.id for it in items}) == len(items)
    by_picture: dict[str, list[pictures.GoldenItem]] = {}
    for it in items:
        by_picture.setdefault(it.relevant[0], []).append(it)
    for file, its in by_picture.items():
        assert sorted(it.lang or "" for it in its) == ["en", "zh"], file
        # both languages of a picture in one half, so tuning on dev never reads a held-out picture's words
        assert len({getattr(it, "split", None) for it in its}) == 1, file
        zh = next(it.query for it in its if it.lang == "zh")
        en = next(it.query for it in its if it.lang == "en")
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[\u4e00-\u9fff]", en), file
    halves = {h: [it for it in items if getattr(it, "split", None) == h] for h in ("dev", "heldout")}
    assert all(len(v) >= 150 for v in halves.values())
    assert all(question_split(f"pictures/{Path(it.relevant[0]).stem}") == "heldout" for it in halves["heldout"])


def test_the_sets_are_standard_names() -> None:
    assert {"pictures-dev", "pictures-heldout"} <= set(ALL_SETS)
    assert HANDWRITTEN_SETS["pictures-heldout"] == ("clipart", "pictures", "heldout")


def test_a_picture_missing_from_the_corpus_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    with pytest.raises(ImgragError, match="described pictures are not in"):
        pictures.golden(tmp_path, split="dev")


@pytest.mark.skipif(not clipart.PNG_ROOT.is_dir(), reason="openclipart (Debian package) not installed")
def test_every_described_picture_is_in_the_clipart_corpus(tmp_path: Path) -> None:
    files = {m.file for m in clipart.collect(clipart.ClipartRecipe())}
    named = {f for it in pictures.items() for f in it.relevant}
    assert named <= files, sorted(named - files)[:5]
    (tmp_path / "corpus").mkdir()
    for f in files:
        (tmp_path / "corpus" / f).write_bytes(b"")
    assert len(pictures.golden(tmp_path, split="heldout")) + len(pictures.golden(tmp_path, split="dev")) == len(pictures.items())


@pytest.mark.skipif(not clipart.PNG_ROOT.is_dir(), reason="openclipart (Debian package) not installed")
def test_the_transfer_harness_asks_one_half_over_every_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m imgrag.evals.transfer eval --collection pictures-<half>`: the half's queries, each
    relevant picture (several for a shared description) a row of the 240 the search holds."""
    def fake_embed(names, load, cache_key, **_):  # type: ignore[no-untyped-def]  # rows only: no network run
        assert cache_key == "openclipart"  # the catalogue's cached features
        n = len(names)
        return E.EmbeddedImages(list(names), np.zeros((n, 4), np.float32), np.zeros((n, 4), np.float32), "f", "b")

    monkeypatch.setattr(E, "embed_with_bridge", fake_embed)
    for half in ("dev", "heldout"):
        col = E.pictures_collection(half, log=lambda *_: None)
        want = [it for it in pictures.items() if it.split == half]  # type: ignore[attr-defined]
        assert len(col.images.names) == 240 and col.queries == [it.query for it in want]
        assert sorted(col.langs) == sorted(it.lang for it in want)
        assert [len(r) for r in col.relevant] == [len(it.relevant) for it in want]
