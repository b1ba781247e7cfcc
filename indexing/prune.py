"""``imgrag index FOLDER --prune``: which indexed files left the named folders.

Only the pages whose file lay under one of the folders named on the command line, and is gone
(no such file, or no longer a regular file), are pruned; a file that exists but cannot be read is
kept. An unmounted drive or a typo must never empty an index, so a folder that does not exist, is
empty while the index holds pages under it, or could not be listed in full is refused as a whole.
The deletion itself is ``imgrag delete``'s (:meth:`indexing.app.Imgrag.delete`): soft, recorded as
a version, undone by ``imgrag rollback``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .loader import shown_path
from .stores.base import OPERATOR, Filters, IndexStore

PAGE = 1000  # records read per list_images call


@dataclass
class PrunePlan:
    gone: dict[str, list[str]] = field(default_factory=dict)  # path of a file that is gone -> its live page ids
    refused: list[tuple[str, str]] = field(default_factory=list)  # (shown folder, why nothing was pruned under it)


def is_gone(path: str) -> bool:
    """Whether the file is gone: no such file (or a parent is no folder any more), or no longer a
    regular file. One that cannot be checked (permissions, I/O) is not gone."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except (OSError, ValueError):
        return False


def _listing(folder: Path) -> tuple[bool, list[str]]:
    """(whether the folder holds any file, the listing errors) — the same walk as indexing's
    (hidden folders are not entered)."""
    errors: list[str] = []
    has_file = False
    for _root, dirs, files in os.walk(folder, onerror=lambda e: errors.append(f"{shown_path(e.filename or folder)} ({e.strerror})")):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        has_file = has_file or bool(files)
    return has_file, errors


def _pages_under(store: IndexStore, folder: Path) -> dict[str, list[str]]:
    """Live pages (any principal's) whose file lies under ``folder``, by path."""
    prefix = folder.as_posix().rstrip("/") + "/"
    where = Filters(path_prefix=prefix)
    by_path: dict[str, list[str]] = {}
    offset = 0
    while True:
        recs = store.list_images(OPERATOR, where, offset=offset, limit=PAGE)
        for r in recs:
            if folder in Path(r.path).parents:
                by_path.setdefault(r.path, []).append(r.image_id)
        if len(recs) < PAGE:
            return by_path
        offset += PAGE


def plan_prune(store: IndexStore, named: Sequence[str | Path]) -> PrunePlan:
    """What ``--prune`` deletes for the paths named on the command line: named files are never
    pruned around (nor are their siblings); named folders are resolved like indexing resolves them."""
    plan = PrunePlan()
    seen: set[Path] = set()
    for raw in named:
        if str(raw) == "":
            continue
        given = Path(raw).expanduser()
        folder = given.resolve()
        if folder in seen:
            continue
        seen.add(folder)
        if not folder.exists():
            plan.refused.append((shown_path(given), "no such folder (an unmounted drive or a typo?) — nothing pruned under it"))
            continue
        if not folder.is_dir():
            continue  # a named file: pruning is for folders only
        pages = _pages_under(store, folder)
        if not pages:
            continue
        has_file, errors = _listing(folder)
        if errors:
            more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
            plan.refused.append((shown_path(folder), f"could not be listed in full ({errors[0]}{more}) — nothing pruned under it"))
            continue
        if not has_file:
            why = (f"is empty but the index holds {sum(map(len, pages.values()))} page(s) under it "
                   "(an unmounted drive?) — nothing pruned under it; `imgrag delete --path FILE` removes them one by one")
            plan.refused.append((shown_path(folder), why))
            continue
        for path, ids in pages.items():
            if path not in plan.gone and is_gone(path):
                plan.gone[path] = ids
    return plan
