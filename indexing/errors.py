"""The one error type a user can cause: it names the problem and the fix."""

from __future__ import annotations


class ImgragError(Exception):
    """A user-facing error: ``message`` says what is wrong, ``hint`` what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class NotFoundError(ImgragError):
    """An id that does not exist *or* that the caller may not see: both answer the same."""

    @classmethod
    def image(cls, image_id: str) -> NotFoundError:
        """The one answer for an image id that is unknown, deleted or not visible to the caller."""
        shown = image_id if len(image_id) <= 80 else image_id[:79] + "…"
        return cls(
            f"no image with id {shown!r}",
            "use an image_id returned by search_images (on the command line: imgrag search --json)",
        )


class BackendUnavailableError(ImgragError):
    """The index backend cannot be reached or refused us."""


class BusyError(ImgragError):
    """Too many heavy calls are running or waiting: the caller should retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = max(1, round(retry_after))
        super().__init__(message, f"retry in {self.retry_after} s")


class AccessDeniedError(ImgragError):
    """The caller may not do this at all (a path outside the index roots); the audit log records it as denied."""


class AuditError(ImgragError):
    """The audit log could not be written: the call it was recording is refused (or, for a write that
    already happened, reported as unrecorded) — never answered silently."""


_NO_SPACE_ERRNOS = frozenset({28, 122})  # ENOSPC, EDQUOT (Linux)
_NO_SPACE_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def no_space(e: BaseException) -> str | None:
    """The reason, if ``e`` (or an exception it was raised from or while handling) is a full disk or an
    exhausted quota: an ``OSError`` with ENOSPC / EDQUOT, or LanceDB's RuntimeError wrapping one
    ("LanceError(IO): No space left on device (os error 28), <rust source path>"). None otherwise."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _NO_SPACE_ERRNOS:
            return cur.strerror or "No space left on device"
        text = str(cur)
        for marker in _NO_SPACE_TEXTS:
            if marker in text:
                return "Disk quota exceeded" if "122" in marker or "quota" in marker else "No space left on device"
        cur = cur.__cause__ or cur.__context__
    return None


def disk_full_error(e: BaseException, where: object) -> ImgragError | None:
    """One clear error for a full disk under ``where`` (the index folder), or None if ``e`` is not one."""
    reason = no_space(e)
    if reason is None:
        return None
    return ImgragError(
        f"the disk holding {where} is full ({reason})",
        "free space there (or point IMGRAG_HOME at a bigger disk) and run the command again: the index keeps "
        "every page recorded before, an interrupted `imgrag index` keeps the pages it wrote and its re-run "
        "indexes only the rest",
    )


class Stopped(Exception):
    """Work stopped at a step boundary because whoever asked for it has gone (an MCP client that
    disconnected or cancelled: ``reason`` says which); raised by the caller's own progress callback,
    so the indexer stops as on Ctrl-C (what was written stays, versioned), recorded ``cancelled``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
