"""A 2-node Elasticsearch cluster on this machine (2 primaries, 1 replica each): one node is killed
mid-query, then (restarted, and) killed again mid-bulk. Checks that searches keep answering and that
every write imgrag acknowledged survives, and prints what happened.

    python benchmarks/es_failover.py                 # ports 9261/9262 (HTTP), 9361/9362 (transport)
    python benchmarks/es_failover.py --pages 2000 --heap 512m --base-port 9261

Node ``n1`` is the only master-eligible node and the one imgrag talks to; ``n2`` is a data node
holding one primary and the replica of the other, and is the one killed (SIGKILL: a crash, not a
clean shutdown). A 2-node cluster cannot lose its elected master and keep accepting writes (a quorum
of master-eligible nodes needs 3); that case is not what this measures. The corpus is
``bench_backends``'s synthetic one, written through :class:`ElasticStore` (the product's bulk path,
retries included). Exit status 1 when a search failed or an acknowledged page is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_backends import Corpus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imgrag.indexing.config import Settings
from imgrag.indexing.stores.base import OPERATOR, Filters, ModelSpaces
from imgrag.indexing.stores.elastic import ElasticStore


# -- the cluster ----------------------------------------------------------------------------------
def _dist() -> tuple[Path, Path]:
    """The Elasticsearch distribution and JDK that tests/elasticsearch.sh unpacked and uses."""
    root = os.geteuid() == 0
    base = Path(os.environ.get("IMGRAG_ES_DIST_DIR") or ("/var/tmp/imgrag-es" if root else Path.home() / ".cache/imgrag/es"))
    homes = sorted((p for p in base.glob("*") if (p / ".complete").is_file()), reverse=True)
    if not homes:
        sys.exit(f"no Elasticsearch distribution under {base}: run `bash tests/elasticsearch.sh start` once (and stop it)")
    for j in (os.environ.get("IMGRAG_ES_JAVA_HOME"), "/usr/lib/jvm/temurin-25-jdk-amd64", os.environ.get("JAVA_HOME")):
        if j and (Path(j) / "bin/java").exists():
            return homes[0], Path(j)
    sys.exit("no JDK >= 21: set IMGRAG_ES_JAVA_HOME")


@dataclass
class Node:
    name: str
    http: int
    transport: int
    run: Path
    master: bool
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


def start_node(node: Node, cluster: str, seeds: str, heap: str, home: Path, jdk: Path, first: bool) -> None:
    root = os.geteuid() == 0
    conf = node.run / "config"
    if not conf.exists():
        for d in ("data", "logs", "tmp"):
            (node.run / d).mkdir(parents=True, exist_ok=True)
        shutil.copytree(home / "config", conf)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d/heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
        if root:
            subprocess.run(["chown", "-R", "65534:65534", str(node.run)], check=True)
    env = {**os.environ, "ES_JAVA_HOME": str(jdk), "JAVA_HOME": str(jdk), "ES_PATH_CONF": str(conf),
           "ES_TMPDIR": str(node.run / "tmp"), "HOME": str(node.run)}
    env.pop("ES_JAVA_OPTS", None)
    env.pop("JAVA_TOOL_OPTIONS", None)
    roles = "master,data,ingest" if node.master else "data,ingest"
    cmd = [
        str(home / "bin/elasticsearch"), "-d", "-p", str(node.run / "pid"),
        f"-Ecluster.name={cluster}", f"-Enode.name={node.name}", f"-Enode.roles={roles}",
        "-Enetwork.host=127.0.0.1", f"-Ehttp.port={node.http}", f"-Etransport.port={node.transport}",
        f"-Ediscovery.seed_hosts={seeds}", f"-Epath.data={node.run / 'data'}", f"-Epath.logs={node.run / 'logs'}",
        "-Expack.security.enabled=false", "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        "-Eaction.destructive_requires_name=false",
    ]
    if first:
        cmd.append("-Ecluster.initial_master_nodes=n1")
    if root:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *cmd]
    (node.run / "pid").unlink(missing_ok=True)
    subprocess.run(["setsid", *cmd], env=env, cwd=node.run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        if (node.run / "pid").is_file() and (node.run / "pid").read_text().strip():
            node.pid = int((node.run / "pid").read_text())
            return
        time.sleep(0.5)
    sys.exit(f"{node.name} did not start: see {node.run / 'logs'}")


def kill_node(node: Node) -> None:
    if node.pid:
        try:
            os.kill(node.pid, 9)
        except ProcessLookupError:
            pass
        for _ in range(100):
            try:
                os.kill(node.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        node.pid = None


def stop_node(node: Node) -> None:
    if node.pid:
        try:
            os.kill(node.pid, 15)
            for _ in range(120):
                os.kill(node.pid, 0)
                time.sleep(0.5)
            os.kill(node.pid, 9)
        except ProcessLookupError:
            pass
        node.pid = None


def wait_health(es: Any, status: str, nodes: int, timeout: float = 600) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        try:
            h = es.cluster.health(wait_for_status=status, wait_for_nodes=str(nodes), timeout="5s")
            if not h["timed_out"]:
                return time.perf_counter() - t
        except Exception:  # noqa: BLE001  (the node is still starting)
            time.sleep(1)
    sys.exit(f"the cluster did not become {status} with {nodes} node(s) in {timeout:.0f} s")


# -- the checks -----------------------------------------------------------------------------------
@dataclass
class QueryLog:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    short: int = 0  # answers with fewer hits than asked for
    lat_before: list[float] = field(default_factory=list)
    lat_after: list[float] = field(default_factory=list)


def queries_during_kill(store: ElasticStore, corpus: Corpus, victim: Node, seconds: float, kill_at: float) -> QueryLog:
    """kNN, BM25 and region kNN in a loop; the victim is killed ``kill_at`` s in."""
    log = QueryLog()
    qs = corpus.queries(50, 1)
    killed = threading.Event()

    def killer() -> None:
        time.sleep(kill_at)
        kill_node(victim)
        killed.set()

    threading.Thread(target=killer, daemon=True).start()
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        q = qs[i % len(qs)]
        calls = (
            ("knn", lambda q=q: store.knn("image", q.image, 10, Filters(), OPERATOR), 10),
            ("bm25", lambda q=q: store.bm25(q.text, 10, Filters(), OPERATOR), 1),
            ("regions", lambda q=q: store.knn_regions("tile", q.image, 30, Filters(), OPERATOR), 10),
        )
        for what, fn, want in calls:
            after = killed.is_set()
            t = time.perf_counter()
            try:
                hits = fn()
            except Exception as e:  # noqa: BLE001  (recorded: this is what the check is about)
                log.errors.append(f"{what} at {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {str(e)[:160]}")
                continue
            (log.lat_after if after else log.lat_before).append(time.perf_counter() - t)
            log.ok += 1
            log.short += len(hits) < want
        i += 1
    return log


@dataclass
class BulkLog:
    acked: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    batches_after_kill: int = 0


def bulk_during_kill(store: ElasticStore, corpus: Corpus, start: int, batches: int, size: int, victim: Node, kill_after: int) -> BulkLog:
    """``batches`` writes of ``size`` new pages; the victim is killed while batch ``kill_after`` is in flight."""
    log = BulkLog()
    for b in range(batches):
        items = corpus.batch(start + b * size, size)
        if b == kill_after:
            threading.Timer(0.05, kill_node, args=(victim,)).start()  # inside this bulk request
        try:
            store.write(items)
        except Exception as e:  # noqa: BLE001  (a refused write is allowed; a lost acknowledged one is not)
            log.failed.append((b, f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        log.acked += [it.record.image_id for it in items]
        log.batches_after_kill += b >= kill_after
    return log


def print_shards(es: Any, prefix: str) -> None:
    shards = es.cat.shards(index=f"{prefix}-*", h="index,shard,prirep,state,node", format="json")
    print("   shards: " + "; ".join(
        f"{sh['index']}[{sh['shard']}] {'primary' if sh['prirep'] == 'p' else 'replica'} on {sh['node']}"
        for sh in sorted(shards, key=lambda x: (x["index"], x["shard"], x["prirep"]))
    ))


def watch_partial_results(store: ElasticStore) -> list[str]:
    """Elasticsearch answers from the shards it reached: record every answer whose ``_shards.failed``
    is not 0 (the store asks again, and raises if the answer stays partial)."""
    seen: list[str] = []
    search = store.es.search

    def checked(*a: Any, **kw: Any) -> Any:
        res = search(*a, **kw)
        sh = res.body.get("_shards", {})
        if sh.get("failed"):
            seen.append(f"{sh.get('failed')} of {sh.get('total')} shards failed: {str(sh.get('failures'))[:160]}")
        return res

    store.es.search = checked  # type: ignore[method-assign]
    return seen


def pct(xs: list[float], p: float) -> str:
    return f"{np.percentile(np.asarray(xs) * 1000, p):.0f} ms" if xs else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=2000, help="pages indexed before the first kill")
    ap.add_argument("--bulk-batches", type=int, default=12, help="write() calls of the mid-bulk phase")
    ap.add_argument("--bulk-size", type=int, default=100, help="pages per write() call")
    ap.add_argument("--query-seconds", type=float, default=30)
    ap.add_argument("--heap", default="512m", help="heap of each node")
    ap.add_argument("--base-port", type=int, default=9261, help="HTTP ports base, base+1; transport base+100, base+101")
    ap.add_argument("--regions", type=int, default=15)
    args = ap.parse_args()

    home, jdk = _dist()
    work = Path(tempfile.mkdtemp(prefix="imgrag-failover-", dir="/tmp"))
    os.chmod(work, 0o755)
    p = args.base_port
    n1 = Node("n1", p, p + 100, work / "n1", master=True)
    n2 = Node("n2", p + 1, p + 101, work / "n2", master=False)
    seeds = f"127.0.0.1:{n1.transport},127.0.0.1:{n2.transport}"
    cluster = f"imgrag-failover-{os.getpid()}"
    problems: list[str] = []
    store: ElasticStore | None = None
    try:
        print(f"starting a 2-node cluster ({home.name}, heap {args.heap} each) on ports {n1.http}, {n2.http} ...", flush=True)
        for node in (n1, n2):
            start_node(node, cluster, seeds, args.heap, home, jdk, first=node.master)
        settings = Settings(
            home=work / "home", backend="elasticsearch", es_url=n1.url, es_shards=2, es_replicas=1,
            es_index_prefix="failover", es_request_timeout=30,
        )
        store = ElasticStore(settings)
        es = store.es
        print(f"  green with 2 nodes ({wait_health(es, 'green', 2):.0f} s after the client connected)")
        corpus = Corpus(args.pages + args.bulk_batches * args.bulk_size, (384, 1280, 384), args.regions, 0)
        spaces = ModelSpaces(image="bench-joint", image_dim=384, feature="bench-feat", feature_dim=1280,
                             text="bench-text", text_dim=384)
        store.ensure_spaces(spaces)
        t = time.perf_counter()
        for s in range(0, args.pages, 200):
            store.write(corpus.batch(s, 200))
        store.commit("index", {"indexed": args.pages})
        wait_health(es, "green", 2)
        print(f"indexed {args.pages} pages × {args.regions} regions in {time.perf_counter() - t:.0f} s")
        print_shards(es, settings.es_index_prefix)
        before = store.count(OPERATOR, Filters())
        partial = watch_partial_results(store)

        # -- 1. mid-bulk (first: the primaries are still spread over both nodes)
        kill_after = min(3, args.bulk_batches - 1)
        print(f"\n1. {args.bulk_batches} bulk writes of {args.bulk_size} new pages; n2 is killed (SIGKILL) inside write #{kill_after + 1}")
        t = time.perf_counter()
        bl = bulk_during_kill(store, corpus, args.pages, args.bulk_batches, args.bulk_size, n2, kill_after)
        committed = None
        try:
            committed = store.commit("index", {"indexed": len(bl.acked)})
        except Exception as e:  # noqa: BLE001
            problems.append(f"commit after the kill failed: {type(e).__name__}: {str(e)[:200]}")
        print(f"   {len(bl.acked) // args.bulk_size} of {args.bulk_batches} writes acknowledged "
              f"({bl.batches_after_kill} of them from the one n2 died in on), {len(bl.failed)} refused, "
              f"in {time.perf_counter() - t:.0f} s; commit: {'version ' + str(committed.version) if committed else 'FAILED'}")
        for i, e in bl.failed[:5]:
            print(f"     write #{i + 1} refused: {e}")
        health = es.cluster.health()
        live = store.live_ids(bl.acked)
        missing = sorted(set(bl.acked) - live)
        total = store.count(OPERATOR, Filters())
        print(f"   cluster {health['status']}, {health['number_of_nodes']} node(s); acknowledged pages searchable: "
              f"{len(live)} of {len(bl.acked)}; index holds {total} (expected {before} + {len(bl.acked)})")
        if missing:
            problems.append(f"{len(missing)} acknowledged page(s) missing with n2 down, e.g. {missing[:3]}")
        if total != before + len(bl.acked):
            problems.append(f"page count {total} != {before} + {len(bl.acked)} acknowledged")

        print("\nrestarting n2 ...", flush=True)
        start_node(n2, cluster, seeds, args.heap, home, jdk, first=False)
        print(f"  green again after {wait_health(es, 'green', 2):.0f} s (n2's copies recovered)")
        live2 = store.live_ids(bl.acked)
        total2 = store.count(OPERATOR, Filters())
        print(f"   with n2 back: acknowledged pages {len(live2)} of {len(bl.acked)}; index holds {total2}")
        if len(live2) != len(bl.acked) or total2 != total:
            problems.append(f"after n2 rejoined: {len(live2)} of {len(bl.acked)} acknowledged pages, {total2} pages")
        print_shards(es, settings.es_index_prefix)

        # -- 2. mid-query
        kill_at = min(8.0, args.query_seconds / 3)
        print(f"\n2. searches for {args.query_seconds:.0f} s; n2 is killed (SIGKILL) {kill_at:.0f} s in")
        partial.clear()
        ql = queries_during_kill(store, corpus, n2, args.query_seconds, kill_at)
        health = es.cluster.health()
        after = store.count(OPERATOR, Filters())
        print(f"   answered {ql.ok} of {ql.ok + len(ql.errors)} searches; errors {len(ql.errors)}; "
              f"answers with fewer hits than asked {ql.short}; answers Elasticsearch gave from part of the shards "
              f"(the store asked again) {len(partial)}")
        print(f"   latency before the kill p50 {pct(ql.lat_before, 50)} / max {pct(ql.lat_before, 100)}; "
              f"after p50 {pct(ql.lat_after, 50)} / max {pct(ql.lat_after, 100)}")
        print(f"   cluster {health['status']}, {health['number_of_nodes']} node(s), "
              f"{health['unassigned_shards']} unassigned shard(s); pages {total2} before, {after} after")
        for e in ql.errors[:5]:
            print(f"     error: {e}")
        for e in partial[:5]:
            print(f"     partial: {e}")
        if ql.errors:
            problems.append(f"{len(ql.errors)} search(es) failed while n2 was killed")
        if ql.short or after != total2:
            problems.append(f"searches lost data: {ql.short} short answer(s), {total2} → {after} pages")
        if not ql.lat_after:
            problems.append("no search ran after the kill (raise --query-seconds)")
    finally:
        if store is not None:
            store.close()
        for node in (n2, n1):
            stop_node(node)
        shutil.rmtree(work, ignore_errors=True)
    print()
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("OK: searches kept answering and every acknowledged write survived")


if __name__ == "__main__":
    main()
