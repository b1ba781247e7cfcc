"""The hand-written natural question sets: answers printed on their pages, a fixed disjoint split."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgrag.evals.datasets.docpages import DocPage, have_doc_deps, make_doc_pages
from imgrag.evals.golden import natural
from imgrag.evals.splits import question_split


def test_split_is_fixed_disjoint_and_covers_both_languages() -> None:
    items = natural.items()
    assert len(items) >= 150
    assert len({it.id for it in items}) == len(items)
    dev = {it.id for it in items if it.split == "dev"}  # type: ignore[attr-defined]
    held = {it.id for it in items if it.split == "heldout"}  # type: ignore[attr-defined]
    assert dev and held and not dev & held and len(dev | held) == len(items)
    assert all(question_split(i) == "heldout" for i in held)
    for split in (dev, held):
        langs = {it.lang for it in items if it.id in split}
        assert langs == {"en", "zh"}
    kinds = {it.kind for it in items}
    assert {"multipage", "two_pages", "command", "path", "option"} <= kinds
    assert all(len(it.relevant) == 2 for it in items if it.kind in ("multipage", "two_pages"))


def test_a_wrong_answer_fails_the_build() -> None:
    page = DocPage(file="debian-reference.en-p029.png", lang="en", kind="page", source_pdf="x", package="x", page=29, text="nothing here")
    with pytest.raises(ValueError, match="is not printed"):
        natural.items([page])


@pytest.mark.skipif(not have_doc_deps(), reason="Debian Reference PDFs / poppler not installed")
def test_every_answer_is_printed_on_its_pages(tmp_path: Path) -> None:
    make_doc_pages(tmp_path / "corpus", 22, dpi=20, pdf_lang=None, sidecar=tmp_path / "meta" / "docpages.jsonl")
    got = natural.golden(tmp_path)  # raises when an answer is not on its pages
    assert len(got) == len(natural.items())
