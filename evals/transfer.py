"""Caption transfer: describe a picture by the names of its nearest *named* pictures, then search those
words with e5 — measured on whole sources the memory never saw, beside the bridge in the same run.

For a picture with backbone features ``f`` (EfficientNet-Lite0, L2-normalised, as the bridge), its
``k`` nearest pictures of a memory of named pictures (cosine on the same features) vote with weights
``softmax(cos / temp)``; the picture's vector is the weighted mean of their caption vectors (the mean
of the e5 query vectors of each memory picture's captions, English and Chinese), optionally mixed with
its bridge vector: ``normalise(beta · bridge + (1 − beta) · transferred)``. Queries are e5 query
vectors, so the result lives in the bridge's space. It is the bridge with a memory of tens of
thousands of named drawings in place of ImageNet's 1,000 photographed classes.

Memory sources (``--memory``, repeatable): ``iconify:<set>`` (:mod:`evals.datasets.iconify`, npm),
``emoji`` (Noto Color Emoji + CLDR, :mod:`evals.datasets.emoji`), ``clipart`` (openclipart's
*training* split, the pictures ``python -m imgrag.evals.embeddings features`` cached). Collections:

* ``clipart-dev``: training-split openclipart pictures with a title naming one picture (tune here;
  only with a memory without ``clipart``);
* ``clipart-heldout``: the 396 held-out-split pictures of ``imgrag eval embeddings`` (run once);
* ``emoji``: every Noto emoji by its CLDR name (only with a memory without ``emoji`` and the Iconify
  emoji sets, which draw the same concepts);
* ``skimage``: 23 photos, hand-written captions;
* ``pictures-dev`` / ``pictures-heldout``: the descriptions written by hand of the ``clipart``
  standard corpus's 240 pictures (:mod:`evals.golden.pictures`), one half each, over all 240 — what
  ``imgrag eval retrieval --set pictures-<half>`` asks, here in seconds (tune on ``pictures-dev`` only).

``build`` writes the memory file of ``IMGRAG_IMAGE_EMBEDDER=transfer``
(:mod:`imgrag.indexing.embedders.transfer`); ``eval --memory-file`` measures that file as the embedder
uses it (PCA, int8).

    python -m imgrag.evals.transfer eval --collection clipart-dev --memory emoji --memory iconify:openmoji \\
        --k 5 --k 20 --temp 0.02 --temp 0.05 --beta 0 --beta 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgrag.evals.embeddings import (
    CachedQueries,
    Collection,
    Glossary,
    _title_ok,
    clipart_captions,
    clipart_catalogue,
    clipart_collection,
    clipart_embedded,
    EmbeddedImages,
    clipart_splits,
    configured_bridge,
    emoji_collection,
    emoji_embedded,
    held_out_ok,
    iconify_embedded,
    load_clipart,
    pictures_collection,
    skimage_collection,
)
from imgrag.indexing.embedders.transfer import mix, transfer

COLLECTIONS = ("clipart-dev", "clipart-heldout", "emoji", "skimage", "pictures-dev", "pictures-heldout")


@dataclass
class Memory:
    keys: list[str]
    features: np.ndarray  # (n, 1280), L2-normalised
    captions: list[list[str]]
    sources: list[str]
    loaders: list[Callable[[], np.ndarray]] | None = None  # each picture drawn again (its colour layout)

    def colour_layouts(self, log: Callable[[str], None] = print) -> np.ndarray:
        """Each memory picture's :func:`~imgrag.indexing.embedders.transfer.colour_layout`, drawn again."""
        from imgrag.indexing.embedders.transfer import colour_layout

        if self.loaders is None:
            raise SystemExit("this memory cannot draw its pictures again")
        out = []
        for n, load in enumerate(self.loaders):
            out.append(colour_layout(load()))
            if n % 2000 == 1999:
                log(f"  colour layouts: {n + 1}/{len(self.loaders)}")
        return np.stack(out)

    def centred(self) -> np.ndarray:
        """Features with each source's mean removed (then normalised): what is left is what differs
        between its pictures, not the set's drawing style."""
        src = np.array([k.split("/", 1)[0] for k in self.keys])
        out = self.features.copy()
        for s in self.sources:
            sel = src == s
            out[sel] = centre(out[sel])
        return out


def centre(features: np.ndarray) -> np.ndarray:
    f = features - features.mean(0, keepdims=True)
    return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def load_memory(sources: Sequence[str], glossary: Glossary | None, log: Callable[[str], None] = print) -> Memory:
    keys: list[str] = []
    feats: list[np.ndarray] = []
    caps: list[list[str]] = []
    loaders: list[Callable[[], np.ndarray]] = []
    for src in dict.fromkeys(sources):
        if src.startswith("iconify:"):
            from imgrag.evals.datasets.iconify import captions, render

            items, emb = iconify_embedded([src.split(":", 1)[1]], log=log)
            c = [captions(items[k], glossary) for k in emb.names]
            draw: Callable[[str], np.ndarray] = lambda k, items=items: render(items[k])
        elif src == "emoji":
            from imgrag.evals.datasets.emoji import render as draw_emoji

            eitems, emb = emoji_embedded(log)
            c = [eitems[k].captions() for k in emb.names]
            draw = lambda k, eitems=eitems: draw_emoji(eitems[k].text)  # type: ignore[assignment,return-value]
        elif src == "clipart":
            cat = clipart_catalogue()
            counts: dict[str, int] = {}
            for it in cat:
                counts[it.title.lower()] = counts.get(it.title.lower(), 0) + 1
            _, train = clipart_splits(cat)
            citems, emb = clipart_embedded([it.name for it in train], log=log, limit=0)
            c = [clipart_captions(citems[k], counts, glossary) for k in emb.names]
            draw = lambda k, citems=citems: load_clipart(citems[k].png)
        else:
            raise SystemExit(f"unknown memory source {src!r}: iconify:<set>, emoji or clipart")
        keep = [i for i, x in enumerate(c) if x]
        keys += [f"{src}/{emb.names[i]}" for i in keep]
        feats.append(emb.features[keep])
        caps += [c[i] for i in keep]
        loaders += [lambda k=emb.names[i], draw=draw: draw(k) for i in keep]
        log(f"memory {src}: {len(keep)} named pictures")
    return Memory(keys, np.concatenate(feats).astype(np.float32), caps, list(dict.fromkeys(sources)), loaders)


def caption_vectors(captions: Sequence[Sequence[str]], e5: Any) -> np.ndarray:
    """Per picture, the normalised mean of its captions' e5 query vectors."""
    flat = [c for cs in captions for c in cs]
    v = e5.embed_queries(flat)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    out = np.zeros((len(captions), v.shape[1]), np.float32)
    i = 0
    for j, cs in enumerate(captions):
        out[j] = v[i : i + len(cs)].mean(0)
        i += len(cs)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def clipart_dev_collection(glossary: Glossary | None, log: Callable[[str], None] = print) -> Collection:
    """Training-split openclipart pictures (cached) whose title names one picture, queried by it."""
    cat = clipart_catalogue()
    counts: dict[str, int] = {}
    for it in cat:
        counts[it.title.lower()] = counts.get(it.title.lower(), 0) + 1
    _, train = clipart_splits(cat)
    titled = [it for it in train if _title_ok(it.title, counts)]
    items, emb = clipart_embedded([it.name for it in titled], log=log, limit=0)
    by_title: dict[str, set[int]] = {}
    for i, n in enumerate(emb.names):
        by_title.setdefault(items[n].title.lower(), set()).add(i)
    queries, langs, rel = [], [], []
    for _, rows in sorted(by_title.items()):
        t = items[emb.names[min(rows)]].title
        for lang, q in (("en", t), ("zh", glossary.phrase(t) if glossary else None)):
            if q:
                queries.append(q)
                langs.append(lang)
                rel.append(frozenset(rows))
    return Collection("clipart-dev", emb, lambda n: load_clipart(items[n].png), queries, langs, rel)


def evaluate(collections: Sequence[str], memory_sources: Sequence[str], ks: Sequence[int], temps: Sequence[float],
             betas: Sequence[float], centring: Sequence[bool] = (False,), adapter: Path | None = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Rows per collection: the bridge, then every (centring, k, temp, beta); with ``adapter``, the
    neighbour search runs in its image space (its head applied to both sides) instead of the backbone's."""
    from imgrag.indexing.align import metrics_by_lang
    from imgrag.indexing.embedders import get_text_embedder

    glossary = Glossary()
    e5 = CachedQueries(get_text_embedder("e5"))
    mem = load_memory(memory_sources, glossary, log)
    mvec = caption_vectors(mem.captions, e5)
    space: Callable[[np.ndarray], np.ndarray] = lambda f: f
    if adapter is not None:
        from imgrag.indexing.align import load_adapter

        ad = load_adapter(adapter)
        space = ad.project_images
        mem.features = space(mem.features)
    mfeat = {False: mem.features, True: mem.centred() if True in centring else mem.features}
    builders: dict[str, Callable[[], Collection]] = {
        "clipart-dev": lambda: clipart_dev_collection(glossary, log), "clipart-heldout": lambda: clipart_collection(glossary, log),
        "pictures-dev": lambda: pictures_collection("dev", log), "pictures-heldout": lambda: pictures_collection("heldout", log),
        "emoji": lambda: emoji_collection(log), "skimage": lambda: skimage_collection(log)}
    rows: list[dict[str, Any]] = []
    for name in collections:
        why = held_out_ok(name, mem.sources)
        if why:
            log(f"{name}: skipped ({why})")
            continue
        col = builders[name]()
        qv = e5.embed_queries(col.queries)
        cands: list[tuple[str, np.ndarray]] = [("bridge", col.images.bridge)]
        for c in centring:
            feats = space(col.images.features)
            feats = centre(feats) if c else feats
            for k in ks:
                for t in temps:
                    tv = transfer(feats, mfeat[c], mvec, k=k, temp=t)
                    for b in betas:
                        cands.append(((f"transfer{' (adapter space)' if adapter else ''}{' centred' if c else ''} "
                                      f"k={k} temp={t:g} beta={b:g}"),
                                      mix(col.images.bridge, tv, b)))
        for emb_name, iv in cands:
            for lang, m in metrics_by_lang(iv, qv, col.relevant, col.langs).items():
                rows.append({"collection": col.name, "images": len(col.images.names), "embedder": emb_name,
                             "memory": "+".join(mem.sources), "memory_images": len(mem.keys), "lang": lang,
                             **{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in m.items()}})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["| collection | embedder | lang | queries | R@1 | R@5 | R@10 | MRR |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["lang"] != "all":
            lines.append(f"| {r['collection']} ({r['images']}) | {r['embedder']} | {r['lang']} | {r['n']} | "
                         f"{r['r1']:.3f} | {r['r5']:.3f} | {r['r10']:.3f} | {r['mrr']:.3f} |")
    return "\n".join(lines)


def build(out: Path, memory_sources: Sequence[str], *, k: int, temp: float, beta: float, dims: int = 128,
          colours: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the memory file :class:`imgrag.indexing.embedders.transfer.NamedMemory` loads (``out``
    ``.npz`` + ``.json``): PCA of the memory's features to ``dims``, int8 features and caption vectors
    (pictures with the same captions share one vector row), and (``colours``) each picture's colour
    layout, drawn again (the search's colour term; a few minutes for 14k pictures). The pictures are framed by the configured
    ``IMGRAG_IMAGE_BACKBONE`` / ``IMGRAG_IMAGE_FRAMING``; the ``.json`` records both, and the
    transfer embedder frames the pictures it indexes the same way."""
    from imgrag.evals.datasets.iconify import package_versions
    from imgrag.indexing.embedders import get_text_embedder
    from imgrag.indexing.embedders.transfer import write_memory

    glossary = Glossary()
    text = get_text_embedder("e5")
    mem = load_memory(memory_sources, glossary, log)
    rows: dict[tuple[str, ...], int] = {}
    owner = np.array([rows.setdefault(tuple(c), len(rows)) for c in mem.captions], np.int32)
    vecs = caption_vectors([list(c) for c in rows], CachedQueries(text))
    bridge = configured_bridge(text_embedder=text)
    icon_sets = [m.split(":", 1)[1] for m in mem.sources if m.startswith("iconify:")]
    env = "".join(f"IMGRAG_IMAGE_{k.upper()}={v} " for k, v in (("backbone", bridge.backbone), ("framing", bridge.framing))
                  if v != {"backbone": "lite0", "framing": "centre"}[k])
    extra = {"backbone": bridge.backbone, "framing": bridge.framing, "sources": mem.sources, "npm": {f"@iconify-json/{s}": v for s, v in package_versions(icon_sets).items()},
             "debian": ["fonts-noto-color-emoji", "unicode-cldr-core"] if "emoji" in mem.sources else [],
             "recipe": env + "python -m imgrag.evals.transfer build " + " ".join(f"--memory {m}" for m in mem.sources)
                       + f" --k {k} --temp {temp:g} --beta {beta:g} --dims {dims}" + ("" if colours else " --no-colours")
                       + f" --out {out.with_suffix('.npz').name}"}
    out = write_memory(out, mem.features, vecs, owner, k=k, temp=temp, beta=beta, dims=dims,
                       feature_identity=bridge.feature_identity, text_identity=text.identity, extra=extra,
                       colours=mem.colour_layouts(log) if colours else None)
    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(mem.keys)} pictures, {len(rows)} caption rows")
    return meta


def zscore(sims: np.ndarray) -> np.ndarray:
    """Per query, scores as standard deviations from that query's mean (to add two routes' scores)."""
    return (sims - sims.mean(1, keepdims=True)) / (sims.std(1, keepdims=True) + 1e-9)


def rrf_scores(sims: Sequence[np.ndarray], weights: Sequence[float] | None = None, rrf_k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion of (query × image) score matrices, as the search fuses its routes."""
    out = np.zeros_like(sims[0], dtype=np.float64)
    for i, s in enumerate(sims):
        ranks = np.argsort(np.argsort(-s, axis=1, kind="stable"), axis=1, kind="stable") + 1
        out += (weights[i] if weights else 1.0) / (rrf_k + ranks)
    return out


DRAWING_PEAK_MASS = 0.3
"""A picture is drawing-like when its commonest grey level holds at least this share of its pixels
(``quality_stats["peak_mass"]`` of :func:`imgrag.indexing.preprocess.classify_quality`, as indexing
stores it for every page): a drawing on a flat background. Set from the distributions alone (session
11): 5 % of held-out clip art lies below it; 3 of the 23 scikit-image photos lie above it
(checkerboard, the horse silhouette, the CT phantom)."""


def drawing_like(quality_stats: dict[str, float]) -> bool:
    return float(quality_stats.get("peak_mass", 0.0)) >= DRAWING_PEAK_MASS


def drawing_gate(col: Collection, log: Callable[[str], None] = print) -> np.ndarray:
    """Per picture of ``col``, 1 where the search would call it drawing-like (the quality classifier's
    ``peak_mass`` as indexing stores it, :func:`drawing_like`), else 0;
    the statistics are cached beside the features."""
    from imgrag.evals.embeddings import cache_dir
    from imgrag.indexing.preprocess import classify_quality

    path = cache_dir() / f"quality-stats-{col.name}.json"
    known: dict[str, dict[str, float]] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    todo = [n for n in col.images.names if n not in known]
    for n in todo:
        known[n] = classify_quality(col.load(n))[1]
    if todo:
        path.write_text(json.dumps(known), encoding="utf-8")
        log(f"  {col.name}: quality statistics of {len(todo)} pictures")
    return np.array([1.0 if drawing_like(known[n]) else 0.0 for n in col.images.names], np.float32)


STANDARDISED_WEIGHT = 0.01  # session 11: 0.01 and 0.005 looked at on clipart-dev and the photos


def exemplar_spread(mem: Any, features: np.ndarray, *, k: int, temp: float, rows: int = 1000,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per picture, the mean and standard deviation of its cosines with the exemplars of ``rows``
    random caption rows of the memory: how much any exemplar looks like it. A drawing on white looks
    like every icon; dividing by its spread keeps it from rising for every query (session 11)."""
    rng = np.random.default_rng(seed)
    generic = mem.exemplars(mem.vectors[rng.choice(len(mem.vectors), min(rows, len(mem.vectors)), replace=False)], k=k, temp=temp)
    g = np.asarray(features, np.float32) @ generic.T
    return g.mean(1), np.maximum(g.std(1), 1e-6)


def framed_auto(build: Callable[[], Collection], log: Callable[[str], None] = print) -> Collection:
    """``build``'s collection as ``IMGRAG_IMAGE_FRAMING=auto`` embeds it, from the two feature caches
    (``centre`` and ``content``, each made and kept as those settings make it): a drawing-like picture's
    features and bridge vector are its content-framed ones, any other's its centre-framed ones
    (:func:`drawing_gate`, the same ``peak_mass`` test as :func:`imgrag.indexing.embedders.bridge.whole_framing`)."""
    import os

    from imgrag.indexing.config import get_settings
    from imgrag.indexing.embedders.bridge import preprocess_id

    was = os.environ.get("IMGRAG_IMAGE_FRAMING")
    cols = {}
    try:
        for framing in ("centre", "content"):
            os.environ["IMGRAG_IMAGE_FRAMING"] = framing
            get_settings.cache_clear()
            cols[framing] = build()
    finally:
        if was is None:
            os.environ.pop("IMGRAG_IMAGE_FRAMING", None)
        else:
            os.environ["IMGRAG_IMAGE_FRAMING"] = was
        get_settings.cache_clear()
    centre, content = cols["centre"], cols["content"]
    at = {n: i for i, n in enumerate(content.images.names)}
    keep = [n for n in centre.images.names if n in at]
    if len(keep) != len(centre.images.names):
        raise SystemExit(f"{centre.name}: {len(centre.images.names) - len(keep)} pictures lack content-framed features")
    gate = drawing_gate(centre, log)[:, None] > 0
    idx = [at[n] for n in centre.images.names]
    fid = centre.images.feature_identity
    auto_fid = fid.rsplit("/", 1)[0] + "/" + preprocess_id(fid.split("efficientnet-", 1)[1].split("-", 1)[0], "auto")
    images = EmbeddedImages(names=list(centre.images.names),
                            features=np.where(gate, content.images.features[idx], centre.images.features),
                            bridge=np.where(gate, content.images.bridge[idx], centre.images.bridge),
                            feature_identity=auto_fid, bridge_identity=centre.images.bridge_identity + "+auto")
    log(f"  {centre.name}: auto framing, {int(gate.sum())} of {len(gate)} pictures framed by content")
    return Collection(name=centre.name, images=images, load=centre.load, queries=centre.queries, langs=centre.langs,
                      relevant=centre.relevant)


def collection_layouts(col: Collection, log: Callable[[str], None] = print) -> np.ndarray:
    """Each collection picture's colour layout (the search's colour term), drawn from its file."""
    from imgrag.indexing.embedders.transfer import colour_layout

    out = np.stack([colour_layout(col.load(n)) for n in col.images.names])
    log(f"  {col.name}: colour layouts of {len(out)} pictures")
    return out


def search_route(t: np.ndarray, ex: np.ndarray, mean: np.ndarray, sd: np.ndarray, weight: float, layouts: np.ndarray | None,
                 ex_colours: np.ndarray | None, colour_weight: float, depth: int = 50) -> np.ndarray:
    """Per query, the image route's ranking as the search makes it: the image kNN (``t``) and the
    exemplar kNN (``ex``) to ``depth`` × ``EXEMPLAR_READS`` each, :func:`imgrag.indexing.search.add_exemplar`
    with the pages' statistics (and colour layouts), ``depth`` kept; a picture outside it scores ``-inf``."""
    from imgrag.indexing.embedders.transfer import COLOUR_KEY, EXEMPLAR_STATS
    from imgrag.indexing.search import EXEMPLAR_READS, RouteHit, add_exemplar

    reads = depth * EXEMPLAR_READS

    stats: dict[str, dict[str, Any]] = {}
    for j in range(t.shape[1]):
        stats[str(j)] = {EXEMPLAR_STATS[0]: float(mean[j]), EXEMPLAR_STATS[1]: float(sd[j])}
        if layouts is not None:
            stats[str(j)][COLOUR_KEY] = [int(v) for v in layouts[j]]
    out = np.full(t.shape, -np.inf, np.float32)
    for i in range(len(t)):
        hits = [RouteHit(image_id=str(j), score=float(t[i, j])) for j in np.argsort(-t[i])[:reads]]
        ex_hits = [RouteHit(image_id=str(j), score=float(ex[i, j])) for j in np.argsort(-ex[i])[:reads]]
        ranked = add_exemplar(hits, ex_hits, stats, weight, depth, ex_colours[i] if ex_colours is not None else None, colour_weight)
        for r, h in enumerate(ranked):
            out[i, int(h.image_id)] = len(ranked) - r
    return out


def evaluate_file(collections: Sequence[str], memory_file: Path, log: Callable[[str], None] = print, *,
                  exemplar: bool = False, exemplar_k: int = 3, exemplar_temp: float = 0.02,
                  exemplar_weight: float = 0.1, product: bool = False) -> list[dict[str, Any]]:
    """The bridge beside a built memory file exactly as ``image_embedder=transfer`` uses it; with
    ``exemplar``, also the exemplar route (:meth:`NamedMemory.exemplars`: the query's nearest named
    memory pictures as a picture query on the stored features) alone and fused with transfer, and the
    linear fusion on drawing-like pictures only (:func:`drawing_gate`; photos keep transfer's score)
    and with each picture's exemplar cosine standardised by its own spread (:func:`exemplar_spread`).
    ``product``: also what ``IMGRAG_IMAGE_EMBEDDER=transfer`` now does by default: ``auto`` framing
    (:func:`framed_auto`) and the exemplar term as the search adds it (``IMGRAG_EXEMPLAR_WEIGHT``,
    :meth:`NamedMemory.exemplar_stats`; the formula of :func:`imgrag.indexing.search.add_exemplar`, over
    every picture rather than the two kNNs' candidates)."""
    from imgrag.indexing.align import scores_by_lang
    from imgrag.indexing.embedders import get_text_embedder
    from imgrag.indexing.embedders.transfer import NamedMemory

    mem = NamedMemory.load(memory_file)
    glossary = Glossary()
    e5 = CachedQueries(get_text_embedder("e5"))
    builders: dict[str, Callable[[], Collection]] = {
        "clipart-dev": lambda: clipart_dev_collection(glossary, log), "clipart-heldout": lambda: clipart_collection(glossary, log),
        "pictures-dev": lambda: pictures_collection("dev", log), "pictures-heldout": lambda: pictures_collection("heldout", log),
        "emoji": lambda: emoji_collection(log), "skimage": lambda: skimage_collection(log)}
    rows: list[dict[str, Any]] = []
    for name in collections:
        why = held_out_ok(name, [str(s) for s in mem.meta["sources"]])  # type: ignore[attr-defined]
        if why:
            log(f"{name}: skipped ({why})")
            continue
        col = builders[name]()
        mem.require(col.images.feature_identity)  # the collection framed as the memory was
        qv = e5.embed_queries(col.queries)
        label = f"transfer (memory file, k={mem.meta['k']} temp={mem.meta['temp']} beta={mem.meta['beta']})"
        tv = mix(col.images.bridge, mem.transferred(col.images.features), float(mem.meta["beta"]))  # type: ignore[arg-type]
        scored: list[tuple[str, np.ndarray]] = [("bridge", qv @ col.images.bridge.T), (label, qv @ tv.T)]
        if exemplar:
            ex = mem.exemplars(qv, k=exemplar_k, temp=exemplar_temp) @ np.asarray(col.images.features, np.float32).T
            scored += [(f"exemplar route (k={exemplar_k} temp={exemplar_temp:g})", ex),
                       ("transfer + exemplar, RRF 1:1", rrf_scores([scored[1][1], ex])),
                       ("transfer + exemplar, z-scores 1:1", zscore(scored[1][1]) + zscore(ex)),
                       (f"transfer + {exemplar_weight:g} × exemplar cosine", scored[1][1] + exemplar_weight * ex)]
            gate = drawing_gate(col, log)
            label = (f"transfer + {exemplar_weight:g} × exemplar cosine on drawing-like pictures "
                     f"(peak_mass ≥ {DRAWING_PEAK_MASS:g}: {int(gate.sum())} of {len(gate)})")
            scored += [(label, scored[1][1] + exemplar_weight * ex * gate[None, :])]
            b, sd = exemplar_spread(mem, col.images.features, k=exemplar_k, temp=exemplar_temp)
            scored += [(f"transfer + {STANDARDISED_WEIGHT:g} × exemplar cosine standardised per picture",
                        scored[1][1] + STANDARDISED_WEIGHT * (ex - b[None, :]) / sd[None, :])]
        if product:
            from imgrag.indexing.config import Settings
            from imgrag.indexing.embedders.transfer import EXEMPLAR_K, EXEMPLAR_TEMP

            auto = framed_auto(builders[name], log)
            mem.require(auto.images.feature_identity)
            f = auto.images.features
            t = qv @ mix(auto.images.bridge, mem.transferred(f), float(mem.meta["beta"])).T  # type: ignore[arg-type]
            w = float(Settings.model_fields["exemplar_weight"].default)
            b, sd = mem.exemplar_stats(f)
            ex = mem.exemplars(qv, k=EXEMPLAR_K, temp=EXEMPLAR_TEMP) @ f.T
            scored += [("transfer, auto framing", t),
                       (f"transfer, auto framing + {w:g} × standardised exemplar (session 12)",
                        t + w * (ex - b[None, :]) / sd[None, :])]
            # session 13: a Chinese query also takes its dictionary English reading's e5 vector
            # (IMGRAG_IMAGE_QUERY_TRANSLATION), in the transfer score and the exemplar, as the search does
            from imgrag.indexing.translate import english_reading

            wt = float(Settings.model_fields["image_query_translation"].default)
            en = [english_reading(q) for q in col.queries]
            has = [i for i, r in enumerate(en) if r]
            q2 = np.array(qv, np.float32, copy=True)
            if has:
                q2[has] += wt * e5.embed_queries([en[i] for i in has])
                q2[has] /= np.linalg.norm(q2[has], axis=1, keepdims=True)
            tv = mix(auto.images.bridge, mem.transferred(f), float(mem.meta["beta"]))  # type: ignore[arg-type]
            ex2 = mem.exemplars(q2, k=EXEMPLAR_K, temp=EXEMPLAR_TEMP) @ f.T
            label = f"transfer, auto framing + exemplar + {wt:g} × a Chinese query's English reading ({len(has)} queries; session 13)"
            scored += [(label, q2 @ tv.T + w * (ex2 - b[None, :]) / sd[None, :])]
            # session 16: the image route exactly as the search ranks it (add_exemplar over the two kNNs'
            # top 50), without and with the colour term when the memory has colour layouts
            layouts = collection_layouts(auto, log) if mem.colours is not None else None
            cw = float(Settings.model_fields["colour_weight"].default)
            for weight in ([0.0, cw] if layouts is not None else [0.0]):
                label = ("the search's image route (two kNNs, top 50 of 200 each)" if weight == 0 else
                         f"the search's image route + {weight:g} × colour term (the product's default)")
                scored += [(label, search_route(q2 @ tv.T, ex2, b, sd, w, layouts, mem.exemplar_colours(q2) if weight else None, weight))]
        for emb_name, sims in scored:
            for lang, m in scores_by_lang(sims, col.relevant, col.langs).items():
                rows.append({"collection": col.name, "images": len(col.images.names), "embedder": emb_name,
                             "memory": "+".join(mem.meta["sources"]), "memory_images": mem.meta["pictures"], "lang": lang,  # type: ignore[arg-type]
                             **{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in m.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imgrag.evals.transfer", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("eval", help="the bridge beside caption transfer on whole held-out sources")
    ev.add_argument("--collection", choices=COLLECTIONS, action="append", required=True)
    ev.add_argument("--memory", action="append", default=None, help="iconify:<set> | emoji | clipart (repeatable)")
    ev.add_argument("--memory-file", type=Path, default=None, help="a built memory file instead of --memory and the grid")
    ev.add_argument("--k", type=int, action="append", default=None)
    ev.add_argument("--temp", type=float, action="append", default=None)
    ev.add_argument("--beta", type=float, action="append", default=None, help="weight of the bridge vector in the mix")
    ev.add_argument("--centre", choices=("no", "yes", "both"), default="no",
                    help="remove each source's (and the collection's) mean feature before the neighbour search")
    ev.add_argument("--adapter", type=Path, default=None, help="search neighbours in this adapter's image space")
    ev.add_argument("--exemplar", action="store_true",
                    help="with --memory-file: also the exemplar route (query -> nearest named memory pictures -> their features), "
                         "fused with transfer on every picture and on drawing-like ones only")
    ev.add_argument("--exemplar-k", type=int, default=3)
    ev.add_argument("--exemplar-temp", type=float, default=0.02)
    ev.add_argument("--exemplar-weight", type=float, default=0.1, help="weight of the exemplar cosine added to the transfer score")
    ev.add_argument("--product", action="store_true",
                    help="with --memory-file: also the transfer embedder's default (auto framing + the standardised "
                         "exemplar term of the search + a Chinese query's English reading), from the centre- and "
                         "content-framed feature caches")
    ev.add_argument("--json", type=Path, default=None)
    b = sub.add_parser("build", help="write a memory file for image_embedder=transfer")
    b.add_argument("--memory", action="append", required=True, help="iconify:<set> | emoji (repeatable)")
    b.add_argument("--k", type=int, default=10)
    b.add_argument("--temp", type=float, default=0.03)
    b.add_argument("--beta", type=float, default=0.5)
    b.add_argument("--dims", type=int, default=128)
    b.add_argument("--no-colours", dest="colours", action="store_false",
                   help="no colour layouts in the memory (the search's colour term stays off with it)")
    b.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(args.out, args.memory, k=args.k, temp=args.temp, beta=args.beta, dims=args.dims, colours=args.colours)
        return 0
    if args.memory_file:
        rows = evaluate_file(args.collection, args.memory_file, exemplar=args.exemplar, exemplar_k=args.exemplar_k,
                             exemplar_temp=args.exemplar_temp, exemplar_weight=args.exemplar_weight, product=args.product)
    elif args.memory:
        centring = {"no": (False,), "yes": (True,), "both": (False, True)}[args.centre]
        rows = evaluate(args.collection, args.memory, args.k or [10], args.temp or [0.05], args.beta or [0.0, 0.5],
                        centring, args.adapter)
    else:
        ap.error("eval needs --memory or --memory-file")
    print(f"memory: {rows[0]['memory'] if rows else '-'} ({rows[0]['memory_images'] if rows else 0} named pictures)")
    print(format_rows(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
