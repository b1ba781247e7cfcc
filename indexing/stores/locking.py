"""One writer per embedded index, and a note of unrecorded changes that outlives a killed writer.

``WriterLock`` is an exclusive ``fcntl`` lock on ``<index>/writer.lock``: the kernel drops it when
its process dies, however it dies, so a killed ``imgrag index`` never leaves a stale lock. The
file holds the holder's pid and command (``imgrag index``), for the message a second writer gets.

``Journal`` (``<index>/pending.json``) is written before the first change that no version records
yet and removed when a version records it. Found on a later open while no live process owns it,
it means a writer died between a change and its version: the store then records that change as a
version (:meth:`indexing.stores.lance.LanceStore.recover`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ImgragError

WAIT_S = 3.0  # how long a writer waits for the lock before it names the holder

# Stores open in this process (by token): their uncommitted changes belong to a live writer.
_LIVE_TOKENS: set[str] = set()


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux clock ticks), to tell a reused pid from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    now = _started(pid)
    return started is None or now is None or now == started


class WriterLock:
    """Exclusive, non-blocking, re-entrant within one store object."""

    def __init__(self, path: Path, index_dir: Path) -> None:
        self.path = path
        self.index_dir = index_dir
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.RLock()

    @property
    def held(self) -> bool:
        return self._depth > 0

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    def acquire(self, wait: float = WAIT_S) -> bool:
        """Take the lock (True) or deepen this object's hold on it (False); ImgragError naming the
        process that holds it otherwise. ``wait``: seconds to keep trying first (a reader that
        records a killed run's changes at open holds it for a moment)."""
        import fcntl

        with self._mutex:
            if self._depth:
                self._depth += 1
                return False
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ImgragError(
                    f"cannot write to the index at {self.index_dir} ({e.strerror or e})",
                    "check IMGRAG_HOME and its permissions",
                ) from e
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    os.close(fd)
                    h = self.holder()
                    who = f"pid {h.get('pid', '?')}: {h.get('command', '?')}, since {h.get('since', '?')}"
                    raise ImgragError(
                        f"another imgrag process is writing to the index at {self.index_dir} ({who})",
                        "wait for it to finish and run this again (searches keep working meanwhile), or stop that process",
                    ) from e
            holder = {
                "pid": os.getpid(),
                # the command, not its arguments: the message may reach a remote MCP client
                "command": " ".join(["imgrag", *[a for a in sys.argv[1:] if not a.startswith("-")][:1]]),
                "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            self._fd = fd
            self._depth = 1
            return True

    def release(self) -> None:
        import fcntl

        with self._mutex:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def release_all(self) -> None:
        with self._mutex:
            if self._depth:
                self._depth = 1
                self.release()

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it, else False at once (for opportunistic work at open)."""
        try:
            self.acquire(wait=0)
        except ImgragError:
            return False
        return True


class Journal:
    """``pending.json``: who made changes no version records yet, and the table state before them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.token = uuid.uuid4().hex
        _LIVE_TOKENS.add(self.token)

    def read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treat as an orphan with no known state

    def note(self, before: dict[str, Any]) -> None:
        """Record that changes begin (once, until :meth:`clear`); ``before``: the state to go back to."""
        if self.path.exists():
            return
        entry = {
            "pid": os.getpid(),
            "started": _started(os.getpid()),
            "token": self.token,
            "since": datetime.now(timezone.utc).isoformat(),
            "before": before,
        }
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def orphaned(self) -> dict[str, Any] | None:
        """The journal if the process that wrote it is gone (or this process closed that store)."""
        entry = self.read()
        if entry is None:
            return None
        pid, token = entry.get("pid"), entry.get("token")
        if pid == os.getpid():
            return entry if token not in _LIVE_TOKENS else None
        if isinstance(pid, int) and process_alive(pid, entry.get("started")):
            return None
        return entry

    def close(self) -> None:
        _LIVE_TOKENS.discard(self.token)
