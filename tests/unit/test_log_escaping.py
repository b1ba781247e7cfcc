"""Log lines never carry a raw control character: a hostile file name (or OCR text, metadata, a
client's argument) in a record prints escaped, on one line, through the handler the CLI and
``imgrag serve`` configure."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from imgrag.indexing.logs import OneLineFormatter

ROOT = Path(__file__).resolve().parents[2]

HOSTILE = "a\x1b[2J\x1b]0;pwned\x07\r\nFAKE WARNING forged\u202egnp.x\x9b.png"


def test_cli_log_lines_escape_a_hostile_sidecar_name(tmp_path: Path) -> None:
    # the CLI's own callback configures logging; a broken sidecar of a hostile name logs a warning
    img = tmp_path / HOSTILE
    img.write_bytes(b"x")
    (tmp_path / (HOSTILE + ".imgrag.json")).write_text("{not json", encoding="utf-8")
    code = (
        "import sys; from imgrag.cli.common import main; main(verbose=False)\n"
        "from imgrag.indexing.links import file_keys; file_keys(sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGRAG_HOME": str(tmp_path / "home")}
    env.pop("IMGRAG_DEBUG", None)
    run = subprocess.run([sys.executable, "-c", code, str(img)], capture_output=True, env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    err = run.stderr.decode("utf-8")
    assert "ignored" in err
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one record, one line
    for raw in ("\x1b", "\x07", "\r", "\u202e", "\x9b"):
        assert raw not in err
    assert "\\x1b[2J" in err and "\\r\\nFAKE WARNING" in err and "\\u202e" in err and "\\x9b" in err


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise OSError(f"cannot open {HOSTILE}")
        except OSError:
            exc_info = sys.exc_info()
    return logging.LogRecord("imgrag.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_formatter_escapes_the_message_and_keeps_a_tracebacks_newlines() -> None:
    fmt = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    line = fmt.format(_record("sidecar %s ignored: %s", HOSTILE, "bad\nthing"))
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert line.startswith("WARNING imgrag.test: sidecar a\\x1b[2J") and "bad\\nthing" in line
    text = fmt.format(_record("failed on %s", HOSTILE, exc=True))
    first, *rest = text.split("\n")
    assert first == "WARNING imgrag.test: failed on " + "a\\x1b[2J\\x1b]0;pwned\\x07\\r\\nFAKE WARNING forged\\u202egnp.x\\x9b.png"
    assert rest[0] == "Traceback (most recent call last):" and len(rest) > 2  # the traceback keeps its lines
    assert not any(c in text for c in ("\x1b", "\x07", "\r", "\u202e", "\x9b"))
