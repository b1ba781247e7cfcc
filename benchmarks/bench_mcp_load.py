"""`bench_mcp.py --load`: the streamable-HTTP MCP server under many clients, baseline beside pool.

Each configuration is a real `imgrag serve --http` subprocess with one bearer token per client (each
its own principal) and the MCP SDK's own client, one session per simulated user, all in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, kb = line.split()[:2]
            vals[key] = int(kb) / 1024
    return vals.get("VmRSS:", float("nan")), vals.get("VmHWM:", float("nan"))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@contextmanager
def _code_of(ref: str | None) -> Iterator[Path]:
    """This checkout, or a temporary export of ``ref``'s tree (its code, run with `python -m imgrag`)."""
    if ref is None:
        yield REPO
        return
    with tempfile.TemporaryDirectory(prefix="imgrag-baseline-") as tmp:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        yield Path(tmp)


@contextmanager
def _server(code: Path, home: Path, workers: int | None, tokens: Path, corpus_root: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")}
    env.update(IMGRAG_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", IMGRAG_AUDIT="off")
    if workers is not None:
        env["IMGRAG_SERVER_WORKERS"] = str(workers)
    log = tempfile.NamedTemporaryFile(prefix="imgrag-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgrag", "serve", "--http", "--port", str(port), "--tokens", str(tokens), "--no-web",
         "--index-root", str(corpus_root)],
        cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        import httpx

        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit("imgrag serve --http exited: " + Path(log.name).read_text()[-3000:])
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(log.name)


class _Sessions:
    """One MCP client session per token, all open at once."""

    def __init__(self, url: str, tokens: list[str]) -> None:
        self.url, self.tokens = url, tokens
        self.clients: list[Any] = []

    async def __aenter__(self) -> list[Any]:
        from contextlib import AsyncExitStack

        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        self._stack = AsyncExitStack()
        for tok in self.tokens:
            hc = await self._stack.enter_async_context(
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {tok}"}, timeout=httpx2.Timeout(60, read=900))
            )
            self.clients.append(await self._stack.enter_async_context(Client(streamable_http_client(self.url, http_client=hc))))
        return self.clients

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.aclose()


async def _timed(c: Any, tool: str, args: dict[str, Any]) -> tuple[float, str | None]:
    t = time.perf_counter()
    try:
        r = await c.call_tool(tool, args)
        err = r.content[0].text if r.is_error else None
    except Exception as e:  # noqa: BLE001 - a transport failure is an error row, not a crash
        err = f"{type(e).__name__}: {e}"
    return (time.perf_counter() - t) * 1000, err


def _queries(queries: list[str], n: int, salt: str) -> list[str]:
    """``n`` distinct queries (a number appended), so a query cache answers none of them."""
    return [f"{queries[i % len(queries)]} {salt}{i}" for i in range(n)]


async def _warm(clients: list[Any], pid: int, queries: list[str], out: dict[str, Any]) -> None:
    """Every read tool and resource once (the RSS row: after every one has run)."""
    c0 = clients[0]
    first = await c0.call_tool("search_images", {"query": queries[0], "k": 5})
    hits = first.structured_content["hits"]
    if not hits:
        raise SystemExit("the index returned no hits to a token holder: index something visible to every token "
                         "(the benchmark's tokens are plain principals; e.g. `imgrag index <folder> --public`)")
    iid = hits[0]["image_id"]
    for tool, args in [
        ("search_images", {"query": queries[1], "k": 10, "mode": "keyword"}),
        ("search_images", {"query": queries[2], "k": 5, "with_thumbnails": True}),
        ("search_images", {"similar_to": iid, "k": 10}),
        ("crop_region", {"image_id": iid, "bbox": [0, 0, 400, 400], "scale": 4, "enhance": True}),
        ("ocr_region", {"image_id": iid}),
        ("get_metadata", {"image_id": iid}),
    ]:
        _, err = await _timed(c0, tool, args)
        if err:
            raise SystemExit(f"{tool} failed: {err}")
    await c0.read_resource(f"imgrag://thumbnail/{iid}")
    await c0.read_resource(f"imgrag://image/{iid}")
    await c0.read_resource("imgrag://collection")
    out["rss_mb"], out["hwm_mb"] = _rss_mb(pid)
    out["ids"] = [h["image_id"] for h in hits]


async def _single(clients: list[Any], queries: list[str], n: int, tag: str, out: dict[str, Any]) -> None:
    """One client, ``n`` searches back to back: the ratio's denominator is their p95, and a p95 of
    8 searches (until session 15) was about their slowest one — the ratio moved by a third run to run."""
    out["single"] = [await _timed(clients[0], "search_images", {"query": q, "k": 10}) for q in _queries(queries, n, tag)]


async def _many(clients: list[Any], queries: list[str], per_client: int, tag: str, out: dict[str, Any]) -> None:
    """Every client at once, each ``per_client`` searches back to back."""

    async def user(c: Any, qs: list[str]) -> list[tuple[float, str | None]]:
        return [await _timed(c, "search_images", {"query": q, "k": 10}) for q in qs]

    n = len(clients)
    qs = _queries(queries, n * per_client, tag)
    t0 = time.perf_counter()
    res = await asyncio.gather(*(user(c, qs[i::n]) for i, c in enumerate(clients)))
    out["many_wall"] = time.perf_counter() - t0
    out["many"] = [x for r in res for x in r]


async def _mixed(clients: list[Any], queries: list[str], heavy: int, tag: str, out: dict[str, Any]) -> None:
    """``heavy`` users each ask one full-page OCR; the others search until the last OCR is done."""
    ids = out["ids"]
    ocr_users, searchers = clients[:heavy], clients[heavy:]
    stop = asyncio.Event()

    async def searcher(c: Any, qs: list[str]) -> list[tuple[float, str | None]]:
        done = []
        for q in qs:
            if stop.is_set():
                break
            done.append(await _timed(c, "search_images", {"query": q, "k": 10}))
        return done

    mq = _queries(queries, len(searchers) * 50, tag)
    t0 = time.perf_counter()
    s_tasks = [asyncio.create_task(searcher(c, mq[i :: max(1, len(searchers))])) for i, c in enumerate(searchers)]
    out["mixed_ocr"] = await asyncio.gather(*(_timed(c, "ocr_region", {"image_id": ids[i % len(ids)]}) for i, c in enumerate(ocr_users)))
    stop.set()
    out["mixed_search"] = [x for r in await asyncio.gather(*s_tasks) for x in r]
    out["mixed_wall"] = time.perf_counter() - t0


async def _measure_all(
    servers: list[tuple[str, int]], tokens: list[str], queries: list[str], n_clients: int, per_client: int, heavy: int, single: int
) -> list[dict[str, Any]]:
    """Every phase on every server in turn (baseline, pool, baseline, ...), so a change in the
    machine's load during the run falls on both alike."""
    from contextlib import AsyncExitStack

    outs: list[dict[str, Any]] = [{} for _ in servers]
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(_Sessions(url, tokens[:n_clients])) for url, _ in servers]
        for i, (_, pid) in enumerate(servers):
            await _warm(sessions[i], pid, queries, outs[i])
        for phase in ("single", "many", "mixed") if heavy else ("single", "many"):
            for i, (_, pid) in enumerate(servers):
                tag = f"{phase}{i}-"
                # CPU the server and this client process (every client session) spent on the phase
                cpu0, own0 = _cpu_s(pid), _own_cpu_s()
                if phase == "single":
                    await _single(sessions[i], queries, single, tag, outs[i])
                elif phase == "many":
                    await _many(sessions[i], queries, per_client, tag, outs[i])
                else:
                    await _mixed(sessions[i], queries, heavy, tag, outs[i])
                outs[i][f"{phase}_cpu"] = (_cpu_s(pid) - cpu0, _own_cpu_s() - own0)
    return outs


def _row(label: str, xs: list[tuple[float, str | None]], wall: float | None = None) -> str:
    ms = [t for t, e in xs if e is None]
    errs = [e for _, e in xs if e is not None]
    rate = f"{len(xs) / wall:>8.1f}" if wall else f"{len(ms) / (sum(ms) / 1000):>8.1f}" if ms else "     nan"  # all clients
    return f"{label:<46}{_pct(ms, 50):>9.0f}{_pct(ms, 95):>9.0f}{rate}{len(xs):>6}{len(errs):>6}"


def run_load(
    home: Path, n_clients: int, per_client: int, heavy: int, baseline_ref: str | None, queries: list[str], single: int = 40
) -> None:
    n_clients = max(n_clients, heavy + 1)
    with tempfile.TemporaryDirectory(prefix="imgrag-bench-load-") as tmp:
        tokens = {secrets.token_urlsafe(24): {"name": f"user{i:02d}"} for i in range(n_clients)}
        tok_path = Path(tmp) / "tokens.json"
        tok_path.write_text(json.dumps(tokens))
        tok_path.chmod(0o600)
        tok_list = list(tokens)
        corpus_root = Path("/")
        configs = [
            (f"baseline ({baseline_ref or 'this checkout'}, no pool)", baseline_ref, 0),
            ("pool (this checkout, default IMGRAG_SERVER_WORKERS)", None, None),
        ]
        with _code_of(configs[0][1]) as base_code, _server(base_code, home, 0, tok_path, corpus_root) as base, \
                _server(REPO, home, None, tok_path, corpus_root) as pool:
            outs = asyncio.run(_measure_all([base, pool], tok_list, queries, n_clients, per_client, heavy, single))
        results = [(label, out) for (label, _, _), out in zip(configs, outs)]

    print(f"index {home}; HTTP; 1 client x {single} searches, {n_clients} clients x {per_client} searches (k=10, distinct queries); "
          f"mixed: {heavy} full-page ocr_region users + {n_clients - heavy} searching; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, r in results:
        print()
        print(label)
        print(f"{'':<46}{'p50 ms':>9}{'p95 ms':>9}{'calls/s':>8}{'n':>6}{'errors':>6}")
        print(_row("search_images, 1 client", r["single"]))
        print(_row(f"search_images, {n_clients} clients", r["many"], r["many_wall"]))
        s1 = _pct([t for t, e in r["single"] if e is None], 95)
        sn = _pct([t for t, e in r["many"] if e is None], 95)
        print(f"{'p95 ratio, ' + str(n_clients) + ' clients / 1 (target <= 16)':<46}{sn / s1:>9.1f}")
        (srv1, cli1), (srvn, clin) = r["single_cpu"], r["many_cpu"]
        n1, nn = len(r["single"]), len(r["many"])
        print(f"{'CPU ms a search, server: 1 client / ' + str(n_clients):<46}{1000 * srv1 / n1:>9.1f}{1000 * srvn / nn:>9.1f}")
        print(f"{'CPU ms a search, the clients: 1 / ' + str(n_clients):<46}{1000 * cli1 / n1:>9.1f}{1000 * clin / nn:>9.1f}")
        # Closed loop: n clients' mean latency = n / throughput, and throughput <= CPUs / CPU a search
        # (server + clients, on this machine), so the p95 ratio cannot fall below this even with
        # every core busy all the time and no queueing spread.
        floor = n_clients * 1000 * (srvn + clin) / nn / (os.cpu_count() or 1) / s1
        print(f"{'p95 ratio floor: every CPU busy (see docs)':<46}{floor:>9.1f}")
        if heavy:
            print(_row(f"search_images during {heavy} full-page OCR calls", r["mixed_search"], r["mixed_wall"]))
            ocr_ms = sorted(t for t, _ in r["mixed_ocr"])
            ocr_err = [e for _, e in r["mixed_ocr"] if e]
            print(f"{'full-page ocr_region, first / last done (ms)':<46}{ocr_ms[0]:>9.0f}{ocr_ms[-1]:>9.0f}"
                  + (f"   errors: {ocr_err[0][:100]}" if ocr_err else ""))
        print(f"{'serve RSS after every tool, MB (target <= 1024)':<46}{r['rss_mb']:>9.0f}   peak {r['hwm_mb']:.0f}")
