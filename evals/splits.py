"""The fixed train / held-out split of openclipart, shared by the eval sets and any training.

A file belongs to the held-out split when a salted SHA-256 of its *file name* (not its folder:
openclipart ships the same picture under several categories with one name) falls in the lowest
``HELDOUT_PERCENT`` of the hash space. The rule depends on nothing else, so training code filters
with ``not is_heldout(path)`` and can never see an image the ``clipart`` golden set is built from::

    from imgrag.evals.splits import is_heldout
    train = [p for p in pngs if not is_heldout(p)]
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Literal

SPLIT_SALT = "imgrag-openclipart-split-v1"
HELDOUT_PERCENT = 20


def split_key(name: str | PurePath) -> int:
    """A stable number in [0, 10_000) for a file name (any folder part is ignored)."""
    base = PurePath(str(name)).name
    digest = hashlib.sha256(f"{SPLIT_SALT}:{base}".encode()).hexdigest()
    return int(digest[:12], 16) % 10_000


def is_heldout(name: str | PurePath) -> bool:
    """True for files reserved for evaluation: never train on them."""
    return split_key(name) < HELDOUT_PERCENT * 100


def split_of(name: str | PurePath) -> Literal["train", "heldout"]:
    return "heldout" if is_heldout(name) else "train"


QUESTION_SALT = "imgrag-natural-questions-split-v1"


def question_split(question_id: str) -> Literal["dev", "heldout"]:
    """The fixed dev / held-out half of a hand-written golden question, by a salted hash of its id:
    tune on ``dev`` only; ``heldout`` is reported, never tuned on."""
    digest = hashlib.sha256(f"{QUESTION_SALT}:{question_id}".encode()).hexdigest()
    return "heldout" if int(digest[:8], 16) % 2 else "dev"
