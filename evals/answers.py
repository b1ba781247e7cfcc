"""Answers eval: run an answerer on every golden question that has an answer or a box, and score it.

The answerer is anything with ``async answer(question) -> PredictedAnswer``. The default is the
bundled LangGraph agent in its no-LLM extractive mode, driven through its public API
(:func:`agent.graph.run_agent`) over an in-memory MCP session on the same runtime, so it sees the
index exactly as an MCP client does.

Scores (see :mod:`evals.metrics`): answer accuracy (normalised containment against answer and
aliases; dates compared in ISO), citation precision / recall (cited image ∈ relevant), snippet
grounding (the quoted snippet is in the cited image's stored OCR text), seal localisation IoU@0.5
for "where" questions, and latency p50/p95. For "where" questions the seal detector is also scored
on its own (detected seals of the gold page against the true boxes), so a miss can be blamed on the
right component.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from imgrag.indexing.errors import ImgragError
from imgrag.indexing.stores.base import OPERATOR

from .golden import GoldenItem
from .metrics import answer_correct, best_iou, citation_scores, latency_summary, snippet_grounded

IOU_THRESHOLD = 0.5


class PredictedCitation(BaseModel):
    image_id: str = ""
    image: str = Field(default="", description="file name of the cited image (as golden files name it)")
    snippet: str = ""
    bbox: list[float] | None = None


class PredictedAnswer(BaseModel):
    """What an answerer returns for one question."""

    answer: str = Field(description="the answer as scored: the top claim's value, else the answer text")
    text: str = Field(default="", description="the full answer text")
    citations: list[PredictedCitation] = Field(default_factory=list)
    bbox: list[float] | None = Field(default=None, description="where the answer is, for 'where' questions")
    bbox_image: str = Field(default="", description="the image that bbox is on")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    source: Literal["llm", "extractive"] | None = Field(
        default=None, description="who wrote the top claim: the LLM, or the extractive answerer (no LLM, or the LLM's claims failed)")
    llm_calls: int = 0
    failed_checks: list[str] = Field(default_factory=list, description="the self-check's failures, by check name, every round")


class Answerer(Protocol):
    name: str

    async def answer(self, question: str) -> PredictedAnswer: ...


class ItemScore(BaseModel):
    id: str
    kind: str | None = None
    lang: str | None = None
    correct: bool | None = None
    citation_precision: float | None = None
    citation_recall: float | None = None
    grounded: int = 0
    citations: int = 0
    iou: float | None = None
    detector_iou: float | None = None
    latency_ms: float = 0.0
    source: Literal["llm", "extractive"] | None = None
    llm_calls: int = 0
    failed_checks: list[str] = Field(default_factory=list)
    error: str | None = None


class AnswersResult(BaseModel):
    set: str
    golden: str
    answerer: str
    questions: int
    metrics: dict[str, float | None]
    by_kind: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    latency: dict[str, float]
    node_latency: dict[str, dict[str, float]] = Field(default_factory=dict)
    items: list[ItemScore] = Field(default_factory=list)
    captions: dict[str, Any] | None = None
    seconds: float


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def summarise(scores: Sequence[ItemScore]) -> dict[str, float | None]:
    """Aggregate item scores into the reported metrics (None where no item applies)."""
    acc = [1.0 if s.correct else 0.0 for s in scores if s.correct is not None]
    n_cit = sum(s.citations for s in scores)
    ious = [s.iou for s in scores if s.iou is not None]
    det = [s.detector_iou for s in scores if s.detector_iou is not None]
    llm = [s for s in scores if s.llm_calls]
    return {
        "accuracy": _mean(acc),
        "citation_precision": _mean([s.citation_precision for s in scores]),
        "citation_recall": _mean([s.citation_recall for s in scores]),
        "grounding_rate": round(sum(s.grounded for s in scores) / n_cit, 4) if n_cit else None,
        "seal_iou@0.5": _mean([1.0 if x >= IOU_THRESHOLD else 0.0 for x in ious]),
        "seal_mean_iou": _mean(ious),
        "detector_iou@0.5": _mean([1.0 if x >= IOU_THRESHOLD else 0.0 for x in det]),
        "answered": round(sum(1 for s in scores if s.citations) / len(scores), 4) if scores else None,
        "errors": float(sum(1 for s in scores if s.error)),
        # LLM mode: the share of questions whose top claim is the LLM's (the rest fell back to the
        # extractive answerer: its claims failed the self-check), and LLM calls per question.
        "llm_answered": round(sum(1 for s in llm if s.source == "llm") / len(llm), 4) if llm else None,
        "llm_calls_per_question": round(sum(s.llm_calls for s in llm) / len(llm), 2) if llm else None,
    }


def score_item(
    item: GoldenItem,
    pred: PredictedAnswer | None,
    ocr_text: dict[str, str],
    detected_seals: dict[str, list[list[float]]],
    latency_ms: float,
    error: str | None = None,
) -> ItemScore:
    """Score one prediction. ``ocr_text`` maps a cited image id to its stored OCR text;
    ``detected_seals`` maps a file name to the seal boxes the index detected on it."""
    s = ItemScore(id=item.id, kind=item.kind, lang=item.lang, latency_ms=round(latency_ms, 1), error=error,
                  source=pred.source if pred else None, llm_calls=pred.llm_calls if pred else 0,
                  failed_checks=list(pred.failed_checks) if pred else [])
    rel = list(item.qrels())
    if item.answer:
        s.correct = bool(pred) and answer_correct(pred.answer if pred else "", item.answer, item.answer_aliases)
    cited = [c.image for c in pred.citations] if pred else []
    s.citation_precision, s.citation_recall = citation_scores(cited, rel) if rel else (None, None)
    if pred:
        s.citations = len(pred.citations)
        s.grounded = sum(1 for c in pred.citations if snippet_grounded(c.snippet, ocr_text.get(c.image_id, "")))
    if item.is_where and item.answer_bboxes:
        gold_file = rel[0] if rel else ""
        on_gold = pred is not None and pred.bbox is not None and (not pred.bbox_image or pred.bbox_image == gold_file)
        s.iou = best_iou(pred.bbox if (pred and on_gold) else None, item.answer_bboxes)
        boxes = detected_seals.get(gold_file, [])
        s.detector_iou = max((best_iou(b, item.answer_bboxes) for b in boxes), default=0.0)
    return s


class AgentAnswerer:
    """The bundled agent over an in-memory MCP session on ``app``: extractive (no LLM), or with the
    LLM ``llm`` describes (an :class:`imgrag.agent.llm.LLMConfig`; a fresh client per question, as
    ``imgrag ask`` makes one per run)."""

    def __init__(self, app: Any, corpus: Path | None, config: dict[str, Any] | None = None, llm: Any | None = None) -> None:
        try:
            from imgrag.agent.graph import AgentConfig, run_agent
            from imgrag.agent.llm import LLMClient
            from imgrag.agent.mcp_client import ToolClient
            from imgrag.mcp_server.auth import fixed_principal
            from imgrag.mcp_server.server import build_server
        except ImportError as e:  # the agent is optional for the retrieval eval
            raise ImgragError(f"the bundled agent is not importable ({e})", "install imgrag with its agent extras") from e
        self.app = app
        self.corpus = corpus
        self._run_agent = run_agent
        self._config = AgentConfig(**(config or {}))
        self._server = build_server(app, fixed_principal(OPERATOR))
        self._tool_client = ToolClient
        self._llm = llm
        self._llm_client = LLMClient
        self._names: dict[str, str] = {}
        self.name = f"agent (LLM: {llm.model or llm.base_url})" if llm is not None else "agent (extractive, no LLM)"

    def name_of(self, image_id: str) -> str:
        if image_id not in self._names:
            from .retrieval import hit_name

            rec = self.app.store.get(image_id, OPERATOR)
            self._names[image_id] = hit_name(rec.path, rec.page, rec.n_pages, self.corpus) if rec else image_id
        return self._names[image_id]

    async def answer(self, question: str) -> PredictedAnswer:
        client = self._llm_client(self._llm.model_copy()) if self._llm is not None else None
        try:
            async with self._tool_client.in_memory(self._server) as tools:
                ans, _agent = await self._run_agent(question, tools, client, self._config)
        finally:
            if client is not None:
                await client.close()
        fell_back = ans.mode == "extractive" or any("extractive answerer was used" in n for n in ans.checks.notes)
        claims = [c for c in ans.claims if c.status != "dropped"]
        top = claims[0] if claims else None
        main = (top.value or top.text) if top else ans.answer
        cits = [PredictedCitation(image_id=c.image_id, image=self.name_of(c.image_id), snippet=c.snippet,
                                  bbox=list(c.bbox) if c.bbox else None) for c in ans.citations]
        first = (top.citations[0] if top and top.citations else (ans.citations[0] if ans.citations else None))
        return PredictedAnswer(
            answer=main,
            text=ans.answer,
            citations=cits,
            bbox=list(first.bbox) if first and first.bbox else None,
            bbox_image=self.name_of(first.image_id) if first else "",
            timings_ms=dict(ans.timings_ms),
            source="extractive" if fell_back else "llm",
            llm_calls=ans.usage.llm_calls,
            failed_checks=[f.check for f in ans.checks.failures],
        )


def _pick_subset(items: Sequence[GoldenItem], limit: int | None) -> list[GoldenItem]:
    """A deterministic subset that keeps every kind of question: round-robin over kinds in file order."""
    if limit is None or limit >= len(items):
        return list(items)
    by_kind: dict[str, list[GoldenItem]] = {}
    for it in items:
        by_kind.setdefault(it.kind or "-", []).append(it)
    out: list[GoldenItem] = []
    queues = [list(v) for v in by_kind.values()]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    order = {it.id: i for i, it in enumerate(items)}
    return sorted(out, key=lambda it: order[it.id])


def evaluate_answers(
    app: Any,
    items: Sequence[GoldenItem],
    *,
    set_name: str,
    golden: str,
    answerer: Answerer | None = None,
    llm: Any | None = None,
    corpus: Path | None = None,
    limit: int | None = None,
    run_out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> AnswersResult:
    """Ask every answerable question (or a kind-balanced ``limit`` of them) and score the answers;
    ``llm`` (an ``LLMConfig``) runs the bundled agent in LLM mode."""
    from .retrieval import hit_name

    t0 = time.perf_counter()
    todo = _pick_subset([it for it in items if it.has_answer], limit)
    ans = answerer or AgentAnswerer(app, corpus, llm=llm)
    preds: dict[str, tuple[PredictedAnswer | None, float, str | None]] = {}

    # The warm-up loads the models outside the timed calls; in LLM mode it runs without the LLM, so
    # the endpoint neither spends minutes on an untimed question nor has the first one's prompt cached.
    warm = AgentAnswerer(app, corpus) if llm is not None and answerer is None else ans

    async def run_all() -> None:
        if todo:
            try:
                await warm.answer(todo[0].query)
            except ImgragError:
                pass
        for n, it in enumerate(todo):
            t = time.perf_counter()
            try:
                p: PredictedAnswer | None = await ans.answer(it.query)
                err = None
            except ImgragError as e:
                p, err = None, str(e)
            preds[it.id] = (p, (time.perf_counter() - t) * 1000, err)
            if progress and (n + 1) % 10 == 0:
                progress(f"answers {set_name}: {n + 1}/{len(todo)}")

    asyncio.run(run_all())

    cited_ids = sorted({c.image_id for p, _, _ in preds.values() if p for c in p.citations if c.image_id})
    records = app.store.get_many(cited_ids, OPERATOR) if cited_ids else {}
    ocr_text = {i: r.ocr_text for i, r in records.items()}
    # detected seals per file name, for the "where" questions' gold pages
    seals: dict[str, list[list[float]]] = {}
    where_files = {it.relevant[0] for it in todo if it.is_where and it.relevant}
    if where_files:
        from imgrag.indexing.stores.base import Filters

        offset = 0
        while True:
            page = app.store.list_images(OPERATOR, Filters(has_seal=True), offset=offset, limit=100)
            for rec in page:
                name = hit_name(rec.path, rec.page, rec.n_pages, corpus)
                if name in where_files:
                    seals[name] = [list(sl.bbox) for sl in rec.seals]
            if len(page) < 100:
                break
            offset += 100
    scores = [score_item(it, preds[it.id][0], ocr_text, seals, preds[it.id][1], preds[it.id][2]) for it in todo]
    by_kind: dict[str, dict[str, float | None]] = {}
    for kind in dict.fromkeys(s.kind or "-" for s in scores):
        sub = [s for s in scores if (s.kind or "-") == kind]
        m = summarise(sub)
        by_kind[kind] = {"n": float(len(sub)), **{k: m[k] for k in ("accuracy", "citation_precision", "grounding_rate", "seal_iou@0.5")}}
    node: dict[str, list[float]] = {}
    for p, _, _ in preds.values():
        for k, v in (p.timings_ms if p else {}).items():
            node.setdefault(k, []).append(v)
    if run_out is not None:
        write_answers_run(run_out, todo, {k: v[0] for k, v in preds.items()})
    return AnswersResult(
        set=set_name,
        golden=golden,
        answerer=getattr(ans, "name", type(ans).__name__),
        questions=len(todo),
        metrics=summarise(scores),
        by_kind=by_kind,
        latency=latency_summary([s.latency_ms for s in scores if not s.error]),
        node_latency={k: latency_summary(v) for k, v in sorted(node.items())},
        items=scores,
        seconds=round(time.perf_counter() - t0, 1),
    )


def write_answers_run(path: Path, items: Sequence[GoldenItem], preds: dict[str, PredictedAnswer | None]) -> Path:
    """One line per question: ``{"id", "answer", "citations": [{"image", "snippet"}]}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            p = preds.get(it.id)
            line = {
                "id": it.id,
                "answer": p.answer if p else "",
                "citations": [{"image": c.image, "snippet": c.snippet} for c in (p.citations if p else [])],
            }
            if p and p.bbox is not None:
                line["bbox"] = p.bbox
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- captions


def caption_scores(app: Any, corpus: Path | None, references: dict[str, list[str]]) -> dict[str, Any]:
    """BLEU and CIDEr-D of the indexed captions (the image embedder's labels, English part) against
    reference captions per file name (clipart: title, and keywords)."""
    from imgrag.indexing.stores.base import Filters

    from .metrics import bleu, caption_tokens, cider_d
    from .retrieval import hit_name

    hyps: list[str] = []
    refs: list[list[str]] = []
    examples: list[dict[str, str]] = []
    offset = 0
    while True:
        page = app.store.list_images(OPERATOR, Filters(), offset=offset, limit=100)
        for rec in page:
            name = hit_name(rec.path, rec.page, rec.n_pages, corpus)
            if name in references and references[name]:
                hyp = rec.caption.split(" | ", 1)[0].strip()
                hyps.append(hyp)
                refs.append(references[name])
                if len(examples) < 5:
                    examples.append({"image": name, "caption": hyp, "reference": references[name][0]})
        if len(page) < 100:
            break
        offset += 100
    if not hyps:
        return {"n": 0}
    cider, _ = cider_d(hyps, refs)
    overlap = [bool(set(caption_tokens(h)) & {t for r in rr for t in caption_tokens(r) if len(t) > 2}) for h, rr in zip(hyps, refs, strict=True)]
    return {
        "n": len(hyps),
        "bleu": round(bleu(hyps, refs), 2),
        "cider_d": round(cider, 4),
        "word_overlap_rate": round(sum(overlap) / len(overlap), 4),
        "examples": examples,
    }
