"""The process-wide bundle of settings, store and models, each created on first use and only once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .config import Settings, get_settings
from .errors import ImgragError
from .stores.base import IndexStore, ModelSpaces

if TYPE_CHECKING:
    from .embedders import ImageTextEmbedder, TextEmbedder
    from .ocr import OcrEngine


def open_store(settings: Settings) -> IndexStore:
    if settings.backend == "lancedb":
        from .stores.lance import open_lance

        return open_lance(
            settings.index_dir, ann_min_rows=settings.lance_ann_min_rows, ann_index=settings.lance_ann_index,
            ann_ef=settings.lance_ann_ef, ann_refine=settings.lance_ann_refine,
            compact_fragments=settings.lance_compact_fragments,
        )
    if settings.backend == "elasticsearch":
        from .stores.elastic import open_elastic

        return open_elastic(settings)
    raise ImgragError(f"unknown backend {settings.backend!r}", "set IMGRAG_BACKEND to lancedb or elasticsearch")


T = TypeVar("T")

# The image embedders an index is searched with while IMGRAG_IMAGE_EMBEDDER is unset, by how their
# identity starts (``LabelBridgeEmbedder.identity``, ``TransferEmbedder.identity``): neither needs
# another setting (an adapter, a model) to be built.
FOLLOWED_SPACES = {"bridge": "label-bridge[", "transfer": "transfer["}


class _built_once(Generic[T]):
    """A lazily built attribute, built exactly once even when threads (a server's warm-up and its
    first request, page-analysis workers) ask for it at the same moment. Re-entrant: building the
    image embedder builds the text embedder it uses."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        try:
            return obj.__dict__[self.name]
        except KeyError:
            pass
        with obj._lock:
            if self.name not in obj.__dict__:
                obj.__dict__[self.name] = self.build(obj)
            return obj.__dict__[self.name]


class Runtime:
    """Lazily built components; share one per process (the CLI, the MCP server, benchmarks)."""

    def __init__(self, settings: Settings | None = None, store: IndexStore | None = None) -> None:
        self.settings = settings or get_settings()
        self._store = store
        self._lock = threading.RLock()

    @property
    def store(self) -> IndexStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    @_built_once
    def ocr(self) -> OcrEngine:
        from .ocr import get_ocr_engine

        opts: dict[str, object] = {"model_dir": self.settings.paddle_model_dir} if self.settings.ocr_engine == "paddleocr" else {}
        if self.settings.ocr_int8:
            if self.settings.ocr_engine != "rapidocr":
                raise ImgragError(
                    f"IMGRAG_OCR_INT8 is for the rapidocr engine, not {self.settings.ocr_engine}",
                    "unset IMGRAG_OCR_INT8, or set IMGRAG_OCR_ENGINE=rapidocr",
                )
            opts["int8_cache"] = self.settings.cache_dir
        return get_ocr_engine(self.settings.ocr_engine, **opts)

    @_built_once
    def text_embedder(self) -> TextEmbedder:
        from .embedders import get_text_embedder

        return get_text_embedder(self.settings.text_embedder)

    @_built_once
    def image_embedder(self) -> ImageTextEmbedder:
        from .embedders import get_image_text_embedder

        s = self.settings
        name = self.image_embedder_name()
        opts: dict[str, object] = {"text_embedder": self.text_embedder, "cache_dir": s.cache_dir, "runtime": s.backbone_runtime}
        if (s.image_backbone, s.image_framing) != ("lite0", "centre"):  # only then: other embedders need not take them
            opts.update(backbone=s.image_backbone, framing=s.image_framing)
        if name == "aligned":
            opts["adapter"] = s.adapter
        elif name == "transfer":  # frames pictures as its memory was built, unless a setting says otherwise (then it refuses)
            opts["memory"] = s.transfer_memory
            for key in ("image_backbone", "image_framing"):
                opts[key.removeprefix("image_")] = getattr(s, key) if key in s.model_fields_set else None
        elif name == "clip":
            opts = {"model": s.clip_model}
        return get_image_text_embedder(name, **opts)

    def image_embedder_name(self) -> str:
        """``IMGRAG_IMAGE_EMBEDDER`` as set; left unset, the model an existing index was built with when
        it is one that needs no other setting (``bridge``, ``transfer`` with the shipped memory), else
        the default (``transfer``). A ``transfer`` index was refused by every search that forgot the
        setting; its stored features cannot make the other model's vectors (docs/embeddings.md). A
        setting that names another model than the index's still gets the refusal that names both."""
        s = self.settings
        name = s.image_embedder.lower()
        if "image_embedder" in s.model_fields_set:
            return name
        try:
            stored = self.store.spaces()
        except Exception:  # noqa: BLE001 - an unreachable store is reported by the command that uses it
            return name
        if stored is None:
            return name
        return next((kind for kind, prefix in FOLLOWED_SPACES.items() if stored.image.startswith(prefix)), name)

    def spaces(self) -> ModelSpaces:
        ie, te = self.image_embedder, self.text_embedder
        return ModelSpaces(
            image=ie.identity,
            image_dim=ie.dim,
            feature=ie.feature_identity,
            feature_dim=ie.feature_dim,
            text=te.identity,
            text_dim=te.dim,
        )

    def model_identities(self) -> dict[str, str]:
        return {"image": self.image_embedder.identity, "text": self.text_embedder.identity, "ocr": self.ocr.name}

    def warm_up(self) -> None:
        """Open the store and build the model objects (cheap; loading weights is ``load_models``)."""
        _ = self.store, self.ocr, self.text_embedder, self.image_embedder

    def load_models(self) -> None:
        """Load every model indexing uses, here and now (seconds; plus ~30 CPU-s for the bridge's label
        vectors the first time in a new cache): lazy loads would otherwise land in the first page's
        analysis or the first batch's embedding, on whichever thread gets there first."""
        self.warm_up()
        for part in (self.ocr, self.text_embedder, self.image_embedder):
            load = getattr(part, "load", None)
            if callable(load):
                load()
        from .layout import preload

        preload()
