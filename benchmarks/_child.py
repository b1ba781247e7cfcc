"""A benchmark child: one checkout's code in its own process, spoken to in JSON lines, so a run can
time this checkout and a baseline checkout side by side (bench_search, bench_ask)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


class JsonChild:
    def __init__(self, tree: Path, code: str, args: list[str], env: dict[str, str]) -> None:
        self.tree = tree
        self.p = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tree, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self.read()

    def read(self) -> Any:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            sys.exit(f"the benchmark child in {self.tree} stopped (see its error above)")
        return json.loads(line)

    def send(self, message: dict[str, Any]) -> Any:
        """One request, one answer."""
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(message) + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait(timeout=60)
