"""`imgrag eval`: retrieval, answers, tune, embeddings, all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgrag.indexing.errors import ImgragError

from .common import app, err, fail, out


eval_app = typer.Typer(help="Measure retrieval, answers and latency on golden sets (see docs/evaluation.md).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

SetOpt = Annotated[str, typer.Option("--set", help="standard set (contracts, docqa, clipart, natural-dev, natural-heldout, pictures-dev, pictures-heldout; retrieval also xray_reports, defect_sops) or a JSONL golden file")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help="lancedb | elasticsearch (default: IMGRAG_BACKEND)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="folder for the JSON results and PNG charts [default: ~/.cache/imgrag/eval/results]")]
FolderOpt = Annotated[Path | None, typer.Option("--folder", help="PATH sets: the indexed folder the golden file names refer to (also limits the search to it)")]


@eval_app.command("retrieval")
def eval_retrieval(
    set_: SetOpt,
    backend: BackendOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="ranked list length written by --run-out")] = 10,
    out_dir: OutOpt = None,
    run_out: Annotated[Path | None, typer.Option("--run-out", help='write one JSON line per query: id and ranked (file names, best first; hybrid + re-rank)')] = None,
    folder: FolderOpt = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="also score hybrid + re-rank at other settings, e.g. 'image=0,0.5,1;bm25=1,2'")] = None,
) -> None:
    """Recall@1/5/10, MRR@10, nDCG@10 and latency for every route configuration, in one run."""
    from imgrag.evals.runner import run_retrieval

    try:
        run_retrieval(set_, backend=backend, k=k, out=out_dir, run_out=run_out, folder=folder, sweep=sweep, console=out)
    except ImgragError as e:
        fail(e)


@eval_app.command("answers")
def eval_answers(
    set_: SetOpt,
    backend: BackendOpt = None,
    out_dir: OutOpt = None,
    run_out: Annotated[Path | None, typer.Option("--run-out", help='write one JSON line per question: id, answer and citations (image, snippet)')] = None,
    folder: FolderOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="ask at most this many questions, balanced over kinds (0: all)")] = 0,
    mode: Annotated[str, typer.Option("--mode", help="extractive (no LLM); llm: the agent with the LLM of IMGRAG_LLM_BASE_URL / OPENAI_BASE_URL / IMGRAG_LLM_MODEL; both: extractive then LLM on the same questions, side by side")] = "extractive",
) -> None:
    """Answer accuracy, citation precision/recall, snippet grounding, seal IoU and latency of the agent."""
    from imgrag.evals.runner import run_answers

    try:
        run_answers(set_, backend=backend, out=out_dir, run_out=run_out, folder=folder, limit=limit or None, mode=mode, console=out)
    except ImgragError as e:
        fail(e)


@eval_app.command("tune")
def eval_tune(
    set_: Annotated[list[str] | None, typer.Option("--set", help="standard set(s) to tune on (repeatable; default: all three)")] = None,
    backend: BackendOpt = None,
    grid: Annotated[str | None, typer.Option("--grid", help="settings to try, e.g. 'image=0,0.25;bm25=1,2;rerank=0.3,0.6' (keys: image, bm25, text_vector, region, rerank, rrf_k, standout)")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="rows to print")] = 15,
    folder: FolderOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """Grid-search the fusion weights: each query is recalled once, every setting re-ranks it; dev/test halves."""
    from imgrag.evals.runner import run_tune

    try:
        run_tune(set_, backend=backend, grid=grid, top=top, folder=folder, out=out_dir, console=out)
    except ImgragError as e:
        fail(e)


@eval_app.command("embeddings")
def eval_embeddings(
    adapter: Annotated[list[Path] | None, typer.Option("--adapter", help="adapter folder(s) to compare (repeatable)")] = None,
    clip_model: Annotated[str | None, typer.Option("--clip-model", help="also a CLIP model folder or cached name")] = None,
    transfer_memory: Annotated[Path | None, typer.Option(
        "--transfer-memory", help="also the transfer embedder with this memory file (collections it holds are left out)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the rows as JSON")] = None,
) -> None:
    """bridge vs aligned vs transfer vs clip: text → image R@1/5/10 and MRR on held-out openclipart, emoji and scikit-image photos, EN + ZH."""
    from imgrag.evals.embeddings import compare, format_table

    try:
        rows = compare(adapter or [], clip_model, transfer_memory=transfer_memory, log=lambda m: err.print(m, highlight=False))
    except ImgragError as e:
        fail(e)
    print(format_table(rows))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=2, ensure_ascii=False))


@eval_app.command("all")
def eval_all(
    backend: BackendOpt = None,
    out_dir: OutOpt = None,
    sweep: Annotated[str | None, typer.Option("--sweep", help="weight sweep for the retrieval runs, as in `eval retrieval`")] = None,
    answers_limit: Annotated[int | None, typer.Option("--answers-limit", min=0, help="questions asked per set (default 60 contracts, 30 docqa; 0: all)")] = None,
) -> None:
    """Build (once) and index the standard sets, then run retrieval and answers on all of them."""
    from imgrag.evals.runner import run_all

    try:
        run_all(backend=backend, out=out_dir, sweep=sweep, answers_limit=answers_limit, console=out)
    except ImgragError as e:
        fail(e)

