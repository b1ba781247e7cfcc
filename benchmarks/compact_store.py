"""Compact a copy of a LanceDB index: merge each table's data files (one per write batch) into as
few as LanceDB's target size allows, indices remapped, every older version's files removed.

For measuring what compaction buys a search (``bench_backends.py --other-store``); run it on a
COPY (``cp -a``) of an index nobody else uses: the older versions go, so rollback to them does too.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from datetime import timedelta
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index", type=Path, help="the copy's LanceDB directory (holding images.lance, regions.lance)")
    ap.add_argument("--tables", default="regions,images")
    args = ap.parse_args()
    import lancedb

    db = lancedb.connect(str(args.index))
    for name in args.tables.split(","):
        table = db.open_table(name)
        before = table.stats()["fragment_stats"]["num_fragments"]
        cpu, wall = time.process_time(), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cleanup_older_than=0: the copy has no other reader
            table.optimize(cleanup_older_than=timedelta(0))
        after = table.stats()["fragment_stats"]["num_fragments"]
        print(f"{name}: {before} -> {after} data files, {table.count_rows()} rows, "
              f"{time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU, "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB", flush=True)


if __name__ == "__main__":
    main()
