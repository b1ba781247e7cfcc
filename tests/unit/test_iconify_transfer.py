"""The Iconify pair source (drawing, captions) and caption transfer (nearest named pictures vote)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgrag.evals import transfer as T
from imgrag.evals.datasets import iconify as I


def _write_set(base: Path) -> None:
    d = base / "demo-set"
    d.mkdir(parents=True)
    icons = {
        "red-circle": {"body": '<circle cx="8" cy="8" r="7" fill="#ff0000"/>'},
        "black-square": {"body": '<rect x="2" y="2" width="12" height="12" fill="currentColor"/>'},
        "red-apple": {"body": '<circle cx="16" cy="16" r="14" fill="#c00"/>', "width": 32, "height": 32},
        "abstract-097": {"body": "<path d='M0 0h1v1z'/>"},  # a name that says nothing
        "thumbs-up-medium-skin-tone": {"body": "<path d='M0 0h1v1z'/>"},
        "hidden-one": {"body": "<path d='M0 0h1v1z'/>", "hidden": True},
    }
    (d / "icons.json").write_text(json.dumps({"prefix": "demo-set", "icons": icons, "width": 16, "height": 16}))
    (d / "chars.json").write_text(json.dumps({"1f34e": "red-apple"}))
    (d / "package.json").write_text(json.dumps({"version": "9.9.9"}))


def test_load_set_skips_nameless_hidden_and_skin_tones(tmp_path: Path) -> None:
    _write_set(tmp_path)
    icons = I.load_set("demo-set", tmp_path)
    assert [i.name for i in icons] == ["black-square", "red-apple", "red-circle"]
    apple = icons[1]
    assert apple.chars == "🍎" and apple.key == "demo-set:red-apple" and 'viewBox="0 0 32 32"' in apple.svg
    assert I.package_versions(["demo-set"], tmp_path) == {"demo-set": "9.9.9"}
    assert I.installed(("demo-set", "not-installed"), tmp_path) == ["demo-set"]
    with pytest.raises(I.IconifyMissing, match="npm install @iconify-json/nope"):
        I.load_set("nope", tmp_path)


def test_render_draws_the_svg_centred_on_white(tmp_path: Path) -> None:
    pytest.importorskip("cairosvg")
    _write_set(tmp_path)
    icons = {i.name: i for i in I.load_set("demo-set", tmp_path)}
    circle, square = icons["red-circle"], icons["black-square"]
    arr = I.render(circle)
    assert arr.shape == (I.CANVAS, I.CANVAS, 3) and arr.dtype == np.uint8
    assert (arr[0, 0] == 255).all()  # white corner (the margin)
    c = I.CANVAS // 2
    assert arr[c, c, 0] > 200 and arr[c, c, 1] < 50  # red centre
    assert (I.render(square)[c, c] < 50).all()  # currentColor is drawn black


def test_captions_prefer_cldr_for_emoji_and_fall_back_to_the_name(tmp_path: Path) -> None:
    _write_set(tmp_path)
    icons = {i.name: i for i in I.load_set("demo-set", tmp_path)}

    class Gloss:
        def phrase(self, text: str) -> str | None:
            return {"black square": "黑方块"}.get(text)

    assert I.captions(icons["black-square"], Gloss()) == ["black square", "黑方块"]
    assert I.captions(icons["black-square"], None) == ["black square"]
    from imgrag.evals.datasets import emoji as E

    if (E.CLDR / "annotations" / "zh.xml").is_file():
        caps = I.captions(icons["red-apple"], None)
        assert caps[0] == "red apple" and any("\u4e00" <= ch <= "\u9fff" for c in caps for ch in c)


def test_transfer_takes_the_captions_of_the_nearest_named_pictures() -> None:
    mem_f = np.eye(4, dtype=np.float32)[:3]  # three memory pictures on axes 0, 1, 2
    mem_v = np.eye(3, dtype=np.float32)  # each with its own caption direction
    x = np.array([[0.9, 0.1, 0.0, 0.0], [0.0, 0.2, 0.9, 0.1]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    v = T.transfer(x, mem_f, mem_v, k=1, temp=0.05)
    assert np.allclose(v, [[1, 0, 0], [0, 0, 1]])
    soft = T.transfer(x, mem_f, mem_v, k=3, temp=1.0)
    assert soft[0, 0] > soft[0, 1] > soft[0, 2] > 0 and np.allclose(np.linalg.norm(soft, axis=1), 1)
    loo = T.transfer(mem_f, mem_f, mem_v, k=1, temp=0.05, exclude=[0, 1, 2])  # leave-one-out never picks itself
    assert not np.any(np.isclose(np.diag(loo), 1))
    m = T.mix(np.array([[0, 1, 0]], np.float32) * 3, np.array([[1, 0, 0]], np.float32), 0.5)
    assert np.allclose(m, [[2 ** -0.5, 2 ** -0.5, 0]])


def test_a_memory_holding_the_collections_source_is_refused() -> None:
    assert T.held_out_ok("clipart-heldout", ["clipart", "emoji"]) == "the memory holds openclipart"
    assert T.held_out_ok("emoji", ["iconify:twemoji"]) is not None
    assert T.held_out_ok("emoji", ["iconify:game-icons", "clipart"]) is None
    assert T.held_out_ok("clipart-heldout", ["emoji", "iconify:openmoji"]) is None
    assert T.held_out_ok("pictures-heldout", ["clipart"]) == "the memory holds openclipart"
    assert T.held_out_ok("pictures-dev", ["emoji", "iconify:flag"]) is None


def test_the_shipped_memory_is_what_its_recipe_script_builds() -> None:
    """The committed memory file, its .json and evals/transfer_memory.sh must agree: same sources, k,
    temp, beta and PCA dims — else `bash evals/transfer_memory.sh` would not reproduce what ships."""
    import re
    import shlex

    from imgrag.indexing.embedders.transfer import DEFAULT_MEMORY, NamedMemory

    root = Path(__file__).resolve().parents[2]
    script = (root / "evals" / "transfer_memory.sh").read_text(encoding="utf-8")
    build = re.search(r"python -m imgrag\.evals\.transfer build (.*?)--out", script.replace("\\\n", " "), re.S)
    assert build is not None
    meta = json.loads(DEFAULT_MEMORY.with_suffix(".json").read_text(encoding="utf-8"))
    recipe = re.search(r"build (.*?)--out", str(meta["recipe"]))
    assert recipe is not None and shlex.split(build.group(1)) == shlex.split(recipe.group(1))
    for pkg in re.findall(r"(@iconify-json/[a-z0-9-]+)@([0-9.]+)", script):
        assert meta["npm"][pkg[0]] == pkg[1]
    mem = NamedMemory.load(DEFAULT_MEMORY)
    assert mem.proj.shape == (meta["dims"], 1280) and mem.features.shape == (meta["pictures"], meta["dims"])
    assert len(mem.vectors) == meta["caption_rows"] and mem.owner.max() < len(mem.vectors)
    assert DEFAULT_MEMORY.stat().st_size < 8_000_000  # shipped in the package: keep it small


def test_skin_tone_suffix_copies_are_left_out_but_names_ending_in_light_are_kept(tmp_path: Path) -> None:
    d = tmp_path / "fluent-emoji"
    d.mkdir()
    body = {"body": "<path d='M0 0h1v1z'/>"}
    names = ["firefighter", "firefighter-dark", "firefighter-medium-light", "traffic-light", "night-dark"]
    (d / "icons.json").write_text(json.dumps({"icons": {n: body for n in names}}))
    assert [i.name for i in I.load_set("fluent-emoji", tmp_path)] == ["firefighter", "night-dark", "traffic-light"]


def test_an_icon_named_after_its_cldr_emoji_takes_its_human_chinese() -> None:
    from imgrag.evals.datasets import emoji as E

    if not (E.CLDR / "annotations" / "zh.xml").is_file():
        pytest.skip("unicode-cldr-core is not installed")

    def icon(name: str) -> I.Icon:  # emojione ships no chars.json
        return I.Icon(f"emojione:{name}", "emojione", name, "", "")

    assert I.emoji_of(icon("deciduous-tree")) == "🌳"
    assert I.emoji_of(icon("flag-for-japan")) == "🇯🇵"
    assert I.emoji_of(icon("cactus-2")) == "🌵"  # streamline-emojis numbers its variants
    assert I.emoji_of(icon("battle-axe")) == ""
    assert I.emoji_of(I.Icon("game-icons:anchor", "game-icons", "anchor", "", "")) == ""  # not an emoji set
    caps = I.captions(icon("deciduous-tree"), None)
    assert caps[0] == "deciduous tree" and "落叶树" in caps


def test_exemplars_are_the_features_of_the_pictures_whose_names_match_the_query(tmp_path: Path) -> None:
    from imgrag.indexing.embedders.transfer import NamedMemory, write_memory

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 1280)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    vecs = np.eye(3, 384, dtype=np.float32)  # three caption rows: pictures 0-1 row 0, 2-3 row 1, 4-5 row 2
    out = write_memory(tmp_path / "m.npz", feats, vecs, np.array([0, 0, 1, 1, 2, 2]), k=2, temp=0.05, beta=0.5,
                       dims=5, feature_identity="f", text_identity="t")
    mem = NamedMemory.load(out)
    ex = mem.exemplars(np.eye(3, 384, dtype=np.float32)[[1]], k=2, temp=0.01)
    assert ex.shape == (1, 1280) and np.isclose(np.linalg.norm(ex), 1)
    ranking = np.argsort(-(ex @ feats.T)[0])
    assert set(ranking[:2]) == {2, 3}  # the two pictures named like the query look most like its exemplar


def test_route_fusion_and_score_metrics() -> None:
    from imgrag.indexing.align import retrieval_metrics, score_metrics

    a = np.array([[3.0, 2.0, 1.0]])
    b = np.array([[1.0, 2.0, 3.0]])
    fused = T.rrf_scores([a, b], [1.0, 2.0])
    assert fused.argmax() == 2 and np.isclose(fused[0, 0], 1 / 61 + 2 / 63)
    assert np.allclose(T.zscore(a).mean(1), 0)
    img = np.eye(3, dtype=np.float32)
    q = np.array([[0.1, 0.9, 0.0]], np.float32)
    assert score_metrics(q @ img.T, [frozenset({1})]) == retrieval_metrics(img, q, [frozenset({1})])
    assert score_metrics(b, [frozenset({0})])["mrr"] == 1 / 3


def _tiny_memory(tmp_path: Path) -> Path:
    from imgrag.indexing.embedders.transfer import write_memory

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(6, 1280)).astype(np.float32)
    return write_memory(tmp_path / "m.npz", feats, np.eye(3, 384, dtype=np.float32), np.array([0, 0, 1, 1, 2, 2]), k=2,
                        temp=0.05, beta=0.5, dims=5, feature_identity="f", text_identity="t")


@pytest.mark.parametrize("damage", ["truncated", "not_zip_magic", "json_list", "k_text", "k_zero", "temp_zero",
                                    "beta_big", "beta_missing", "owner_negative", "owner_2d", "colours_short",
                                    "colours_float"])
def test_a_damaged_memory_is_one_error_naming_it_at_load(tmp_path: Path, damage: str) -> None:
    """IMGRAG_TRANSFER_MEMORY pointing at a truncated .npz, a .json that is no object or whose k /
    temp / beta are not usable, or arrays that do not fit together: one ImgragError naming the file
    when the embedder is built, never a zipfile / AttributeError traceback nor every page failing."""
    from imgrag.indexing.embedders.transfer import NamedMemory
    from imgrag.indexing.errors import ImgragError

    out = _tiny_memory(tmp_path)
    meta_path = out.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    raw = out.read_bytes()
    if damage == "truncated":
        out.write_bytes(raw[: len(raw) // 2])
    elif damage == "not_zip_magic":
        out.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    elif damage == "json_list":
        meta_path.write_text("[1, 2]")
    elif damage.startswith(("k_", "temp_", "beta_")):
        key, what = damage.split("_")
        if what == "missing":
            meta.pop(key)
        else:
            meta[key] = {"text": "ten", "zero": 0, "big": 1.5}[what]
        meta_path.write_text(json.dumps(meta))
    elif damage.startswith("colours_"):  # a colour layout per picture, 48 bytes each: 5 rows of 47, or floats, is no memory
        z = dict(np.load(out))
        z["colours"] = np.zeros((5, 47), np.uint8) if damage == "colours_short" else np.full((6, 48), 300.0)
        np.savez(out, **z)
    else:
        z = dict(np.load(out))
        z["owner"] = np.array([-1, 0, 1, 1, 2, 2]) if damage == "owner_negative" else z["owner"].reshape(2, 3)
        np.savez(out, **z)
    with pytest.raises(ImgragError) as e:
        NamedMemory.load(out)
    assert str(out.with_suffix("")) in str(e.value) and "rebuild" in str(e.value)
    (tmp_path / "ok").mkdir()
    NamedMemory.load(_tiny_memory(tmp_path / "ok"))  # the same memory, undamaged, loads


def test_a_drawing_is_drawing_like_and_a_photo_is_not() -> None:
    """The harness's drawing gate reads the quality classifier's statistics as indexing stores them."""
    from imgrag.indexing.preprocess import classify_quality

    drawing = np.full((200, 300, 3), 255, np.uint8)
    drawing[60:140, 100:200] = (200, 30, 30)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 300)[None, :, None] + np.linspace(0, 60, 200)[:, None, None]
    photo = np.clip(ramp + rng.normal(0, 20, (200, 300, 3)), 0, 255).astype(np.uint8)
    assert T.drawing_like(classify_quality(drawing)[1]) and not T.drawing_like(classify_quality(photo)[1])
    assert not T.drawing_like({})  # a page indexed without statistics is no drawing


def test_exemplar_spread_is_each_pictures_mean_and_spread_over_random_exemplars(tmp_path: Path) -> None:
    from imgrag.indexing.embedders.transfer import NamedMemory, write_memory

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(8, 1280)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    out = write_memory(tmp_path / "m.npz", feats, np.eye(4, 384, dtype=np.float32), np.array([0, 0, 1, 1, 2, 2, 3, 3]),
                       k=2, temp=0.05, beta=0.5, dims=6, feature_identity="f", text_identity="t")
    mem = NamedMemory.load(out)
    pics = np.vstack([feats[:2], np.zeros((1, 1280), np.float32)])  # two memory pictures and a blank one
    b, sd = T.exemplar_spread(mem, pics, k=2, temp=0.01, rows=4)
    g = pics @ mem.exemplars(mem.vectors, k=2, temp=0.01).T  # rows=4 of 4: every caption row, in some order
    assert np.allclose(b, g.mean(1), atol=1e-6) and np.allclose(sd[:2], g[:2].std(1), atol=1e-6)
    assert sd[2] == 1e-6  # a picture no exemplar varies on is not divided by zero


@pytest.mark.parametrize("how", ["file", "unpacked"])
def test_an_oversized_memory_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """NamedMemory.load read any file whole and np.load unpacked any array: IMGRAG_TRANSFER_MEMORY
    set to a huge file by mistake, or a small .npz whose arrays unpack to gigabytes (a zip bomb),
    took that much memory. Both are refused from the file's size / the zip's declared sizes."""
    from imgrag.indexing.embedders import transfer
    from imgrag.indexing.errors import ImgragError

    out = _tiny_memory(tmp_path)
    if how == "file":
        monkeypatch.setattr(transfer, "MAX_MEMORY_BYTES", out.stat().st_size // 2)
    else:
        z = dict(np.load(out))
        z["pad"] = np.zeros(4 << 20, np.uint8)  # 4 MiB of zeros: a few kB compressed
        np.savez_compressed(out, **z)
        assert out.stat().st_size < 1 << 20
        monkeypatch.setattr(transfer, "MAX_MEMORY_BYTES", 2 << 20)
        monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("unpacked before the size check"))
    with pytest.raises(ImgragError) as e:
        transfer.NamedMemory.load(out)
    assert str(out) in str(e.value) and "MiB" in str(e.value)


def _framed_memory(tmp_path: Path, framing: str = "centre") -> Path:
    from imgrag.indexing.embedders.bridge import backbone_id, preprocess_id
    from imgrag.indexing.embedders.transfer import write_memory

    rng = np.random.default_rng(2)
    feats = rng.normal(size=(8, 1280)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    fid = f"{backbone_id('lite0')}/pool1280/{preprocess_id('lite0', framing)}"
    return write_memory(tmp_path / f"m-{framing}.npz", feats, np.eye(4, 384, dtype=np.float32), np.arange(8) // 2, k=2,
                        temp=0.05, beta=0.5, dims=6, feature_identity=fid, text_identity="t",
                        extra={"backbone": "lite0", "framing": framing})


def test_a_memory_accepts_auto_framed_pictures_and_refuses_another_framing(tmp_path: Path) -> None:
    """Auto framing (drawings by content, photos centre) looks pictures up in a memory of one framing;
    a wholly other framing or backbone is still refused."""
    from imgrag.indexing.embedders.bridge import backbone_id, preprocess_id
    from imgrag.indexing.embedders.transfer import NamedMemory
    from imgrag.indexing.errors import ImgragError

    mem = NamedMemory.load(_framed_memory(tmp_path))
    fid = {f: f"{backbone_id(b)}/pool1280/{preprocess_id(b, f)}" for b, f in (("lite0", "centre"), ("lite0", "content"), ("lite0", "auto"))}
    assert mem.accepts(fid["centre"]) and mem.accepts(fid["auto"]) and not mem.accepts(fid["content"])
    mem.require(fid["auto"], "t")
    with pytest.raises(ImgragError, match="IMGRAG_IMAGE_FRAMING=centre"):
        mem.require(fid["content"], "t")
    lite2_auto = f"{backbone_id('lite2')}/pool1280/{preprocess_id('lite2', 'auto')}"
    assert not mem.accepts(lite2_auto)
    assert NamedMemory.load(_framed_memory(tmp_path, "content")).accepts(fid["auto"])


def test_exemplar_stats_are_what_the_harness_standardises_by(tmp_path: Path) -> None:
    """The per-page statistics indexing stores (NamedMemory.exemplar_stats, TransferEmbedder.feature_stats)
    are the harness's exemplar_spread at the product's k, temp and 1,000 rows (all 4 here)."""
    from imgrag.indexing.embedders.transfer import (
        EXEMPLAR_K,
        EXEMPLAR_STATS,
        EXEMPLAR_TEMP,
        NamedMemory,
    )

    mem = NamedMemory.load(_framed_memory(tmp_path))
    pics = mem.project(np.random.default_rng(3).normal(size=(3, 1280)).astype(np.float32)) @ mem.proj
    pics /= np.linalg.norm(pics, axis=1, keepdims=True)
    b, sd = mem.exemplar_stats(pics)
    b2, sd2 = T.exemplar_spread(mem, pics, k=EXEMPLAR_K, temp=EXEMPLAR_TEMP, rows=1000)
    assert np.allclose(b, b2, atol=1e-6) and np.allclose(sd, sd2, atol=1e-6) and (sd > 1e-3).all()
    assert EXEMPLAR_STATS == ("exemplar_mean", "exemplar_sd")


def test_the_standardised_exemplar_term_in_the_image_route() -> None:
    from imgrag.indexing.search import add_exemplar
    from imgrag.indexing.stores.base import RouteHit

    hits = [RouteHit(image_id=i, score=s) for i, s in (("near-all", 0.50), ("a", 0.45), ("old", 0.40))]
    ex = [RouteHit(image_id=i, score=s) for i, s in (("near-all", 0.90), ("a", 0.80), ("c", 0.70), ("nostats", 0.95))]
    stats = {"near-all": {"exemplar_mean": 0.85, "exemplar_sd": 0.05}, "a": {"exemplar_mean": 0.40, "exemplar_sd": 0.10},
             "c": {"exemplar_mean": 0.60, "exemplar_sd": 0.05}, "old": {}, "nostats": {}}
    got = {h.image_id: round(h.score, 6) for h in add_exemplar(hits, ex, stats, 0.01, 10)}
    # near-all: its cosine is only 1 sd over its own mean (+0.01); a: 4 sd (+0.04); c (missed by the image
    # kNN): that route's lowest 0.40 + 2 sd; old (no statistics, e.g. indexed before them): its score;
    # nostats (only the exemplar kNN found it, no statistics): left out
    assert got == {"near-all": 0.51, "a": 0.49, "old": 0.4, "c": 0.42}
    assert [h.image_id for h in add_exemplar(hits, ex, stats, 0.01, 2)] == ["near-all", "a"]
    assert add_exemplar(hits, ex, stats, 0.0, 10) == hits and add_exemplar(hits, [], stats, 0.01, 10) == hits


# --- session 16: flags as a pair source, colour layouts and the colour term -----------------------------


def _flag(top: tuple[int, int, int], bottom: tuple[int, int, int], h: int = 60, w: int = 90, margin: int = 0) -> np.ndarray:
    """A two-band flag (Ukraine-like: ``top`` over ``bottom``) on a white margin."""
    a = np.full((h + 2 * margin, w + 2 * margin, 3), 255, np.uint8)
    a[margin : margin + h // 2, margin : margin + w] = top
    a[margin + h // 2 : margin + h, margin : margin + w] = bottom
    return a


def test_colour_layout_sees_where_which_colour_is_and_ignores_the_margin() -> None:
    from imgrag.indexing.embedders.transfer import (
        COLOUR_GRID,
        colour_distances,
        colour_layout,
    )

    blue, yellow = (0, 87, 183), (255, 215, 0)
    ukraine = colour_layout(_flag(blue, yellow))
    assert ukraine.shape == (COLOUR_GRID * COLOUR_GRID * 3,) and ukraine.dtype == np.uint8
    same_on_white = colour_layout(_flag(blue, yellow, margin=40))  # the same flag drawn small on a big canvas
    upside_down = colour_layout(_flag(yellow, blue))
    d = colour_distances(np.stack([same_on_white, upside_down]), ukraine)
    assert d[0] < 0.05 and d[1] > 0.5  # the same layout vs the same colours elsewhere
    # any page an index may hold gives a layout, never an error: grey, 16-bit, float, one pixel, huge
    assert colour_layout(np.full((30, 40), 128, np.uint8)).shape == ukraine.shape
    assert colour_layout((np.arange(64 * 64 * 3).reshape(64, 64, 3) * 16).astype(np.uint16)).shape == ukraine.shape
    assert colour_layout(np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)).shape == ukraine.shape
    assert colour_layout(np.zeros((1, 1, 3), np.uint8)).shape == ukraine.shape
    assert colour_layout(np.zeros((5000, 40, 4), np.uint8)).shape == ukraine.shape  # RGBA, thin and long
    from PIL import Image  # the cached LittleCMS transform gives Image.convert("LAB")'s bytes (what memories hold)

    flag = Image.fromarray(_flag(blue, yellow)).resize((4, 4), Image.BOX)
    assert np.array_equal(ukraine, np.asarray(flag.convert("LAB"), np.uint8).reshape(-1))
    # the one shared transform from many threads at once gives every thread the same bytes
    from concurrent.futures import ThreadPoolExecutor

    pics = [np.random.default_rng(s).integers(0, 256, (64, 64, 3), dtype=np.uint8) for s in range(64)]
    alone = [colour_layout(p) for p in pics]
    with ThreadPoolExecutor(8) as pool:
        assert all(np.array_equal(a, b) for a, b in zip(alone, pool.map(colour_layout, pics), strict=True))
    assert colour_layout(np.zeros((0, 0, 3), np.uint8)).shape == ukraine.shape  # nothing: no error either
    assert colour_layout(np.full((8, 8, 2), 7, np.uint8)).shape == ukraine.shape  # grey + alpha
    nan = np.full((16, 16, 3), np.nan, np.float32)
    assert colour_layout(nan).shape == ukraine.shape


def test_colour_layout_of_a_huge_deep_page_reads_a_sample_not_a_copy() -> None:
    """A 30,000 x 30,000 16-bit grey page (a broadcast view: 1.8 GB if it were copied, 10.8 GB as float
    RGB) costs a few MB: the layout is taken from a strided sample before any conversion."""
    import tracemalloc

    from imgrag.indexing.embedders.transfer import colour_layout

    page = np.broadcast_to(np.uint16(40000), (30_000, 30_000))
    tracemalloc.start()
    try:
        out = colour_layout(page)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (48,) and peak < 64 << 20, peak
    assert len(set(out[0::3].tolist())) == 1  # one flat grey: every cell the same lightness


def _colour_memory(tmp_path: Path) -> Path:
    from imgrag.indexing.embedders.transfer import colour_layout, write_memory

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 1280)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    blue, yellow = (0, 87, 183), (255, 215, 0)
    colours = np.stack([colour_layout(_flag(blue, yellow)), colour_layout(_flag(blue, yellow)),
                        colour_layout(_flag(yellow, blue)), colour_layout(_flag(yellow, blue))])
    return write_memory(tmp_path / "c.npz", feats, np.eye(2, 384, dtype=np.float32), np.array([0, 0, 1, 1]), k=2,
                        temp=0.05, beta=0.5, dims=3, feature_identity="f", text_identity="t", colours=colours)


def test_a_memory_with_colour_layouts_gives_each_query_its_exemplars_layout(tmp_path: Path) -> None:
    from imgrag.indexing.embedders.transfer import NamedMemory, colour_distances

    mem = NamedMemory.load(_colour_memory(tmp_path))
    assert mem.colours is not None and mem.colours.shape == (4, 48) and mem.meta["colour_grid"] == 4
    q = np.eye(2, 384, dtype=np.float32)
    cols = mem.exemplar_colours(q, k=2, temp=0.01)
    assert cols is not None and cols.dtype == np.uint8
    assert colour_distances(mem.colours[[0]], cols[0])[0] < 0.01 and colour_distances(mem.colours[[2]], cols[1])[0] < 0.01
    assert np.allclose(mem.exemplars(q, k=2, temp=0.01), mem._exemplars(q, k=2, temp=0.01)[0])
    # a memory built before session 16 (no layouts) loads and has no colour exemplar: the term stays off
    old = NamedMemory.load(_tiny_memory(tmp_path))
    assert old.colours is None and old.exemplar_colours(np.eye(3, 384, dtype=np.float32)[[0]]) is None


def test_the_colour_term_moves_the_candidate_whose_layout_is_the_exemplars() -> None:
    from imgrag.indexing.embedders.transfer import colour_layout
    from imgrag.indexing.search import add_exemplar
    from imgrag.indexing.stores.base import RouteHit

    blue, yellow, red, white = (0, 87, 183), (255, 215, 0), (200, 16, 46), (255, 255, 255)
    layout = {"ukraine": colour_layout(_flag(blue, yellow)), "flipped": colour_layout(_flag(yellow, blue)),
              "poland": colour_layout(_flag(white, red, margin=0)), "monaco": colour_layout(_flag(red, white))}
    base = {"flipped": 0.50, "ukraine": 0.499, "poland": 0.48, "monaco": 0.47, "old": 0.465}
    hits = [RouteHit(image_id=i, score=s) for i, s in base.items()]
    ex = [RouteHit(image_id=i, score=0.5) for i in base]
    stats: dict[str, dict[str, object]] = {i: {"exemplar_mean": 0.5, "exemplar_sd": 1.0, "colour_layout": [int(v) for v in layout[i]]}
                                           for i in layout}
    stats["old"] = {"exemplar_mean": 0.5, "exemplar_sd": 1.0}  # indexed before colour layouts: keeps its score
    without = add_exemplar(hits, ex, stats, 0.01, 10)
    assert [h.image_id for h in without] == list(base)
    with_colour = add_exemplar(hits, ex, stats, 0.01, 10, layout["ukraine"], 0.25)
    got = {h.image_id: h.score for h in with_colour}
    # a nudge in units of the candidates' spread: it reorders near neighbours, not the whole list
    assert [h.image_id for h in with_colour][:2] == ["ukraine", "flipped"] and got["old"] == pytest.approx(0.465)
    assert got["flipped"] < 0.50  # the same colours the other way round: farther than the candidates' mean
    assert add_exemplar(hits, ex, stats, 0.01, 10, layout["ukraine"], 0.0) == without  # weight 0: off
    # a stored layout that is not 48 numbers 0-255 (a damaged or foreign record) is no layout
    bad = {**stats, "ukraine": {**stats["ukraine"], "colour_layout": [999] * 48}}
    assert add_exemplar(hits, ex, bad, 0.01, 10, layout["ukraine"], 0.25)[0].image_id != "ukraine"


def test_feature_stats_store_a_colour_layout_only_with_a_memory_that_has_them(tmp_path: Path) -> None:
    from imgrag.indexing.embedders.transfer import (
        COLOUR_KEY,
        EXEMPLAR_STATS,
        NamedMemory,
        TransferEmbedder,
    )

    emb = TransferEmbedder.__new__(TransferEmbedder)  # the two methods read only the memory
    emb.memory = NamedMemory.load(_colour_memory(tmp_path))
    feats = np.random.default_rng(1).normal(size=(2, 1280)).astype(np.float32)
    imgs = [_flag((0, 87, 183), (255, 215, 0)), _flag((255, 215, 0), (0, 87, 183))]
    st = emb.feature_stats(feats, images=imgs)
    assert set(st[0]) == {*EXEMPLAR_STATS, COLOUR_KEY} and len(st[1][COLOUR_KEY]) == 48
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in st[0][COLOUR_KEY])
    assert set(emb.feature_stats(feats)[0]) == set(EXEMPLAR_STATS)  # no images: no layout
    f, c = emb.exemplar_pair(np.eye(2, 384, dtype=np.float32)[0])
    assert f.shape == (1280,) and c is not None and c.shape == (48,)
    emb.memory = NamedMemory.load(_tiny_memory(tmp_path))
    assert set(emb.feature_stats(np.random.default_rng(1).normal(size=(1, 1280)).astype(np.float32), images=imgs[:1])[0]) == set(EXEMPLAR_STATS)


def test_flag_icons_take_the_flag_emojis_cldr_names(tmp_path: Path) -> None:
    from imgrag.evals.datasets import emoji as E

    assert I.flag_emoji("se-4x3") == "🇸🇪" and I.flag_emoji("jp-1x1") == "🇯🇵"
    assert I.flag_emoji("gb-sct-4x3") == "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"
    assert I.flag_emoji("arab-4x3") == "" and I.flag_emoji("un") == ""
    d = tmp_path / "flag"
    d.mkdir()
    body = {"body": "<path d='M0 0h4v3H0z'/>"}
    (d / "icons.json").write_text(json.dumps({"icons": {n: body for n in ("se-4x3", "se-1x1", "arab-4x3", "xx-4x3")},
                                              "width": 640, "height": 480}))
    icons = I.load_set("flag", tmp_path)
    assert [i.name for i in icons] == ["se-1x1", "se-4x3", "xx-4x3"]  # "arab" is no ISO code (no emoji, no names)
    if not (E.CLDR / "annotations" / "zh.xml").is_file():
        pytest.skip("unicode-cldr-core is not installed")
    caps = I.captions(icons[1], None)
    assert caps[0] == "flag: Sweden" and "旗: 瑞典" in caps and not any("4x3" in c for c in caps)
    assert I.captions(icons[2], None) == []  # an unknown region's code is no caption: left out of the memory


def test_an_index_built_with_another_transfer_memory_names_re_indexing_as_the_fix() -> None:
    """An upgrade that ships a new memory file changes the transfer embedder's identity: searching an index
    built with the old one is one line naming the two memories and the fix (re-index, or point
    IMGRAG_TRANSFER_MEMORY at the old file), not `imgrag reembed --adapter`, which cannot move it."""
    from imgrag.indexing.errors import ImgragError
    from imgrag.indexing.stores.base import ModelSpaces, check_query_space

    def spaces(image: str) -> ModelSpaces:
        return ModelSpaces(image=image, image_dim=384, feature="f", feature_dim=1280, text="t", text_dim=384)

    old = "transfer[memory=e345f074e6d5b747|k10|temp0.03|beta0.5|label-bridge[x]]"
    new = "transfer[memory=9208e1ff48984037|k10|temp0.03|beta0.5|label-bridge[x]]"
    with pytest.raises(ImgragError) as e:
        check_query_space(spaces(old), "image", new, 384)
    assert "another transfer memory (file e345f074e6d5b747; the configured one is 9208e1ff48984037)" in str(e.value)
    assert "IMGRAG_TRANSFER_MEMORY" in str(e.value) and "reembed" not in str(e.value)
    with pytest.raises(ImgragError, match="reembed"):  # another embedder altogether: the general hint
        check_query_space(spaces(old), "image", "label-bridge[x]", 384)
    check_query_space(spaces(new), "image", new, 384)  # the same memory: fine
