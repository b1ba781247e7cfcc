"""Compact a copy of a LanceDB index the way a commit does (``LanceStore._compact``: Lance compaction,
indices remapped, nothing re-trained, older versions kept), timed per table.

For measuring what compaction costs and buys a search (``bench_backends.py --other-store``); run it
on a COPY (``cp -a``) of an index nobody else uses. ``--optimize`` instead runs LanceDB's
``optimize()`` with every older version removed (what session 10 first measured; it also builds
index deltas, which at 100k pages ran for over 13 minutes).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgrag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index", type=Path, help="the copy's LanceDB directory (holding images.lance, regions.lance)")
    ap.add_argument("--tables", default="regions,images")
    ap.add_argument("--optimize", action="store_true", help="LanceDB's optimize(), older versions removed")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from imgrag.indexing.stores.lance import LanceStore

    store = LanceStore(args.index, compact_fragments=1)  # compact whatever the table's file count
    tables = {"images": store._images, "regions": store._regions}
    with store.writer():
        for name in args.tables.split(","):
            table = tables[name]
            before = table.stats()["fragment_stats"]["num_fragments"]
            cpu, wall = time.process_time(), time.perf_counter()
            if args.optimize:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # cleanup_older_than=0: the copy has no other reader
                    table.optimize(cleanup_older_than=timedelta(0))
            else:
                store._compact(name, table)
            after = table.stats()["fragment_stats"]["num_fragments"]
            print(f"{name}: {before} -> {after} data files, {table.count_rows()} rows, "
                  f"{time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU, "
                  f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB", flush=True)
    store.close()


if __name__ == "__main__":
    main()
