"""Opening a file that must be a regular file, without ever blocking: a named pipe swapped in for a
file after it was checked would otherwise block the whole run in ``open``. Shared by the loader,
DICOM sniffing, sidecars and ``.imgrag-case`` markers."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open a file for reading only if it is a regular file, with its status as opened. Opened
    without blocking, then checked: a file swapped for a named pipe after it was last checked would
    otherwise block the whole run in ``open`` (a pipe without a writer never opens). Raises
    OSError; :class:`NotRegularFile` for anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(_kind(st.st_mode) or "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


class NotRegularFile(OSError):
    """What :func:`open_regular` found instead of a regular file (``kind``: in words)."""

    def __init__(self, kind: str) -> None:
        super().__init__(errno.EINVAL, kind)
        self.kind = kind


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; ``None`` for a regular file."""
    for test, name in (
        (stat.S_ISREG, None), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"
