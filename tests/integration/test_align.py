"""`imgrag align`: InfoNCE heads, adapters, the `aligned` embedder and re-embedding an index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrag.indexing.align import (
    AdapterConfig,
    PairData,
    TrainConfig,
    align,
    load_adapter,
    read_pairs,
    read_safetensors,
    retrieval_metrics,
    save_adapter,
    split_by_image,
    train_heads,
    write_safetensors,
)
from imgrag.indexing.errors import ImgragError

ROOT = Path(__file__).resolve().parents[2]


# -- pieces ---------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = {"a.weight": rng.standard_normal((3, 5)).astype(np.float32), "b": np.arange(4, dtype=np.float32)}
    write_safetensors(tmp_path / "w.safetensors", t, {"k": "v"})
    back = read_safetensors(tmp_path / "w.safetensors")
    assert set(back) == set(t)
    for k in t:
        np.testing.assert_array_equal(back[k], t[k])
    st = pytest.importorskip("safetensors.numpy")
    lib = st.load_file(str(tmp_path / "w.safetensors"))  # the reference reader agrees
    np.testing.assert_array_equal(lib["a.weight"], t["a.weight"])


def test_retrieval_metrics_by_hand() -> None:
    images = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0.9, 0.5, 0, 0], [0, 0, 0.2, 0.1], [0, 0, 0, 1]], np.float32)
    # ranks of the relevant image: 1, 2 (image 0 beats image 1), 1, 1
    m = retrieval_metrics(images, queries, [frozenset({0}), frozenset({1}), frozenset({2}), frozenset({3, 0})])
    assert m["n"] == 4
    assert m["r1"] == pytest.approx(0.75) and m["r5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)


def test_split_is_by_key_not_order() -> None:
    keys = [f"img{i}.png" for i in range(200)]
    a = split_by_image(keys, 0.2, seed=3)
    b = split_by_image(list(reversed(keys)), 0.2, seed=3)
    assert dict(zip(keys, a)) == dict(zip(reversed(keys), b))
    assert 20 <= a.sum() <= 60
    assert not np.array_equal(a, split_by_image(keys, 0.2, seed=4))


def test_read_pairs(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text(
        '{"image": "a.png", "caption": "a red square", "caption_zh": "红色方块"}\n'
        '\n{"image": "a.png", "caption": ["red box"]}\n'
        '{"image": "/abs/b.png", "caption": "blue"}\n', encoding="utf-8")
    pairs = dict(read_pairs(tmp_path / "pairs.jsonl"))
    assert pairs[tmp_path / "a.png"] == ["a red square", "红色方块", "red box"]
    assert pairs[Path("/abs/b.png")] == ["blue"]
    (tmp_path / "bad.jsonl").write_text('{"caption": "no image"}\n')
    with pytest.raises(ImgragError, match="bad.jsonl:1"):
        read_pairs(tmp_path / "bad.jsonl")


# -- training on synthetic, learnable data ----------------------------------------------------


class FakeText:
    """A text embedder whose caption vectors are a linear function of a hidden per-image code."""

    identity = "fake-text/d384"
    dim = 384

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])

    embed_passages = embed_queries


def _synthetic(n: int = 300, seed: int = 0) -> tuple[PairData, FakeText]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 24))
    p, q = rng.standard_normal((24, 1280)), rng.standard_normal((24, 384))
    feats = z @ p + 0.5 * rng.standard_normal((n, 1280)) * np.sqrt(24)
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    table, captions = {}, []
    for i in range(n):
        caps = [f"object {i}", f"物体 {i}"]
        for c in caps:
            v = z[i] @ q + 0.5 * rng.standard_normal(384) * np.sqrt(24)
            table[c] = (v / np.linalg.norm(v)).astype(np.float32)
        captions.append(caps)
    before = rng.standard_normal((n, 384)).astype(np.float32)  # an unrelated "before" space
    data = PairData(keys=[f"img{i}" for i in range(n)], features=feats, captions=captions,
                    feature_identity="fake-features", before=before / np.linalg.norm(before, axis=1, keepdims=True),
                    before_identity="random", before_queries=lambda texts: np.stack([table[t][:384] for t in texts]))
    return data, FakeText(table)


def test_training_learns_and_reports_before_after(tmp_path: Path) -> None:
    data, text = _synthetic()
    cfg = TrainConfig(epochs=40, batch_size=64, patience=10, seed=1)
    adapter, metrics = align(data, text, tmp_path / "ad", cfg=cfg, name="synthetic")
    after, before = metrics["after"]["all"], metrics["before"]["all"]
    assert metrics["split"]["val_images"] + metrics["split"]["train_images"] == 300
    assert metrics["after"]["en"]["n"] == metrics["after"]["zh"]["n"] == metrics["split"]["val_images"]
    assert before["mrr"] < 0.2  # chance is ~0.07 for ~60 validation images
    assert after["mrr"] > 0.5 and after["mrr"] > before["mrr"] + 0.3
    assert after["r10"] >= after["r5"] >= after["r1"]
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 40
    saved = json.loads((tmp_path / "ad" / "metrics.json").read_text())
    assert saved["after"]["all"]["mrr"] == pytest.approx(after["mrr"])
    cfg_json = AdapterConfig.model_validate_json((tmp_path / "ad" / "adapter.json").read_text())
    assert (cfg_json.dim, cfg_json.image_in, cfg_json.text_in) == (256, 1280, 384)
    assert cfg_json.feature_identity == "fake-features" and cfg_json.text_identity == text.identity
    assert 0.01 <= cfg_json.tau < 0.2
    size = (tmp_path / "ad" / "adapter.safetensors").stat().st_size
    assert 1.6e6 < size < 1.8e6  # (1280 + 384) * 256 floats + biases
    # the saved heads reproduce the reported validation numbers
    val = split_by_image(data.keys, cfg.val_fraction, cfg.seed)
    rows = np.flatnonzero(val)
    iv = adapter.project_images(data.features[rows])
    texts = [c for r in rows for c in data.captions[r]]
    rel = [frozenset({j}) for j, r in enumerate(rows) for _ in data.captions[r]]
    m = retrieval_metrics(iv, adapter.project_texts(text.embed_queries(texts)), rel)
    assert m["mrr"] == pytest.approx(after["mrr"], abs=1e-6)


def test_training_is_deterministic(tmp_path: Path) -> None:
    data, text = _synthetic(n=120)
    cfg = TrainConfig(epochs=6, batch_size=32, seed=7)
    align(data, text, tmp_path / "a", cfg=cfg)
    align(data, text, tmp_path / "b", cfg=cfg)
    align(data, text, tmp_path / "c", cfg=cfg.model_copy(update={"seed": 8}))
    wa, wb, wc = (read_safetensors(tmp_path / x / "adapter.safetensors") for x in "abc")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])  # bit for bit
    assert not np.array_equal(wa["image.weight"], wc["image.weight"])
    assert load_adapter(tmp_path / "a").identity.split("@")[1] == load_adapter(tmp_path / "b").identity.split("@")[1]
    assert load_adapter(tmp_path / "a").sha != load_adapter(tmp_path / "c").sha


def test_identity_text_head_keeps_the_text_space(tmp_path: Path) -> None:
    """--text-head identity: only the image head learns; queries are the text model's own vectors."""
    data, text = _synthetic()
    cfg = TrainConfig(epochs=40, batch_size=64, patience=10, seed=1, text_head="identity")
    adapter, metrics = align(data, text, tmp_path / "ad", cfg=cfg, name="synthetic-e5space")
    w = read_safetensors(tmp_path / "ad" / "adapter.safetensors")
    np.testing.assert_array_equal(w["text.weight"], np.eye(384, dtype=np.float32))
    np.testing.assert_array_equal(w["text.bias"], np.zeros(384, np.float32))
    assert (adapter.config.dim, adapter.config.image_in, adapter.config.text_in) == (384, 1280, 384)
    q = text.embed_queries(["object 3", "物体 7"])
    np.testing.assert_allclose(adapter.project_texts(q), q / np.linalg.norm(q, axis=1, keepdims=True), atol=1e-6)
    assert metrics["after"]["all"]["mrr"] > metrics["before"]["all"]["mrr"] + 0.2


def test_distill_keeps_images_near_the_bridge(tmp_path: Path) -> None:
    """--distill pulls each image's vector towards its "before" (bridge) vector; it needs --text-head identity."""
    data, text = _synthetic(n=160)
    r = np.random.default_rng(3).standard_normal((1280, 384)).astype(np.float32)
    b = data.features @ r  # a "bridge" the features determine, unrelated to the captions
    data.before = b / np.linalg.norm(b, axis=1, keepdims=True)
    base = TrainConfig(epochs=30, batch_size=64, seed=1, text_head="identity", patience=30)

    def closeness(cfg: TrainConfig, name: str) -> float:
        ad, _ = align(data, text, tmp_path / name, cfg=cfg)
        return float((ad.project_images(data.features) * data.before).sum(1).mean())  # type: ignore[operator]

    assert closeness(base.model_copy(update={"distill": 5.0}), "d") > closeness(base, "plain") + 0.2
    with pytest.raises(ImgragError, match="--text-head identity"):
        train_heads(data, text, TrainConfig(epochs=1, distill=1.0))


def test_too_few_pairs() -> None:
    data, text = _synthetic(n=3)
    with pytest.raises(ImgragError, match="at least 4"):
        train_heads(data, text)


# -- the aligned embedder -------------------------------------------------------------------


def _random_adapter(out: Path, feature_identity: str, text_identity: str, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = {"image.weight": rng.standard_normal((256, 1280)).astype(np.float32) * 0.03,
         "image.bias": np.zeros(256, np.float32),
         "text.weight": rng.standard_normal((256, 384)).astype(np.float32) * 0.05,
         "text.bias": np.zeros(256, np.float32)}
    save_adapter(out, w, AdapterConfig(name="rand", dim=256, image_in=1280, text_in=384, tau=0.07,
                                       feature_identity=feature_identity, text_identity=text_identity), {})
    return out


def test_aligned_embedder(tmp_path: Path) -> None:
    from imgrag.indexing.embedders import ImageTextEmbedder, get_image_text_embedder, get_text_embedder
    from imgrag.indexing.embedders.aligned import AlignedEmbedder

    bridge = get_image_text_embedder("bridge")
    e5 = get_text_embedder("e5")
    a = _random_adapter(tmp_path / "a", bridge.feature_identity, e5.identity)
    b = _random_adapter(tmp_path / "b", bridge.feature_identity, e5.identity, seed=1)
    ea = AlignedEmbedder(a, e5)
    assert isinstance(ea, ImageTextEmbedder)
    assert ea.dim == 256 and ea.feature_identity == bridge.feature_identity
    assert ea.identity != AlignedEmbedder(b, e5).identity  # the adapter's hash is part of the identity
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = (220, 30, 30)
    out = ea.embed_images([img])
    ref = bridge.embed_images([img])
    np.testing.assert_allclose(out.features, ref.features, atol=1e-6)
    assert out.captions == ref.captions
    np.testing.assert_allclose(out.vectors, load_adapter(a).project_images(ref.features), atol=1e-6)
    np.testing.assert_allclose(ea.from_features(ref.features).vectors, out.vectors, atol=1e-6)
    q = ea.embed_queries(["a red square", "红色方块"])
    assert q.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ImgragError, match="trained on features"):
        AlignedEmbedder(_random_adapter(tmp_path / "c", "other-backbone", e5.identity), e5)
    with pytest.raises(ImgragError, match="text model"):
        AlignedEmbedder(_random_adapter(tmp_path / "d", bridge.feature_identity, "minilm"), e5)
    with pytest.raises(ImgragError, match="does not exist"):
        AlignedEmbedder(tmp_path / "missing", e5)
    with pytest.raises(ImgragError, match="needs an adapter"):
        AlignedEmbedder(None, e5)


# -- end to end through the CLI -------------------------------------------------------------


def _cli(home: Path, *args: str, check: bool = True, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMGRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for k in ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_IMAGE_EMBEDDER", "IMGRAG_ADAPTER"):
        env.pop(k, None)
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-m", "imgrag", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"imgrag {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


COLOURS = {"red": ((220, 30, 30), "红色"), "green": ((30, 180, 40), "绿色"), "blue": ((30, 60, 220), "蓝色"),
           "yellow": ((240, 220, 20), "黄色")}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shapes")
    lines = []
    for name, (rgb, zh) in COLOURS.items():
        for shape, shape_zh in (("square", "方块"), ("circle", "圆形")):
            im = Image.new("RGB", (96, 96), "white")
            draw = ImageDraw.Draw(im)
            (draw.rectangle if shape == "square" else draw.ellipse)((16, 16, 80, 80), fill=rgb)
            im.save(d / f"{name}_{shape}.png")
            lines.append(json.dumps({"image": f"{d.name}/{name}_{shape}.png", "caption": f"a {name} {shape}",
                                     "caption_zh": f"{zh}{shape_zh}"}, ensure_ascii=False))
    (d.parent / f"{d.name}-pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


@pytest.mark.slow
def test_align_and_reembed_end_to_end(shapes: Path, tmp_path: Path) -> None:
    from imgrag.indexing.stores.base import OPERATOR, Filters
    from imgrag.indexing.stores.lance import LanceStore

    home = tmp_path / "home"
    pairs = shapes.parent / f"{shapes.name}-pairs.jsonl"
    # built with the bridge, set explicitly; every later command leaves IMGRAG_IMAGE_EMBEDDER unset,
    # so it also checks that an index keeps the model it was built with
    _cli(home, "index", str(shapes), env_extra={"IMGRAG_IMAGE_EMBEDDER": "bridge"})
    bridge_space = json.loads(_cli(home, "stats").stdout)["spaces"]["image"]
    assert bridge_space.startswith("label-bridge[")

    # train from the index (captions = the bridge's label captions) and from a pairs file
    res = json.loads(_cli(home, "align", "--from-index", "--caption-field", "caption", "--out", str(tmp_path / "a1"),
                          "--epochs", "3", "--json").stdout)
    assert res["split"]["train_images"] + res["split"]["val_images"] == 8
    assert {"before", "after", "before_identity"} <= set(res) and res["before_identity"] == bridge_space
    p = _cli(home, "align", "--pairs", str(pairs), "--out", str(tmp_path / "a2"), "--epochs", "3", "--seed", "1")
    assert "before" in p.stdout and "after" in p.stdout and "saved adapter" in p.stdout
    assert (tmp_path / "a2" / "adapter.safetensors").is_file()
    bad = _cli(home, "align", "--from-index", "--caption-field", "meta.nope", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "no indexed record" in bad.stderr

    # an existing bridge index switches to adapter a1 from stored features
    p = _cli(home, "index", "--adapter", str(tmp_path / "a1"), str(shapes))
    assert "re-embedded 8 images" in p.stderr and "unchanged 8" in p.stdout
    spaces = json.loads(_cli(home, "stats").stdout)["spaces"]
    a1 = load_adapter(tmp_path / "a1")
    assert a1.identity in spaces["image"] and spaces["image_dim"] == 256
    aligned_env = {"IMGRAG_IMAGE_EMBEDDER": "aligned", "IMGRAG_ADAPTER": str(tmp_path / "a1")}
    hits = json.loads(_cli(home, "search", "red square", "--json", "--mode", "vector", env_extra=aligned_env).stdout)["hits"]
    assert len(hits) == 8

    # whole-image vectors are exactly the heads applied to the stored features; tiles match a fresh index
    store = LanceStore(home / "index")
    fresh_home = tmp_path / "fresh"
    _cli(fresh_home, "index", "--adapter", str(tmp_path / "a1"), str(shapes))
    fresh = LanceStore(fresh_home / "index")
    assert fresh.spaces() == store.spaces()
    ids = sorted(r.image_id for r in store.list_images(OPERATOR, Filters()))
    assert len(ids) == 8
    for image_id in ids:
        v = store.get_vectors(image_id, OPERATOR)
        assert v is not None
        np.testing.assert_allclose(v.image, a1.project_images(v.feature[None])[0], atol=1e-5)
        np.testing.assert_allclose(v.image, fresh.get_vectors(image_id, OPERATOR).image, atol=1e-4)
    tiles = [r.region_id for r in store.regions_of(ids) if r.kind == "tile"]
    assert len(tiles) == 8 * 13
    old_t, new_t = store.region_vectors(tiles), fresh.region_vectors(tiles)
    for rid in tiles:
        np.testing.assert_allclose(old_t[rid], new_t[rid], atol=1e-4)
    store.close()
    fresh.close()

    # switching adapters again, then rolling back to the bridge
    p = _cli(home, "reembed", "--adapter", str(tmp_path / "a2"))
    assert "re-embedded 8 images" in p.stdout
    assert load_adapter(tmp_path / "a2").identity in json.loads(_cli(home, "stats").stdout)["spaces"]["image"]
    versions = json.loads(_cli(home, "versions", "--json").stdout)
    assert [v["op"] for v in versions][:1] == ["index"] and [v["op"] for v in versions].count("reembed") == 2
    _cli(home, "rollback", str(versions[0]["version"]))
    assert json.loads(_cli(home, "stats").stdout)["spaces"]["image"] == bridge_space
    hits = json.loads(_cli(home, "search", "red", "--json").stdout)["hits"]
    assert len(hits) >= 1
