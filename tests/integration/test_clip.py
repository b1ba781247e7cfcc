"""The ``clip`` embedder loads real CLIP-family model folders through the production code.

No CLIP weights can be downloaded here, so each test builds a tiny, randomly initialised model and
saves it the way users get them: a Hugging Face folder (transformers ``save_pretrained``), a
sentence-transformers folder (``modules.json``) and an open_clip folder (``open_clip_config.json``).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
open_clip = pytest.importorskip("open_clip")

from imgrag.indexing.embedders import ImageTextEmbedder, get_image_text_embedder  # noqa: E402
from imgrag.indexing.embedders.clip import ClipEmbedder, split_spec  # noqa: E402
from imgrag.indexing.errors import ImgragError  # noqa: E402


def _tiny_hf_clip(folder: Path, projection_dim: int = 16, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase + string.digits:
            vocab[c + suffix] = len(vocab)
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    tok_dir = folder / "_tok"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    out = folder / "hf"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _tiny_open_clip(folder: Path) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")  # random init (no weights yet)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sentence_transformers import SentenceTransformer

    root = tmp_path_factory.mktemp("clip-models")
    hf = _tiny_hf_clip(root / "a")
    st = root / "st"
    SentenceTransformer(str(hf), device="cpu").save(str(st))
    return {
        "hf": hf,
        "st": st,
        "open_clip": _tiny_open_clip(root / "oc"),
        "hf_other_seed": _tiny_hf_clip(root / "b", seed=1),
        "hf_8d": _tiny_hf_clip(root / "c", projection_dim=8),
    }


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), np.full((30, 30), 200, np.uint8)]


@pytest.mark.parametrize("kind,library", [("hf", "transformers"), ("st", "sentence-transformers"), ("open_clip", "open_clip")])
def test_loads_each_folder_kind_through_the_factory(models: dict[str, Path], kind: str, library: str) -> None:
    emb = get_image_text_embedder("clip", model=str(models[kind]))
    assert isinstance(emb, ImageTextEmbedder)
    assert emb.identity.startswith(f"clip[{library}:")
    assert emb.dim == 16 and emb.feature_dim == 16
    out = emb.embed_images(_images())
    assert out.vectors.shape == (2, 16) and out.features.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    q = emb.embed_queries(["a red car", "红色的车"])
    assert q.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(q[0], q[1])
    # deterministic: the same input gives the same vector
    np.testing.assert_allclose(emb.embed_queries(["a red car"])[0], q[0], atol=1e-6)


def test_sentence_transformers_and_transformers_agree(models: dict[str, Path]) -> None:
    """The same checkpoint through both libraries lands in the same space."""
    a = ClipEmbedder(str(models["hf"]))
    b = ClipEmbedder(str(models["st"]))
    np.testing.assert_allclose(a.embed_queries(["a cat"]), b.embed_queries(["a cat"]), atol=1e-4)
    np.testing.assert_allclose(a.embed_images(_images()).vectors, b.embed_images(_images()).vectors, atol=1e-4)


def test_identity_follows_the_weights(models: dict[str, Path]) -> None:
    a = ClipEmbedder(str(models["hf"]))
    b = ClipEmbedder(str(models["hf_other_seed"]))
    assert a.identity != b.identity
    assert ClipEmbedder(str(models["hf"])).identity == a.identity


def test_multilingual_text_tower(models: dict[str, Path]) -> None:
    plain = ClipEmbedder(str(models["hf"]))
    tower = ClipEmbedder(f"{models['hf']}|text={models['st']}")
    assert "|text=sentence-transformers:" in tower.identity and tower.identity != plain.identity
    assert tower.feature_identity == plain.feature_identity  # image side unchanged
    np.testing.assert_allclose(tower.embed_queries(["a dog"]), plain.embed_queries(["a dog"]), atol=1e-4)
    with pytest.raises(ImgragError, match="8-d vectors"):
        ClipEmbedder(str(models["hf"]), text_model=str(models["hf_8d"]))


def test_clear_errors(models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImgragError, match="does not exist"):
        ClipEmbedder(str(tmp_path / "missing-model"))
    with pytest.raises(ImgragError, match="needs a model"):
        ClipEmbedder(None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImgragError, match="holds no model"):
        ClipEmbedder(str(empty))
    no_weights = tmp_path / "ocnw"
    no_weights.mkdir()
    (no_weights / "open_clip_config.json").write_text((models["open_clip"] / "open_clip_config.json").read_text())
    with pytest.raises(ImgragError, match="no weights"):
        ClipEmbedder(str(no_weights))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    with pytest.raises(ImgragError, match="HF_HUB_OFFLINE"):
        ClipEmbedder("someone/clip-model-that-is-not-cached")
    with pytest.raises(ImgragError, match="MODEL|text=TEXT_MODEL"):
        split_spec("a|b")


def test_index_and_search_with_clip(models: dict[str, Path], tmp_path: Path) -> None:
    """Two images indexed with the clip embedder (via settings, as `imgrag index` does) and searched."""
    from PIL import Image

    from imgrag.indexing.config import Settings
    from imgrag.indexing.pipeline import Indexer
    from imgrag.indexing.runtime import Runtime
    from imgrag.indexing.search import Searcher, SearchRequest
    from imgrag.indexing.stores.base import OPERATOR

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(folder / "noise.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (64, 1))).save(folder / "ramp.png")
    rt = Runtime(Settings(home=tmp_path / "home", image_embedder="clip", clip_model=str(models["open_clip"]), workers=1))
    summary = Indexer(rt).index([folder])
    assert summary.indexed == 2 and not summary.failed
    spaces = rt.store.spaces()
    assert spaces is not None and spaces.image == rt.image_embedder.identity and spaces.image_dim == 16
    res = Searcher(rt).search(SearchRequest(query="a picture", k=5, mode="vector"), OPERATOR)
    assert {Path(h.path).name for h in res.hits} == {"noise.png", "ramp.png"}
    # image-to-image through the stored CLIP features: an image is its own nearest neighbour
    from imgrag.indexing.stores.base import Filters

    ids = {Path(h.path).name: h.image_id for h in res.hits}
    vec = rt.store.get_vectors(ids["ramp.png"], OPERATOR)
    assert vec is not None and vec.feature.shape == (16,)
    assert rt.store.knn("feature", vec.feature, 2, Filters(), OPERATOR)[0].image_id == ids["ramp.png"]
    like = Searcher(rt).search(SearchRequest(similar_to=ids["ramp.png"], k=2), OPERATOR)
    assert [h.image_id for h in like.hits] == [ids["noise.png"]]
