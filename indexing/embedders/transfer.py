"""``transfer``: the label bridge plus caption transfer from a memory of named pictures.

The bridge describes a picture by ImageNet's 1,000 photographed classes, which rarely name a drawing.
Here the picture's EfficientNet-Lite0 features also look up its ``k`` nearest pictures in a memory of
tens of thousands of *named* drawings (icon and emoji sets from packages, their names and CLDR
keywords in English and Chinese); their caption vectors (e5), weighted by ``softmax(cos / temp)``,
are mixed with the bridge vector: ``normalise(beta · bridge + (1 − beta) · transferred)``. Queries
are e5 query vectors as for the bridge, so nothing else changes; the caption text stays the bridge's.

The memory is one ``.npz`` (built by ``python -m imgrag.evals.transfer build``, recipe in its
``.json``): a PCA of the backbone features (mean + projection), each memory picture's projected
features (int8, per-row scale), its caption row, and the caption vectors (int8, per-row scale).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from imgrag.indexing.embedders import (
    ImageEmbeddings,
    TextEmbedder,
    get_image_text_embedder,
    get_text_embedder,
)
from imgrag.indexing.errors import ImgragError

DEFAULT_MEMORY = Path(__file__).with_name("data") / "transfer-memory.npz"
# A memory is tens of MB (the shipped one 6.2 MB; a million pictures ~0.5 GB). A path set by mistake
# to a huge file, or a small .npz whose arrays unpack to gigabytes, is refused before it is read.
MAX_MEMORY_BYTES = 2 << 30

# The exemplar term of the search (IMGRAG_EXEMPLAR_WEIGHT, docs/embeddings.md): a query's exemplar is
# the softmax(cos / EXEMPLAR_TEMP)-weighted features of the EXEMPLAR_K memory pictures whose names are
# nearest it (chosen on clipart-dev in session 10). A page's cosine with it is standardised by that
# page's own mean and spread over the exemplars of EXEMPLAR_GENERIC random caption rows (seed 0),
# stored per page at indexing (ImageRecord.feature_stats): drawings whose features are near every
# exemplar (a drawing-like photo, a silhouette) then stop outscoring the right answer (session 11).
EXEMPLAR_K = 3
EXEMPLAR_TEMP = 0.02
EXEMPLAR_GENERIC = 1000
EXEMPLAR_STATS = "exemplar_mean", "exemplar_sd"

# The colour term (IMGRAG_COLOUR_WEIGHT, session 16): the backbone's pooled features hardly see where
# which colour is (the flags of Sweden and Ukraine, a red and a green cube are near neighbours), so a
# page also stores its colour layout — the picture cut to what differs from its border colour, as
# COLOUR_GRID x COLOUR_GRID cells of mean CIELAB (uint8, 48 numbers) — and so does every memory picture;
# the query's exemplar colour layout is the same weighted mean of its EXEMPLAR_K named pictures'.
COLOUR_GRID = 4
COLOUR_KEY = "colour_layout"
COLOUR_SIDE = 256  # the picture is reduced to at most this side first: the cells are means anyway


def colour_layout(img: np.ndarray) -> np.ndarray:
    """A picture's colour layout (:data:`COLOUR_GRID`² cells × CIELAB, uint8): the picture reduced to at
    most :data:`COLOUR_SIDE` px, cut to the pixels that differ from its border's median colour (a flag
    on white, a drawing with a margin: its layout, not its canvas), each cell's mean colour."""
    from PIL import Image

    a = np.asarray(img)
    if a.size == 0 or a.ndim not in (2, 3):
        return np.zeros(COLOUR_GRID * COLOUR_GRID * 3, np.uint8)
    # every 4th.. pixel of a big page first, as a view: a huge or deep page is never copied or widened whole
    step = max(1, -(-max(a.shape[:2]) // (4 * COLOUR_SIDE)))
    a = a[::step, ::step]
    if a.ndim == 2:
        a = a[..., None]
    a = np.repeat(a[..., :1], 3, axis=2) if a.shape[2] < 3 else a[..., :3]  # grey (+ alpha) as RGB
    if a.dtype != np.uint8:  # 16-bit or float pages: scaled to 8 bits
        hi = float(np.nanmax(a)) if np.isfinite(a).any() else 0.0
        a = np.nan_to_num(np.clip(a.astype(np.float32) * (255.0 / hi if hi > 255 else 255.0 if hi <= 1.0 else 1.0), 0, 255))
        a = a.astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(a))
    if max(im.size) > COLOUR_SIDE:
        im.thumbnail((COLOUR_SIDE, COLOUR_SIDE), Image.BOX)
    a = np.asarray(im)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).astype(np.int16)
    mask = np.abs(a.astype(np.int16) - np.median(border, axis=0)).sum(-1) > 30
    if mask.sum() > 10:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        im = im.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    # Image.convert("LAB") builds this LittleCMS transform on every call (6 ms); built once, the same bytes
    return np.asarray(_srgb_to_lab().apply(im.resize((COLOUR_GRID, COLOUR_GRID), Image.BOX)), np.uint8).reshape(-1)


@lru_cache(maxsize=1)
def _srgb_to_lab():  # type: ignore[no-untyped-def]
    from PIL import ImageCms

    # NOCACHE: LittleCMS's one-pixel cache is the transform's mutable state; without it, pipeline and
    # search threads may share the one transform (the output is the same bytes either way)
    return ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB",
                                   flags=ImageCms.Flags.NOCACHE)


def colour_distances(layouts: np.ndarray, exemplar: np.ndarray) -> np.ndarray:
    """Euclidean distances between uint8 colour layouts (rows) and an exemplar layout, on a 0-1 scale."""
    d = np.asarray(layouts, np.float32) / 255.0 - np.asarray(exemplar, np.float32)[None, :] / 255.0
    return np.sqrt((d * d).sum(1))


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def transfer(features: np.ndarray, memory_features: np.ndarray, memory_vectors: np.ndarray, *, k: int,
             temp: float, owner: np.ndarray | None = None, exclude: Sequence[int] | None = None) -> np.ndarray:
    """Each row's ``softmax(cos / temp)``-weighted mean of its ``k`` nearest memory pictures' caption
    vectors (row ``owner[i]`` of ``memory_vectors`` for memory picture ``i``; ``i`` itself without
    ``owner``), normalised. ``exclude[j]``: a memory picture row ``j`` may not pick (leave-one-out)."""
    sims = np.asarray(features, np.float32) @ memory_features.T
    if exclude is not None:
        sims[np.arange(len(sims)), np.asarray(exclude)] = -np.inf
    idx, w = _top_softmax(sims, k, temp)
    rows = owner[idx] if owner is not None else idx
    return _normalise(np.einsum("nk,nkd->nd", w, memory_vectors[rows]))


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _top_softmax(sims: np.ndarray, k: int, temp: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of its ``k`` largest scores and their ``softmax(score / temp)`` weights."""
    k = max(1, min(k, sims.shape[1]))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, idx, axis=1)
    w = np.exp((s - s.max(1, keepdims=True)) / temp)
    return idx, w / w.sum(1, keepdims=True)


def mix(bridge: np.ndarray, transferred: np.ndarray, beta: float) -> np.ndarray:
    """``normalise(beta · bridge + (1 − beta) · transferred)`` (both normalised first)."""
    return _normalise(beta * _normalise(bridge) + (1 - beta) * transferred)


def quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows with a float16 scale each (what the memory file stores)."""
    scale = np.maximum(np.abs(x).max(1, keepdims=True), 1e-9) / 127.0
    return np.round(x / scale).astype(np.int8), scale.astype(np.float16)


def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.astype(np.float32)


def write_memory(out: Path, features: np.ndarray, caption_vectors: np.ndarray, owner: np.ndarray, *, k: int,
                 temp: float, beta: float, dims: int, feature_identity: str, text_identity: str,
                 extra: dict[str, object] | None = None, colours: np.ndarray | None = None) -> Path:
    """Write ``out`` (.npz) and its .json: the PCA of ``features`` (normalised backbone features of the
    memory pictures) to ``dims``, the projected features and the caption vectors as int8 rows;
    ``owner[i]`` is picture ``i``'s row of ``caption_vectors``; ``colours``: each picture's
    :func:`colour_layout` (the colour term), when given."""
    feats = np.asarray(features, np.float32)
    mean = feats.mean(0)
    _, _, vt = np.linalg.svd(feats - mean, full_matrices=False)
    proj = vt[: min(dims, vt.shape[0])].astype(np.float16)
    fq, fs = quantise(_normalise((feats - mean) @ proj.astype(np.float32).T))
    vq, vs = quantise(_normalise(np.asarray(caption_vectors, np.float32)))
    out = Path(out).with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"colours": np.asarray(colours, np.uint8)} if colours is not None else {}
    np.savez_compressed(out, mean=mean.astype(np.float32), proj=proj, features=fq, features_scale=fs,
                        owner=np.asarray(owner, np.int32), vectors=vq, vectors_scale=vs, **arrays)
    meta = {"k": k, "temp": temp, "beta": beta, "dims": int(proj.shape[0]), "pictures": len(feats),
            "caption_rows": len(caption_vectors), "feature_identity": feature_identity, "text_identity": text_identity,
            **({"colour_grid": COLOUR_GRID} if colours is not None else {}), **(extra or {})}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


@dataclass
class NamedMemory:
    """A loaded memory file: project features, find neighbours, return their caption vectors."""

    path: Path
    mean: np.ndarray  # (feature_dim,)
    proj: np.ndarray  # (d, feature_dim)
    features: np.ndarray  # (n, d) normalised
    owner: np.ndarray  # (n,) caption row per memory picture
    vectors: np.ndarray  # (m, text_dim) normalised
    meta: dict[str, object]
    sha: str
    colours: np.ndarray | None = None  # (n, COLOUR_GRID² × 3) uint8 colour layouts; None in memories built before session 16
    _generic: np.ndarray | None = None  # exemplars of random caption rows (exemplar_stats), made once

    @classmethod
    def load(cls, path: Path) -> NamedMemory:
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise ImgragError(f"transfer memory {path} (and its .json) not found",
                              "set IMGRAG_TRANSFER_MEMORY to a file built by `python -m imgrag.evals.transfer build`")
        rebuild = "rebuild it with `python -m imgrag.evals.transfer build`"
        try:
            import io
            import zipfile
            import zlib

            size = path.stat().st_size + meta_path.stat().st_size
            if size > MAX_MEMORY_BYTES:
                raise ImgragError(f"transfer memory {path} is {size / (1 << 20):.0f} MiB, over the "
                                  f"{MAX_MEMORY_BYTES >> 20} MiB a memory may be", "check IMGRAG_TRANSFER_MEMORY names a memory file")
            raw = path.read_bytes()
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                unpacked = sum(i.file_size for i in zf.infolist())
            if unpacked > MAX_MEMORY_BYTES:
                raise ImgragError(f"transfer memory {path} unpacks to {unpacked / (1 << 20):.0f} MiB, over the "
                                  f"{MAX_MEMORY_BYTES >> 20} MiB a memory may be", rebuild)
            z = np.load(io.BytesIO(raw), allow_pickle=False)
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            mem = cls(path=path, mean=z["mean"].astype(np.float32), proj=z["proj"].astype(np.float32),
                      features=_normalise(dequantise(z["features"], z["features_scale"])), owner=z["owner"].astype(np.int64),
                      vectors=_normalise(dequantise(z["vectors"], z["vectors_scale"])), meta=meta,
                      sha=hashlib.sha256(raw + meta_path.read_bytes()).hexdigest()[:16],
                      colours=z["colours"] if "colours" in z.files else None)
        # a truncated or foreign .npz fails in zipfile (BadZipFile, EOFError) or zlib, not only in numpy
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ImgragError(f"transfer memory {path} is unreadable: {type(e).__name__}: {e}", rebuild) from e
        if not isinstance(meta, dict):
            raise ImgragError(f"transfer memory {meta_path} is not a JSON object", rebuild)
        # k, temp and beta are read at every embedding: a bad one would fail every page, not the start
        bad = [key for key, ok in (("k", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                                   ("temp", lambda v: _finite(v) and v > 0), ("beta", lambda v: _finite(v) and 0 <= v <= 1))
               if not ok(meta.get(key))]
        if bad:
            raise ImgragError(f"transfer memory {meta_path} has no valid {', '.join(bad)} "
                              "(k: an integer >= 1, temp: a number > 0, beta: a number in [0, 1])", rebuild)
        if (mem.mean.ndim != 1 or mem.proj.ndim != 2 or mem.features.ndim != 2 or mem.vectors.ndim != 2
                or mem.owner.shape != mem.features.shape[:1] or mem.proj.shape[1] != mem.mean.shape[0]
                or mem.owner.min(initial=0) < 0 or mem.owner.max(initial=-1) >= len(mem.vectors)
                or mem.features.shape[1] != mem.proj.shape[0]
                or (mem.colours is not None and (mem.colours.dtype != np.uint8  # a float 300.0 is no layout byte
                                                 or mem.colours.shape != (len(mem.features), COLOUR_GRID * COLOUR_GRID * 3)))):
            raise ImgragError(f"transfer memory {path} is inconsistent", rebuild)
        return mem

    def framing(self) -> tuple[str, str]:
        """The (backbone, framing) the memory's pictures were embedded with: its ``.json`` says so, or
        (memories built before it did) its feature identity, whose preprocessing id names both."""
        from .bridge import ARCHS, FRAMINGS, preprocess_id

        if self.meta.get("backbone") in ARCHS and self.meta.get("framing") in FRAMINGS:
            return str(self.meta["backbone"]), str(self.meta["framing"])
        fid = str(self.meta.get("feature_identity", ""))
        for b in ARCHS:
            for f in FRAMINGS:
                if fid.startswith(f"efficientnet-{b}-") and fid.endswith("/" + preprocess_id(b, f)):
                    return b, f
        raise ImgragError(f"transfer memory {self.path} does not say how its pictures were framed ({fid!r})",
                          "rebuild it with `bash evals/transfer_memory.sh OUT.npz`")

    def accepts(self, feature_identity: str) -> bool:
        """Whether pictures with ``feature_identity`` may look up this memory: its own, or ``auto``
        framing over its backbone and framing (drawings framed by content looked up in a centre memory:
        the best measured, docs/embeddings.md session 11/12)."""
        from .bridge import preprocess_id

        want = str(self.meta.get("feature_identity", ""))
        if feature_identity == want:
            return True
        try:
            backbone, framing = self.framing()
        except ImgragError:
            return False
        own = "/" + preprocess_id(backbone, framing)
        return want.endswith(own) and feature_identity == want[: -len(own)] + "/" + preprocess_id(backbone, "auto")

    def require(self, feature_identity: str, text_identity: str | None = None) -> None:
        """Refuse features (and query vectors) of another space than the memory's: neighbours found
        across two framings or backbones are wrong without any error. ``auto`` framing is accepted
        (:meth:`accepts`)."""
        for what, have in (("feature_identity", feature_identity), ("text_identity", text_identity)):
            if what == "feature_identity" and self.accepts(feature_identity):
                continue
            if have is not None and self.meta.get(what) != have:
                backbone, framing = self.framing() if what == "feature_identity" else ("", "")
                hint = (f"set IMGRAG_IMAGE_BACKBONE={backbone} IMGRAG_IMAGE_FRAMING={framing} (as the memory was built), or "
                        "build a memory with the settings you have: `IMGRAG_IMAGE_FRAMING=... bash evals/transfer_memory.sh OUT.npz`"
                        if backbone else "rebuild it with `bash evals/transfer_memory.sh OUT.npz` for the installed text model")
                raise ImgragError(f"transfer memory {self.path} was built for {what} {self.meta.get(what)!r}, "
                                  f"these pictures / queries have {have!r}", hint)

    def project(self, features: np.ndarray) -> np.ndarray:
        return _normalise((np.asarray(features, np.float32) - self.mean) @ self.proj.T)

    def exemplars(self, query_vectors: np.ndarray, *, k: int = 5, temp: float = 0.01) -> np.ndarray:
        """Each query's visual exemplar in the backbone's feature space: the ``softmax(cos / temp)``-
        weighted mean of the PCA features of the ``k`` memory pictures whose captions are nearest the
        query (e5), mapped back through the PCA without its mean, normalised. Its cosine with a
        picture's stored ``feature`` ranks pictures that look like named drawings of the query — the
        text → picture direction of the neighbour step (transfer is picture → names)."""
        return self._exemplars(query_vectors, k=k, temp=temp)[0]

    def _exemplars(self, query_vectors: np.ndarray, *, k: int, temp: float) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`exemplars` and, when the memory has colour layouts, the same weighted mean of the
        same pictures' layouts (uint8 rows), from one look-up."""
        q = np.asarray(query_vectors, np.float32)
        # one query (the search): a matrix-vector product, ~2x less CPU than the 1-row matrix product
        sims = ((self.vectors @ q[0])[None, :] if len(q) == 1 else q @ self.vectors.T)[:, self.owner]  # per memory picture
        idx, w = _top_softmax(sims, k, temp)
        feats = _normalise(np.einsum("nk,nkd->nd", w, self.features[idx]) @ self.proj)
        if self.colours is None:
            return feats, None
        cols = np.einsum("nk,nkd->nd", w, self.colours[idx].astype(np.float32))
        return feats, np.clip(np.round(cols), 0, 255).astype(np.uint8)

    def exemplar_colours(self, query_vectors: np.ndarray, *, k: int = EXEMPLAR_K, temp: float = EXEMPLAR_TEMP) -> np.ndarray | None:
        """Each query's exemplar colour layout (the named pictures of :meth:`exemplars`), or None when
        the memory has no colour layouts."""
        return self._exemplars(query_vectors, k=k, temp=temp)[1]

    def exemplar_stats(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``features`` (normalised backbone features), the mean and standard deviation of
        its cosines with the exemplars (``k`` :data:`EXEMPLAR_K`, ``temp`` :data:`EXEMPLAR_TEMP`) of
        :data:`EXEMPLAR_GENERIC` random caption rows (seed 0): the scale the search's exemplar term
        standardises that page's cosine by."""
        if getattr(self, "_generic", None) is None:
            rng = np.random.default_rng(0)
            rows = rng.choice(len(self.vectors), min(EXEMPLAR_GENERIC, len(self.vectors)), replace=False)
            self._generic = self.exemplars(self.vectors[rows], k=EXEMPLAR_K, temp=EXEMPLAR_TEMP)
        g = np.asarray(features, np.float32) @ self._generic.T
        return g.mean(1), np.maximum(g.std(1), 1e-6)

    def transferred(self, features: np.ndarray) -> np.ndarray:
        return transfer(self.project(features), self.features, self.vectors, k=int(self.meta["k"]),  # type: ignore[call-overload]
                        temp=float(self.meta["temp"]), owner=self.owner)  # type: ignore[arg-type]


class TransferEmbedder:
    """The bridge's vectors mixed with the captions of each picture's nearest named pictures.

    Args:
        memory: memory file (``IMGRAG_TRANSFER_MEMORY``; default: the one shipped beside this module).
        text_embedder, cache_dir, batch_size, num_threads, runtime: as the label bridge.
        backbone, framing: as the label bridge; unset (``None``), the memory's (its ``.json``); set to
            anything else, an error: the memory's features and the pictures' must be one space.
    """

    # The search adds the e5 vector of a Chinese query's dictionary English reading to its image query
    # (IMGRAG_IMAGE_QUERY_TRANSLATION): the memory's names are mostly English, and e5 matches a Chinese
    # query to them less well than its English reading (held-out clip art zh 0.180 -> 0.211, session 13).
    mixes_query_translation = True

    def __init__(self, memory: str | os.PathLike[str] | None = None, text_embedder: TextEmbedder | str = "e5", *,
                 cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 32, num_threads: int | None = None,
                 runtime: str = "onnx", backbone: str | None = None, framing: str | None = None) -> None:
        self.text = get_text_embedder(text_embedder) if isinstance(text_embedder, str) else text_embedder
        self.memory = NamedMemory.load(Path(memory) if memory else DEFAULT_MEMORY)
        # Pictures are framed the way the memory's were (its .json says how): left unset, the two
        # cannot disagree; set otherwise, it is one clear error below, never a silent mismatch.
        # Over a centre memory, unset framing is ``auto``: drawings framed by content, photos centre,
        # all looked up in the centre memory (the best measured: docs/embeddings.md, session 12).
        mem_backbone, mem_framing = self.memory.framing()
        default_framing = "auto" if mem_framing == "centre" else mem_framing
        self.bridge = get_image_text_embedder("bridge", text_embedder=self.text, cache_dir=cache_dir,
                                              batch_size=batch_size, num_threads=num_threads, runtime=runtime,
                                              backbone=backbone or mem_backbone, framing=framing or default_framing)
        self.framing = self.bridge.framing
        meta = self.memory.meta
        for setting, want, have in (("IMGRAG_IMAGE_BACKBONE", mem_backbone, self.bridge.backbone),
                                    ("IMGRAG_IMAGE_FRAMING", mem_framing, self.bridge.framing)):
            if want != have and not (setting == "IMGRAG_IMAGE_FRAMING" and have == "auto"):
                raise ImgragError(f"transfer memory {self.memory.path} was built with {setting.split('_')[-1].lower()} "
                                  f"{want!r}, but {setting} is {have!r}",
                                  f"unset {setting} (the transfer embedder then frames pictures as its memory was built), "
                                  f"or set IMGRAG_TRANSFER_MEMORY to a memory built with it: "
                                  f"`{setting}={have} bash evals/transfer_memory.sh OUT.npz`")
        self.memory.require(self.bridge.feature_identity, self.text.identity)
        self.beta = float(meta["beta"])  # type: ignore[arg-type]
        self.dim, self.feature_dim, self.feature_identity = self.bridge.dim, self.bridge.feature_dim, self.bridge.feature_identity
        self.identity = (f"transfer[memory={self.memory.sha}|k{meta['k']}|temp{meta['temp']}|beta{meta['beta']}"
                         f"|{self.bridge.identity}]")

    def load(self) -> None:
        self.bridge.load()

    def _mixed(self, emb: ImageEmbeddings) -> ImageEmbeddings:
        if not len(emb):
            return emb
        vectors = mix(emb.vectors, self.memory.transferred(emb.features), self.beta)
        return ImageEmbeddings(vectors=vectors, features=emb.features, captions=emb.captions, labels=emb.labels)

    def embed_images(self, imgs: Sequence[np.ndarray]) -> ImageEmbeddings:
        return self._mixed(self.bridge.embed_images(imgs))

    def embed_regions(self, imgs: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]],
                      long_side: int = 320) -> ImageEmbeddings:
        """Region vectors from one backbone pass per image (``LabelBridgeEmbedder.embed_regions``)."""
        return self._mixed(self.bridge.embed_regions(imgs, boxes, long_side))

    def whole_framing(self, img: np.ndarray) -> str:
        return self.bridge.whole_framing(img)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.embed_queries(texts)

    def exemplar(self, query_vector: np.ndarray) -> np.ndarray:
        """The query's exemplar in the backbone's feature space (:meth:`NamedMemory.exemplars`, ``k``
        :data:`EXEMPLAR_K`, ``temp`` :data:`EXEMPLAR_TEMP`): a ``feature`` kNN with it finds pages that
        look like the memory's named drawings of the query (the search's exemplar term)."""
        return self.exemplar_pair(query_vector)[0]

    def exemplar_pair(self, query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`exemplar` and the same named pictures' colour layout (None: a memory without layouts)."""
        f, c = self.memory._exemplars(np.asarray(query_vector, np.float32)[None, :], k=EXEMPLAR_K, temp=EXEMPLAR_TEMP)
        return f[0], (c[0] if c is not None else None)

    def feature_stats(self, features: np.ndarray, images: Sequence[np.ndarray] | None = None) -> list[dict[str, object]]:
        """What the index stores per page for the exemplar term: the mean and spread of the page's
        cosines with random exemplars (:meth:`NamedMemory.exemplar_stats`), and, with ``images`` and a
        memory with colour layouts, the page's :func:`colour_layout` (the colour term)."""
        mean, sd = self.memory.exemplar_stats(np.atleast_2d(np.asarray(features, np.float32)))
        out: list[dict[str, object]] = [{EXEMPLAR_STATS[0]: float(m), EXEMPLAR_STATS[1]: float(d)} for m, d in zip(mean, sd, strict=True)]
        if images is not None and self.memory.colours is not None:
            for st, img in zip(out, images, strict=True):
                st[COLOUR_KEY] = [int(v) for v in colour_layout(img)]
        return out

    def queries_from_text(self, text_vectors: np.ndarray) -> np.ndarray:
        """The joint space is the text model's query space (as the bridge's)."""
        return text_vectors

    def __repr__(self) -> str:
        return f"TransferEmbedder({self.identity!r})"
