"""The adapter file format of ``imgrag align``: a folder with ``adapter.safetensors`` (the projection
heads), ``adapter.json`` (dims, τ, the feature- and text-model identities, the training recipe) and
``metrics.json``. Kept apart from training so the ``aligned`` embedder loads an adapter without
importing the trainer (and torch)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ..errors import ImgragError

ADAPTER_FORMAT = "imgrag-adapter/1"
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
METRICS_FILE = "metrics.json"
# -------------------------------------------------------------------------------------------
# safetensors without the dependency (the format is a length, a JSON header and raw bytes)
_DTYPES = {"F32": np.float32}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write float32 arrays in the safetensors format (readable by ``safetensors.numpy.load_file``)."""
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-len(raw) % 8)  # the spec pads the header to 8 bytes
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for b in blobs:
            fh.write(b)
    os.replace(tmp, path)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        base = 8 + n
        out: dict[str, np.ndarray] = {}
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            if spec["dtype"] not in _DTYPES:
                raise ValueError(f"unsupported dtype {spec['dtype']}")
            start, stop = spec["data_offsets"]
            arr = np.frombuffer(data[base + start : base + stop], dtype="<f4").reshape(spec["shape"])
            out[name] = arr.astype(np.float32)
        return out
    except (ValueError, KeyError, struct.error, json.JSONDecodeError) as e:
        raise ImgragError(f"{path} is not a readable adapter weights file ({e})",
                          "re-create the adapter with `imgrag align`") from e


# -------------------------------------------------------------------------------------------
# adapters
# -------------------------------------------------------------------------------------------


class AdapterConfig(BaseModel):
    """``adapter.json``."""

    format: str = ADAPTER_FORMAT
    name: str
    dim: int
    image_in: int
    text_in: int
    tau: float
    feature_identity: str = Field(description="the image features the heads were trained on")
    text_identity: str = Field(description="the text embedder whose query vectors the text head takes")
    data: dict[str, Any] = Field(default_factory=dict, description="where the training pairs came from")
    train: dict[str, Any] = Field(default_factory=dict, description="hyper-parameters, seed, epochs run")


class Adapter:
    """Loaded heads: ``project_images`` / ``project_texts`` give L2-normalised ``dim``-d vectors."""

    def __init__(self, path: Path, config: AdapterConfig, weights: dict[str, np.ndarray], sha: str) -> None:
        self.path, self.config, self.sha = path, config, sha
        self.w_img, self.b_img = weights["image.weight"], weights["image.bias"]
        self.w_txt, self.b_txt = weights["text.weight"], weights["text.bias"]
        c = config
        if self.w_img.shape != (c.dim, c.image_in) or self.w_txt.shape != (c.dim, c.text_in):
            raise ImgragError(f"{path}: weights {self.w_img.shape}/{self.w_txt.shape} disagree with adapter.json",
                              "re-create the adapter with `imgrag align`")
        self.dim = c.dim
        self.identity = f"{c.name}@{sha[:16]}"

    @staticmethod
    def _project(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = np.asarray(x, np.float32) @ w.T + b
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def project_images(self, features: np.ndarray) -> np.ndarray:
        """Normalised backbone features (n, image_in) → joint vectors (n, dim)."""
        return self._project(features, self.w_img, self.b_img)

    def project_texts(self, text_vectors: np.ndarray) -> np.ndarray:
        """Text query vectors (n, text_in) → joint vectors (n, dim)."""
        return self._project(text_vectors, self.w_txt, self.b_txt)

    def __repr__(self) -> str:
        return f"Adapter({self.identity!r}, {self.path})"


def adapter_sha(weights: dict[str, np.ndarray], config: AdapterConfig) -> str:
    """Hash of everything that changes the vectors: the weights and the spaces they connect
    (not the adapter's name or metrics)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode() + b"\0" + np.ascontiguousarray(weights[name], dtype="<f4").tobytes())
    h.update(json.dumps([config.format, config.dim, config.image_in, config.text_in,
                         config.feature_identity, config.text_identity]).encode())
    return h.hexdigest()


_ADAPTERS: dict[tuple[str, float, float], Adapter] = {}
_ADAPTERS_LOCK = threading.Lock()


def load_adapter(path: str | os.PathLike[str]) -> Adapter:
    """Load (once per process and file version) the adapter folder ``path``."""
    p = Path(path).expanduser()
    wfile, cfile = p / WEIGHTS_FILE, p / CONFIG_FILE
    if not p.is_dir():
        raise ImgragError(f"adapter folder {p} does not exist",
                          "train one with `imgrag align ... --out DIR`, or fix IMGRAG_ADAPTER / --adapter")
    if not wfile.is_file() or not cfile.is_file():
        raise ImgragError(f"{p} is not an adapter folder (needs {WEIGHTS_FILE} and {CONFIG_FILE})",
                          "point --adapter at a folder written by `imgrag align --out`")
    key = (str(p.resolve()), wfile.stat().st_mtime, cfile.stat().st_mtime)
    with _ADAPTERS_LOCK:
        if key in _ADAPTERS:
            return _ADAPTERS[key]
        try:
            config = AdapterConfig.model_validate_json(cfile.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ImgragError(f"{cfile} is not a valid adapter config ({e})", "re-create it with `imgrag align`") from e
        if config.format != ADAPTER_FORMAT:
            raise ImgragError(f"{p}: adapter format {config.format!r}, expected {ADAPTER_FORMAT!r}",
                              "re-train it with this version of imgrag")
        weights = read_safetensors(wfile)
        adapter = Adapter(p, config, weights, adapter_sha(weights, config))
        _ADAPTERS[key] = adapter
        return adapter


def save_adapter(out: Path, weights: dict[str, np.ndarray], config: AdapterConfig, metrics: dict[str, Any]) -> Adapter:
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / WEIGHTS_FILE, weights, {"format": ADAPTER_FORMAT, "name": config.name})
    (out / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return load_adapter(out)


# -------------------------------------------------------------------------------------------
# metrics
# -------------------------------------------------------------------------------------------
