"""Text that prints on one line, and the log format built on it.

File names, OCR text, metadata and a client's arguments are written by whoever made the files or
sent the call: printed raw, an escape sequence (``\\x1b[2J``, an OSC 8 link, a window title) acts on
the terminal, a newline forges a second log line and U+202E turns the rest of the line around.
:func:`shown_path` escapes them; :class:`OneLineFormatter` applies it to every log record the CLI
and ``imgrag serve`` print (see docs/security.md).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def shown_path(path: str | Path) -> str:
    """The path (or any text) as text that prints on one line: undecodable bytes and control
    characters escaped — C0 and C1 controls (newline included), DEL, and the invisible format
    characters such as the bidi overrides U+202A–U+202E and U+2066–U+2069."""
    text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _lines_shown(text: str) -> str:
    """A traceback keeps its newlines; everything else in it is escaped as in :func:`shown_path`."""
    return "\n".join(shown_path(line) for line in text.split("\n"))


class OneLineFormatter(logging.Formatter):
    """Every record's message (with its level, logger name and time) prints as one line with its
    control characters escaped; a traceback (``exc_info``, ``stack_info``) follows on lines of its
    own, escaped the same way but for its newlines."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [shown_path(self.formatMessage(record))]
        if record.exc_info:
            parts.append(_lines_shown(self.formatException(record.exc_info)))
        elif record.exc_text:
            parts.append(_lines_shown(record.exc_text))
        if record.stack_info:
            parts.append(_lines_shown(self.formatStack(record.stack_info)))
        return "\n".join(parts)


def setup_logging(level: int) -> None:
    """The CLI's (and so ``imgrag serve``'s) log: records at ``level`` and above on stderr, one
    escaped line each. Like ``logging.basicConfig``, a no-op when the root logger has a handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
