"""DICOM input: decode the pixels the way a viewer shows them, and read the tags that say what the
image is.

A CT slice means nothing to an image model trained on photos, but its tags (modality, body part,
study and series description) say exactly what it shows. So each page gets:

- pixels: the modality LUT (rescale slope / intercept), then the file's VOI LUT or window centre /
  width (per frame for enhanced multi-frame files), else a robust percentile window; MONOCHROME1
  inverted; palette and YBR colour converted to RGB; 8 to 32-bit data scaled to 8 bits. Overlays are
  not burnt in. Every frame of a multi-frame file is a page. "Original-image pixels" of a DICOM page
  are the pixels of this windowed image (same width and height as the stored matrix).
- tags: the descriptive ones become filterable metadata and a searchable caption (with plain English
  and Chinese words for modality codes and body parts, so "MRI of the knee" and "膝关节磁共振" find
  ``MR`` + ``KNEE``); the study date becomes a date; patient name, ID, birth date (and address,
  phone, referring physician) become the page's personal-data findings (``ImageRecord.pii``, kind
  ``person_name`` / ``patient_id`` / ``birth_date`` / ``address`` / ``phone``, ``field`` = the tag):
  stored, never indexed as text, vectors or filter values, and masked by
  :func:`indexing.pii.mask_record` like every other finding for principals without clearance.

Compressed transfer syntaxes decode through pydicom's plugins: pylibjpeg (+ -libjpeg, -openjpeg,
-rle) and Pillow. python-gdcm, when a user has it installed, is only asked for a transfer syntax
no other plugin decodes: its bundled OpenJPEG prints errors about a damaged JPEG 2000 codestream
straight to the terminal, past any handler. A file no installed plugin can decode fails with one
line naming the transfer syntax and the package that would add it.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import ImgragError
from .models import DateMention, FieldPiiKind, FileInfo, PiiFinding, PiiKind
from .regular import open_regular

log = logging.getLogger(__name__)

DICOM_EXTS = {".dcm", ".dicom"}
_MAX_VALUE_CHARS = 200

# (tag keyword, metadata key): descriptive tags, searchable and filterable.
DESCRIPTIVE_TAGS: tuple[tuple[str, str], ...] = (
    ("Modality", "modality"),
    ("BodyPartExamined", "body_part"),
    ("StudyDescription", "study_description"),
    ("SeriesDescription", "series_description"),
    ("ProtocolName", "protocol"),
    ("ViewPosition", "view_position"),
    ("Laterality", "laterality"),
    ("ImageLaterality", "image_laterality"),
    ("InstitutionName", "institution"),
    ("InstitutionalDepartmentName", "department"),
    ("StationName", "station"),
    ("Manufacturer", "manufacturer"),
    ("ManufacturerModelName", "model"),
    ("StudyDate", "study_date"),
    ("SeriesNumber", "series_number"),
    ("InstanceNumber", "instance_number"),
)
# Identifiers: filterable and link keys (images and reports of one study), not words to describe it.
ID_TAGS: tuple[tuple[str, str], ...] = (
    ("AccessionNumber", "accession"),
    ("StudyInstanceUID", "study_uid"),
    ("SeriesInstanceUID", "series_uid"),
    ("SOPInstanceUID", "sop_uid"),
)
# Personal data → the kind of finding it is: stored for those cleared to see it, never indexed.
PERSONAL_TAGS: tuple[tuple[str, PiiKind | FieldPiiKind], ...] = (
    ("PatientName", "person_name"),
    ("PatientID", "patient_id"),
    ("PatientBirthDate", "birth_date"),
    ("OtherPatientIDs", "patient_id"),
    ("PatientAddress", "address"),
    ("PatientTelephoneNumbers", "phone"),
    ("ReferringPhysicianName", "person_name"),
)

# Modality codes (DICOM PS3.3 C.7.3.1.1.1) → words people search with, English and Chinese.
MODALITY_WORDS: dict[str, tuple[str, str]] = {
    "CT": ("CT computed tomography scan", "CT 计算机断层扫描"),
    "MR": ("MRI magnetic resonance imaging", "磁共振 核磁共振 MRI"),
    "CR": ("X-ray radiograph (computed radiography)", "X光 X线 平片 拍片"),
    "DX": ("X-ray radiograph (digital radiography)", "X光 X线 平片 拍片"),
    "DR": ("X-ray radiograph (digital radiography)", "X光 X线 平片 拍片"),
    "RG": ("X-ray radiograph", "X光 X线 平片"),
    "MG": ("mammogram mammography X-ray", "乳腺钼靶 乳腺X线"),
    "US": ("ultrasound sonography", "超声 B超 彩超"),
    "NM": ("nuclear medicine scintigraphy", "核医学 核素显像"),
    "PT": ("PET positron emission tomography", "PET 正电子发射断层扫描"),
    "XA": ("X-ray angiography", "X线血管造影"),
    "RF": ("fluoroscopy X-ray", "X线透视 造影"),
    "IO": ("intra-oral dental X-ray", "口腔X线 牙片"),
    "PX": ("panoramic dental X-ray", "全景牙片 口腔全景"),
    "ES": ("endoscopy", "内镜 内窥镜"),
    "OP": ("ophthalmic photography fundus", "眼底照相"),
    "OPT": ("optical coherence tomography", "光学相干断层扫描"),
    "SM": ("slide microscopy pathology", "病理切片 显微镜"),
    "XC": ("external camera photograph", "外部照相"),
    "RTDOSE": ("radiotherapy dose distribution", "放疗剂量分布"),
    "RTIMAGE": ("radiotherapy portal image", "放疗验证片"),
    "SEG": ("segmentation mask", "分割 掩膜"),
    "OT": ("other image", "其他影像"),
    "SC": ("secondary capture image", "二次采集图像"),
}
# Body parts (BodyPartExamined defined terms and words in descriptions) → English, Chinese.
BODY_PART_WORDS: dict[str, tuple[str, str, str]] = {  # name, synonyms, Chinese
    "HEAD": ("head", "", "头部 头颅"),
    "BRAIN": ("brain", "head", "脑 头颅"),
    "SKULL": ("skull", "head", "颅骨 头颅"),
    "NECK": ("neck", "", "颈部"),
    "CHEST": ("chest", "thorax lungs", "胸部 胸片 肺"),
    "THORAX": ("chest", "thorax lungs", "胸部 肺"),
    "LUNG": ("lung", "chest", "肺 胸部"),
    "HEART": ("heart", "cardiac", "心脏"),
    "BREAST": ("breast", "", "乳腺 乳房"),
    "ABDOMEN": ("abdomen", "", "腹部"),
    "LIVER": ("liver", "abdomen", "肝脏 腹部"),
    "KIDNEY": ("kidney", "renal", "肾脏"),
    "PELVIS": ("pelvis", "", "骨盆 盆腔"),
    "SPINE": ("spine", "", "脊柱"),
    "CSPINE": ("cervical spine", "neck", "颈椎"),
    "TSPINE": ("thoracic spine", "", "胸椎"),
    "LSPINE": ("lumbar spine", "lower back", "腰椎"),
    "SHOULDER": ("shoulder", "", "肩关节 肩部"),
    "ELBOW": ("elbow", "", "肘关节"),
    "WRIST": ("wrist", "", "腕关节 手腕"),
    "HAND": ("hand", "", "手部 手"),
    "HIP": ("hip", "", "髋关节"),
    "KNEE": ("knee", "", "膝关节 膝盖"),
    "ANKLE": ("ankle", "", "踝关节 脚踝"),
    "FOOT": ("foot", "", "足部 脚"),
    "EXTREMITY": ("extremity", "limb", "四肢"),
    "LEG": ("leg", "", "腿部 下肢"),
    "ARM": ("arm", "", "手臂 上肢"),
    "SINUS": ("paranasal sinuses", "", "鼻窦"),
    "JAW": ("jaw", "mandible", "颌骨"),
    "TEETH": ("teeth", "dental", "牙齿"),
    "EYE": ("eye", "", "眼"),
    "PROSTATE": ("prostate", "", "前列腺"),
    "THYROID": ("thyroid", "", "甲状腺"),
    "WHOLEBODY": ("whole body", "", "全身"),
}
_BODY_ALIASES = {"LUNGS": "LUNG", "CERVICAL": "CSPINE", "LUMBAR": "LSPINE", "CARDIAC": "HEART", "RENAL": "KIDNEY",
                 "MAMMO": "BREAST", "THORACIC": "TSPINE", "ABD": "ABDOMEN", "HEADNECK": "NECK"}
VIEW_WORDS: dict[str, tuple[str, str]] = {
    "LL": ("lateral view", "侧位"),
    "RL": ("lateral view", "侧位"),
    "LAT": ("lateral view", "侧位"),
    "LATERAL": ("lateral view", "侧位"),
    "PA": ("PA frontal view", "后前位 正位"),
    "AP": ("AP frontal view", "前后位 正位"),
    "OBL": ("oblique view", "斜位"),
    "CC": ("craniocaudal view", "头尾位"),
    "MLO": ("mediolateral oblique view", "内外斜位"),
    "AXIAL": ("axial", "轴位 横断面"),
    "SAG": ("sagittal", "矢状位"),
    "SAGITTAL": ("sagittal", "矢状位"),
    "COR": ("coronal", "冠状位"),
    "CORONAL": ("coronal", "冠状位"),
}
SIDE_WORDS = {"L": ("left", "左侧"), "R": ("right", "右侧"), "B": ("both sides", "双侧")}
# How a Chinese exam name is written, run together: side + body part + (view) + modality —
# "右膝关节磁共振", "左手正位X光片", "腰椎CT". The caption carries it beside the separate words: the
# full-text index matches Chinese by character pairs, and "右膝" or "节磁" only occur run together.
_SIDE_SHORT = {"L": "左", "R": "右", "B": "双侧"}
_EXAM_ZH = {"CT": "CT", "MR": "磁共振", "CR": "X光片", "DX": "X光片", "DR": "X光片", "RG": "X光片", "MG": "钼靶",
            "US": "超声", "XA": "血管造影", "RF": "造影", "PT": "PET", "NM": "核素显像"}
_PART_SHORT = {"HAND": "手", "FOOT": "足"}  # "左手正位X光片", not "左手部…"

# Which package decodes which transfer syntax (pydicom's plugins), for the "missing decoder" hint.
_JPEG = "pylibjpeg pylibjpeg-libjpeg"
_J2K = "pylibjpeg pylibjpeg-openjpeg"
_DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": _JPEG, "1.2.840.10008.1.2.4.51": _JPEG, "1.2.840.10008.1.2.4.57": _JPEG,
    "1.2.840.10008.1.2.4.70": _JPEG, "1.2.840.10008.1.2.4.80": _JPEG, "1.2.840.10008.1.2.4.81": _JPEG,
    "1.2.840.10008.1.2.4.90": _J2K, "1.2.840.10008.1.2.4.91": _J2K,
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg", "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}


def is_dicom(path: Path) -> bool:
    """``.dcm`` / ``.dicom``, or any other file with the ``DICM`` marker at byte 128 (PACS exports
    are often files without an extension)."""
    if path.suffix.lower() in DICOM_EXTS:
        return True
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        f, _ = open_regular(path)  # never opens a pipe or a device to look, even one swapped in
        with f:
            head = f.read(132)
    except OSError:
        return False
    return has_marker(head)


def has_marker(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


# Signatures of the formats the image loader reads: a PNG named .dcm is read as the PNG it is.
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF8", b"BM", b"RIFF")


def looks_like_dicom(head: bytes, path: Path) -> bool:
    """The content decides: the ``DICM`` marker, or a ``.dcm`` / ``.dicom`` name on bytes that are no
    image format (DICOM written without its 128-byte preamble is common)."""
    if has_marker(head):
        return True
    return path.suffix.lower() in DICOM_EXTS and not head.startswith(_IMAGE_MAGIC)


class DicomError(ImgragError):
    """Why a DICOM file or frame cannot be indexed, without the path (the loader adds it).
    ``whole_file``: the same would happen on every frame (no decoder), so one line says it."""

    def __init__(self, message: str, hint: str = "", *, whole_file: bool = False) -> None:
        super().__init__(message, hint)
        self.whole_file = whole_file


def _need_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as e:  # pragma: no cover - a dependency; kept for trimmed installs
        raise ImgragError("reading DICOM needs pydicom, which is not installed", "pip install pydicom pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg") from e
    # pydicom logs every failing decoder plugin with a traceback at ERROR; the failure reaches the
    # user as one ImgragError line instead (the details stay in imgrag's debug log).
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    _gdcm_last()
    return pydicom


@functools.cache
def _gdcm_last() -> None:
    """Take gdcm off every transfer syntax another installed plugin decodes (see the module doc)."""
    try:
        from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
    except ImportError:  # pragma: no cover - pydicom moved it
        return
    for decoder, *_ in _PIXEL_DATA_DECODERS.values():
        others = [p for p in decoder.available_plugins if p != "gdcm"]
        if "gdcm" in decoder.available_plugins and others:
            decoder.remove_plugin("gdcm")


def read_dataset(f: BinaryIO, path: Path) -> Any:
    """The dataset of an open file, pixel data included; one DicomError for anything that is not a
    readable DICOM file."""
    pydicom = _need_pydicom()
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every non-conformant value; we report failures
        try:
            try:
                f.seek(0)
                return pydicom.dcmread(f)
            except InvalidDicomError:
                if path.suffix.lower() not in DICOM_EXTS:
                    raise
                # Files written without the 128-byte preamble are common; the extension vouches for them,
                # as long as what is read looks like DICOM at all.
                f.seek(0)
                ds = pydicom.dcmread(f, force=True)
                if not any(k in ds for k in ("SOPClassUID", "Modality", "Rows", "PixelData", "StudyInstanceUID")):
                    raise InvalidDicomError("no DICOM elements found")
                return ds
        except InvalidDicomError as e:
            raise DicomError(f"not a DICOM file ({_one_line(e)})", "check the file type") from e
        except MemoryError as e:
            raise DicomError("too large to read in memory", "lower IMGRAG_MAX_FILE_MB or re-export it smaller") from e
        except Exception as e:  # hostile bytes reach every corner of the parser: one bad file, not a crash
            log.debug("cannot read %s", path, exc_info=True)
            raise DicomError(f"damaged or truncated DICOM file ({type(e).__name__}: {_one_line(e)})", "re-export it from the modality or PACS") from e


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(value: Any) -> str:
    """A tag value as one line of text: multi-values joined, control characters dropped, capped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = ", ".join(_clean(v) for v in value)
    else:
        text = str(value)
    text = "".join(ch if ch.isprintable() else " " for ch in text.replace("^", " "))
    text = " ".join(text.split())
    return text[:_MAX_VALUE_CHARS]


def _tag(ds: Any, keyword: str) -> str:
    try:
        return _clean(ds.get(keyword))
    except Exception:  # a value pydicom cannot convert (bad VR): treat as absent
        return ""


def _da(text: str) -> date | None:
    """A DICOM DA value (YYYYMMDD, or YYYY.MM.DD from old files)."""
    digits = re.sub(r"\D", "", text)
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _words(*texts: str) -> list[str]:
    return [w for t in texts for w in re.split(r"[^A-Za-z0-9]+", t.upper()) if w]


def describe(meta: dict[str, str]) -> str:
    """The caption of a DICOM page: what it is in plain words, English then Chinese, from its tags.

    ``MR`` + ``KNEE`` + ``SAG`` + ``L`` → "MRI magnetic resonance imaging of the left knee, sagittal —
    MR KNEE LEFT; SAG PD FS · 磁共振 核磁共振 MRI 左侧 膝关节 膝盖 矢状位 左膝关节磁共振"."""
    modality = meta.get("modality", "").upper()
    mod_en, mod_zh = MODALITY_WORDS.get(modality, (modality, ""))
    descriptive = [meta.get(k, "") for k in ("body_part", "study_description", "series_description", "protocol")]
    parts: list[str] = []
    for w in _words(*descriptive):
        key = _BODY_ALIASES.get(w, w)
        if key in BODY_PART_WORDS and key not in parts:
            parts.append(key)
    if any(p.endswith("SPINE") and p != "SPINE" for p in parts):
        parts = [p for p in parts if p != "SPINE"]  # "lumbar spine", not "lumbar spine and spine"
    views: list[str] = []
    for w in [meta.get("view_position", "").upper(), *_words(meta.get("series_description", ""), meta.get("protocol", ""))]:
        if w in VIEW_WORDS and VIEW_WORDS[w] not in [VIEW_WORDS[v] for v in views]:
            views.append(w)
    side = (meta.get("image_laterality") or meta.get("laterality") or "").upper()[:1]
    side_en, side_zh = SIDE_WORDS.get(side, ("", ""))
    en = mod_en or "medical image"
    if parts:
        en += " of the " + " ".join(filter(None, [side_en, " and ".join(BODY_PART_WORDS[p][0] for p in parts)]))
        synonyms = " ".join(BODY_PART_WORDS[p][1] for p in parts if BODY_PART_WORDS[p][1])
        en += f" ({synonyms})" if synonyms else ""
    if views:
        en += ", " + ", ".join(VIEW_WORDS[v][0] for v in views)
    details = "; ".join(dict.fromkeys(d for d in descriptive[1:] if d))
    zh = " ".join(filter(None, [mod_zh, side_zh, *(BODY_PART_WORDS[p][2] for p in parts), *(VIEW_WORDS[v][1] for v in views)]))
    if parts and modality in _EXAM_ZH:
        view_zh = VIEW_WORDS[views[0]][1].split()[-1] if views and modality in ("CR", "DX", "DR", "RG") else ""
        part_zh = _PART_SHORT.get(parts[0]) or BODY_PART_WORDS[parts[0]][2].split()[0]
        zh += " " + _SIDE_SHORT.get(side, "") + part_zh + view_zh + _EXAM_ZH[modality]
    out = en + (f" — {details}" if details else "")
    return out + (f" · {zh}" if zh else "")


def file_info(ds: Any) -> FileInfo:
    """Tags → metadata, caption, study date and personal-data findings."""
    meta: dict[str, str] = {}
    for keyword, key in (*DESCRIPTIVE_TAGS, *ID_TAGS):
        v = _tag(ds, keyword)
        if v:
            meta[key] = v
    dates: list[DateMention] = []
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        d = _da(_tag(ds, keyword))
        if d is not None:
            dates.append(DateMention(text=f"{keyword} {d.isoformat()}", date=d, precision="day"))
            if "study_date" not in meta or keyword == "StudyDate":
                meta["study_date"] = d.isoformat()
            break
    pii = [
        PiiFinding(kind=kind, text=v, start=0, end=len(v), field=keyword)
        for keyword, kind in PERSONAL_TAGS
        if (v := _tag(ds, keyword))
    ]
    return FileInfo(caption=describe(meta), meta=meta, dates=dates, pii=pii, quality="photo")


# -- pixels -----------------------------------------------------------------------------------
def _seq_item(ds: Any, keyword: str) -> Any | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _frame_group(ds: Any, frame: int, keyword: str) -> Any | None:
    """A functional group macro (enhanced multi-frame files): the frame's own, else the shared one."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and frame < len(per):
        item = _seq_item(per[frame], keyword)
        if item is not None:
            return item
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    return _seq_item(shared, keyword) if shared is not None else None


def _first_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        v = v[0] if len(v) else None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _rescale(arr: np.ndarray, ds: Any, frame: int) -> np.ndarray:
    """The modality LUT: stored values → meaningful units (HU for CT)."""
    from pydicom.pixels import apply_modality_lut

    group = _frame_group(ds, frame, "PixelValueTransformationSequence")
    src = group if group is not None and "RescaleSlope" in group else ds
    slope = _first_float(src.get("RescaleSlope"))
    intercept = _first_float(src.get("RescaleIntercept"))
    if "ModalityLUTSequence" in ds and group is None:
        try:
            return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        except Exception:  # a broken LUT: fall back to the stored values
            log.debug("modality LUT not applied", exc_info=True)
    out = arr.astype(np.float64)
    if slope is not None and slope != 0:
        out = out * slope
    if intercept is not None:
        out = out + intercept
    if ds.get("Modality") == "RTDOSE" and (g := _first_float(ds.get("DoseGridScaling"))):
        out = out * g
    return out


def _window_params(ds: Any, frame: int) -> tuple[float, float, str] | None:
    group = _frame_group(ds, frame, "FrameVOILUTSequence")
    for src in (group, ds):
        if src is None:
            continue
        c, w = _first_float(src.get("WindowCenter")), _first_float(src.get("WindowWidth"))
        if c is not None and w is not None and w > 0:
            func = str(src.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            return c, w, func
    return None


def _window(x: np.ndarray, c: float, w: float, func: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT and SIGMOID, to 0..1."""
    if func == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if func == "LINEAR_EXACT":
        return np.clip((x - (c - w / 2.0)) / w, 0.0, 1.0)
    if w <= 1.0:
        return (x > c - 0.5).astype(np.float64)
    return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0)


def _percentile_window(x: np.ndarray, padding: float | None) -> np.ndarray:
    """No window in the file: 0.5th to 99.5th percentile of the real pixels (padding excluded)."""
    vals = x[x != padding] if padding is not None else x
    if vals.size == 0:
        vals = x
    lo, hi = np.percentile(vals, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(vals.min()), float(vals.max())
    if hi <= lo:
        return np.zeros_like(x) if lo <= 0 else np.ones_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _voi_lut(arr: np.ndarray, ds: Any) -> np.ndarray | None:
    item = _seq_item(ds, "VOILUTSequence")
    if item is None or "LUTDescriptor" not in item or "LUTData" not in item:
        return None
    from pydicom.pixels import apply_voi

    try:
        out = np.asarray(apply_voi(arr, ds), dtype=np.float64)
        data = np.asarray(item.LUTData, dtype=np.float64)
    except Exception:
        log.debug("VOI LUT not applied", exc_info=True)
        return None
    lo, hi = float(data.min()), float(data.max())
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0) if hi > lo else None


def render_frame(arr: np.ndarray, ds: Any, frame: int = 0) -> np.ndarray:
    """One decoded frame → the RGB uint8 image a viewer would show."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB (pydicom already converted YBR)
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        rgb = arr[..., :3].astype(np.float64)
        if arr.dtype != np.uint8 or bits > 8:
            rgb = rgb / float(2 ** min(bits, 32) - 1)
        else:
            rgb = rgb / 255.0
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = np.asarray(apply_color_lut(arr, ds), dtype=np.float64)
        desc = ds.get("RedPaletteColorLookupTableDescriptor")
        bits = int(desc[2]) if desc is not None and len(desc) > 2 and int(desc[2]) in (8, 16) else (16 if rgb.max() > 255 else 8)
        return (np.clip(rgb / float(2**bits - 1), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    grey = arr[..., 0] if arr.ndim == 3 else arr
    if int(ds.get("BitsAllocated") or 8) == 1:  # segmentation masks: 0/1
        out = np.clip(grey.astype(np.float64), 0.0, 1.0)
    else:
        values = _rescale(grey, ds, frame)
        out = None
        params = _window_params(ds, frame)
        if params is None:
            out = _voi_lut(grey, ds)
        if out is None and params is not None:
            out = _window(values, *params)
        if out is None:
            padding = _first_float(ds.get("PixelPaddingValue"))
            out = _percentile_window(values, _rescale(np.array([padding]), ds, frame)[0] if padding is not None else None)
    inverse = photometric == "MONOCHROME1" or (
        str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE" and photometric != "MONOCHROME1"
    )
    if inverse:
        out = 1.0 - out
    g8 = (out * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g8[..., None], 3, axis=2)


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _decode_error(path: Path, ds: Any, e: BaseException) -> DicomError:
    """One line for a frame that cannot be decoded: the transfer syntax and what would decode it."""
    log.debug("cannot decode %s", path, exc_info=e)
    ts = _transfer_syntax(ds)
    name = getattr(ts, "name", None) or str(ts or "unknown transfer syntax")
    text = _one_line(e, 240)
    if ts is not None:
        try:
            from pydicom.pixels.decoders.base import get_decoder

            decoder = get_decoder(ts)
        except NotImplementedError:
            return DicomError(
                f"no decoder exists for {name} pixel data",
                "convert the file to an uncompressed or JPEG / JPEG 2000 transfer syntax (e.g. with dcmtk's dcmconv or gdcmconv)",
                whole_file=True,
            )
        except Exception:
            decoder = None
        if decoder is not None and not decoder.is_available:
            pkgs = _DECODER_PACKAGES.get(str(ts), "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle")
            return DicomError(f"no installed decoder for {name} pixel data", f"pip install {pkgs}", whole_file=True)
    if "no (0002,0010)" in text or "Transfer Syntax UID" in text:
        return DicomError(
            "the DICOM file names no transfer syntax, so its pixels cannot be read", "re-export it from the modality or PACS",
            whole_file=True,
        )
    if "less than expected" in text or "truncated" in text.lower():
        return DicomError("the pixel data is truncated", "re-copy or re-export the file")
    return DicomError(f"{name} pixel data cannot be decoded ({text})", "the file is damaged or not conformant; re-export it from the modality or PACS")


def _n_frames(ds: Any) -> int:
    try:
        n = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        n = 1
    return max(1, n)


class DicomFile:
    """An opened DICOM image: its tags as :class:`FileInfo`, its size, and its frames on demand."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.path = path
        self.ds = ds = read_dataset(f, path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
                if not has_pixels:
                    sop = ds.get("SOPClassUID")
                    what = getattr(sop, "name", None) or "no image"
                    raise DicomError(f"DICOM file without pixel data ({what})", "only DICOM images can be indexed; skip this file")
                try:
                    self.rows, self.cols = int(ds.Rows), int(ds.Columns)
                except (AttributeError, TypeError, ValueError) as e:
                    raise DicomError("damaged DICOM header (no valid Rows / Columns)", "re-export it from the modality or PACS") from e
                self.declared_frames = self.n_frames = _n_frames(ds)
                self._count_native_frames()
                self.info = file_info(ds)
        except DicomError:
            raise
        except Exception as e:  # a tag pydicom cannot parse, read lazily here
            log.debug("cannot read %s", path, exc_info=True)
            raise DicomError(f"damaged DICOM header ({type(e).__name__}: {_one_line(e)})", "re-export it from the modality or PACS") from e

    def _count_native_frames(self) -> None:
        """Uncompressed pixel data shorter than the frames the header declares: index the frames
        it holds (pydicom refuses every frame of such a file), the loader reports the rest."""
        ds = self.ds
        ts = _transfer_syntax(ds)
        if self.n_frames < 2 or ts is None or getattr(ts, "is_compressed", True) or "PixelData" not in ds:
            return
        frame_bits = self.rows * self.cols * int(ds.get("SamplesPerPixel") or 1) * int(ds.get("BitsAllocated") or 8)
        have = len(ds.PixelData) * 8 // frame_bits if frame_bits > 0 else 0
        if 0 < have < self.n_frames:
            self.n_frames = ds.NumberOfFrames = have

    def frames(self, only_page: int | None = None) -> Iterator[tuple[int, np.ndarray | DicomError]]:
        """``(page number, RGB uint8 image)`` for every frame, or just ``only_page`` (1-based); a frame
        that cannot be decoded comes as its error (the next one may well decode)."""
        from pydicom.pixels import pixel_array

        n, ds = self.n_frames, self.ds
        wanted = range(n) if only_page is None else [only_page - 1] if 0 < only_page <= n else []
        for i in wanted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    arr = pixel_array(ds, index=i) if n > 1 else pixel_array(ds)
                except MemoryError:
                    yield i + 1, DicomError("a frame too large to decode in memory", "lower IMGRAG_MAX_PIXELS or re-export it smaller", whole_file=True)
                    continue
                except Exception as e:  # pydicom raises RuntimeError / ValueError / AttributeError / plugin errors
                    yield i + 1, _decode_error(self.path, ds, e)
                    continue
                try:
                    image = render_frame(np.asarray(arr), ds, i)
                except Exception as e:
                    log.debug("cannot display %s frame %d", self.path, i + 1, exc_info=True)
                    yield i + 1, DicomError(f"pixels cannot be displayed ({type(e).__name__}: {_one_line(e)})", "re-export it from the modality or PACS")
                    continue
            yield i + 1, image
