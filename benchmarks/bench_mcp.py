"""Per-tool latency of the MCP server over a real stdio session, as an agent sees it; and with
`--load`, the HTTP server under many clients.

Spawns `imgrag serve` (stdio) against an existing index, times the handshake and the first
(cold) call of each tool, then repeats every tool `--runs` times and prints p50/p95 per tool.
Arguments come from the index itself: queries, then each hit's image id and region bbox.

    IMGRAG_HOME=~/.imgrag-demo ~/.cache/imgrag/venv/bin/python benchmarks/bench_mcp.py [--runs 20]
    IMGRAG_HOME=~/.imgrag-demo ~/.cache/imgrag/venv/bin/python benchmarks/bench_mcp.py --load [--clients 32]
        [--baseline-ref REF]

`--load` serves streamable HTTP (one bearer token per client, each its own principal) from two
servers up at once, each phase on one then the other — the baseline (`IMGRAG_SERVER_WORKERS=0`: no pool, and with `--baseline-ref` the code of
that git ref) and this checkout with its default pool — and prints for each: search p50/p95 and
throughput with 1 client and with `--clients` at once (distinct queries, so no cache answers them),
the p95 ratio and errors; a mixed load (`--heavy` users each asking a full-page `ocr_region` while
the others search): search p95 meanwhile and how long the last OCR call waited; and the server's
RSS after every read tool and resource has run.

Default index: $IMGRAG_HOME (else ~/.imgrag-demo, the one `make demo` builds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

QUERIES = [
    "甲方 盖章 日期",
    "合同签订日期",
    "contract agreement",
    "payment terms",
    "a cat",
    "一只猫",
    "astronaut",
    "Debian package management",
    "软件包",
    "seal",
]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _cmd() -> list[str]:
    script = Path(sys.executable).with_name("imgrag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgrag"]


async def bench(home: Path, runs: int) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
    env.update(IMGRAG_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = _cmd()
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", "--no-warm-up"], env=env)
    once: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    info: dict[str, Any] = {}

    async def timed(label: str, fn: Callable[[], Awaitable[Any]], cold: bool = False) -> Any:
        t = time.perf_counter()
        r = await fn()
        ms = (time.perf_counter() - t) * 1000
        if getattr(r, "is_error", False):
            raise SystemExit(f"{label} failed: {r.content[0].text}")
        if cold:
            once[label] = ms
        else:
            times.setdefault(label, []).append(ms)
        return r

    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                once["spawn + initialize"] = (time.perf_counter() - t0) * 1000
                await timed("tools/list", s.list_tools, cold=True)
                col = await s.read_resource("imgrag://collection")
                info["collection"] = json.loads(col.contents[0].text)
                if not info["collection"]["images"]:
                    raise SystemExit(f"the index at {home} is empty: run `make demo` or `imgrag index <folder>` with IMGRAG_HOME={home}")

                # Cold: the first call of each tool pays for loading the store and its models.
                first = await timed("search_images (first, loads embedders)", lambda: s.call_tool("search_images", {"query": QUERIES[0], "k": 10}), cold=True)
                hits = first.structured_content["hits"]
                targets: list[tuple[str, list[float]]] = []
                for q in QUERIES:
                    r = await s.call_tool("search_images", {"query": q, "k": 5})
                    for h in r.structured_content["hits"]:
                        box = h["region"]["bbox"] if h.get("region") else [0, 0, h["width"] / 2, h["height"] / 2]
                        targets.append((h["image_id"], box))
                targets = targets or [(h["image_id"], [0, 0, 200, 200]) for h in hits]
                iid, box = targets[0]
                await timed("ocr_region (first, loads OCR)", lambda: s.call_tool("ocr_region", {"image_id": iid, "bbox": box}), cold=True)
                await timed("crop_region (first, opens page)", lambda: s.call_tool("crop_region", {"image_id": targets[-1][0], "bbox": targets[-1][1], "scale": 2}), cold=True)

                for i in range(runs):
                    q = QUERIES[i % len(QUERIES)]
                    iid, box = targets[i % len(targets)]
                    await timed("search_images hybrid k=10", lambda: s.call_tool("search_images", {"query": q, "k": 10}))
                    await timed("search_images keyword k=10", lambda: s.call_tool("search_images", {"query": q, "k": 10, "mode": "keyword"}))
                    await timed("search_images +thumbnails", lambda: s.call_tool("search_images", {"query": q, "k": 5, "with_thumbnails": True}))
                    await timed("search_images similar_to", lambda: s.call_tool("search_images", {"similar_to": iid, "k": 10}))
                    await timed("crop_region scale=2", lambda: s.call_tool("crop_region", {"image_id": iid, "bbox": box, "scale": 2}))
                    await timed("crop_region scale=4 enhance", lambda: s.call_tool("crop_region", {"image_id": iid, "bbox": box, "scale": 4, "enhance": True}))
                    await timed("ocr_region scale=auto", lambda: s.call_tool("ocr_region", {"image_id": iid, "bbox": box}))
                    await timed("get_metadata", lambda: s.call_tool("get_metadata", {"image_id": iid}))
                    await timed("resource thumbnail", lambda: s.read_resource(f"imgrag://thumbnail/{iid}"))
                    await timed("resource image", lambda: s.read_resource(f"imgrag://image/{iid}"))
                info["targets"] = len(targets)
    return once, times, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("IMGRAG_HOME", "~/.imgrag-demo")).expanduser(), help="IMGRAG_HOME of the index to serve")
    ap.add_argument("--runs", type=int, default=20, help="repetitions of each tool call")
    ap.add_argument("--load", action="store_true", help="the HTTP server under many clients, baseline and pool, instead")
    ap.add_argument("--clients", type=int, default=32, help="--load: concurrent clients")
    ap.add_argument("--searches", type=int, default=4, help="--load: searches per client (the single client makes 2x this many)")
    ap.add_argument("--heavy", type=int, default=4, help="--load: users each asking one full-page ocr_region in the mixed load")
    ap.add_argument("--baseline-ref", default=None, help="--load: run the baseline server from this git ref's code (default: this checkout, pool off)")
    args = ap.parse_args()
    if args.load:
        from bench_mcp_load import run_load  # type: ignore[import-not-found]

        run_load(args.home, args.clients, args.searches, args.heavy, args.baseline_ref, QUERIES)
        return
    once, times, info = asyncio.run(bench(args.home, args.runs))
    col = info["collection"]
    print(f"index {args.home}: {col['images']} images, {col['documents']} documents, backend {col['backend']}; "
          f"{info['targets']} (image, region) targets from {len(QUERIES)} queries; {args.runs} runs per tool; stdio")
    print()
    print(f"{'cold (once)':<44}{'ms':>10}")
    for k, v in once.items():
        print(f"{k:<44}{v:>10.0f}")
    print()
    print(f"{'tool (warm)':<44}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}{'n':>5}")
    for k, xs in times.items():
        print(f"{k:<44}{_pct(xs, 50):>10.1f}{_pct(xs, 95):>10.1f}{statistics.fmean(xs):>10.1f}{len(xs):>5}")


if __name__ == "__main__":
    main()
