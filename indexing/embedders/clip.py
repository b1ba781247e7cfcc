"""``clip``: real CLIP-family models (CLIP, SigLIP, Chinese-CLIP, ...) whenever one can be loaded.

``IMGRAG_CLIP_MODEL`` (``model``) names the model; what it names decides the library:

* a local folder with ``open_clip_config.json`` (or ``open_clip:NAME``/``local-dir:DIR``/``hf-hub:ORG/REPO``,
  or an open_clip ``ARCH/PRETRAINED_TAG`` such as ``ViT-B-32/laion2b_s34b_b79k``) → **open_clip**;
* a folder with ``modules.json`` (a sentence-transformers model such as ``clip-ViT-B-32``) →
  **sentence-transformers**;
* a folder with a Hugging Face ``config.json`` (``CLIPModel``, ``SiglipModel``, ``ChineseCLIPModel``)
  → **transformers** (``get_image_features`` / ``get_text_features``);
* any other name is a Hugging Face hub repository, resolved from the local hub cache (downloaded
  only when the hub is reachable and ``HF_HUB_OFFLINE`` is not set), then treated as a folder.

A multilingual text tower trained into the image model's space (e.g. sentence-transformers'
``clip-ViT-B-32-multilingual-v1`` for ``clip-ViT-B-32``) is given as ``text_model``, or in the
setting itself: ``IMGRAG_CLIP_MODEL="/models/clip-ViT-B-32|text=/models/clip-ViT-B-32-multilingual-v1"``.

Everything that can go wrong while loading (missing folder, missing weights, a download needed while
offline, a text tower of another width) is one :class:`ImgragError` naming the model and the fix.
The identity hashes the model's configuration files and a fingerprint of its weight files, so a
different checkpoint under the same name is a different space. Image embeddings double as the
``feature`` vectors (image-to-image search); CLIP derives no caption text.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from imgrag.indexing.embedders import ImageEmbeddings
from imgrag.indexing.errors import ImgragError
from imgrag.indexing.interrupts import held_import

_CONFIG_SUFFIXES = {".json", ".txt", ".model", ".yaml", ".yml"}
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".npz", ".ckpt"}
_FP_BYTES = 1 << 20


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def folder_fingerprint(folder: Path) -> str:
    """sha256 over config/tokenizer files (whole) and weight files (size, first and last MiB)."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and ".cache" not in q.parts):
        rel = p.relative_to(folder).as_posix()
        suffix = p.suffix.lower()
        if suffix in _CONFIG_SUFFIXES and p.stat().st_size < 50 << 20:
            h.update(f"{rel}\0".encode())
            h.update(p.read_bytes())
        elif suffix in _WEIGHT_SUFFIXES:
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
            h.update(_head_tail(p))
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(f"{path.name}\0{path.stat().st_size}\0".encode() + _head_tail(path)).hexdigest()


def _head_tail(p: Path) -> bytes:
    with open(p, "rb") as fh:
        head = fh.read(_FP_BYTES)
        size = p.stat().st_size
        if size > 2 * _FP_BYTES:
            fh.seek(size - _FP_BYTES)
        return head + fh.read(_FP_BYTES)


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"MODEL|text=TEXT_MODEL"`` → ``(MODEL, TEXT_MODEL)``."""
    parts = [p.strip() for p in spec.split("|")]
    text = None
    for p in parts[1:]:
        key, _, value = p.partition("=")
        if key.strip() != "text" or not value.strip():
            raise ImgragError(f"cannot read {spec!r} as a CLIP model", 'write IMGRAG_CLIP_MODEL as "MODEL" or "MODEL|text=TEXT_MODEL"')
        text = value.strip()
    return parts[0], text


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or os.sep in s and Path(s).expanduser().exists() or Path(s).expanduser().is_dir()


def _resolve_hub(repo: str, what: str) -> Path:
    """A hub repository's local snapshot folder; downloads only when online."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - comes with sentence-transformers/transformers
        raise ImgragError("loading a CLIP model by hub name needs huggingface_hub", "pip install 'imgrag[clip]'") from e
    offline = hub_offline()
    try:
        return Path(snapshot_download(repo, local_files_only=offline))
    except Exception as e:  # LocalEntryNotFoundError, OfflineModeIsEnabled, HTTP errors, bad repo id
        if offline:
            raise ImgragError(
                f"{what} {repo!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be downloaded",
                "download it on a machine with network (huggingface-cli download REPO --local-dir DIR) and set "
                "IMGRAG_CLIP_MODEL to that folder",
            ) from e
        raise ImgragError(f"{what} {repo!r} could not be loaded from the hub ({type(e).__name__}: {e})",
                          "check the name and the network, or point IMGRAG_CLIP_MODEL at a local model folder") from e


@contextmanager
def _offline_hub() -> Iterator[None]:
    """Make huggingface_hub refuse downloads for the duration (its flag is read at import)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _to_pil(img: np.ndarray) -> Any:
    from PIL import Image

    from imgrag.indexing.embedders.bridge import _as_rgb

    return Image.fromarray(_as_rgb(img))


def _as_tensor(out: Any) -> Any:
    """transformers ≥5 returns model outputs from get_*_features; older versions a tensor."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class _OpenClip:
    library = "open_clip"

    def __init__(self, spec: str, label: str) -> None:
        try:
            open_clip = held_import("open_clip")
        except ImportError as e:
            raise ImgragError("open_clip models need open-clip-torch", "pip install 'imgrag[clip]'") from e
        torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

        self.torch = torch
        pretrained: str | None = None
        name = spec
        if spec.startswith("local-dir:"):
            folder = Path(spec.removeprefix("local-dir:")).expanduser()
            self._check_folder(folder, label)
            name = f"local-dir:{folder}"
            self.fingerprint = folder_fingerprint(folder)
        elif spec.startswith("hf-hub:"):
            folder = _resolve_hub(spec.removeprefix("hf-hub:"), "open_clip model")
            self._check_folder(folder, label)
            name = f"local-dir:{folder}"
            self.fingerprint = folder_fingerprint(folder)
        else:
            arch, _, pretrained = spec.partition("/")
            if arch not in open_clip.list_models():
                raise ImgragError(f"{label}: open_clip has no architecture {arch!r}",
                                  "use ARCH/PRETRAINED_TAG from open_clip.list_pretrained(), or a local folder")
            if not pretrained:
                raise ImgragError(f"{label}: open_clip {arch!r} needs a pretrained tag (random weights are useless)",
                                  f"write it as {arch}/TAG (see open_clip.list_pretrained())")
            name = arch
            self.fingerprint = ""
        try:
            if pretrained and hub_offline():
                with _offline_hub():
                    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            self.tokenizer = open_clip.get_tokenizer(name)
        except ImgragError:
            raise
        except Exception as e:
            hint = ("its weights are not cached and HF_HUB_OFFLINE is set: download them where there is network"
                    if pretrained and hub_offline() else "check the model name/folder and that its weights are complete")
            raise ImgragError(f"{label}: open_clip could not load it ({type(e).__name__}: {e})", hint) from e
        if pretrained:
            self.fingerprint = hashlib.sha256(f"{arch}/{pretrained}".encode()).hexdigest()
        self.model = model.eval()
        self.preprocess = preprocess

    @staticmethod
    def _check_folder(folder: Path, label: str) -> None:
        if not (folder / "open_clip_config.json").is_file():
            raise ImgragError(f"{label}: {folder} has no open_clip_config.json", "point at an open_clip model folder")
        if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
            # open_clip itself would only warn and build a randomly initialised model
            raise ImgragError(f"{label}: {folder} has no weights file", "copy the model's open_clip_model.safetensors into it")

    def images(self, pil: list[Any]) -> np.ndarray:
        x = self.torch.stack([self.preprocess(im) for im in pil])
        with self.torch.inference_mode():
            return self.model.encode_image(x).float().numpy()

    def texts(self, texts: list[str]) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts)).float().numpy()


class _SentenceTransformers:
    library = "sentence-transformers"

    def __init__(self, folder: Path, label: str) -> None:
        try:
            SentenceTransformer = held_import("sentence_transformers").SentenceTransformer
        except ImportError as e:
            raise ImgragError("sentence-transformers models need sentence-transformers", "pip install 'imgrag[clip]'") from e
        try:
            self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as e:
            raise ImgragError(f"{label}: sentence-transformers could not load {folder} ({type(e).__name__}: {e})",
                              "check that the folder holds a complete sentence-transformers model") from e
        self.fingerprint = folder_fingerprint(folder)

    def images(self, pil: list[Any]) -> np.ndarray:
        return np.asarray(self.model.encode(pil, convert_to_numpy=True, show_progress_bar=False), np.float32)

    def texts(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False), np.float32)


class _Transformers:
    library = "transformers"

    def __init__(self, folder: Path, label: str) -> None:
        try:
            torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)
            from transformers import AutoModel, AutoProcessor
        except ImportError as e:
            raise ImgragError("Hugging Face CLIP folders need transformers", "pip install 'imgrag[clip]'") from e
        self.torch = torch
        try:
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
            self.processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:
            raise ImgragError(f"{label}: transformers could not load {folder} ({type(e).__name__}: {e})",
                              "check that the folder holds config.json, the weights and the processor/tokenizer files") from e
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ImgragError(f"{label}: {type(self.model).__name__} is not an image-text model",
                              "use a CLIP-family model (CLIP, SigLIP, Chinese-CLIP)")
        self.siglip = "siglip" in type(self.model).__name__.lower()
        self.fingerprint = folder_fingerprint(folder)

    def images(self, pil: list[Any]) -> np.ndarray:
        x = self.processor(images=pil, return_tensors="pt")
        with self.torch.inference_mode():
            return _as_tensor(self.model.get_image_features(pixel_values=x["pixel_values"])).float().numpy()

    def texts(self, texts: list[str]) -> np.ndarray:
        pad: Any = "max_length" if self.siglip else True
        x = self.processor(text=list(texts), padding=pad, truncation=True, return_tensors="pt")
        keep = {k: v for k, v in x.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with self.torch.inference_mode():
            return _as_tensor(self.model.get_text_features(**keep)).float().numpy()


def _load(spec: str, label: str) -> Any:
    """The backend for one model spec (see the module docstring)."""
    if spec.startswith(("open_clip:", "open-clip:")):
        inner = spec.split(":", 1)[1]
        p = Path(inner).expanduser()
        return _OpenClip(f"local-dir:{p}" if p.is_dir() else inner, label)
    if spec.startswith(("local-dir:", "hf-hub:")):
        return _OpenClip(spec, label)
    if _looks_like_path(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ImgragError(f"{label} folder {folder} does not exist",
                              "set IMGRAG_CLIP_MODEL to a local model folder (or a model name in the local hub cache)")
        return _load_folder(folder, label)
    try:  # open_clip ARCH/TAG names are not hub repositories
        open_clip = held_import("open_clip")

        arch = spec.split("/", 1)[0]
        if "/" in spec and arch in open_clip.list_models() and spec.split("/", 1)[1] in dict(open_clip.list_pretrained()).values():
            return _OpenClip(spec, label)
    except ImportError:
        pass
    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", spec):
        raise ImgragError(f"{label} {spec!r} is neither a folder nor a model name", "check IMGRAG_CLIP_MODEL")
    return _load_folder(_resolve_hub(spec, label), label)


def _load_folder(folder: Path, label: str) -> Any:
    if (folder / "open_clip_config.json").is_file():
        return _OpenClip(f"local-dir:{folder}", label)
    if (folder / "modules.json").is_file():
        return _SentenceTransformers(folder, label)
    if (folder / "config.json").is_file():
        return _Transformers(folder, label)
    raise ImgragError(f"{label} folder {folder} holds no model (no open_clip_config.json, modules.json or config.json)",
                      "point IMGRAG_CLIP_MODEL at the folder a CLIP-family model was saved or downloaded to")


class ClipEmbedder:
    """A CLIP-family model as an ``ImageTextEmbedder``.

    Args:
        model: folder or name (see module docstring); ``"MODEL|text=TEXT_MODEL"`` adds a text tower.
        text_model: a separate (e.g. multilingual) text encoder in the image model's space.
        batch_size: images/texts per forward pass.
        num_threads: torch threads (default: torch's own, capped at the usable cores).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, text_model: str | os.PathLike[str] | None = None,
                 *, batch_size: int = 16, num_threads: int | None = None) -> None:
        if model is None or not str(model).strip():
            raise ImgragError("image_embedder 'clip' needs a model",
                              "set IMGRAG_CLIP_MODEL to a local CLIP/SigLIP/Chinese-CLIP folder or a cached model name")
        spec, text_in_spec = split_spec(str(model))
        if text_model is not None and text_in_spec is not None:
            raise ImgragError("two text models given", "name the text tower either in IMGRAG_CLIP_MODEL (|text=...) or as text_model")
        text_spec = str(text_model) if text_model is not None else text_in_spec
        _threads(num_threads)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.image_backend = _load(spec, "CLIP model")
        self.text_backend = _load(text_spec, "CLIP text model") if text_spec else self.image_backend
        probe = _normalise(self.image_backend.images([_to_pil(np.full((32, 32, 3), 127, np.uint8))]))
        self.dim = int(probe.shape[1])
        if text_spec:
            tdim = int(self.text_backend.texts(["probe"]).shape[1])
            if tdim != self.dim:
                raise ImgragError(f"CLIP text model {text_spec} gives {tdim}-d vectors, the image model {self.dim}-d",
                                  "use the text tower trained for this image model (same embedding space)")
        name = _short(spec)
        ident = f"{self.image_backend.library}:{name}@{self.image_backend.fingerprint[:16]}"
        if text_spec:
            ident += f"|text={self.text_backend.library}:{_short(text_spec)}@{self.text_backend.fingerprint[:16]}"
        self.identity = f"clip[{ident}|d{self.dim}]"
        self.feature_identity = f"clip-image[{self.image_backend.library}:{name}@{self.image_backend.fingerprint[:16]}|d{self.dim}]"
        self.feature_dim = self.dim

    def embed_images(self, imgs: Sequence[np.ndarray]) -> ImageEmbeddings:
        imgs = list(imgs)
        out = np.zeros((len(imgs), self.dim), np.float32)
        for start in range(0, len(imgs), self.batch_size):
            chunk = [_to_pil(im) for im in imgs[start : start + self.batch_size]]
            with self._lock:
                out[start : start + len(chunk)] = _normalise(self.image_backend.images(chunk))
        return ImageEmbeddings(vectors=out, features=out.copy(), captions=[""] * len(imgs))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        texts = [" ".join(str(t).split()) for t in texts]
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            with self._lock:
                out[start : start + len(chunk)] = _normalise(self.text_backend.texts(chunk))
        return out

    def __repr__(self) -> str:
        return f"ClipEmbedder({self.identity!r})"


def _short(spec: str) -> str:
    s = spec.rstrip("/")
    for prefix in ("open_clip:", "open-clip:", "local-dir:", "hf-hub:"):
        s = s.removeprefix(prefix)
    return Path(s).name if _looks_like_path(s) else s


def _threads(num_threads: int | None) -> None:
    torch = held_import("torch")  # Ctrl-C waits for torch's C++ start-up (indexing/interrupts.py)

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    elif torch.get_num_threads() > usable:
        torch.set_num_threads(usable)
