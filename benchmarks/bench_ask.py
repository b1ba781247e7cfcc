"""`imgrag ask` latency and CPU per question, this checkout beside a baseline checkout, in the same run.

    IMGRAG_EVAL_CACHE=/tmp/evc python benchmarks/bench_ask.py --set natural-dev \\
        [--baseline-tree /path/to/a/worktree/of/main] [--limit 0] [--json out.json]

What `imgrag eval answers` times: the bundled agent in its extractive mode (no LLM) over an
in-memory MCP session on a warm server (models loaded, one warm-up question first), a new session
per question as the eval opens one. Each checkout (``.`` and ``--baseline-tree``) runs in its own
child process (``python -m``-style: its root first on the path, so it imports that checkout's
code) over the same standard set and eval cache (``IMGRAG_EVAL_CACHE``; the set is built and
indexed there on first use), and the parent asks them the same questions in turn — A then B, then
B then A for the next — so machine load hits both alike.

Printed per checkout: wall p50 / p95 / mean, CPU seconds per question (the process's CPU time,
all threads: the server's tools run in the same process; steadier than wall time on a busy
machine), tool calls per question by tool, and per-node wall p50 / p95. Answers are not scored
here (``imgrag eval answers`` does that); the share of questions both checkouts answered alike is.
Never run it on ``natural-heldout`` while tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import JsonChild

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, os, sys, time
sys.path.insert(0, os.getcwd())
from rich.console import Console
from imgrag.agent.graph import run_agent
from imgrag.agent.mcp_client import ToolClient
from imgrag.evals.runner import resolve
from imgrag.indexing.stores.base import OPERATOR
from imgrag.mcp_server.auth import fixed_principal
from imgrag.mcp_server.server import build_server

prepared, app, _ = resolve(sys.argv[1], None, None, Console(stderr=True))
server = build_server(app, fixed_principal(OPERATOR))

async def ask(q):
    async with ToolClient.in_memory(server) as tools:
        ans, _run = await run_agent(q, tools, None, None)
    claims = [c for c in ans.claims if c.status != "dropped"]
    top = claims[0] if claims else None
    return {"answer": (top.value or top.text) if top else ans.answer, "timings": ans.timings_ms,
            "tools": dict(tools.usage.tool_calls), "cited": sorted({c.image_id for c in ans.citations})}

async def main():
    items = [it for it in prepared.items() if it.has_answer]
    await ask(items[0].query)  # warm-up: models load outside the timed calls
    print(json.dumps({"ready": True, "questions": [it.query for it in items]}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        q = json.loads(line)["q"]
        t, c = time.perf_counter(), time.process_time()
        out = await ask(q)
        out.update(ms=(time.perf_counter() - t) * 1000, cpu_ms=(time.process_time() - c) * 1000)
        print(json.dumps(out), flush=True)

asyncio.run(main())
"""


class Child(JsonChild):
    def __init__(self, tree: Path, set_name: str) -> None:
        super().__init__(tree, CHILD, [set_name], dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))

    def ask(self, q: str) -> dict[str, Any]:
        return self.send({"q": q})  # type: ignore[no-any-return]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="natural-dev", help="a standard set with answers (default natural-dev)")
    ap.add_argument("--baseline-tree", type=Path, help="a checkout to compare with (e.g. `git worktree add /tmp/main main`)")
    ap.add_argument("--limit", type=int, default=0, help="ask at most this many questions, spread over the set (0: all)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    trees = {"this": ROOT}
    if args.baseline_tree:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    t0 = time.perf_counter()
    children = {name: Child(tree, args.set) for name, tree in trees.items()}
    questions: list[str] = next(iter(children.values())).ready["questions"]
    if args.limit and args.limit < len(questions):
        step = len(questions) / args.limit
        questions = [questions[int(i * step)] for i in range(args.limit)]
    print(f"children ready in {time.perf_counter() - t0:.0f} s; {len(questions)} questions", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in trees}
    load0 = os.getloadavg()[0]
    try:
        for n, q in enumerate(questions):
            order = list(children.items()) if n % 2 == 0 else list(reversed(children.items()))
            for name, ch in order:
                results[name].append(ch.ask(q))
            if (n + 1) % 10 == 0:
                print(f"{n + 1}/{len(questions)}", file=sys.stderr)
    finally:
        for ch in children.values():
            ch.close()
    load1 = os.getloadavg()[0]

    print(f"\n`imgrag ask` (extractive) over an in-memory MCP session · set {args.set} · {len(questions)} questions · "
          f"load average {load0:.1f} → {load1:.1f} · {os.cpu_count()} CPUs")
    print("wall s: p50 / p95 / mean; CPU s per question (the process, all threads): p50 / mean")
    for name in trees:
        rs = results[name]
        ms = [r["ms"] / 1000 for r in rs]
        cpu = [r["cpu_ms"] / 1000 for r in rs]
        print(f"  {name:<9} wall {pct(ms, 50):6.2f} / {pct(ms, 95):6.2f} / {statistics.fmean(ms):6.2f}   "
              f"CPU {pct(cpu, 50):5.2f} / {statistics.fmean(cpu):5.2f}")
    print("tool calls per question (mean)")
    for name in trees:
        tools: dict[str, int] = {}
        for r in results[name]:
            for k, v in r["tools"].items():
                tools[k] = tools.get(k, 0) + v
        print(f"  {name:<9} " + ", ".join(f"{k} {v / len(questions):.2f}" for k, v in sorted(tools.items())))
    print("per node, wall ms p50 / p95")
    for name in trees:
        nodes: dict[str, list[float]] = {}
        for r in results[name]:
            for k, v in r["timings"].items():
                nodes.setdefault(k, []).append(v)
        print(f"  {name:<9} " + ", ".join(f"{k} {pct(v, 50):.0f}/{pct(v, 95):.0f}" for k, v in nodes.items()))
    if len(trees) == 2:
        a, b = results.values()
        same = sum(x["answer"] == y["answer"] for x, y in zip(a, b, strict=True))
        print(f"same top answer in both checkouts: {same} of {len(questions)}")
    if args.json:
        args.json.write_text(json.dumps({"questions": questions, "results": results}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
