"""``aligned``: the label bridge's backbone features through trained projection heads (``imgrag align``).

Images go through the bridge (one EfficientNet-Lite0 pass gives the pooled features, the labels for
the caption text and nothing else is needed); the normalised pooled features are projected by the
adapter's image head. Queries go through the text model's query encoder and the text head. The
``feature`` space — and so image-to-image search and the stored ``feature`` vectors — stays the
backbone's, which is what lets an index switch adapters without decoding its images again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgrag.indexing.embedders import ImageEmbeddings, TextEmbedder, get_image_text_embedder, get_text_embedder
from imgrag.indexing.errors import ImgragError


class AlignedEmbedder:
    """Projection heads over the bridge's features and the text model's query vectors.

    Args:
        adapter: folder written by ``imgrag align --out`` (``IMGRAG_ADAPTER``).
        text_embedder: a ``TextEmbedder`` or its name; must be the one the adapter was trained with.
        cache_dir, batch_size, num_threads, runtime, backbone, framing: passed to the label bridge.
    """

    def __init__(
        self,
        adapter: str | os.PathLike[str] | None = None,
        text_embedder: TextEmbedder | str = "e5",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
        runtime: str = "onnx",
        backbone: str = "lite0",
        framing: str = "centre",
    ) -> None:
        from .adapter import load_adapter

        if adapter is None:
            raise ImgragError("image_embedder 'aligned' needs an adapter folder",
                              "set IMGRAG_ADAPTER=DIR or pass --adapter DIR (train one with `imgrag align`)")
        self.text = get_text_embedder(text_embedder) if isinstance(text_embedder, str) else text_embedder
        self.bridge = get_image_text_embedder("bridge", text_embedder=self.text, cache_dir=cache_dir,
                                              batch_size=batch_size, num_threads=num_threads, runtime=runtime,
                                              backbone=backbone, framing=framing)
        self.framing = self.bridge.framing
        self.adapter = load_adapter(Path(adapter))
        cfg = self.adapter.config
        if cfg.feature_identity != self.bridge.feature_identity:
            raise ImgragError(
                f"adapter {self.adapter.path} was trained on features {cfg.feature_identity!r}, "
                f"but the configured backbone gives {self.bridge.feature_identity!r}",
                "re-train it with `imgrag align` on this installation",
            )
        if cfg.text_identity != self.text.identity:
            raise ImgragError(
                f"adapter {self.adapter.path} was trained with text model {cfg.text_identity!r}, "
                f"but the configured one is {self.text.identity!r}",
                "set IMGRAG_TEXT_EMBEDDER to the adapter's text model or re-train the adapter",
            )
        self.dim = self.adapter.dim
        self.feature_dim = self.bridge.feature_dim
        self.feature_identity = self.bridge.feature_identity
        self.identity = f"aligned[{self.adapter.identity}|d{self.dim}|features={self.feature_identity}|text={self.text.identity}]"

    def embed_images(self, imgs: Sequence[np.ndarray]) -> ImageEmbeddings:
        emb = self.bridge.embed_images(imgs)
        return self.from_features(emb.features, emb.captions, emb.labels)

    def embed_regions(self, imgs: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]],
                      long_side: int = 320) -> ImageEmbeddings:
        """Region vectors pooled from one backbone pass per image (``LabelBridgeEmbedder.embed_regions``)."""
        emb = self.bridge.embed_regions(imgs, boxes, long_side)
        return self.from_features(emb.features, emb.captions, emb.labels)

    def from_features(self, features: np.ndarray, captions: list[str] | None = None,
                      labels: list[list[tuple[str, float]]] | None = None) -> ImageEmbeddings:
        """Joint vectors from stored (normalised) features: no image is decoded."""
        feats = np.asarray(features, np.float32).reshape(-1, self.feature_dim)
        caps = captions if captions is not None else [""] * len(feats)
        return ImageEmbeddings(vectors=self.adapter.project_images(feats), features=feats, captions=caps,
                               labels=labels or [])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.adapter.project_texts(self.text.embed_queries(texts))

    def queries_from_text(self, text_vectors: np.ndarray) -> np.ndarray:
        """``embed_queries`` from vectors ``self.text.embed_queries`` already made (the search embeds
        a query once for the text and the joint space)."""
        return self.adapter.project_texts(text_vectors)

    def __repr__(self) -> str:
        return f"AlignedEmbedder({self.identity!r})"
