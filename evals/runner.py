"""What ``imgrag eval retrieval|answers|all`` do, kept out of the CLI module so tests and scripts
can call it: resolve a set (standard name → built, cached and indexed; PATH → a golden file over
an already indexed folder), run, print the tables, write JSON + PNG (+ runs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from imgrag.indexing.config import Settings, get_settings
from imgrag.indexing.errors import ImgragError

from .golden import GoldenFormatError
from .standard import ALL_SETS, STANDARD_SETS, PreparedSet, build_standard, ensure_indexed, eval_settings

DEFAULT_OUT = Path("~/.cache/imgrag/eval/results")
# Questions asked per standard set by `imgrag eval all` (the agent re-reads regions with OCR, a few
# seconds per question on a laptop CPU); `imgrag eval answers --limit 0` asks them all.
ALL_ANSWER_LIMITS = {"contracts": 60, "docqa": 30}


def base_settings(backend: str | None) -> Settings:
    s = get_settings()
    if backend is not None:
        if backend not in ("lancedb", "elasticsearch"):
            raise ImgragError(f"unknown --backend {backend!r}", "use lancedb or elasticsearch")
        s = s.model_copy(update={"backend": backend})
    return s


def resolve(set_arg: str, backend: str | None, folder: Path | None, console: Console) -> tuple[PreparedSet, Any, dict[str, Any]]:
    """(prepared set, application, index info). A standard set is built and indexed on first use."""
    from imgrag.indexing.app import Imgrag

    base = base_settings(backend)
    log = lambda msg: console.print(msg, style="dim", markup=False, highlight=False)  # noqa: E731
    if set_arg in ALL_SETS:
        prepared = build_standard(set_arg, log=log)
        app = Imgrag(eval_settings(base, prepared))
        info = ensure_indexed(prepared, app, log=log, progress=_progress(console, prepared.name))
        return prepared, app, info
    path = Path(set_arg).expanduser()
    if not path.is_file():
        raise ImgragError(f"no golden set {set_arg!r}", f"name one of {', '.join(ALL_SETS)} or a JSONL file")
    corpus = folder.expanduser().resolve() if folder else None
    if corpus is not None and not corpus.is_dir():
        raise ImgragError(f"--folder {folder} is not a folder", "give the folder the golden file names refer to")
    prepared = PreparedSet(name=path.stem, golden=path, corpus=corpus)
    try:
        prepared.items()
    except GoldenFormatError as e:
        raise ImgragError(str(e), 'each line needs {"id", "query", "relevant": [file names]}') from e
    app = Imgrag(base)
    _require_pages(app, corpus)
    return prepared, app, {}


def _require_pages(app: Any, corpus: Path | None) -> None:
    """An eval over an empty index (or a folder it never indexed) would score 0 everywhere and look
    like a ranking failure; say what is missing instead."""
    from imgrag.indexing.stores.base import OPERATOR, Filters

    filters = Filters(path_prefix=str(corpus)) if corpus is not None else Filters()
    if app.store.count(OPERATOR, filters):
        return
    s = app.settings
    where = f"Elasticsearch index {s.es_index_prefix!r} at {s.es_url}" if s.backend == "elasticsearch" else f"index in {s.home}"
    what = f"no page under {corpus}" if corpus is not None else "no pages"
    env = "IMGRAG_BACKEND=elasticsearch " if s.backend == "elasticsearch" else ""
    raise ImgragError(f"the {where} holds {what}", f"index it first: {env}imgrag index {corpus or 'FOLDER'}")


def _progress(console: Console, name: str) -> Any:
    """A progress callback for indexing: a line every 10 pages (works in logs and terminals)."""
    state = {"n": 0, "t": time.perf_counter()}

    def cb(event: str, data: dict[str, Any]) -> None:
        if event == "start":
            state["total"] = data.get("files", 0)
        elif event == "page":
            state["n"] += 1
            if state["n"] % 10 == 0:
                dt = time.perf_counter() - state["t"]
                console.print(f"  {name}: {state['n']}/{state.get('total', '?')} pages · {dt:.0f}s", style="dim", markup=False, highlight=False)

    return cb


def run_retrieval(set_arg: str, *, backend: str | None = None, k: int = 10, out: Path | None = None,
                  run_out: Path | None = None, folder: Path | None = None, sweep: str | None = None,
                  console: Console | None = None) -> Any:
    from .report import print_retrieval, retrieval_chart, write_json
    from .retrieval import CONFIGS, NO_LINKS, evaluate_retrieval, parse_sweep

    console = console or Console()
    sweep_spec = parse_sweep(sweep)
    prepared, app, info = resolve(set_arg, backend, folder, console)
    items = prepared.items()
    configs = (*CONFIGS, NO_LINKS) if prepared.links or any(getattr(it, "link", None) for it in items) else CONFIGS
    res = evaluate_retrieval(app.rt, items, set_name=prepared.name, golden=str(prepared.golden), k=k, corpus=prepared.corpus,
                             configs=configs,
                             restrict_to_corpus=folder is not None, sweep=sweep_spec, run_out=run_out,
                             runs_dir=_out(out) / "runs", index_info={k2: v for k2, v in info.items() if k2 != "files"},
                             progress=lambda m: console.print(m, style="dim", markup=False, highlight=False))
    print_retrieval(console, res)
    d = _out(out)
    j = write_json(d / f"retrieval-{prepared.name}.json", res)
    png = retrieval_chart(res, d / f"retrieval-{prepared.name}.png")
    console.print(f"[dim]wrote {j} and {png}" + (f" and {run_out}" if run_out else "") + "[/]", highlight=False)
    return res


ANSWER_MODES = ("extractive", "llm", "both")


def llm_config(mode: str) -> Any:
    """The LLM an ``--mode llm|both`` eval runs the agent with (the same settings as ``imgrag ask``),
    or None for ``extractive``."""
    if mode not in ANSWER_MODES:
        raise ImgragError(f"unknown --mode {mode!r}", f"use one of {', '.join(ANSWER_MODES)}")
    if mode == "extractive":
        return None
    from imgrag.agent.llm import LLMConfig

    cfg = LLMConfig.from_settings(get_settings())
    if cfg is None:
        raise ImgragError(f"--mode {mode} needs an LLM endpoint, and none is configured (or IMGRAG_LLM=off)",
                          "set IMGRAG_LLM_BASE_URL (or OPENAI_BASE_URL) to an OpenAI-compatible /v1 endpoint; see docs/agent.md")
    return cfg


def run_answers(set_arg: str, *, backend: str | None = None, out: Path | None = None, run_out: Path | None = None,
                folder: Path | None = None, limit: int | None = None, mode: str = "extractive",
                console: Console | None = None) -> Any:
    """Score the agent's answers; ``mode`` ``llm`` runs it with the configured LLM, ``both`` runs the
    extractive agent and then the LLM one on the same questions and index, and prints them together.
    Returns (the last result, captions)."""
    from .answers import caption_scores, evaluate_answers
    from .report import answers_chart, answers_kind_table, answers_table, captions_table, write_json

    console = console or Console()
    llm = llm_config(mode)  # a missing endpoint fails before anything is indexed
    prepared, app, _ = resolve(set_arg, backend, folder, console)
    items = prepared.items()
    captions = None
    if prepared.name == "clipart" and prepared.root is not None:
        from .golden.clipart import read_meta

        refs = {m.file: [m.title] + ([" ".join(k.replace("_", " ") for k in m.keywords)] if m.keywords else []) for m in read_meta(prepared.root)}
        captions = caption_scores(app, prepared.corpus, refs)
        console.print(captions_table(prepared.name, captions))
    res = None
    if any(it.has_answer for it in items):
        d = _out(out)
        runs = [("", None)] if mode == "extractive" else [("-llm", llm)] if mode == "llm" else [("", None), ("-llm", llm)]
        results = []
        for suffix, cfg in runs:
            r_out = run_out.with_name(f"{run_out.stem}{suffix}{run_out.suffix}") if run_out is not None and suffix else run_out
            res = evaluate_answers(app, items, set_name=prepared.name, golden=str(prepared.golden), corpus=prepared.corpus,
                                   limit=limit or None, run_out=r_out, llm=cfg,
                                   progress=lambda m: console.print(m, style="dim", markup=False, highlight=False))
            res.captions = captions
            results.append(res)
            console.print(answers_table([res]))
            console.print(answers_kind_table(res))
            j = write_json(d / f"answers-{prepared.name}{suffix}.json", res)
            png = answers_chart([res], d / f"answers-{prepared.name}{suffix}.png")
            console.print(f"[dim]wrote {j} and {png}" + (f" and {r_out}" if r_out else "") + "[/]", highlight=False)
        if len(results) > 1:
            console.print(answers_table(results))
    elif captions is not None:
        write_json(_out(out) / f"captions-{prepared.name}.json", captions)
    else:
        console.print(f"{prepared.name}: no question has an answer or a box; nothing to score")
    return res, captions


def run_all(*, backend: str | None = None, out: Path | None = None, k: int = 10, sweep: str | None = None,
            answers_limit: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Every standard set: retrieval on all, answers where there are answers, captions on clipart;
    the tables again at the end, together."""
    from .report import answers_chart, answers_table, captions_table, print_retrieval, write_json

    console = console or Console()
    t0 = time.perf_counter()
    retrieval, answers, captions = {}, [], {}
    for name in STANDARD_SETS:
        retrieval[name] = run_retrieval(name, backend=backend, k=k, out=out, sweep=sweep, console=console)
    for name in STANDARD_SETS:
        limit = ALL_ANSWER_LIMITS.get(name) if answers_limit is None else (answers_limit or None)
        res, cap = run_answers(name, backend=backend, out=out, limit=limit, console=console)
        if res is not None:
            answers.append(res)
        if cap is not None:
            captions[name] = cap
    console.rule("summary")
    for r in retrieval.values():
        print_retrieval(console, r)
    if answers:
        console.print(answers_table(answers))
        answers_chart(answers, _out(out) / "answers-all.png")
    for name, cap in captions.items():
        console.print(captions_table(name, cap))
    total = round(time.perf_counter() - t0, 1)
    summary = {
        "seconds": total,
        "retrieval": {n: {c: r.configs[c].metrics for c in r.configs} for n, r in retrieval.items()},
        "answers": {a.set: a.metrics for a in answers},
        "captions": captions,
        "queries": {n: r.queries for n, r in retrieval.items()},
        "pairs": {n: r.pairs for n, r in retrieval.items()},
    }
    write_json(_out(out) / "summary.json", summary)
    console.print(f"[dim]eval all: {total:.0f}s · results in {_out(out)}[/]", highlight=False)
    return summary


def run_tune(sets: list[str] | None = None, *, backend: str | None = None, grid: str | None = None, top: int = 15,
             folder: Path | None = None, out: Path | None = None, console: Console | None = None) -> Any:
    """Recall each set's queries once, score every grid point on dev/test halves, print the best."""
    from .report import tune_table, write_json
    from .tune import DEFAULT_GRID, parse_grid, recall_set, tune

    console = console or Console()
    names = sets or list(STANDARD_SETS)
    grid_spec = parse_grid(grid or DEFAULT_GRID)
    log = lambda m: console.print(m, style="dim", markup=False, highlight=False)  # noqa: E731
    prepared = []
    for name in names:
        p, app, _ = resolve(name, backend, folder, console)
        log(f"tune {p.name}: recalling {len(p.items())} queries")
        prepared.append(recall_set(p.name, app.rt, p.items(), p.corpus, 10, restrict=folder is not None, progress=log))
    res = tune(prepared, grid_spec, progress=log)
    console.print(tune_table(res, top))
    j = write_json(_out(out) / "tune.json", res)
    console.print(f"[dim]{len(res.points)} settings in {res.seconds:.0f}s · wrote {j}[/]", highlight=False)
    return res


def _out(out: Path | None) -> Path:
    d = (out or DEFAULT_OUT).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d
