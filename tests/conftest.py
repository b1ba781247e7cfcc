"""Shared fixtures.

``store`` is one fresh, empty index per test, parametrized over both backends: ``lancedb`` in a
temporary folder, and ``elasticsearch`` under a unique index prefix on the server at
``$IMGRAG_TEST_ES_URL`` (``tests/run_tests.sh`` starts one with ``tests/elasticsearch.sh``).
Without that variable the Elasticsearch cases *fail* — set ``IMGRAG_TEST_ES=skip`` to skip them
knowingly — so a CI run can never pass by silently not testing the distributed backend.

``shared_corpus`` is the end-to-end corpus of tests/e2e/shared_corpus.py, indexed with real models
ONCE per pytest session into a home no test opens; each module that uses it takes a writable copy
(``copy_index``). The session fails if anything wrote to the shared home.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["lancedb", "elasticsearch"]
REPO = Path(__file__).resolve().parents[1]

# Every subprocess a test starts (`python -m imgrag ...`, the stdio MCP server the agent spawns) runs
# this checkout, not whichever checkout an editable install points at (a worktree, a CI clone).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def es_test_url() -> str:
    """The test cluster's URL, or fail / skip the test as described above."""
    url = os.environ.get("IMGRAG_TEST_ES_URL", "").strip()
    if url:
        return url
    if os.environ.get("IMGRAG_TEST_ES", "").strip().lower() == "skip":
        pytest.skip("Elasticsearch tests skipped on request (IMGRAG_TEST_ES=skip)")
    pytest.fail(
        "IMGRAG_TEST_ES_URL is not set: run the suite with `bash tests/run_tests.sh` (it starts "
        "Elasticsearch via tests/elasticsearch.sh), or export IMGRAG_TEST_ES_URL=http://127.0.0.1:9200 "
        "for a running server, or IMGRAG_TEST_ES=skip to skip the Elasticsearch cases on purpose",
        pytrace=False,
    )


def es_settings(tmp_path: Path, **overrides: Any) -> Any:
    """Settings for a fresh Elasticsearch index under a unique prefix."""
    from imgrag.indexing.config import Settings

    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "backend": "elasticsearch",
        "es_url": es_test_url(),
        "es_index_prefix": f"imgrag-test-{uuid.uuid4().hex[:12]}",
        "es_replicas": 0,
        "es_request_timeout": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def es_url() -> str:
    return es_test_url()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_test_store(backend: str, tmp_path: Path) -> tuple[Any, Callable[[], None]]:
    """A fresh, empty store of ``backend`` and the function that disposes of it."""
    if backend in ("lancedb", "lancedb-ann"):
        from imgrag.indexing.stores.lance import LanceStore

        # lancedb-ann: the ANN vector indices are built at the first commit, however small the table
        lance = LanceStore(tmp_path / "index", ann_min_rows=1 if backend == "lancedb-ann" else 10**9)
        return lance, lance.close

    from imgrag.indexing.stores.elastic import ElasticStore

    es = ElasticStore(es_settings(tmp_path))

    def dispose() -> None:
        try:
            es.drop()
        finally:
            es.close()

    return es, dispose


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty :class:`~indexing.stores.base.IndexStore` of each backend."""
    s, dispose = open_test_store(backend, tmp_path)
    try:
        yield s
    finally:
        dispose()


@pytest.fixture(scope="session")
def shared_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The shared end-to-end corpus and its pristine index (see tests/e2e/shared_corpus.py): take a copy
    with ``copy_index(shared_corpus, folder)`` before serving or writing; never open its home."""
    e2e = str(REPO / "tests" / "e2e")
    if e2e not in sys.path:  # the e2e helpers import each other by module name, as pytest's rootdir import does
        sys.path.insert(0, e2e)
    from shared_corpus import fingerprint, index_shared_corpus

    corpus = index_shared_corpus(tmp_path_factory.mktemp("shared-corpus"))
    before = fingerprint(corpus["home"])
    yield corpus
    assert fingerprint(corpus["home"]) == before, "a test wrote to the shared index: it must work on copy_index()"
