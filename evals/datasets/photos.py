"""Photos from scikit-image's bundled sample data, written in the formats the loader must handle.

`make_photos(out_dir)` writes plain JPEG/PNG photos plus files that exercise loaders:
- `moon_coins.tif`: a multi-page TIFF with 2 frames (moon, coins);
- `motorcycle.webp`: a WebP;
- `camera.bmp`: a BMP;
- `rocket_exif6.jpg`: a JPEG whose pixels are stored turned 90 degrees counter-clockwise with EXIF
  Orientation = 6 ("rotate 90 CW to display"), so only a loader that applies the EXIF orientation sees
  the rocket upright. Its upright content is the `rocket` sample.

Each file gets a line in `photos.jsonl` with English and Chinese captions, tags, format, frames,
stored and upright sizes and the EXIF orientation. Output is byte-for-byte reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from .sidecar import read_sidecar, write_sidecar

SIDECAR = "photos.jsonl"
EXIF_ORIENTATION_TAG = 0x0112


class PhotoRecord(BaseModel):
    file: str
    sources: list[str]  # scikit-image sample names, one per frame
    caption_en: str
    caption_zh: str
    tags: list[str] = Field(default_factory=list)
    format: str
    frames: int = 1
    width: int  # as stored
    height: int
    exif_orientation: int | None = None
    upright_width: int  # as displayed after applying the EXIF orientation
    upright_height: int


# name -> (loader name in skimage.data, caption en, caption zh, tags)
SAMPLES: dict[str, tuple[str, str, str, list[str]]] = {
    "astronaut": ("astronaut", "portrait of an astronaut in a white spacesuit in front of the US flag",
                  "身穿白色宇航服的宇航员肖像，背后是美国国旗", ["person", "astronaut", "portrait"]),
    "coffee": ("coffee", "a cup of coffee on a saucer with a spoon", "放在碟子上的一杯咖啡",
               ["food", "coffee", "cup"]),
    "chelsea": ("chelsea", "Chelsea, a tabby cat, close-up", "一只虎斑猫的特写", ["animal", "cat"]),
    "rocket": ("rocket", "a rocket lifting off from its launch pad", "从发射台升空的火箭",
               ["rocket", "launch", "vehicle"]),
    "camera": ("camera", "greyscale photo of a cameraman with a camera on a tripod",
               "摄影师和三脚架上的相机（黑白照片）", ["person", "camera", "greyscale"]),
    "coins": ("coins", "greyscale photo of old Greek coins", "古希腊硬币（黑白照片）",
              ["coins", "greyscale"]),
    "moon": ("moon", "greyscale photo of the surface of the moon", "月球表面（黑白照片）",
             ["moon", "space", "greyscale"]),
    "motorcycle": ("stereo_motorcycle", "a motorcycle parked in a garage", "停在车库里的摩托车",
                   ["motorcycle", "vehicle"]),
    "hubble_deep_field": ("hubble_deep_field", "Hubble deep field: many distant galaxies in space",
                          "哈勃深空场：太空中的许多遥远星系", ["space", "galaxies", "astronomy"]),
    "retina": ("retina", "fundus photograph of a human retina", "人眼视网膜眼底照片",
               ["medical", "retina", "eye"]),
    "immunohistochemistry": ("immunohistochemistry",
                             "microscope image of immunohistochemically stained tissue",
                             "免疫组化染色组织的显微图像", ["medical", "microscopy", "tissue"]),
}

# plain photos: name -> format
PLAIN: dict[str, str] = {
    "astronaut": "jpeg",
    "coffee": "jpeg",
    "chelsea": "png",
    "hubble_deep_field": "jpeg",
    "retina": "jpeg",
    "immunohistochemistry": "png",
}
EXTRAS = ("moon_coins.tif", "motorcycle.webp", "camera.bmp", "rocket_exif6.jpg")
EXT = {"jpeg": "jpg", "png": "png"}


def _load(name: str) -> np.ndarray:
    import skimage.data as skd

    loader: Callable[[], Any] = getattr(skd, SAMPLES[name][0])
    arr = loader()
    if isinstance(arr, tuple):  # stereo_motorcycle -> (left, right, disparity)
        arr = arr[0]
    return np.ascontiguousarray(arr)


def _img(name: str) -> Image.Image:
    arr = _load(name)
    return Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")


def _encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=kw.pop("quality", 90), **kw)
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=6, **kw)
    else:
        img.save(buf, fmt.upper(), **kw)
    return buf.getvalue()


def _record(file: str, names: Sequence[str], fmt: str, img: Image.Image, frames: int = 1,
            orientation: int | None = None, upright: Image.Image | None = None) -> PhotoRecord:
    up = upright or img
    cap_en = "; ".join(SAMPLES[n][1] for n in names)
    cap_zh = "；".join(SAMPLES[n][2] for n in names)
    tags: list[str] = []
    for n in names:
        tags += [t for t in SAMPLES[n][3] if t not in tags]
    return PhotoRecord(file=file, sources=[SAMPLES[n][0] for n in names], caption_en=cap_en,
                       caption_zh=cap_zh, tags=tags, format=fmt, frames=frames, width=img.width,
                       height=img.height, exif_orientation=orientation, upright_width=up.width,
                       upright_height=up.height)


def upright_rocket() -> Image.Image:
    """The true upright content of rocket_exif6.jpg."""
    return _img("rocket")


def make_photos(out_dir: str | Path, names: Sequence[str] | None = None, extras: bool = True, *,
                sidecar: str | Path | None = SIDECAR) -> list[Path]:
    """Write scikit-image sample photos into `out_dir`; `names` picks plain photos from PLAIN
    (default: all), `extras` adds the loader-exercising files (multi-page TIFF, WebP, BMP, EXIF-6
    JPEG). Writes `photos.jsonl` unless `sidecar` is None. Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(PLAIN) if names is None else list(names)
    for n in chosen:
        if n not in PLAIN:
            raise ValueError(f"unknown photo {n!r}: choose from {sorted(PLAIN)}")
    files: list[Path] = []
    records: list[PhotoRecord] = []

    def write(fname: str, data: bytes, rec: PhotoRecord) -> None:
        p = out / fname
        p.write_bytes(data)
        files.append(p)
        records.append(rec)

    for n in chosen:
        fmt = PLAIN[n]
        img = _img(n)
        fname = f"{n}.{EXT[fmt]}"
        write(fname, _encode(img, fmt), _record(fname, [n], fmt, img))

    if extras:
        # multi-page TIFF, two frames of different sizes
        f0, f1 = _img("moon"), _img("coins")
        buf = io.BytesIO()
        f0.save(buf, "TIFF", save_all=True, append_images=[f1], compression="tiff_deflate")
        rec = _record("moon_coins.tif", ["moon", "coins"], "tiff", f0, frames=2)
        write("moon_coins.tif", buf.getvalue(), rec)
        # WebP
        img = _img("motorcycle")
        write("motorcycle.webp", _encode(img, "webp", quality=85, method=4),
              _record("motorcycle.webp", ["motorcycle"], "webp", img))
        # BMP
        img = _img("camera")
        write("camera.bmp", _encode(img, "bmp"), _record("camera.bmp", ["camera"], "bmp", img))
        # JPEG stored sideways with EXIF Orientation 6 (display = rotate stored pixels 90 deg CW)
        upright = upright_rocket()
        stored = upright.transpose(Image.Transpose.ROTATE_90)  # 90 deg counter-clockwise
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = 6
        write("rocket_exif6.jpg", _encode(stored, "jpeg", quality=92, exif=exif.tobytes()),
              _record("rocket_exif6.jpg", ["rocket"], "jpeg", stored, orientation=6, upright=upright))

    if sidecar is not None:
        write_sidecar(out, sidecar, records)
    return files


def read_photos(path: str | Path) -> list[PhotoRecord]:
    return read_sidecar(path, SIDECAR, PhotoRecord)
