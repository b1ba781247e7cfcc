"""Links between an image and the documents that explain it: an X-ray and its report, a defect photo
and the SOP page for its part ("joint retrieval").

Two pages are linked when one is an *image* (a DICOM frame or a photo) and the other a *document*
(any other page), they come from different files, and they share a link key:

- ``case``: a ``.imgrag-case`` file in their folder or a folder above (its first line names the
  case; empty: the folder's path), a sidecar, or ``--link CASE`` / ``--meta case=CASE``;
- ``study_uid`` / ``accession``: DICOM tags of the image; on a report, a value printed after
  "Accession No." / "检查号" (read off the OCR text) or given as metadata;
- ``part_number`` / ``defect_code``: printed after "Part No." / "P/N" / "零件号" / "Defect code" /
  "缺陷代码" on the photo's label or the SOP sheet, or given as metadata;
- ``stem``: their files lie in one folder and one's name without its extension is the other's, or
  the start of the other's up to a dot (``study07.dcm``, ``study07.pdf``, ``study07.report.png``; not
  ``IMG_2023.01.05.jpg`` and ``IMG_2023.02.07.pdf``).

A sidecar ``<file name>.imgrag.json`` (a JSON object of strings) adds key/values to one file's
``file_meta``, link keys included. Links are computed at index time, over the pages indexed in the
run and every page already in the index that shares a key with them, and stored on both sides
(``ImageRecord.links``). Readers only ever see links to pages they may read (:func:`visible_links`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from .limits import MAX_META_VALUE_CHARS
from .loader import outside_roots
from .pii import mask_name
from .regular import NotRegularFile, open_regular
from .stores.base import Filters, ImageRecord, Link, LinkKind, MetadataUpdate, Principal

if TYPE_CHECKING:
    from .stores.base import IndexStore

log = logging.getLogger(__name__)

LINK_KEYS: tuple[str, ...] = ("case", "study_uid", "accession", "part_number", "defect_code")
CASE_MARKER = ".imgrag-case"
SIDECAR_SUFFIX = ".imgrag.json"
MAX_LINKS = 100  # per page: a report of a 300-slice series links its first 100 slices
MAX_GROUP = 500  # pages read per shared key
_MAX_SIDECAR_BYTES = 64 * 1024
_MAX_MARKER_DEPTH = 12

_VALUE = r"([A-Za-z0-9][A-Za-z0-9_/.\-]*[A-Za-z0-9])"
_SEP = r"[^\S\n]*(?:[:：#=][^\S\n]*)?"  # a label and its value stay on one line
READ_OFF: dict[str, re.Pattern[str]] = {
    "accession": re.compile(
        r"(?:accession\s*(?:no\b\.?|number|num\b\.?|#)?|acc\.?\s*no\b\.?|检查号|检查编号|影像号|登记号)" + _SEP + _VALUE,
        re.I,
    ),
    "part_number": re.compile(
        r"(?:part\s*(?:no\b\.?|number|num\b\.?|#)|\bp\s*/\s*n\b|零件号|零件编号|部件号|物料号|料号)" + _SEP + _VALUE,
        re.I,
    ),
    "defect_code": re.compile(r"(?:defect\s*code|缺陷代码|缺陷编码|不良代码)" + _SEP + _VALUE, re.I),
}


class LinkedItem(BaseModel):
    """A link as a reader sees it: the other page, what it is, why linked, where it comes from."""

    image_id: str = Field(description="the linked image or page; pass it to get_metadata, crop_region, ocr_region")
    kind: LinkKind = Field(description="image (a picture: DICOM or photo) or document (a report, an SOP page, ...)")
    why: str = Field(description="what links them, e.g. accession=A123, study_uid=..., part_number=..., stem, case=...")
    file: str = Field(description="the linked page's file name")
    page: int = Field(description="its page number in that file")


def norm_value(value: str) -> str:
    """Key values compare after NFKC, upper case and without spaces ("ａｃｃ 12" == "ACC12")."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper()


def read_off(text: str) -> dict[str, str]:
    """Link keys printed on a page: the first value after each known label."""
    flat = unicodedata.normalize("NFKC", text)
    out: dict[str, str] = {}
    for key, pat in READ_OFF.items():
        m = pat.search(flat)
        if m:
            out[key] = norm_value(m.group(1))
    return out


@lru_cache(maxsize=4096)
def _case_of(folder: Path, roots: tuple[Path, ...] | None = None) -> str | None:
    """The case a folder belongs to: the nearest ``.imgrag-case`` marker at or above it (and, with
    ``roots``, inside them: a server reads nothing outside the folders it may index)."""
    for depth, d in enumerate([folder, *folder.parents]):
        if depth > _MAX_MARKER_DEPTH:
            break
        marker = d / CASE_MARKER
        if roots is not None and outside_roots(marker, list(roots)):
            if outside_roots(d, list(roots)):
                break
            continue
        try:
            # opened without blocking, then checked: a marker swapped for a named pipe is no marker
            # (checking first, then opening, left a moment where open() blocked the run)
            fh, _ = open_regular(marker)
            with fh:  # its first 200 characters: not the whole of a huge file
                head = fh.read(1024).decode("utf-8", errors="replace")
        except OSError:  # none here, not a regular file, or unreadable
            continue
        first = head[:200].strip().splitlines()
        return (first[0].strip() if first and first[0].strip() else str(d))[:200]
    return None


def _sidecar(path: Path, roots: Sequence[Path] | None = None) -> dict[str, str]:
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if outside_roots(side, roots):  # a link out of the index roots is not read
        return {}
    try:
        # opened without blocking, then checked (a sidecar swapped for a named pipe after a check
        # used to block the run in open()); anything but a regular file is no sidecar
        fh, st = open_regular(side)
        with fh:
            if st.st_size > _MAX_SIDECAR_BYTES:
                return {}
            raw = fh.read(_MAX_SIDECAR_BYTES + 1)
        if len(raw) > _MAX_SIDECAR_BYTES:  # grew since it was opened
            return {}
        data = json.loads(raw.decode("utf-8"))
    except OSError as e:
        if isinstance(e, (FileNotFoundError, NotADirectoryError, NotRegularFile)) or e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            return {}  # no sidecar; a file name of 244+ bytes: no sidecar name can be longer
        log.warning("sidecar %s ignored: %s", side, e)
        return {}
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, or nested too deep for the parser
        log.warning("sidecar %s ignored: %s", side, e)
        return {}
    if not isinstance(data, dict):
        log.warning("sidecar %s ignored: not a JSON object", side)
        return {}
    return {str(k)[:100]: str(v)[:200] for k, v in data.items() if isinstance(v, (str, int, float)) and str(k).strip()}


def file_keys(path: str | Path, roots: Sequence[Path] | None = None) -> dict[str, str]:
    """What a file's surroundings say about it: its case folder and its sidecar (the sidecar wins);
    with ``roots`` (a server's index roots), only what lies inside them."""
    p = Path(path)
    out: dict[str, str] = {}
    case = _case_of(p.parent, tuple(roots) if roots is not None else None)
    if case:
        out["case"] = case
    out.update(_sidecar(p, roots))
    return out


@lru_cache(maxsize=4096)
def _stems_in(folder: str) -> dict[str, int] | None:
    """How many files of a folder have each stem (see :func:`_stems`); None: unreadable."""
    counts: dict[str, int] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    for name in names:
        if not name.endswith(SIDECAR_SUFFIX) and not name.startswith("."):
            for stem in _stems(name):
                counts[stem] = counts.get(stem, 0) + 1
    return counts


def _base(name: str) -> str:
    """A file name without its extension."""
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def _stems(name: str) -> list[str]:
    """The stems a file answers to: its name without the extension, then that cut at each dot
    from the right (``a.report.png`` → ``a.report``, ``a``)."""
    base = _base(name)
    out = [base]
    while "." in base:
        base = base.rsplit(".", 1)[0]
        out.append(base)
    return [b for b in out if b]


def clear_caches() -> None:
    """Forget case markers and folder listings read so far (a new index run may follow edits)."""
    _case_of.cache_clear()
    _stems_in.cache_clear()


def link_kind(rec: ImageRecord) -> LinkKind:
    """DICOM frames and photos are images, other pages documents; ``kind=image|document`` in the
    metadata or a sidecar overrides it (a photo the quality classifier took for a document)."""
    kind = rec.all_meta().get("kind", "").strip().lower()
    if kind in ("image", "document"):
        return kind  # type: ignore[return-value]
    return "image" if rec.format == "dicom" or rec.quality == "photo" else "document"


def _folder_base(rec: ImageRecord) -> tuple[str, str]:
    p = Path(rec.path)
    return str(p.parent), _base(p.name)


def keys_of(rec: ImageRecord) -> list[tuple[str, str]]:
    """The link keys of a page as ``(key, normalised value)``, strongest first; its stems last."""
    meta = rec.all_meta()
    out = [
        (k, norm_value(meta[k]) if k != "case" else meta[k].strip())
        for k in LINK_KEYS
        if meta.get(k, "").strip() and len(meta[k]) <= MAX_META_VALUE_CHARS  # longer: no filter can ask for it
    ]
    p = Path(rec.path)
    out += [("stem", f"{p.parent}/{stem}") for stem in _stems(p.name)]
    return out


def _stem_match(value: str, a: ImageRecord, b: ImageRecord) -> bool:
    """Two files sharing a stem link only when it is one of them's whole name without extension."""
    folder, _, stem = value.rpartition("/")
    return _folder_base(a) == (folder, stem) or _folder_base(b) == (folder, stem)


def _why(key: str, value: str) -> str:
    return "stem" if key == "stem" else f"{key}={value}"


def _members(store: IndexStore, key: str, value: str, spellings: set[str], principal: Principal) -> list[ImageRecord]:
    """Live pages sharing one key (stems: same folder, same name up to the first dot). Values read
    off pages and tags are stored normalised; a user's metadata as written, so its spellings are
    asked for too."""
    found: dict[str, ImageRecord] = {}
    if key == "stem":
        folder, _, stem = value.rpartition("/")
        for r in store.list_images(principal, Filters(path_prefix=f"{folder}/{stem}"), limit=MAX_GROUP):
            if ("stem", value) in keys_of(r):
                found[r.image_id] = r
        return list(found.values())
    for v in sorted({value, *spellings}):
        for r in store.list_images(principal, Filters(meta={key: v}), limit=MAX_GROUP):
            found[r.image_id] = r
    return [r for r in found.values() if (key, value) in keys_of(r)]


def compute_links(recs: Iterable[ImageRecord], groups: dict[tuple[str, str], list[ImageRecord]]) -> dict[str, list[Link]]:
    """Each page's links: pages of the other kind, from another file, sharing a key (first key wins)."""
    out: dict[str, list[Link]] = {}
    for rec in recs:
        kind = link_kind(rec)
        links: dict[str, Link] = {}
        for key, value in keys_of(rec):
            for other in sorted(groups.get((key, value), []), key=lambda r: (r.path, r.page)):
                if other.doc_id == rec.doc_id or other.image_id == rec.image_id or link_kind(other) == kind:
                    continue
                if key == "stem" and not _stem_match(value, rec, other):
                    continue
                if other.image_id not in links:
                    links[other.image_id] = Link(image_id=other.image_id, kind=link_kind(other), why=_why(key, value))
        ordered = sorted(links.values(), key=lambda ln: (ln.kind, ln.image_id))
        out[rec.image_id] = ordered[:MAX_LINKS]
    return out


def relink(store: IndexStore, image_ids: list[str], principal: Principal) -> int:
    """Recompute the links of these pages and of every page sharing a key with them, and store the
    ones that changed; returns how many pages changed. ``principal`` (the writer) only links to and
    updates pages it may read."""
    if not image_ids:
        return 0
    touched = store.get_many(image_ids, principal)
    groups: dict[tuple[str, str], list[ImageRecord]] = {}

    def group(rec: ImageRecord, key: str, value: str) -> list[ImageRecord]:
        if key == "stem":
            folder, _, stem = value.rpartition("/")
            on_disk = _stems_in(folder)
            if on_disk is not None and on_disk.get(stem, 0) < 2:
                return [rec]  # no other file on disk shares the stem: nothing to ask the store (most files)
        if (key, value) not in groups:
            raw = rec.all_meta().get(key, "").strip()
            groups[(key, value)] = _members(store, key, value, {raw} if raw else set(), principal)
        return groups[(key, value)]

    affected: dict[str, ImageRecord] = dict(touched)
    for rec in touched.values():
        for key, value in keys_of(rec):
            for other in group(rec, key, value):
                affected.setdefault(other.image_id, other)
    for rec in list(affected.values()):  # a partner's own other keys decide its full link list too
        for key, value in keys_of(rec):
            group(rec, key, value)
    new = compute_links(affected.values(), groups)
    by_links: dict[str, list[str]] = {}
    for image_id, links in new.items():
        if links != affected[image_id].links:
            by_links.setdefault(json.dumps([ln.model_dump() for ln in links]), []).append(image_id)
    changed = 0
    # Partners first, the pages asked for last: a run killed in between leaves those pages without
    # links, which is what the next run looks for (:func:`awaiting_links`) to link them again.
    for last in (False, True):
        for payload, ids in by_links.items():
            ids = [i for i in ids if (i in touched) == last]
            if ids:
                links = [Link.model_validate(d) for d in json.loads(payload)]
                changed += store.update_metadata(ids, MetadataUpdate(links=links))
    return changed


def awaiting_links(store: IndexStore, image_ids: list[str], principal: Principal, chunk: int = 1000) -> list[str]:
    """Of these (unchanged, already indexed) pages, those that have no link yet but a key another
    page may share: a run killed between writing a batch and linking it left them so. Pages without
    a key (most photos and scans) cost one read and nothing more."""
    out: list[str] = []
    for start in range(0, len(image_ids), chunk):
        for rec in store.get_many(image_ids[start:start + chunk], principal).values():
            if rec.links:
                continue
            for key, value in keys_of(rec):
                if key != "stem":
                    out.append(rec.image_id)
                    break
                folder, _, stem = value.rpartition("/")
                on_disk = _stems_in(folder)
                if on_disk is None or on_disk.get(stem, 0) >= 2:
                    out.append(rec.image_id)
                    break
    return out


def visible_links(store: IndexStore, recs: Iterable[ImageRecord], principal: Principal) -> dict[str, list[LinkedItem]]:
    """Per record, its links to pages ``principal`` may read and that are still live (a link to a
    page they may not see is dropped, as if it did not exist)."""
    recs = list(recs)
    targets = sorted({ln.image_id for r in recs for ln in r.links})
    readable = store.get_many(targets, principal) if targets else {}
    out: dict[str, list[LinkedItem]] = {}
    for r in recs:
        items = []
        for ln in r.links:
            other = readable.get(ln.image_id)
            if other is not None:
                why, file = ln.why, Path(other.path).name
                if not principal.sees_pii:  # a case folder or a report named after the patient
                    why, file = mask_name(why, r, other), mask_name(file, r, other)
                items.append(LinkedItem(image_id=ln.image_id, kind=ln.kind, why=why, file=file, page=other.page))
        out[r.image_id] = items
    return out
