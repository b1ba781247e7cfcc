"""Tables (rich), JSON results and PNG charts (matplotlib, headless) for eval results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .answers import AnswersResult
from .metrics import RANKING_METRICS
from .retrieval import BASELINE, RetrievalResult

_HEAD = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr@10": "MRR@10", "ndcg@10": "nDCG@10"}


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def retrieval_table(r: RetrievalResult) -> Table:
    t = Table(title=f"retrieval · {r.set} · {r.queries} queries / {r.pairs} query–image pairs · {r.backend}",
              header_style="bold", title_justify="left")
    t.add_column("configuration")
    for m in RANKING_METRICS:
        t.add_column(_HEAD[m], justify="right")
    t.add_column("nDCG ÷ hybrid", justify="right")
    t.add_column("R@10 ÷ hybrid", justify="right")
    t.add_column("p50 ms", justify="right")
    t.add_column("p95 ms", justify="right")
    for c in r.configs.values():
        style = "bold" if c.name == BASELINE else None
        t.add_row(c.label, *[_f(c.metrics[m]) for m in RANKING_METRICS], _f(c.ratio_vs_hybrid.get("ndcg@10"), 2),
                  _f(c.ratio_vs_hybrid.get("recall@10"), 2), f"{c.latency['p50_ms']:.0f}", f"{c.latency['p95_ms']:.0f}",
                  style=style)
    return t


def breakdown_table(r: RetrievalResult, attr: str = "by_kind") -> Table:
    """nDCG@10 per query kind (or language) and configuration: where each route helps."""
    t = Table(title=f"nDCG@10 by {attr.removeprefix('by_')} · {r.set}", header_style="bold", title_justify="left")
    t.add_column(attr.removeprefix("by_"))
    t.add_column("n", justify="right")
    for c in r.configs.values():
        t.add_column(c.name, justify="right")
    groups = next(iter(r.configs.values())).__getattribute__(attr) if r.configs else {}
    for g, vals in groups.items():
        t.add_row(g, str(int(vals["n"])), *[_f(getattr(c, attr).get(g, {}).get("ndcg@10")) for c in r.configs.values()])
    return t


def stages_table(r: RetrievalResult) -> Table:
    t = Table(title=f"search stage latency (ms, p50 / p95) · {r.set}", header_style="bold", title_justify="left")
    stages = sorted({s for c in r.configs.values() for s in c.stages})
    t.add_column("configuration")
    for s in stages:
        t.add_column(s, justify="right")
    for c in r.configs.values():
        t.add_row(c.name, *[(f"{c.stages[s]['p50_ms']:.0f} / {c.stages[s]['p95_ms']:.0f}" if s in c.stages else "") for s in stages])
    return t


def sweep_table(r: RetrievalResult) -> Table:
    n = r.sweep[0].queries if r.sweep else 0
    t = Table(title=f"weight sweep (hybrid + re-rank, fixed sample of {n} queries; * = current) · {r.set}", header_style="bold", title_justify="left")
    t.add_column("setting")
    t.add_column("value", justify="right")
    for m in RANKING_METRICS:
        t.add_column(_HEAD[m], justify="right")
    for p in r.sweep:
        t.add_row(p.setting, f"{p.value:g}" + (" *" if p.current else ""), *[_f(p.metrics[m]) for m in RANKING_METRICS])
    return t


def answers_table(results: list[AnswersResult]) -> Table:
    t = Table(title="answers", header_style="bold", title_justify="left")
    cols = [("set", None), ("n", None), ("accuracy", "accuracy"), ("cit. P", "citation_precision"),
            ("cit. R", "citation_recall"), ("grounded", "grounding_rate"), ("seal IoU@.5", "seal_iou@0.5"),
            ("detector IoU@.5", "detector_iou@0.5")]
    for name, _ in cols:
        t.add_column(name, justify="left" if name == "set" else "right")
    t.add_column("p50 ms", justify="right")
    t.add_column("p95 ms", justify="right")
    llm = any(r.metrics.get("llm_answered") is not None for r in results)
    if llm:
        t.add_column("LLM answered", justify="right")
        t.add_column("LLM calls/q", justify="right")
    for r in results:
        name = r.set if r.metrics.get("llm_answered") is None else f"{r.set} · {r.answerer}"
        extra = [_f(r.metrics.get("llm_answered")), _f(r.metrics.get("llm_calls_per_question"), 1)] if llm else []
        t.add_row(name, str(r.questions), *[_f(r.metrics.get(k)) for _, k in cols[2:]],
                  f"{r.latency['p50_ms']:.0f}", f"{r.latency['p95_ms']:.0f}", *extra)
    return t


def answers_kind_table(r: AnswersResult) -> Table:
    t = Table(title=f"answers by question kind · {r.set}", header_style="bold", title_justify="left")
    for c in ("kind", "n", "accuracy", "cit. P", "grounded", "seal IoU@.5"):
        t.add_column(c, justify="left" if c == "kind" else "right")
    for kind, m in r.by_kind.items():
        t.add_row(kind, str(int(m["n"] or 0)), _f(m.get("accuracy")), _f(m.get("citation_precision")),
                  _f(m.get("grounding_rate")), _f(m.get("seal_iou@0.5")))
    return t


def captions_table(set_name: str, c: dict[str, Any]) -> Table:
    t = Table(title=f"captions (image embedder labels vs titles) · {set_name}", header_style="bold", title_justify="left")
    for col in ("n", "BLEU", "CIDEr-D", "word overlap"):
        t.add_column(col, justify="right")
    t.add_row(str(c.get("n", 0)), _f(c.get("bleu"), 2), _f(c.get("cider_d")), _f(c.get("word_overlap_rate")))
    return t


def print_retrieval(console: Console, r: RetrievalResult) -> None:
    console.print(retrieval_table(r))
    console.print(breakdown_table(r, "by_kind"))
    if len(next(iter(r.configs.values())).by_lang) > 1:
        console.print(breakdown_table(r, "by_lang"))
    console.print(stages_table(r))
    if r.sweep:
        console.print(sweep_table(r))


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def retrieval_chart(r: RetrievalResult, path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per configuration, plus p95 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(r.configs)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(RANKING_METRICS))
    w = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        c = r.configs[n]
        ax.bar(x + i * w - 0.4 + w / 2, [c.metrics[m] for m in RANKING_METRICS], w, label=c.label)
    ax.set_xticks(x, [_HEAD[m] for m in RANKING_METRICS])
    ax.set_ylim(0, 1)
    ax.set_title(f"{r.set}: {r.queries} queries, {r.backend}")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    ax2.barh(range(len(names)), [r.configs[n].latency["p95_ms"] for n in names], color="grey")
    ax2.set_yticks(range(len(names)), names, fontsize=7)
    ax2.set_xlabel("p95 latency (ms)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def answers_chart(results: list[AnswersResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = ["accuracy", "citation_precision", "citation_recall", "grounding_rate", "seal_iou@0.5", "detector_iou@0.5"]
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(keys))
    w = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        ax.bar(x + i * w - 0.4 + w / 2, [r.metrics.get(k) or 0.0 for k in keys], w, label=f"{r.set} ({r.questions})")
    ax.set_xticks(x, keys, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("answers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tune_table(res: Any, top: int = 15) -> Table:
    """The best settings by dev-half nDCG@10 (mean over sets), the current one always shown."""
    keys = list(res.grid)
    t = Table(title=f"fusion weights by nDCG@10 · dev half chooses, test half checks · {', '.join(res.sets)}")
    for key in keys:
        t.add_column(key, justify="right")
    t.add_column("dev mean", justify="right")
    t.add_column("test mean", justify="right")
    for s in res.sets:
        t.add_column(f"{s} dev/test", justify="right")
    shown = list(res.points[:top])
    if res.current not in shown:
        shown.append(res.current)
    for p in shown:
        row = [f"{p.setting[k]:g}" for k in keys] + [_f(p.dev_mean), _f(p.test_mean)]
        row += [f"{_f(p.dev[s])} / {_f(p.test[s])}" for s in res.sets]
        t.add_row(*row, style="bold" if p.current else None, end_section=p.current)
    return t
