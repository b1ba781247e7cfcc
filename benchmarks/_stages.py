"""Per-stage CPU seconds of indexing document pages, for ``bench_pipeline.py --profile``.

Wraps the pipeline's stage functions with a CPU clock, nested calls counted once (a stage's own
time excludes the stages it calls): the process's clock with one analysis worker (pages one after
the other, no two stages overlap), each thread's own with several (``set_clock``), beside CPU by
thread name (``ThreadSampler``), which shows where the model runtimes' own pools spend theirs.
"""

from __future__ import annotations

import functools
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_LOCK = threading.Lock()
OWN: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
HEADS: set[str] = set()  # the page heads embedded (to replay e5 on pages and regions apart)
PASSAGES: list[list[str]] = []  # every embed_passages call's texts


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


CLOCK = _cpu  # the process's clock (one worker); the calling thread's with several (set_clock)
_LOCAL = threading.local()


def set_clock(per_thread: bool) -> None:
    """Per-thread stage clocks for several workers: exact for stages whose work runs on the calling
    thread (1-thread ONNX Runtime sessions in page workers); a main-thread stage that fans out to
    OpenMP / torch threads shows only its own thread's part (the thread table shows the rest)."""
    global CLOCK
    CLOCK = time.thread_time if per_thread else _cpu


def _stack() -> list[list[Any]]:
    st = getattr(_LOCAL, "stack", None)
    if st is None:
        st = _LOCAL.stack = []
    return st


class ThreadSampler:
    """CPU seconds of every thread of this process by name, sampled from /proc (threads that end
    keep their last sample): where a multi-worker run's CPU goes, OpenMP and torch pools included."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="stage-sampler", daemon=True)

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        names = {t.native_id: t.name for t in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            name = names.get(int(tid)) or self.last.get(int(tid), ("native pool threads (OpenMP, torch, ORT)", 0))[0]
            fields = raw[raw.rindex(")") + 2 :].split()
            self.last[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> ThreadSampler:
        self._sample()
        self.start = dict(self.last)
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self._sample()

    def report(self, pages: int, what: str = "document page") -> None:
        by: dict[str, float] = defaultdict(float)
        for tid, (name, cpu) in self.last.items():
            base = self.start.get(tid, (name, 0.0))[1]
            by[name.rstrip("0123456789_")] += cpu - base
        print(f"\nCPU-s per {what} by thread name ({pages} items)")
        for name, s in sorted(by.items(), key=lambda kv: -kv[1]):
            if s > 0.005 * pages:
                print(f"  {name:<36}{s / pages:>8.3f}")


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        stack = _stack()
        frame = [name, CLOCK(), 0.0]
        stack.append(frame)
        try:
            return fn(*a, **kw)
        finally:
            stack.pop()
            spent = CLOCK() - frame[1]
            with _LOCK:
                OWN[name] += spent - frame[2]
                CALLS[name] += 1
            if stack:
                stack[-1][2] += spent

    return wrapper


def install() -> None:
    """Wrap the stages (idempotent enough for one bench run)."""
    from rapidocr.main import RapidOCR

    from imgrag.indexing import pipeline
    from imgrag.indexing import preprocess as prep
    from imgrag.indexing.embedders.text import E5TextEmbedder
    from imgrag.indexing.ocr import RapidOcrEngine

    for mod, names in (
        (pipeline, ("preprocess", "analyze_layout", "detect_seals", "find_marks", "detect_lines",
                    "extract_dates", "read_off", "page_head", "relink", "figure_tiles")),
        (prep, ("classify_quality",)),
    ):
        for n in names:
            setattr(mod, n, _timed(n, getattr(mod, n)))
    for cls, names in (
        (RapidOcrEngine, ("detect", "orientation", "read", "text_score")),
        (RapidOCR, ("cls_and_rotate", "recognize_txt")),
        (pipeline.Indexer, ("_tile_vectors", "_embed", "analyse_and_write")),
        (E5TextEmbedder, ("embed_passages",)),
    ):
        for n in names:
            if hasattr(cls, n):
                setattr(cls, n, _timed(f"{cls.__name__}.{n}", getattr(cls, n)))
    pipeline.analyse_page = _timed("analyse_page (rest)", pipeline.analyse_page)
    head, words = pipeline.page_head, pipeline.page_words
    page_texts: set[str] = set()  # a page's words (page_head fits region texts too)

    def recorded_words(*a: Any, **kw: Any) -> str:
        out = words(*a, **kw)
        page_texts.add(out)
        return out

    def recorded_head(embedder: Any, text: str, *a: Any, **kw: Any) -> str:
        out = head(embedder, text, *a, **kw)
        if text in page_texts:
            HEADS.add(out)
        return out

    pipeline.page_words = recorded_words
    pipeline.page_head = recorded_head
    embed = E5TextEmbedder.embed_passages

    def recorded_embed(self: Any, texts: Any) -> Any:
        PASSAGES.append(list(texts))
        return embed(self, texts)

    E5TextEmbedder.embed_passages = recorded_embed


def reset() -> None:
    """Forget what was counted so far (the warm-up run)."""
    with _LOCK:
        OWN.clear()
        CALLS.clear()
        HEADS.clear()
        PASSAGES.clear()


def wrap_object(obj: Any, names: tuple[str, ...], prefix: str) -> None:
    for n in names:
        setattr(obj, n, _timed(f"{prefix}.{n}", getattr(obj, n)))


def replay_e5(embedder: Any, pages: int) -> None:
    """e5 on the page heads alone and on the regions alone, the same texts the run embedded."""
    heads = [t for call in PASSAGES for t in call if t in HEADS]
    regions = [t for call in PASSAGES for t in call if t not in HEADS]
    for label, texts in (("e5 replay: page heads", heads), ("e5 replay: regions", regions)):
        c = _cpu()
        embedder.embed_passages(texts)
        toks = sum(embedder.token_count(embedder.fit(t)) for t in texts)
        print(f"  {label:<36}{(_cpu() - c) / pages:>8.3f}   ({len(texts)} texts, {toks / pages:.0f} tokens a page)")


def report(pages: int, workers: int, what: str = "document page") -> None:
    clock = "process CPU" if workers == 1 else "each stage's own thread's CPU"
    print(f"\nCPU-s per {what} by stage ({pages} items, {workers} worker(s), {clock}; nested stages apart)")
    total = 0.0
    for name, s in sorted(OWN.items(), key=lambda kv: -kv[1]):
        total += s
        print(f"  {name:<36}{s / pages:>8.3f}   ({CALLS[name]} calls)")
    print(f"  {'sum of the stages':<36}{total / pages:>8.3f}")
