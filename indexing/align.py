"""Contrastive alignment (InfoNCE) of frozen image features and text embeddings: ``imgrag align``.

Two linear projection heads map the backbone's L2-normalised pooled features (EfficientNet-Lite0,
1280-d) and the text model's *query* embeddings (multilingual-e5-small, 384-d) into one 256-d space.
They are trained with the symmetric InfoNCE loss of CLIP, with a learnable temperature τ::

    L = ½ · [CE(s · I Tᵀ / τ, diag) + CE(s · T Iᵀ / τ, diag)],  I, T: normalised head outputs

Recipe (defaults of :class:`TrainConfig`): AdamW lr 1e-3, weight decay 0.01, batch 512, at most 120
epochs with linear warm-up then cosine decay, dropout 0.2 on both inputs, τ initialised at 0.07
(clamped to ≥ 0.01). Every epoch each training image contributes one of its captions, drawn at
random from all of them (English and Chinese alike). The split is by image (a seeded hash of its
key, so it does not depend on file order); training stops early when the validation MRR has not
improved for ``patience`` epochs, and the best epoch's weights are kept. Training runs on one CPU
thread with deterministic algorithms, so a seed reproduces the weights bit for bit.

Features are the *normalised* pooled features the bridge returns and the index stores as the
``feature`` vector, so an adapter can re-embed an index from stored features without decoding
images (:func:`reembed_index`).

An adapter is a folder: ``adapter.safetensors`` (the heads, ~1.7 MB), ``adapter.json`` (dims, τ,
feature-model and text-model identities, training data recipe and hyper-parameters) and
``metrics.json`` (validation Recall@1/5/10 and MRR before — the index's current image space,
normally the label bridge — and after, overall and per language).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from .embedders.adapter import (  # noqa: F401  (re-exported: the training API names them)
    ADAPTER_FORMAT,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    Adapter,
    AdapterConfig,
    adapter_sha,
    load_adapter,
    read_safetensors,
    save_adapter,
    write_safetensors,
)
from .errors import ImgragError
from .interrupts import held_import

if TYPE_CHECKING:
    from .embedders import TextEmbedder
    from .runtime import Runtime

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def caption_lang(text: str) -> str:
    """``zh`` when the text has any CJK ideograph, else ``en`` (for the per-language metrics)."""
    return "zh" if _CJK.search(text) else "en"


# -------------------------------------------------------------------------------------------



def retrieval_metrics(
    image_vectors: np.ndarray, query_vectors: np.ndarray, relevant: Sequence[frozenset[int] | set[int]],
) -> dict[str, float]:
    """Text → image Recall@1/5/10 and MRR (full ranking) for queries with the given relevant rows."""
    sims = np.asarray(query_vectors, np.float32) @ np.asarray(image_vectors, np.float32).T
    return score_metrics(sims, relevant)


def score_metrics(sims: np.ndarray, relevant: Sequence[frozenset[int] | set[int]]) -> dict[str, float]:
    """:func:`retrieval_metrics` from a (query × image) score matrix (fused routes have no vectors)."""
    n = len(relevant)
    if n == 0:
        return {"n": 0, "r1": 0.0, "r5": 0.0, "r10": 0.0, "mrr": 0.0}
    ranks = np.empty(n, dtype=np.int64)
    for i, rel in enumerate(relevant):
        idx = np.fromiter(rel, dtype=np.int64)
        best = sims[i, idx].max()
        ranks[i] = int((sims[i] > best).sum()) + 1  # ties count in the query's favour
    return {
        "n": n,
        "r1": float((ranks <= 1).mean()),
        "r5": float((ranks <= 5).mean()),
        "r10": float((ranks <= 10).mean()),
        "mrr": float((1.0 / ranks).mean()),
    }


def metrics_by_lang(
    image_vectors: np.ndarray, query_vectors: np.ndarray, relevant: Sequence[frozenset[int]], langs: Sequence[str],
) -> dict[str, dict[str, float]]:
    return scores_by_lang(np.asarray(query_vectors, np.float32) @ np.asarray(image_vectors, np.float32).T, relevant, langs)


def scores_by_lang(sims: np.ndarray, relevant: Sequence[frozenset[int]], langs: Sequence[str]) -> dict[str, dict[str, float]]:
    """:func:`metrics_by_lang` from a (query × image) score matrix."""
    out = {"all": score_metrics(sims, relevant)}
    for lang in sorted(set(langs)):
        sel = [i for i, lg in enumerate(langs) if lg == lang]
        out[lang] = score_metrics(sims[sel], [relevant[i] for i in sel])
    return out


# -------------------------------------------------------------------------------------------
# training data
# -------------------------------------------------------------------------------------------


@dataclass
class PairData:
    """Images (normalised features, keyed) with one or more captions each.

    ``before`` optionally holds each image's vector in the space being replaced (normally the label
    bridge) and ``before_queries`` embeds captions for it, so training can report before vs after.
    """

    keys: list[str]
    features: np.ndarray
    captions: list[list[str]]
    feature_identity: str
    source: dict[str, Any] = field(default_factory=dict)
    before: np.ndarray | None = None
    before_identity: str | None = None
    before_queries: Callable[[list[str]], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not (len(self.keys) == len(self.captions) == self.features.shape[0]):
            raise ValueError("keys, captions and features disagree in length")


def _caption_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a caption is a string or a list of strings")
    return [" ".join(v.split()) for v in value if v.strip()]


def read_pairs(path: Path) -> list[tuple[Path, list[str]]]:
    """``pairs.jsonl``: ``{"image": path, "caption": str | [str], "caption_zh"?: str | [str]}`` per line.

    Image paths are relative to the file's folder unless absolute; lines naming the same image
    merge their captions.
    """
    if not path.is_file():
        raise ImgragError(f"pairs file {path} does not exist", "pass --pairs pairs.jsonl")
    merged: dict[Path, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
                raise ValueError('needs "image": "path"')
            caps = _caption_list(obj.get("caption")) + _caption_list(obj.get("caption_zh"))
            caps += _caption_list(obj.get("captions"))
        except ValueError as e:
            raise ImgragError(f"{path}:{n}: {e}",
                              'write lines like {"image": "a.jpg", "caption": "a red car", "caption_zh": "红色汽车"}') from e
        img = Path(obj["image"]).expanduser()
        img = img if img.is_absolute() else path.parent / img
        merged.setdefault(img, []).extend(c for c in caps if c not in merged.get(img, []))
    pairs = [(p, caps) for p, caps in merged.items() if caps]
    if not pairs:
        raise ImgragError(f"{path} has no image with a caption", "add lines with an image and a caption")
    return pairs


def pairs_from_jsonl(path: Path, *, settings: Any = None, batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None) -> PairData:
    """Decode each image once (first page), embed it with the label bridge: features + bridge vectors."""
    from .config import get_settings
    from .embedders import get_image_text_embedder
    from .loader import load_file

    s = settings or get_settings()
    pairs = read_pairs(path)
    bridge = get_image_text_embedder("bridge", text_embedder=s.text_embedder, cache_dir=s.cache_dir)
    feats: list[np.ndarray] = []
    before: list[np.ndarray] = []
    keys: list[str] = []
    caps: list[list[str]] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        imgs = []
        for p, c in chunk:
            page = next(iter(load_file(p, max_pixels=s.max_pixels, pdf_dpi=s.pdf_dpi, max_file_mb=s.max_file_mb, only_page=1)))
            imgs.append(page.image)
            keys.append(str(p))
            caps.append(c)
        emb = bridge.embed_images(imgs)
        feats.append(emb.features)
        before.append(emb.vectors)
        if progress:
            progress(start + len(chunk), len(pairs))
    return PairData(
        keys=keys, features=np.concatenate(feats), captions=caps, feature_identity=bridge.feature_identity,
        source={"kind": "pairs", "file": str(path), "images": len(keys), "captions": sum(map(len, caps))},
        before=np.concatenate(before), before_identity=bridge.identity,
        before_queries=lambda texts: bridge.embed_queries(texts),
    )


def _iter_records(store: Any, principal: Any, page: int = 500) -> Iterator[Any]:
    from .stores.base import Filters

    offset = 0
    while True:
        recs = store.list_images(principal, Filters(), offset=offset, limit=page)
        yield from recs
        if len(recs) < page:
            return
        offset += page


def record_captions(rec: Any, caption_field: str) -> list[str]:
    """Captions of one stored record: ``caption``, ``ocr_text``, ``tags``, ``meta.KEY`` or a bare meta key."""
    f = caption_field
    if f == "caption":
        value: Any = rec.caption
    elif f == "ocr_text":
        value = rec.ocr_text
    elif f == "tags":
        value = list(rec.tags)
    else:
        value = rec.meta.get(f.removeprefix("meta.")) if f.startswith("meta.") or f in rec.meta else None
        if value is not None:
            value = [v for v in str(value).split("|")]  # several captions: a|b
    return _caption_list(value if isinstance(value, list) else ([value] if value else []))


def pairs_from_index(rt: Runtime, caption_field: str) -> PairData:
    """Captions from indexed records and features from the store (no image is decoded)."""
    from .stores.base import OPERATOR

    store = rt.store
    spaces = store.spaces()
    if spaces is None:
        raise ImgragError("the index is empty", "index images first (`imgrag index FOLDER`), or use --pairs")
    keys: list[str] = []
    caps: list[list[str]] = []
    feats: list[np.ndarray] = []
    before: list[np.ndarray] = []
    seen_fields: set[str] = set()
    for rec in _iter_records(store, OPERATOR):
        seen_fields.update(rec.meta)
        c = record_captions(rec, caption_field)
        if not c:
            continue
        vec = store.get_vectors(rec.image_id, OPERATOR)
        if vec is None:
            continue
        keys.append(rec.image_id)
        caps.append(c)
        feats.append(np.asarray(vec.feature, np.float32))
        before.append(np.asarray(vec.image, np.float32))
    if not keys:
        known = ", ".join(["caption", "ocr_text", "tags", *sorted(f"meta.{k}" for k in seen_fields)])
        raise ImgragError(f"no indexed record has text in {caption_field!r}", f"use one of: {known}")
    # "before" is the index's current image space, comparable with queries only if it is the configured one
    before_q: Callable[[list[str]], np.ndarray] | None = None
    try:
        ie = rt.image_embedder
        if ie.identity == spaces.image:
            before_q = lambda texts: ie.embed_queries(texts)  # noqa: E731
    except ImgragError:
        pass
    return PairData(
        keys=keys, features=np.stack(feats), captions=caps, feature_identity=spaces.feature,
        source={"kind": "index", "caption_field": caption_field, "images": len(keys),
                "captions": sum(map(len, caps)), "index_image_space": spaces.image},
        before=np.stack(before) if before_q else None, before_identity=spaces.image if before_q else None,
        before_queries=before_q,
    )


# -------------------------------------------------------------------------------------------
# training
# -------------------------------------------------------------------------------------------


class TrainConfig(BaseModel):
    dim: int = Field(default=256, ge=8, le=4096)
    epochs: int = Field(default=120, ge=1, le=10_000)
    batch_size: int = Field(default=512, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    tau_init: float = Field(default=0.07, gt=0)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1, description="share of all steps spent warming up")
    patience: int = Field(default=20, ge=1, description="epochs without a better validation MRR before stopping")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    text_head: Literal["linear", "identity"] = Field(
        default="linear", description="identity: the text head is frozen at I (dim = the text model's), so queries "
        "stay in the text model's own space and only the image head learns — words never seen in training keep "
        "their meaning")
    distill: float = Field(
        default=0.0, ge=0, description="with text_head identity: weight of a loss keeping each image's vector near "
        "its vector in the space being replaced (PairData.before, normally the label bridge, also in the text "
        "model's space), so what the bridge knows is not forgotten")


def split_by_image(keys: Sequence[str], val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation images: a seeded hash of each key (independent of order)."""
    mask = np.array([
        int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:12], 16) / 16**12 < val_fraction for k in keys
    ], dtype=bool)
    if mask.all() or not mask.any():  # tiny sets: force at least one image on each side
        mask[:] = False
        mask[: max(1, round(len(keys) * val_fraction))] = True
    return mask


@dataclass
class CaptionTable:
    """All captions, flattened: text, owning image row, language, and relevant rows per caption."""

    texts: list[str]
    owner: np.ndarray
    langs: list[str]

    @classmethod
    def of(cls, captions: Sequence[Sequence[str]]) -> CaptionTable:
        texts, owner = [], []
        for i, caps in enumerate(captions):
            for c in caps:
                texts.append(c)
                owner.append(i)
        return cls(texts, np.asarray(owner, dtype=np.int64), [caption_lang(t) for t in texts])

    def relevant(self, rows: np.ndarray) -> tuple[list[int], list[frozenset[int]]]:
        """For the captions of images ``rows``: their indices and, per caption, every position in
        ``rows`` whose image has the same caption text (identical titles are not false misses)."""
        pos = {int(r): j for j, r in enumerate(rows)}
        by_text: dict[str, set[int]] = {}
        sel = [i for i, o in enumerate(self.owner) if int(o) in pos]
        for i in sel:
            by_text.setdefault(self.texts[i].lower(), set()).add(pos[int(self.owner[i])])
        return sel, [frozenset(by_text[self.texts[i].lower()]) for i in sel]


@dataclass
class TrainResult:
    weights: dict[str, np.ndarray]
    tau: float
    metrics: dict[str, Any]
    history: list[dict[str, float]]


def train_heads(
    data: PairData, text: TextEmbedder, cfg: TrainConfig | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the two heads on ``data`` (see the module docstring for the recipe)."""
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)
    import torch.nn.functional as F
    from torch import nn

    cfg = cfg or TrainConfig()
    say = log_fn or (lambda m: None)
    n_img = len(data.keys)
    if n_img < 4:
        raise ImgragError(f"only {n_img} captioned image(s)", "alignment needs at least 4 images with captions (hundreds to learn anything)")
    table = CaptionTable.of(data.captions)
    text_vecs = np.asarray(text.embed_queries(table.texts), np.float32)
    val_mask = split_by_image(data.keys, cfg.val_fraction, cfg.seed)
    val_rows, train_rows = np.flatnonzero(val_mask), np.flatnonzero(~val_mask)
    val_sel, val_rel = table.relevant(val_rows)
    val_langs = [table.langs[i] for i in val_sel]
    captions_of: list[list[int]] = [[] for _ in range(n_img)]
    for i, o in enumerate(table.owner):
        captions_of[int(o)].append(i)

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)  # one thread: summation order, hence the weights, are reproducible
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        dim = text_vecs.shape[1] if cfg.text_head == "identity" else cfg.dim
        img_head = nn.Linear(data.features.shape[1], dim)
        txt_head = nn.Linear(text_vecs.shape[1], dim)
        if cfg.text_head == "identity":
            with torch.no_grad():
                txt_head.weight.copy_(torch.eye(dim))
                txt_head.bias.zero_()
            txt_head.requires_grad_(False)
        log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.tau_init)))
        params = [*img_head.parameters(), *(p for p in txt_head.parameters() if p.requires_grad), log_scale]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        use_distill = cfg.distill > 0
        if use_distill and (cfg.text_head != "identity" or data.before is None or data.before.shape[1] != dim):
            raise ImgragError("--distill needs --text-head identity and an index whose image space is the text model's "
                              f"({dim}-d, e.g. the label bridge)", "drop --distill, or train with --text-head identity")
        before_t = torch.from_numpy(np.ascontiguousarray(data.before, np.float32)) if use_distill else None
        feats_t = torch.from_numpy(np.ascontiguousarray(data.features, np.float32))
        text_t = torch.from_numpy(text_vecs)
        steps_per_epoch = max(1, math.ceil(len(train_rows) / cfg.batch_size))
        total = steps_per_epoch * cfg.epochs
        warm = max(1, int(total * cfg.warmup_fraction))

        def lr_at(step: int) -> float:
            if step < warm:
                return cfg.lr * (step + 1) / warm
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        def evaluate() -> dict[str, dict[str, float]]:
            with torch.no_grad():
                iv = F.normalize(img_head(feats_t[val_rows]), dim=1).numpy()
                tv = F.normalize(txt_head(text_t[val_sel]), dim=1).numpy()
            return metrics_by_lang(iv, tv, val_rel, val_langs)

        best = (-1.0, 0, {k: v.detach().clone() for k, v in _state(img_head, txt_head, log_scale).items()})
        history: list[dict[str, float]] = []
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            img_head.train()
            txt_head.train()
            order = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
            picks = np.array([captions_of[r][rng.integers(len(captions_of[r]))] for r in order], dtype=np.int64)
            losses = []
            for b in range(0, len(order), cfg.batch_size):
                rows, caps = order[b : b + cfg.batch_size], picks[b : b + cfg.batch_size]
                if len(rows) < 2:
                    continue
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                x = F.dropout(feats_t[rows], cfg.dropout, training=True)
                t = F.dropout(text_t[caps], cfg.dropout if cfg.text_head == "linear" else 0.0, training=True)
                iv, tv = F.normalize(img_head(x), dim=1), F.normalize(txt_head(t), dim=1)
                logits = log_scale.exp() * iv @ tv.T
                target = torch.arange(len(rows))
                loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
                if before_t is not None:
                    loss = loss + cfg.distill * (1 - (iv * F.normalize(before_t[rows], dim=1)).sum(1)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    log_scale.clamp_(max=math.log(100.0))  # τ ≥ 0.01, as CLIP
                losses.append(float(loss.detach()))
                step += 1
            img_head.eval()
            txt_head.eval()
            m = evaluate()
            history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                            "val_mrr": m["all"]["mrr"], "tau": float(1.0 / log_scale.detach().exp())})
            if m["all"]["mrr"] > best[0]:
                best = (m["all"]["mrr"], epoch, {k: v.detach().clone() for k, v in _state(img_head, txt_head, log_scale).items()})
            if epoch % 10 == 0 or epoch == 1:
                say(f"epoch {epoch:3d}  loss {history[-1]['loss']:.4f}  val MRR {m['all']['mrr']:.3f}  τ {history[-1]['tau']:.4f}")
            if epoch - best[1] >= cfg.patience:
                say(f"early stop at epoch {epoch}: best val MRR {best[0]:.3f} at epoch {best[1]}")
                break
        weights = {k: v.numpy().astype(np.float32) for k, v in best[2].items()}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)

    tau = float(np.exp(-weights.pop("logit_scale").reshape(())))
    after = metrics_by_lang(
        Adapter._project(data.features[val_rows], weights["image.weight"], weights["image.bias"]),
        Adapter._project(text_vecs[val_sel], weights["text.weight"], weights["text.bias"]),
        val_rel, val_langs,
    )
    metrics: dict[str, Any] = {
        "split": {"train_images": int(len(train_rows)), "val_images": int(len(val_rows)),
                  "val_captions": len(val_sel), "val_fraction": cfg.val_fraction, "seed": cfg.seed},
        "best_epoch": best[1], "epochs_run": len(history), "tau": tau,
        "after": after,
    }
    if data.before is not None and data.before_queries is not None:
        bq = np.asarray(data.before_queries([table.texts[i] for i in val_sel]), np.float32)
        metrics["before"] = metrics_by_lang(data.before[val_rows], bq, val_rel, val_langs)
        metrics["before_identity"] = data.before_identity
    return TrainResult(weights=weights, tau=tau, metrics=metrics, history=history)


def _state(img_head: Any, txt_head: Any, log_scale: Any) -> dict[str, Any]:
    return {"image.weight": img_head.weight, "image.bias": img_head.bias,
            "text.weight": txt_head.weight, "text.bias": txt_head.bias, "logit_scale": log_scale.reshape(1)}


def align(
    data: PairData, text: TextEmbedder, out: Path, *, cfg: TrainConfig | None = None, name: str | None = None,
    log_fn: Callable[[str], None] | None = None, extra_data: dict[str, Any] | None = None,
) -> tuple[Adapter, dict[str, Any]]:
    """Train on ``data`` and save the adapter folder ``out``; returns the adapter and its metrics."""
    cfg = cfg or TrainConfig()
    res = train_heads(data, text, cfg, log_fn)
    config = AdapterConfig(
        name=name or out.name, dim=int(res.weights["image.weight"].shape[0]), image_in=int(data.features.shape[1]),
        text_in=int(res.weights["text.weight"].shape[1]), tau=round(res.tau, 6),
        feature_identity=data.feature_identity, text_identity=text.identity,
        data={**data.source, **(extra_data or {})},
        train={**cfg.model_dump(), "best_epoch": res.metrics["best_epoch"], "epochs_run": res.metrics["epochs_run"],
               "torch_threads": 1, "deterministic": True},
    )
    metrics = {**res.metrics, "history": res.history}
    adapter = save_adapter(out, res.weights, config, metrics)
    return adapter, metrics


def format_metrics(metrics: dict[str, Any]) -> list[str]:
    """Lines of a before/after table (what ``imgrag align`` prints)."""
    lines = [f"{'':10s}{'lang':>5s}{'R@1':>7s}{'R@5':>7s}{'R@10':>7s}{'MRR':>7s}{'queries':>9s}"]
    for stage in ("before", "after"):
        for lang, m in metrics.get(stage, {}).items():
            lines.append(f"{stage:10s}{lang:>5s}{m['r1']:7.3f}{m['r5']:7.3f}{m['r10']:7.3f}{m['mrr']:7.3f}{m['n']:9d}")
    if "before_identity" in metrics:
        lines.append(f"before = {metrics['before_identity']}")
    return lines


# -------------------------------------------------------------------------------------------
# re-embedding an index from stored features
# -------------------------------------------------------------------------------------------


class ReembedSummary(BaseModel):
    images: int = 0
    tiles_from_pixels: int = 0
    tiles_placeholder: int = 0
    pages_decoded: int = 0
    old_image_space: str = ""
    new_image_space: str = ""
    version: int | None = None


def reembed_index(rt: Runtime, progress: Callable[[str], None] | None = None) -> ReembedSummary:
    """Switch an index to the configured ``aligned`` embedder (another adapter, or from the bridge).

    Whole-image vectors are recomputed from the stored ``feature`` vectors (exact: they are the
    normalised pooled features the heads take). The store keeps no features for grid tiles — only
    their joint vectors — so each live page with tiles is decoded and preprocessed once more to
    embed its tiles (OCR, layout and text vectors are untouched); soft-deleted pages get their new
    whole-image vector as tile placeholder. The change is one logical version, so
    ``imgrag rollback`` restores the previous space.
    """
    from .embedders.aligned import AlignedEmbedder
    from .stores.base import ModelSpaces, check_same_base_spaces

    say = progress or (lambda m: None)
    store = rt.store
    old = store.spaces()
    if old is None:
        raise ImgragError("the index is empty: nothing to re-embed", "index images with `imgrag index --adapter DIR FOLDER`")
    ie = rt.image_embedder
    if not isinstance(ie, AlignedEmbedder):
        raise ImgragError(f"re-embedding from stored features needs image_embedder 'aligned', not {rt.settings.image_embedder!r}",
                          "pass --adapter DIR; other embedders need a re-index into a new IMGRAG_HOME")
    new = ModelSpaces(image=ie.identity, image_dim=ie.dim, feature=ie.feature_identity, feature_dim=ie.feature_dim,
                      text=rt.text_embedder.identity, text_dim=rt.text_embedder.dim)
    summary = ReembedSummary(old_image_space=old.image, new_image_space=new.image)
    if old == new:
        return summary
    check_same_base_spaces(old, new)

    def new_vectors(image_features: np.ndarray, records: list[Any]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """New whole-image vectors, and per record its tiles' new vectors (by region label)."""
        whole = ie.adapter.project_images(image_features)
        tiles: list[dict[str, np.ndarray]] = []
        for rec in records:
            if rec.deleted:
                tiles.append({})
                continue
            got = _tile_vectors(rt, ie, rec)
            summary.pages_decoded += 1 if got else 0
            tiles.append(got)
        return whole, tiles

    done = store.replace_image_space(new, new_vectors)
    summary.images, summary.tiles_from_pixels, summary.tiles_placeholder = (
        done.images, done.tiles_from_pixels, done.tiles_placeholder
    )
    v = store.commit("reembed", {"images": summary.images, "image_space": new.image[:120],
                                 "tiles_decoded": summary.tiles_from_pixels})
    summary.version = v.version
    say(f"re-embedded {summary.images} images ({summary.tiles_from_pixels} tiles from decoded pages) · version {v.version}")
    return summary


def _tile_vectors(rt: Runtime, ie: Any, rec: Any) -> dict[str, np.ndarray]:
    """Tiles of one page, cut exactly as the pipeline cuts them, through the new embedder."""
    from .loader import load_page
    from .ocr import detect_orientation
    from .pipeline import DOC_CLASSES, figure_tiles, tile_boxes, tile_pool
    from .preprocess import preprocess

    s = rt.settings
    try:
        original = load_page(rec.path, rec.page, max_pixels=s.max_pixels, pdf_dpi=s.pdf_dpi, doc_id=rec.doc_id)
    except ImgragError as e:
        log.warning("tiles of %s keep a placeholder: %s", rec.image_id, e)
        return {}
    img = preprocess(original, rec.dpi, orientation=detect_orientation).image
    h, w = img.shape[:2]
    grids = (2,) if rec.quality in DOC_CLASSES else (2, 3)
    labels, boxes = [], []
    for suffix, box in tile_boxes(w, h, grids):
        labels.append(suffix)
        boxes.append(box)
    pool = tile_pool(ie, s.tile_side, rec.quality)
    if pool is not None:
        vecs = list(pool([img], [boxes], s.tile_side).vectors)
    else:
        vecs = list(ie.embed_images([img[int(round(y0)) : int(round(y1)), int(round(x0)) : int(round(x1))] for x0, y0, x1, y1 in boxes]).vectors)
    figures = figure_tiles(original, rec.visual)  # cut from the original page, as indexing cuts them
    if figures:
        labels += [suffix for suffix, _, _ in figures]
        vecs += list(ie.embed_images([crop for _, _, crop in figures]).vectors)
    return dict(zip(labels, vecs, strict=True))
