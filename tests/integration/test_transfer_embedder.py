"""The ``transfer`` image embedder: the bridge mixed with the captions of the nearest named pictures
of a memory file — real backbone, real e5, pictures drawn here; end to end through index + search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrag.indexing.errors import ImgragError

ROOT = Path(__file__).resolve().parents[2]

# Memory pictures (drawn with Pillow) and the made-up names the memory gives them: the bridge knows
# no "zorblax" or "quimbo", so only the transferred captions can find these pictures by those words.
SHAPES = {"disc": ("zorblax", "左布拉"), "bars": ("quimbo", "奎姆波")}


# settings a developer's shell may hold that would change what these tests measure: left at their defaults
_TUNING = ("IMGRAG_PRINCIPAL", "IMGRAG_GROUPS", "IMGRAG_ADAPTER", "IMGRAG_IMAGE_FRAMING", "IMGRAG_EXEMPLAR_WEIGHT",
           "IMGRAG_TRANSLATE_QUERY", "IMGRAG_IMAGE_QUERY_TRANSLATION", "IMGRAG_COLOUR_WEIGHT")


def _env(tmp_path: Path, mem: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment for a transfer index in ``tmp_path/home`` with memory ``mem``."""
    env = {k: v for k, v in os.environ.items() if k not in _TUNING}
    return {**env, "IMGRAG_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "IMGRAG_IMAGE_EMBEDDER": "transfer",
            "IMGRAG_TRANSFER_MEMORY": str(mem), **extra}


def _imgrag(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``imgrag ARGS`` through the real CLI in ``env`` (plus ``extra`` settings), not checked."""
    return subprocess.run([sys.executable, "-m", "imgrag", *args], cwd=ROOT, env={**env, **extra}, capture_output=True,
                          text=True, timeout=900, check=False)


def _draw(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (160, 160), "white")
    d = ImageDraw.Draw(im)
    j = int(rng.integers(-8, 9))
    if kind == "disc":
        d.ellipse((30 + j, 30 + j, 130 + j, 130 + j), fill=(220, 30, 30))
    else:
        for x in range(20, 140, 30):
            d.rectangle((x + j, 20, x + j + 12, 140), fill=(20, 20, 20))
    return np.asarray(im)


def _memory(tmp_path: Path, beta: float = 0.0, text_identity: str | None = None, framing: str | None = None,
            names: dict[str, tuple[str, ...]] | None = None) -> Path:
    from imgrag.indexing.embedders import get_image_text_embedder, get_text_embedder
    from imgrag.indexing.embedders.transfer import write_memory

    e5 = get_text_embedder("e5")
    bridge = get_image_text_embedder("bridge", framing=framing or "centre")
    imgs, owner, caps = [], [], []
    for row, (kind, words) in enumerate((names or SHAPES).items()):
        caps.append(e5.embed_queries(list(words)).mean(0))
        for seed in range(6):
            imgs.append(_draw(kind, seed))
            owner.append(row)
    feats = bridge.embed_images(imgs).features
    extra: dict[str, object] = {"sources": ["test"]}
    if framing:  # as `build` records it; without it, the framing is read off the feature identity (older memories)
        extra.update(backbone="lite0", framing=framing)
    return write_memory(tmp_path / f"mem-{beta:g}-{framing}-{len(names or {})}.npz", feats, np.stack(caps), np.array(owner), k=3, temp=0.05,
                        beta=beta, dims=8, feature_identity=bridge.feature_identity,
                        text_identity=text_identity or e5.identity, extra=extra)


def test_transfer_embedder_finds_pictures_by_their_neighbours_names(tmp_path: Path) -> None:
    from imgrag.indexing.embedders import ImageTextEmbedder, get_image_text_embedder, get_text_embedder
    from imgrag.indexing.embedders.transfer import NamedMemory, TransferEmbedder

    e5 = get_text_embedder("e5")
    bridge = get_image_text_embedder("bridge", framing="auto")  # over a centre memory, transfer frames each picture by its kind
    path = _memory(tmp_path)
    mem = NamedMemory.load(path)
    assert mem.features.shape == (12, 8) and mem.vectors.shape == (2, e5.dim) and path.stat().st_size < 50_000
    te = TransferEmbedder(path, e5)
    assert isinstance(te, ImageTextEmbedder) and te.dim == bridge.dim and te.feature_identity == bridge.feature_identity
    assert te.identity.startswith("transfer[memory=") and bridge.identity in te.identity
    new = [_draw("disc", 100), _draw("bars", 101)]  # unseen pictures of each kind
    out = te.embed_images(new)
    ref = bridge.embed_images(new)
    np.testing.assert_allclose(out.features, ref.features, atol=1e-6)
    assert out.captions == ref.captions  # the caption text stays the bridge's
    q = te.embed_queries(["zorblax", "quimbo", "左布拉", "奎姆波"])
    sims = q @ out.vectors.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]  # English names find their pictures
    assert sims[2, 0] > sims[2, 1] and sims[3, 1] > sims[3, 0]  # and Chinese ones
    base = q @ ref.vectors.T  # the bridge alone does not
    assert (sims[0, 0] - sims[0, 1]) > (base[0, 0] - base[0, 1])
    # regions pool from one backbone pass and are mixed the same way
    reg = te.embed_regions([new[0]], [[(0, 0, 160, 160), (0, 0, 80, 80)]])
    assert reg.vectors.shape == (2, te.dim)
    np.testing.assert_allclose(np.linalg.norm(reg.vectors, axis=1), 1.0, atol=1e-5)
    # beta mixes the bridge back in: beta=1 is the bridge
    one = TransferEmbedder(_memory(tmp_path, beta=1.0), e5).embed_images(new)
    np.testing.assert_allclose(one.vectors, ref.vectors, atol=1e-5)


def test_transfer_memory_errors(tmp_path: Path) -> None:
    from imgrag.indexing.embedders import get_text_embedder
    from imgrag.indexing.embedders.transfer import TransferEmbedder

    e5 = get_text_embedder("e5")
    with pytest.raises(ImgragError, match="not found"):
        TransferEmbedder(tmp_path / "missing.npz", e5)
    with pytest.raises(ImgragError, match="text_identity"):
        TransferEmbedder(_memory(tmp_path, text_identity="minilm"), e5)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    bad.with_suffix(".json").write_text("{}")
    with pytest.raises(ImgragError, match="unreadable"):
        TransferEmbedder(bad, e5)


def test_pictures_are_framed_as_the_memory_was(tmp_path: Path) -> None:
    """A memory built with content framing frames the pictures the embedder indexes by content too,
    unasked; asked for another framing, it refuses in one line instead of searching across two spaces."""
    from imgrag.indexing.embedders import get_image_text_embedder, get_text_embedder
    from imgrag.indexing.embedders.transfer import NamedMemory, TransferEmbedder

    e5 = get_text_embedder("e5")
    path = _memory(tmp_path, framing="content")
    assert NamedMemory.load(path).framing() == ("lite0", "content")
    te = TransferEmbedder(path, e5)
    content = get_image_text_embedder("bridge", framing="content")
    assert te.framing == "content" and te.feature_identity == content.feature_identity
    wide = np.concatenate([_draw("disc", 102), np.full((160, 320, 3), 255, np.uint8)], axis=1)  # the framings differ here
    np.testing.assert_allclose(te.embed_images([wide]).features, content.embed_images([wide]).features, atol=1e-5)
    assert not np.allclose(te.embed_images([wide]).features, get_image_text_embedder("bridge").embed_images([wide]).features,
                           atol=1e-3)
    with pytest.raises(ImgragError, match="IMGRAG_IMAGE_FRAMING is 'centre'") as e:
        TransferEmbedder(path, e5, framing="centre")
    assert "unset IMGRAG_IMAGE_FRAMING" in e.value.hint
    # a memory whose .json predates the framing key: read off its feature identity
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["framing"], meta["backbone"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert NamedMemory.load(path).framing() == ("lite0", "content") and TransferEmbedder(path, e5).framing == "content"
    centre = _memory(tmp_path)
    assert NamedMemory.load(centre).framing() == ("lite0", "centre")
    with pytest.raises(ImgragError, match="IMGRAG_IMAGE_FRAMING is 'content'"):
        TransferEmbedder(centre, e5, framing="content")
    # an evaluation of a memory on features of another framing is refused as well
    with pytest.raises(ImgragError, match="feature_identity"):
        NamedMemory.load(centre).require(content.feature_identity)


@pytest.mark.slow
def test_index_and_search_with_transfer(tmp_path: Path) -> None:
    """``IMGRAG_IMAGE_EMBEDDER=transfer`` through the real CLI: indexed, recorded, searched."""
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(_draw("disc", 200)).save(folder / "one.png")
    Image.fromarray(_draw("bars", 201)).save(folder / "two.png")
    mem = _memory(tmp_path)
    env = _env(tmp_path, mem)

    def cli(*args: str) -> str:
        p = _imgrag(env, *args)
        assert p.returncode == 0, f"imgrag {' '.join(args)}: {p.stdout}\n{p.stderr}"
        return p.stdout

    cli("index", str(folder))
    assert json.loads(cli("stats"))["spaces"]["image"].startswith("transfer[memory=")
    hits = json.loads(cli("search", "zorblax", "--json", "--mode", "vector", "--no-rerank"))
    assert Path(hits["hits"][0]["path"]).name == "one.png", hits
    hits = json.loads(cli("search", "奎姆波", "--json", "--mode", "vector", "--no-rerank"))
    assert Path(hits["hits"][0]["path"]).name == "two.png", hits


def test_the_exemplar_term_finds_drawings_by_the_memorys_names(tmp_path: Path) -> None:
    """With a memory whose transferred captions count for nothing (beta 1: the bridge's vector
    alone), only the exemplar term (``IMGRAG_EXEMPLAR_WEIGHT``, standardised by the statistics each
    page stores at indexing) knows "zorblax" and "quimbo": it ranks the drawing that looks like the
    memory's pictures of that name first, in both languages; at weight 0 the image route is the
    bridge's alone and does not."""
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(_draw("disc", 300)).save(folder / "one.png")
    Image.fromarray(_draw("bars", 301)).save(folder / "two.png")
    mem = _memory(tmp_path, beta=1.0)
    # the image route outvotes the others (the pages have no text; their tiles are the bridge's)
    env = _env(tmp_path, mem, IMGRAG_WEIGHT_IMAGE="5")

    def cli(*args: str, weight: str = "1") -> subprocess.CompletedProcess[str]:
        return _imgrag(env, *args, IMGRAG_EXEMPLAR_WEIGHT=weight)

    p = cli("index", str(folder))
    assert p.returncode == 0, p.stderr
    wanted = {"zorblax": "one.png", "quimbo": "two.png", "左布拉": "one.png", "奎姆波": "two.png"}

    def tops(weight: str) -> dict[str, str]:
        out = {}
        for q in wanted:
            p = cli("search", q, "--json", "--mode", "vector", "--no-rerank", weight=weight)
            assert p.returncode == 0, p.stderr
            out[q] = Path(json.loads(p.stdout)["hits"][0]["path"]).name
        return out

    assert tops("1") == wanted
    assert tops("0") != wanted  # the bridge alone does not know the made-up names: the term found them
    bad = cli("search", "zorblax", weight="-1")
    assert bad.returncode != 0 and "IMGRAG_EXEMPLAR_WEIGHT" in bad.stderr and "Traceback" not in bad.stderr


def test_a_chinese_query_also_searches_pictures_by_its_english_reading(tmp_path: Path) -> None:
    """``IMGRAG_IMAGE_QUERY_TRANSLATION`` (session 13) through the real CLI. The memory names the disc
    "xylophone" and the bars "lighthouse" in English only, each beside a Chinese decoy that shares
    characters with the other's Chinese word (灯笼宝塔 "lantern pagoda" with the disc, 木头琴房 "wooden
    piano room" with the bars). Typed alone, e5 puts 木琴 nearer the bars and 灯塔 nearer the disc; with
    the dictionary's English reading (xylophone, lighthouse) added, each finds its picture. English
    queries are the same either way; ``-1`` is one line."""
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(_draw("disc", 400)).save(folder / "one.png")
    Image.fromarray(_draw("bars", 401)).save(folder / "two.png")
    mem = _memory(tmp_path, names={"disc": ("xylophone", "灯笼宝塔"), "bars": ("木头琴房", "lighthouse")})
    env = _env(tmp_path, mem, IMGRAG_WEIGHT_IMAGE="5")

    def cli(*args: str, weight: str = "1") -> subprocess.CompletedProcess[str]:
        return _imgrag(env, *args, IMGRAG_IMAGE_QUERY_TRANSLATION=weight)

    p = cli("index", str(folder))
    assert p.returncode == 0, p.stderr

    def top(q: str, weight: str) -> str:
        p = cli("search", q, "--json", "--mode", "vector", "--no-rerank", weight=weight)
        assert p.returncode == 0, p.stderr
        return Path(json.loads(p.stdout)["hits"][0]["path"]).name

    assert (top("木琴", "1"), top("灯塔", "1")) == ("one.png", "two.png")
    assert (top("木琴", "0"), top("灯塔", "0")) == ("two.png", "one.png")  # the typed Chinese alone: the decoys win
    assert top("xylophone", "0") == top("xylophone", "1") == "one.png"
    bad = cli("search", "木琴", weight="-1")
    assert bad.returncode != 0 and "IMGRAG_IMAGE_QUERY_TRANSLATION" in bad.stderr and "Traceback" not in bad.stderr


def test_shipped_memory_matches_the_installed_models() -> None:
    """The memory file in the package was built for this backbone and text model (else it is rebuilt
    with ``bash evals/transfer_memory.sh``)."""
    from imgrag.indexing.embedders import get_text_embedder
    from imgrag.indexing.embedders.transfer import DEFAULT_MEMORY, TransferEmbedder

    if not DEFAULT_MEMORY.is_file():
        pytest.skip("no memory shipped")
    te = TransferEmbedder(None, get_text_embedder("e5"))
    meta = te.memory.meta
    assert meta["pictures"] == len(te.memory.features) and meta["caption_rows"] == len(te.memory.vectors)
    assert "python -m imgrag.evals.transfer build" in str(meta["recipe"]) and "clipart" not in meta["sources"]  # type: ignore[operator]
    _, framing = te.memory.framing()  # the recipe names the framing when it is not the default
    assert (framing == "centre") == ("IMGRAG_IMAGE_FRAMING" not in str(meta["recipe"]))
    assert te.framing == ("auto" if framing == "centre" else framing)  # drawings by content, photos centre
    assert DEFAULT_MEMORY.stat().st_size < 8_000_000


def _bands(top: tuple[int, int, int], bottom: tuple[int, int, int], jitter: int = 0) -> np.ndarray:
    """A two-band flag on a white margin: two of them differ only in where which colour is."""
    im = Image.new("RGB", (200, 160), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((20 + jitter, 30, 180 + jitter, 80), fill=top)
    d.rectangle((20 + jitter, 81, 180 + jitter, 130), fill=bottom)
    return np.asarray(im)


def test_the_colour_term_tells_two_flags_apart_that_the_features_do_not(tmp_path: Path) -> None:
    """``IMGRAG_COLOUR_WEIGHT`` (session 16) through the real CLI. The memory names a blue-over-yellow
    flag "zorblax" and the same flag upside down "quimbo" (made-up names the bridge cannot know), and
    stores their colour layouts. The backbone's features hardly tell the two apart, so the exemplar term
    alone ranks them by chance; the colour term (at a weight that lets it outvote the other terms on so
    few pages; the default's effect is measured on clip art, docs/embeddings.md) ranks each query's own
    flag first. Every indexed page stores its layout (`imgrag show`), and a bad weight is one line."""
    from imgrag.indexing.embedders import get_image_text_embedder, get_text_embedder
    from imgrag.indexing.embedders.transfer import colour_layout, write_memory

    blue, yellow = (0, 87, 183), (255, 215, 0)
    e5 = get_text_embedder("e5")
    bridge = get_image_text_embedder("bridge", framing="centre")
    imgs = [_bands(blue, yellow, j) for j in (-6, 0, 6)] + [_bands(yellow, blue, j) for j in (-6, 0, 6)]
    mem = write_memory(tmp_path / "flags.npz", bridge.embed_images(imgs).features,
                       np.stack([e5.embed_queries(["zorblax"])[0], e5.embed_queries(["quimbo"])[0]]),
                       np.array([0, 0, 0, 1, 1, 1]), k=3, temp=0.05, beta=1.0, dims=4,
                       feature_identity=bridge.feature_identity, text_identity=e5.identity,
                       extra={"sources": ["test"], "backbone": "lite0", "framing": "centre"},
                       colours=np.stack([colour_layout(i) for i in imgs]))
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(_bands(blue, yellow, 3)).save(folder / "one.png")
    Image.fromarray(_bands(yellow, blue, 3)).save(folder / "two.png")
    for n, (a, b) in enumerate((((200, 16, 46), (255, 255, 255)), ((0, 122, 61), (20, 20, 20)), ((20, 20, 20), (190, 190, 190)),
                                ((255, 255, 255), (200, 16, 46)))):  # other candidates: the term is a z-score over them
        Image.fromarray(_bands(a, b, 3)).save(folder / f"other{n}.png")
    env = _env(tmp_path, mem, IMGRAG_WEIGHT_IMAGE="5")

    def cli(*args: str, weight: str = "0.25") -> subprocess.CompletedProcess[str]:
        return _imgrag(env, *args, IMGRAG_COLOUR_WEIGHT=weight)

    p = cli("index", str(folder))
    assert p.returncode == 0, p.stderr

    def ranked(q: str, weight: str) -> list[str]:
        p = cli("search", q, "--json", "--mode", "vector", "--no-rerank", weight=weight)
        assert p.returncode == 0, p.stderr
        return [Path(h["path"]).name for h in json.loads(p.stdout)["hits"]]

    on = {q: ranked(q, "3")[0] for q in ("zorblax", "quimbo")}
    assert on == {"zorblax": "one.png", "quimbo": "two.png"}
    off = {q: ranked(q, "0")[0] for q in ("zorblax", "quimbo")}
    assert off != on  # without the colour term the two flags are not told apart
    hit = json.loads(cli("search", "zorblax", "--json", "--mode", "vector").stdout)["hits"][0]
    rec = json.loads(cli("show", hit["image_id"]).stdout)
    assert len(rec["feature_stats"]["colour_layout"]) == 48
    bad = cli("search", "zorblax", weight="-1")
    assert bad.returncode != 0 and "IMGRAG_COLOUR_WEIGHT" in bad.stderr and "Traceback" not in bad.stderr
