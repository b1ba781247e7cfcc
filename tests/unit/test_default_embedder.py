"""Which image-text embedder a search uses: the setting as set; left unset, the model the index was built
with when it needs no other setting (bridge, transfer), else the default (transfer, since session 19)."""

from __future__ import annotations

import pytest
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.runtime import Runtime
from imgrag.indexing.stores.base import ModelSpaces, check_query_space

BRIDGE = "label-bridge[effnet-lite0/centre|labels=abc|t|top5|text=e5]"
TRANSFER = f"transfer[memory=0123456789ab|k10|temp0.03|beta0.5|{BRIDGE}]"


class Store:
    """Only what the runtime reads to choose: the index's spaces (None: no index yet)."""

    def __init__(self, image: str | None = None, fail: bool = False) -> None:
        self.image, self.fail = image, fail

    def spaces(self) -> ModelSpaces | None:
        if self.fail:
            raise ImgragError("Elasticsearch at http://localhost:9200 is not reachable", "start it")
        if self.image is None:
            return None
        return ModelSpaces(image=self.image, image_dim=384, feature="f", feature_dim=1280, text="e5", text_dim=384)


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGRAG_IMAGE_EMBEDDER", raising=False)


def name(tmp_path, store: Store, **settings: object) -> str:
    return Runtime(Settings(home=tmp_path, **settings), store=store).image_embedder_name()  # type: ignore[arg-type]


def test_a_new_index_gets_transfer(tmp_path) -> None:
    assert Settings(home=tmp_path).image_embedder == "transfer"
    assert name(tmp_path, Store()) == "transfer"


def test_an_index_keeps_the_model_it_was_built_with_while_nothing_is_set(tmp_path) -> None:
    # an index built before transfer was the default keeps the bridge: no re-index on upgrade
    assert name(tmp_path, Store(BRIDGE)) == "bridge"
    assert name(tmp_path, Store(TRANSFER)) == "transfer"
    assert name(tmp_path, Store("aligned[adapter=ab12|...]")) == "transfer"  # needs IMGRAG_ADAPTER: the default, refused


def test_a_setting_is_taken_as_set(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name(tmp_path, Store(BRIDGE), image_embedder="transfer") == "transfer"
    assert name(tmp_path, Store(TRANSFER), image_embedder="bridge") == "bridge"
    monkeypatch.setenv("IMGRAG_IMAGE_EMBEDDER", "Transfer")
    assert name(tmp_path, Store(BRIDGE)) == "transfer"


def test_a_set_model_other_than_the_index_s_is_refused_naming_both() -> None:
    """What the choice above leaves to the search: a query from another space is one clear error."""
    stored = Store(BRIDGE).spaces()
    with pytest.raises(ImgragError) as e:
        check_query_space(stored, "image", TRANSFER, 384)
    assert "label-bridge" in str(e.value) and "transfer[" in str(e.value)


def test_an_unreachable_store_falls_back_to_the_default(tmp_path) -> None:
    """The command that needs the store reports it; choosing a model does not turn into that error."""
    assert name(tmp_path, Store(fail=True)) == "transfer"
