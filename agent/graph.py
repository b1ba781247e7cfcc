"""The ``imgrag ask`` agent as a LangGraph state machine.

    plan → retrieve → inspect → answer → self_check ─┬─ retry ─→ retrieve (with feedback)
                                                      └─ finalize → END

Why each step exists: *plan* splits the question so each part gets its own search (and a year in
the question becomes a date filter instead of noise in the query); *retrieve* searches each part
and fuses the queries' rankings; *inspect* zooms in — it crops the best regions and re-reads them
with ``ocr_region`` at a higher scale, because page-level OCR misses small print, and asks a vision
model about the crop when one is configured; *answer* writes claims that cite image ids and verbatim
OCR snippets (an LLM, or the extractive answerer that quotes the best lines); *self_check* refuses
anything it cannot verify — a cited image that was not inspected in this run, a snippet that is not
in that image's OCR text, a claim an LLM judges unsupported — and sends the failing parts back to
retrieve once more with feedback, dropping them if they still fail.

The agent sees the index only through MCP tools (:class:`agent.mcp_client.ToolClient`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from imgrag.indexing.text import query_terms, tokens

from .evidence import (
    EvidenceLine,
    asked_roles,
    ImageInfo,
    title_match,
    Scored,
    best_lines,
    entity_match,
    find_amount,
    find_date,
    label_for,
    snippet_matches,
    squash,
    term_coverage,
)
from .llm import LLMClient, LLMOutputError, image_part, text_part
from .mcp_client import HitView, OcrView, ToolClient, ToolError
from .planner import Plan, SubQuestion, llm_plan, rule_plan
from .schemas import Answer, CheckFailure, Checks, Citation, Claim, LLMAnswer, LLMVerdict

log = logging.getLogger("imgrag.agent")


class AgentConfig(BaseModel):
    """Knobs of one run; the defaults suit a laptop CPU and a small index."""

    k: int = Field(default=5, ge=1, le=50, description="hits kept per sub-question")
    filters: dict[str, Any] = Field(default_factory=dict, description="search_images filters from --filter")
    inspect_top: int = Field(default=3, ge=1, le=10, description="images inspected per sub-question per round")
    regions_per_image: int = Field(default=2, ge=1, le=6, description="regions re-read with ocr_region per image")
    max_retries: int = Field(default=1, ge=0, le=3, description="retrieve/inspect rounds after a failed self-check")
    max_claims_per_sub: int = Field(default=3, ge=1, le=10)
    crop_scale: float = Field(default=2.0, ge=1.0, le=4.0)
    llm_evidence_lines: int = Field(default=24, ge=4, le=200, description="evidence lines shown to the LLM")
    keep_crops: bool = Field(default=False, description="crop the best regions even without a vision model")


class TraceEvent(BaseModel):
    node: str
    round: int
    ms: float
    decisions: list[str] = Field(default_factory=list)


class AgentState(TypedDict, total=False):
    question: str
    plan: Plan
    hits: dict[int, list[HitView]]
    evidence: dict[int, list[EvidenceLine]]
    claims: list[Claim]
    answer_text: str
    fallback: bool
    feedback: list[str]
    failed_subs: list[int]
    answered_docs: dict[int, list[str]]
    round: int
    verdict: Literal["retry", "finalize"]
    result: Answer


def _expand(b: tuple[float, float, float, float], w: int, h: int, *, full_row: bool, down: float = 0.0) -> list[float]:
    """A line box grown into the band a re-read should see: some margin around the glyphs, the whole
    row when the value may sit to the right, and optionally the next row."""
    x0, y0, x1, y1 = b
    lh = max(8.0, y1 - y0)
    if full_row and w:
        x0, x1 = 0.03 * w, 0.97 * w
    else:
        x0, x1 = x0 - 0.6 * lh, x1 + 0.6 * lh
    y0, y1 = y0 - 0.45 * lh, y1 + 0.45 * lh + down * lh
    if w and h:
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    return [x0, y0, x1, y1]


def _overlap(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])) or 1.0
    return inter / small


class ImgragAgent:
    """One agent bound to an MCP session and, optionally, an LLM. ``await agent.ask(question)``."""

    def __init__(
        self,
        tools: ToolClient,
        llm: LLMClient | None = None,
        config: AgentConfig | None = None,
        tracer: Callable[[TraceEvent], None] | None = None,
    ) -> None:
        self.tools = tools
        self.llm = llm
        self.config = config or AgentConfig()
        self.tracer = tracer
        self.usage = tools.usage
        if llm is not None:
            llm.usage = self.usage
        self.images: dict[str, ImageInfo] = {}
        self.inspected: set[str] = set()
        self.crops: dict[str, tuple[list[float], bytes]] = {}
        self.trace: list[TraceEvent] = []
        self.timings_ms: dict[str, float] = {}
        self.checks = Checks()
        self._decisions: list[str] = []
        self._ocr_cache: dict[tuple[str, tuple[int, ...] | None], OcrView] = {}
        self._answered_docs: dict[int, list[str]] = {}  # part → documents its claims came from, in order
        self._graph = self._build()

    @property
    def mode(self) -> Literal["llm", "extractive"]:
        return "llm" if self.llm is not None else "extractive"

    # -- graph wiring ----------------------------------------------------------------------------
    def _build(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        g = StateGraph(AgentState)
        for name, fn in (
            ("plan", self._plan),
            ("retrieve", self._retrieve),
            ("inspect", self._inspect),
            ("answer", self._answer),
            ("self_check", self._self_check),
            ("finalize", self._finalize),
        ):
            g.add_node(name, self._timed(name, fn))
        g.add_edge(START, "plan")
        g.add_edge("plan", "retrieve")
        g.add_edge("retrieve", "inspect")
        g.add_edge("inspect", "answer")
        g.add_edge("answer", "self_check")
        g.add_conditional_edges("self_check", lambda s: s["verdict"], {"retry": "retrieve", "finalize": "finalize"})
        g.add_edge("finalize", END)
        return g.compile()

    def _timed(
        self, name: str, fn: Callable[[AgentState], Awaitable[dict[str, Any]]]
    ) -> Callable[[AgentState], Awaitable[dict[str, Any]]]:
        async def node(state: AgentState) -> dict[str, Any]:
            self._decisions = []
            t = time.perf_counter()
            update = await fn(state)
            ms = round((time.perf_counter() - t) * 1000, 1)
            self.timings_ms[name] = round(self.timings_ms.get(name, 0.0) + ms, 1)
            ev = TraceEvent(node=name, round=state.get("round", 0), ms=ms, decisions=self._decisions)
            self.trace.append(ev)
            if self.tracer is not None:
                self.tracer(ev)
            return update

        return node

    def _note(self, msg: str) -> None:
        self._decisions.append(msg)
        log.debug(msg)

    async def ask(self, question: str) -> Answer:
        """Run the graph once for ``question``; the result carries checks, usage and node timings."""
        question = question.strip()
        if not question:
            from imgrag.indexing.errors import ImgragError

            raise ImgragError("empty question", "ask something, e.g. imgrag ask \"甲方是谁\"")
        limit = 6 * (self.config.max_retries + 2)
        state = await self._graph.ainvoke({"question": question, "round": 0}, {"recursion_limit": limit})
        return state["result"]

    # -- plan ------------------------------------------------------------------------------------
    async def _plan(self, state: AgentState) -> dict[str, Any]:
        q = state["question"]
        if self.llm is not None:
            plan = await llm_plan(q, self.llm, self.config.filters)
        else:
            plan = rule_plan(q, self.config.filters)
        self._note(f"planner: {plan.source} · language {plan.lang} · filters {plan.filters or 'none'}")
        for n in plan.notes:
            self._note(n)
        for i, s in enumerate(plan.sub_questions, 1):
            ents = f" entities={s.entities}" if s.entities else ""
            self._note(f"sub-question {i}: {s.question!r} [{s.intent}] queries={s.queries}{ents}")
        return {"plan": plan, "hits": {}, "evidence": {}, "feedback": [], "failed_subs": list(range(len(plan.sub_questions)))}

    # -- retrieve --------------------------------------------------------------------------------
    async def _search(self, query: str, k: int, filters: dict[str, Any], mode: str = "hybrid") -> list[HitView]:
        try:
            return (await self.tools.search_images(query, k=k, filters=filters or None, mode=mode)).hits
        except ToolError as e:
            self._note(f"search {query!r} failed: {e}")
            return []

    async def _retrieve(self, state: AgentState) -> dict[str, Any]:
        plan = state["plan"]
        rnd = state.get("round", 0)
        hits = dict(state.get("hits", {}))
        k = self.config.k * (2 if rnd else 1)
        for i in state.get("failed_subs", []):
            sub = plan.sub_questions[i]
            queries = list(sub.queries)
            modes = ["hybrid"] * len(queries)
            if sub.entities and not rnd:
                # The names alone as an exact keyword search: a contract number or an English company
                # named in a Chinese question (or the reverse) is what picks the document, and the
                # vector routes lean towards pages in the question's language.
                queries.append(" ".join(sub.entities))
                modes.append("keyword")
            if rnd:
                # A second look: the bare key words as an exact keyword search, and the raw question.
                kw = " ".join([*sub.entities, *[t for t in sub.key_terms if len(t) > 1 or t.isascii()]]).strip()
                for extra, mode in ((kw, "keyword"), (sub.question, "hybrid")):
                    if extra and (extra, mode) not in zip(queries, modes):
                        queries.append(extra)
                        modes.append(mode)
            filters = dict(sub.filters)
            fused: dict[str, float] = {}
            first: dict[str, HitView] = {}
            named: list[HitView] = []  # hits of the entity search whose snippet shows the entity
            for q, mode in zip(queries, modes):
                found = await self._search(q, k, filters, mode)
                if not found and filters and set(filters) - set(self.config.filters):
                    # A date read from the question may not be on the page as a parsed date: retry without it.
                    relaxed = {key: v for key, v in filters.items() if key in self.config.filters}
                    found = await self._search(q, k, relaxed, mode)
                    if found:
                        self._note(f"no hits with the question's date filter for {q!r}; searched without it")
                for rank, h in enumerate(found):
                    fused[h.image_id] = fused.get(h.image_id, 0.0) + 1.0 / (60 + rank + 1)
                    first.setdefault(h.image_id, h)
                    if mode == "keyword" and sub.entities and any(squash(e) in squash(h.snippet) for e in sub.entities):
                        named.append(h)
                self._note(
                    f"search[{mode}] {q!r} k={k}{' filters=' + str(filters) if filters else ''}: "
                    f"{len(found)} hits" + (f", top {found[0].image_id[:12]} {found[0].snippet[:40]!r}" if found else "")
                )
            merged = sorted(first.values(), key=lambda h: -fused[h.image_id])[:k]
            if named:
                # A page whose matching line names the entity is the document asked about: it goes
                # first, whatever the other queries' rankings (they lean to the question's language).
                ids = {h.image_id for h in named}
                merged = [*dict((h.image_id, h) for h in named).values(), *[h for h in merged if h.image_id not in ids]][:k]
                self._note(f"sub-question {i + 1}: {len(ids)} page(s) whose snippet names {sub.entities} go first")
            if sub.context_from is not None:
                merged = await self._context_hits(i, sub, merged, hits, k)
            if rnd:
                # Keep what earlier rounds found, new images after them.
                seen = {h.image_id for h in hits.get(i, [])}
                merged = [*hits.get(i, []), *[h for h in merged if h.image_id not in seen]]
            hits[i] = merged
            self._note(f"sub-question {i + 1}: {len(merged)} images after fusing {len(queries)} queries")
        return {"hits": hits}

    async def _context_hits(self, i: int, sub: SubQuestion, merged: list[HitView], hits: dict[int, list[HitView]], k: int) -> list[HitView]:
        """Hits for a part that asks about an earlier part's document: once that part has been
        answered, pages of that document only (searched with a doc_id filter); before, the earlier
        part's best pages first, so the same documents get inspected for both."""
        j = sub.context_from
        assert j is not None
        docs = self._answered_docs.get(j, [])
        if docs:
            pinned: list[HitView] = []
            for d in docs:
                found = await self._search(sub.queries[0] if sub.queries else sub.question, k, {**self.config.filters, "doc_id": d})
                pinned += [h for h in found if h.image_id not in {x.image_id for x in pinned}]
            self._note(f"sub-question {i + 1}: searched only the document(s) part {j + 1} was answered from: {len(pinned)} page(s)")
            return pinned
        first = hits.get(j, [])[: self.config.inspect_top]
        ids = {h.image_id for h in first}
        if first:
            self._note(f"sub-question {i + 1}: asks about part {j + 1}'s document; its top {len(first)} page(s) go first")
        return [*first, *[h for h in merged if h.image_id not in ids]][: max(k, len(first))]

    # -- inspect ---------------------------------------------------------------------------------
    async def _image(self, hit: HitView) -> ImageInfo | None:
        if hit.image_id in self.images:
            return self.images[hit.image_id]
        try:
            md = await self.tools.get_metadata(hit.image_id)
        except ToolError as e:
            self._note(f"get_metadata {hit.image_id[:12]} failed: {e}")
            return None
        seals = [s for s in md.seals if isinstance(s, dict) and len(s.get("bbox", [])) == 4]
        info = ImageInfo(
            image_id=hit.image_id,
            path=md.source or hit.path or hit.file,
            file=hit.file or md.source.rsplit("/", 1)[-1],
            page=md.page or hit.page,
            width=md.width or hit.width,
            height=md.height or hit.height,
            ocr_text=md.ocr_text,
            lines=[
                EvidenceLine(image_id=hit.image_id, text=ln.text, bbox=ln.bbox, confidence=ln.confidence, source="metadata")
                for ln in md.ocr_lines
            ],
            doc_id=hit.doc_id,
            seals=[tuple(s["bbox"]) for s in seals],  # type: ignore[misc]
            seal_labels=[" ".join(str(s.get(k, "")) for k in ("color", "shape")).strip() for s in seals],
        )
        self.images[hit.image_id] = info
        return info

    def _regions(self, sub: SubQuestion, hit: HitView, info: ImageInfo) -> list[list[float]]:
        """Where to look closer: the hit's region, then the page lines that best match the
        sub-question (for a date question, lines with a date; for a party, lines with a role)."""
        if sub.intent == "seal":
            # The detected seals themselves (cropped for the report or a vision model; not re-read).
            return [_expand(b, info.width, info.height, full_row=False) for b in info.seals[: self.config.regions_per_image]]
        want_row = sub.intent in ("party", "date", "amount", "section")
        roles = asked_roles(sub)
        boxes: list[list[float]] = []
        if hit.region is not None:
            b = hit.region.bbox
            row = want_row and (b[3] - b[1]) < 0.05 * max(1, info.height)
            boxes.append(_expand(b, info.width, info.height, full_row=row))
        scored: list[tuple[float, EvidenceLine]] = []
        for ln in info.lines:
            if ln.bbox is None:
                continue
            s = term_coverage(sub.key_terms, ln.text)
            if sub.intent == "date" and find_date(ln.text):
                s += 0.8
            elif sub.intent == "amount" and find_amount(ln.text):
                s += 0.8
            elif sub.intent == "section":
                t, _ = title_match(sub, ln.text)
                s = t if t >= 0.5 else 0.0
            elif sub.intent == "party" and roles:
                label = re.split(r"[:：]", ln.text, maxsplit=1)[0]
                s = 0.5 * s + (1.0 if any(r in squash(label) for r in roles) else 0.0)
            if s > 0:
                scored.append((s, ln))
        scored.sort(key=lambda t: -t[0])
        for _, ln in scored:
            assert ln.bbox is not None
            down = 1.6 if ln.text.rstrip().endswith((":", "：")) else 0.0
            box = _expand(ln.bbox, info.width, info.height, full_row=want_row, down=down)
            if all(_overlap(box, b) < 0.6 for b in boxes):
                boxes.append(box)
            if len(boxes) >= self.config.regions_per_image:
                break
        return boxes[: self.config.regions_per_image]

    async def _inspect(self, state: AgentState) -> dict[str, Any]:
        plan = state["plan"]
        rnd = state.get("round", 0)
        evidence = dict(state.get("evidence", {}))
        for i in state.get("failed_subs", []):
            sub = plan.sub_questions[i]
            lines = list(evidence.get(i, [])) if rnd else []
            hits = state["hits"].get(i, [])
            # In a retry, look at images not inspected for this part yet, then re-read the rest wider.
            seen = {ln.image_id for ln in lines}
            todo = [h for h in hits if h.image_id not in seen][: self.config.inspect_top]
            if not todo and hits:
                todo = hits[: self.config.inspect_top]
            infos = {h.image_id: await self._image(h) for h in todo}
            if sub.entities:
                # get_metadata is cheap, re-reading is not: when some page names the entity, skip the
                # pages that do not.
                match = {iid: entity_match(sub.entities, info) for iid, info in infos.items() if info is not None}
                if any(v == 1.0 for v in match.values()):
                    skipped = [iid for iid, v in match.items() if v == 0.0]
                    if skipped:
                        self._note(f"sub-question {i + 1}: {len(skipped)} page(s) without {sub.entities} not re-read")
                    todo = [h for h in todo if match.get(h.image_id, 0.0) > 0.0]
            for rank, hit in enumerate(todo):
                info = infos.get(hit.image_id)
                if info is None:
                    continue
                rank = next((r for r, h in enumerate(hits) if h.image_id == hit.image_id), rank)
                regions: list[list[float] | None] = list(self._regions(sub, hit, info))
                if rnd and hit.image_id in seen and sub.intent != "seal":
                    regions = [None]  # a retry on a known image: read the whole page at a higher scale
                read = 0
                # A seal question is answered from the detector's boxes (get_metadata): nothing to re-read.
                for box in regions if sub.intent != "seal" else []:
                    key = (hit.image_id, tuple(round(v) for v in box) if box else None)
                    try:
                        if key in self._ocr_cache:
                            ocr = self._ocr_cache[key]
                        else:
                            ocr = self._ocr_cache[key] = await self.tools.ocr_region(hit.image_id, box, "auto")
                    except ToolError as e:
                        self._note(f"ocr_region {hit.image_id[:12]} {box} failed: {e}")
                        continue
                    new = [
                        EvidenceLine(image_id=hit.image_id, text=ln.text, bbox=ln.bbox, confidence=ln.confidence, source="ocr_region", rank=rank)
                        for ln in ocr.lines
                        if ln.text.strip()
                    ]
                    info.reread.extend(new)
                    lines.extend(new)
                    read += len(new)
                    self.inspected.add(hit.image_id)
                # Page-level lines that match, and the hit's own snippet, stay candidates too.
                for ln in info.lines:
                    # A section number often has its own OCR box beside the title: keep every line.
                    if (
                        sub.intent == "section"
                        or term_coverage(sub.key_terms, ln.text) > 0
                        or (sub.intent == "date" and find_date(ln.text))
                    ):
                        lines.append(ln.model_copy(update={"rank": rank}))
                if hit.snippet:
                    lines.append(
                        EvidenceLine(
                            image_id=hit.image_id, text=hit.snippet, bbox=hit.region.bbox if hit.region else None, source="snippet", rank=rank
                        )
                    )
                self.inspected.add(hit.image_id)
                self._note(
                    f"sub-question {i + 1}: inspected {info.file or hit.image_id[:12]} p{info.page}: "
                    f"re-read {len(regions)} region(s) → {read} lines"
                )
                # ocr_region already zooms server-side; an explicit crop is for eyes: the vision model's
                # (best page of each part only) or the caller's (keep_crops).
                wants_crop = (self.llm is not None and self.llm.config.vlm_model and hit is todo[0]) or self.config.keep_crops
                first = regions[0] if regions else None
                if wants_crop and first is not None:
                    await self._look(sub, hit.image_id, first, info)
            evidence[i] = lines
        return {"evidence": evidence}

    async def _look(self, sub: SubQuestion, image_id: str, box: list[float], info: ImageInfo) -> None:
        """Crop the region (kept for the report) and, with a vision model, ask it about the crop."""
        try:
            crop = await self.tools.crop_region(image_id, box, scale=self.config.crop_scale)
        except ToolError as e:
            self._note(f"crop_region {image_id[:12]} failed: {e}")
            return
        if not crop.png:
            return
        self.crops.setdefault(image_id, (list(crop.bbox or box), crop.png))
        self._note(f"cropped {image_id[:12]} {[round(v) for v in (crop.bbox or box)]} → {crop.width}x{crop.height}px")
        if self.llm is None or not self.llm.config.vlm_model:
            return
        messages = [
            {"role": "system", "content": "You read document crops. Transcribe the text relevant to the question exactly; say 'none' if there is none."},
            {"role": "user", "content": [text_part(f"Question: {sub.question}"), image_part(crop.png)]},
        ]
        try:
            note = (await self.llm.chat(messages, max_tokens=160, model=self.llm.config.vlm_model, purpose="vision")).strip()
        except Exception as e:  # the vision model is an aid, never a requirement
            self._note(f"vision model failed on {image_id[:12]}: {e}")
            return
        if note:
            info.vlm_notes.append(note[:400])
            self._note(f"vision model on {image_id[:12]}: {note[:80]!r}")

    # -- answer ----------------------------------------------------------------------------------
    def _citation(self, line: EvidenceLine) -> Citation:
        info = self.images.get(line.image_id)
        return Citation(
            image_id=line.image_id,
            path=info.path if info else "",
            page=info.page if info else 1,
            bbox=tuple(round(v, 1) for v in line.bbox) if line.bbox else None,  # type: ignore[arg-type]
            snippet=line.text.strip(),
        )

    def _doc_of(self, image_id: str) -> str:
        info = self.images.get(image_id)
        return (info.doc_id if info else "") or image_id

    def _allowed_docs(self, i: int, sub: SubQuestion) -> list[str] | None:
        """The documents part ``i`` must be answered from (those of the part it inherits its subject
        from), or None when it stands alone."""
        if sub.context_from is None:
            return None
        return self._answered_docs.get(sub.context_from) or None

    def _extractive(self, state: AgentState) -> tuple[list[Claim], str]:
        plan = state["plan"]
        claims: list[Claim] = []
        self._answered_docs = {}
        for i, sub in enumerate(plan.sub_questions):
            allowed = self._allowed_docs(i, sub)
            if sub.intent == "seal":
                got = self._seal_claims(i, sub, state, allowed)
                claims += got
                if got:
                    self._answered_docs[i] = list(dict.fromkeys(self._doc_of(c.citations[0].image_id) for c in got if c.citations))
                continue
            ranked = best_lines(sub, state.get("evidence", {}).get(i, []), self.images)
            if sub.entities:
                # Pages that name the question's entity beat pages that do not, whatever their lines say.
                named = {sc.line.image_id for sc in ranked if sc.line.image_id in self.images
                         and entity_match(sub.entities, self.images[sc.line.image_id]) == 1.0}
                if named and len(named) < len({sc.line.image_id for sc in ranked}):
                    self._note(f"sub-question {i + 1}: only pages naming {sub.entities} kept")
                    ranked = [sc for sc in ranked if sc.line.image_id in named]
            if allowed is not None:
                # Same document as the part this one inherits its subject from: the best line of each
                # of that part's documents, in that part's order.
                by_doc = {}
                for sc in ranked:
                    by_doc.setdefault(self._doc_of(sc.line.image_id), sc)
                ranked = [by_doc[d] for d in allowed if d in by_doc]
                if not ranked:
                    self._note(f"sub-question {i + 1}: nothing in the document(s) part {sub.context_from + 1} was answered from")  # type: ignore[operator]
                    continue
            if not ranked:
                self._note(f"sub-question {i + 1}: no evidence line answers it")
                continue
            top = ranked[0].score
            if allowed is not None:
                chosen: list[Scored] = ranked[: self.config.max_claims_per_sub]
            else:
                chosen = [s for s in ranked if s.score >= top - 0.15][: self.config.max_claims_per_sub]
            self._answered_docs[i] = list(dict.fromkeys(self._doc_of(s.line.image_id) for s in chosen))
            label = label_for(sub)
            for s in chosen:
                info = self.images.get(s.line.image_id)
                where = f" ({info.file} p{info.page})" if len(chosen) > 1 and info else ""
                cits = [self._citation(s.snippet_line)]
                if s.snippet_line is not s.line and s.line.text.strip():
                    cits.insert(0, self._citation(s.line))
                claims.append(Claim(text=f"{label}: {s.value}{where}", value=s.value, citations=cits, sub_question=sub.question))
                self._note(f"sub-question {i + 1}: {s.value!r} from {s.line.image_id[:12]} (score {s.score}, {s.why})")
        if self.llm is None:
            note = "Extractive answer (no LLM configured): each line below is quoted from the OCR text of the cited image."
            if plan.lang == "zh":
                note = "抽取式回答（未配置 LLM）：以下每一行均摘自所引图像的 OCR 文本。"
        else:
            note = "Extractive answer (the LLM's reply gave no verifiable claim): each line below is quoted from the OCR text of the cited image."
            if plan.lang == "zh":
                note = "抽取式回答（LLM 的回复没有可核实的论断）：以下每一行均摘自所引图像的 OCR 文本。"
        return claims, note

    def _seal_claims(self, i: int, sub: SubQuestion, state: AgentState, allowed: list[str] | None) -> list[Claim]:
        """Where the seals are, from the seal detector (get_metadata) on the document the part is
        about: the pages of the best-matching document (the named entity, then the search rank), one
        claim per page with seals citing each seal's box; a page without one gets a claim saying no
        seal was detected on it."""
        zh = bool(re.search(r"[\u4e00-\u9fff]", sub.question))
        cands = [
            (rank, self.images[h.image_id])
            for rank, h in enumerate(state.get("hits", {}).get(i, []))
            if h.image_id in self.images and h.image_id in self.inspected
        ]
        if allowed is not None:
            cands = [(r, info) for r, info in cands if self._doc_of(info.image_id) in allowed]
        if not cands:
            self._note(f"sub-question {i + 1}: no inspected page to look for seals on")
            return []
        match = {info.image_id: entity_match(sub.entities, info) for _, info in cands}
        _, best = min(cands, key=lambda c: (-match[c[1].image_id], -bool(c[1].seals), c[0]))
        doc = self._doc_of(best.image_id)
        pages = sorted(
            {info.image_id: info for _, info in cands if self._doc_of(info.image_id) == doc and match[info.image_id] >= match[best.image_id]}.values(),
            key=lambda info: info.page,
        )
        with_seals = [p for p in pages if p.seals]
        label = label_for(sub)
        claims: list[Claim] = []
        for info in with_seals[: self.config.max_claims_per_sub]:
            cits = [
                self._citation_for_seal(info, box)
                for box in sorted(info.seals, key=lambda b: (b[1], b[0]))
            ]
            boxes = "; ".join(
                "[" + ", ".join(f"{round(v, 1):.0f}" for v in box) + "]" + (f" ({lab})" if lab else "")
                for box, lab in sorted(zip(info.seals, info.seal_labels or [""] * len(info.seals)), key=lambda t: (t[0][1], t[0][0]))
            )
            n = len(info.seals)
            text = (
                f"{label}：{info.file} 第{info.page}页，检测到{n}枚印章，位于 {boxes}"
                if zh
                else f"{label}: {n} seal{'s' if n > 1 else ''} detected on {info.file} p{info.page} at {boxes}"
            )
            claims.append(Claim(text=text, citations=cits, sub_question=sub.question, kind="seal"))
            self._note(f"sub-question {i + 1}: {n} seal(s) on {info.file} p{info.page} from the seal detector")
        if not with_seals:
            info = pages[0]
            line = self._identifying_line(sub, info)
            where = f"{info.file}" + (f" p{info.page}" if len(pages) == 1 else f" ({len(pages)} pages)")
            text = f"{label}：未在 {where} 上检测到印章" if zh else f"{label}: no seal was detected on {where}"
            cits = [self._citation(line)] if line is not None else []
            claims.append(Claim(text=text, citations=cits, sub_question=sub.question, kind="no_seal"))
            self._note(f"sub-question {i + 1}: the seal detector found no seal on {where}")
        return claims

    def _identifying_line(self, sub: SubQuestion, info: ImageInfo) -> EvidenceLine | None:
        """A line that shows which document a page is: one naming the question's entity, else its
        first line (usually the title)."""
        lines = [ln for ln in info.lines if ln.text.strip()]
        for e in sub.entities:
            for ln in lines:
                if squash(e) in squash(ln.text):
                    return ln
        return lines[0] if lines else None

    def _citation_for_seal(self, info: ImageInfo, box: tuple[float, float, float, float]) -> Citation:
        """A seal's box, quoting the page OCR line nearest to it (often the signature line it covers)."""

        def dist(ln: EvidenceLine) -> tuple[float, float]:
            assert ln.bbox is not None
            dx = max(0.0, max(box[0], ln.bbox[0]) - min(box[2], ln.bbox[2]))
            dy = max(0.0, max(box[1], ln.bbox[1]) - min(box[3], ln.bbox[3]))
            return (dx * dx + dy * dy) ** 0.5, -_overlap(list(box), list(ln.bbox))

        lines = [ln for ln in info.lines if ln.bbox is not None and ln.text.strip()]
        near = min(lines, key=dist) if lines else None
        return Citation(
            image_id=info.image_id,
            path=info.path,
            page=info.page,
            bbox=tuple(round(v, 1) for v in box),  # type: ignore[arg-type]
            snippet=near.text.strip() if near is not None else "",
            kind="seal",
        )

    def _evidence_blocks(self, state: AgentState) -> list[tuple[ImageInfo, list[EvidenceLine]]]:
        """Evidence for the LLM, best lines first, within ``llm_evidence_lines``."""
        plan = state["plan"]
        ranked: list[tuple[float, EvidenceLine]] = []
        for i, sub in enumerate(plan.sub_questions):
            for ln in state.get("evidence", {}).get(i, []):
                if ln.source == "snippet":
                    continue
                s = term_coverage(sub.key_terms, ln.text) + (0.5 if sub.intent == "date" and find_date(ln.text) else 0.0)
                ranked.append((s - 0.05 * ln.rank + (0.05 if ln.source == "ocr_region" else 0.0), ln))
        ranked.sort(key=lambda t: -t[0])
        picked: dict[str, list[EvidenceLine]] = {}
        seen: set[tuple[str, str]] = set()
        for _, ln in ranked:
            key = (ln.image_id, squash(ln.text))
            if key in seen or not key[1]:
                continue
            seen.add(key)
            picked.setdefault(ln.image_id, []).append(ln)
            if len(seen) >= self.config.llm_evidence_lines:
                break
        return [(self.images[i], sorted(lines, key=lambda ln: (ln.bbox or (0, 0, 0, 0))[1])) for i, lines in picked.items() if i in self.images]

    async def _llm_answer(self, state: AgentState) -> tuple[list[Claim], str]:
        assert self.llm is not None
        plan = state["plan"]
        blocks = self._evidence_blocks(state)
        if not blocks:
            return [], ""
        system = (
            "You answer questions about scanned documents using only the evidence returned by the ocr_region tool. "
            "Each claim must cite the image_id of an evidence block and copy a snippet verbatim from one of its lines. "
            "Never invent ids or text. If the evidence does not answer the question, say so and give no claims. "
            f"Answer in {'Chinese' if plan.lang == 'zh' else 'English'}."
        )
        user = f"Question: {plan.question}"
        if len(plan.sub_questions) > 1:
            user += "\nParts:\n" + "\n".join(f"{n}. {s.question}" for n, s in enumerate(plan.sub_questions, 1))
        if state.get("feedback"):
            user += "\nYour previous answer failed verification:\n" + "\n".join(f"- {f}" for f in state["feedback"])
        calls, results = [], []
        for n, (info, lines) in enumerate(blocks):
            call_id = f"call_{n + 1}"
            calls.append({"id": call_id, "type": "function", "function": {"name": "ocr_region", "arguments": f'{{"image_id": "{info.image_id}"}}'}})
            body = f"image_id: {info.image_id}\nfile: {info.file} page {info.page}\n" + "\n".join(f"- {ln.text}" for ln in lines)
            if info.vlm_notes:
                body += "\nvision model: " + " / ".join(info.vlm_notes)
            results.append({"role": "tool", "tool_call_id": call_id, "content": body})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *results,
        ]
        out = await self.llm.structured(messages, LLMAnswer, purpose="answer")
        claims: list[Claim] = []
        by_text = {i.image_id: i for i, _ in blocks}
        for c in out.claims:
            cits: list[Citation] = []
            for cit in c.citations:
                image_id = cit.image_id.strip()
                line = self._find_line(image_id, cit.snippet)
                if line is not None:
                    cits.append(self._citation(line).model_copy(update={"snippet": cit.snippet.strip()}))
                else:
                    info = self.images.get(image_id) or by_text.get(image_id)
                    cits.append(
                        Citation(image_id=image_id, path=info.path if info else "", page=info.page if info else 1, snippet=cit.snippet.strip())
                    )
            unique = [x for n, x in enumerate(cits) if x not in cits[:n]]
            claims.append(Claim(text=c.text.strip(), citations=unique, sub_question=_match_sub(plan, c.text)))
        self._note(f"LLM answer: {len(claims)} claim(s), {sum(len(c.citations) for c in claims)} citation(s)")
        return claims, out.answer.strip()

    def _find_line(self, image_id: str, snippet: str) -> EvidenceLine | None:
        info = self.images.get(image_id)
        s = squash(snippet)
        if info is None or not s:
            return None
        for ln in [*info.reread, *info.lines]:
            if s in squash(ln.text) or (squash(ln.text) and squash(ln.text) in s):
                return ln
        return None

    async def _answer(self, state: AgentState) -> dict[str, Any]:
        fallback = False
        if self.llm is not None:
            try:
                claims, text = await self._llm_answer(state)
            except LLMOutputError as e:
                self._note(f"LLM answer unusable ({e.message}); falling back to the extractive answerer")
                claims, text = self._extractive(state)
                fallback = True
            if not claims and not fallback:
                self._note(f"LLM gave no checkable claim (its text: {text[:60]!r}); using the extractive answerer")
                claims, text2 = self._extractive(state)
                if claims:
                    text, fallback = text2, True  # the LLM's uncited text is not shown
        else:
            claims, text = self._extractive(state)
        plan = state["plan"]
        if self.llm is not None and any(sub.intent == "seal" for sub in plan.sub_questions):
            # Where a seal is comes from the seal detector, not from the model's reading of OCR text.
            seal_subs = {sub.question for sub in plan.sub_questions if sub.intent == "seal"}
            claims = [c for c in claims if c.sub_question not in seal_subs or c.kind != "value"]
            for i, sub in enumerate(plan.sub_questions):
                if sub.intent == "seal" and not any(c.sub_question == sub.question and c.kind != "value" for c in claims):
                    claims += self._seal_claims(i, sub, state, None)
        return {"claims": claims, "answer_text": text, "fallback": fallback}

    # -- self-check ------------------------------------------------------------------------------
    async def _check_claim(self, claim: Claim, extractive: bool) -> list[CheckFailure]:
        """Every check one claim must pass; returns the failures (empty = passed)."""
        checks = self.checks
        reasons: list[CheckFailure] = []
        if not claim.citations:
            reasons.append(CheckFailure(claim=claim.text, check="no_citation", reason="the claim cites nothing"))
        for cit in claim.citations:
            checks.citations_checked += 1
            info = self.images.get(cit.image_id)
            failure: CheckFailure | None = None
            if cit.image_id not in self.inspected or info is None:
                failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="inspected",
                                       reason=f"image {cit.image_id!r} was not inspected in this run")
            elif cit.kind == "seal" and (
                cit.bbox is None or not any(all(abs(a - b) <= 2 for a, b in zip(cit.bbox, box)) for box in info.seals)
            ):
                failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="seal",
                                       reason=f"bbox {list(cit.bbox or [])} is not a seal the detector found on {cit.image_id}")
            elif (cit.kind != "seal" or cit.snippet) and not snippet_matches(cit.snippet, info):
                failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="snippet",
                                       reason=f"snippet {cit.snippet[:60]!r} is not in the OCR text of {cit.image_id}")
            elif cit.bbox is not None and info.width and not (
                -2 <= cit.bbox[0] < cit.bbox[2] <= info.width + 2 and -2 <= cit.bbox[1] < cit.bbox[3] <= info.height + 2
            ):
                failure = CheckFailure(claim=claim.text, image_id=cit.image_id, snippet=cit.snippet, check="bbox",
                                       reason=f"bbox {list(cit.bbox)} is outside the {info.width}x{info.height} image")
            if failure is None:
                checks.citations_passed += 1
            else:
                reasons.append(failure)
        if reasons:
            return reasons
        if claim.kind == "seal" and not any(c.kind == "seal" for c in claim.citations):
            reasons.append(CheckFailure(claim=claim.text, check="seal", reason="a seal claim cites no detected seal"))
        if claim.kind == "no_seal" and any(self.images[c.image_id].seals for c in claim.citations):
            reasons.append(CheckFailure(claim=claim.text, check="seal", reason="the cited page has a detected seal"))
        if claim.kind != "value":
            return reasons
        if extractive:
            # The stated value must itself be quoted.
            value = claim.value or claim.text
            if not any(squash(value) in squash(c.snippet) for c in claim.citations):
                reasons.append(CheckFailure(claim=claim.text, check="value", reason=f"{value!r} is not in the quoted snippets"))
            return reasons
        # A real snippet cited for an unrelated statement: most of the claim's words must be quoted.
        support = _support(claim)
        if support < SUPPORT_MIN:
            reasons.append(
                CheckFailure(claim=claim.text, check="support",
                             reason=f"only {support:.0%} of the claim's words are in its snippets (need {SUPPORT_MIN:.0%})")
            )
        elif self.llm is not None and self.llm.config.verify:
            verdict = await self._verify(claim)
            if verdict is False:
                reasons.append(CheckFailure(claim=claim.text, check="llm_verify", reason="the LLM judged the claim unsupported by its snippets"))
            elif verdict:
                checks.llm_verified += 1
        return reasons

    async def _check_all(self, claims: list[Claim], extractive: bool) -> tuple[list[Claim], list[Claim]]:
        passed: list[Claim] = []
        failed: list[Claim] = []
        for claim in claims:
            reasons = await self._check_claim(claim, extractive)
            claim.status = "failed" if reasons else "passed"
            claim.reasons = [r.reason for r in reasons]
            self.checks.failures.extend(reasons)
            (failed if reasons else passed).append(claim)
        return passed, failed

    async def _self_check(self, state: AgentState) -> dict[str, Any]:
        plan = state["plan"]
        rnd = state.get("round", 0)
        checks = self.checks
        extractive = self.llm is None or bool(state.get("fallback"))
        names = ["inspected", "snippet", "bbox", "value" if extractive else "support"]
        if any(sub.intent == "seal" for sub in plan.sub_questions):
            names.append("seal")
        if not extractive and self.llm is not None and self.llm.config.verify:
            names.append("llm_verify")
        checks.checks_run = list(dict.fromkeys([*checks.checks_run, *names]))
        claims, failed = await self._check_all(state.get("claims", []), extractive)
        for f in failed:
            self._note(f"failed: {f.text[:60]!r}: {'; '.join(f.reasons)}")

        def missing_parts(kept: list[Claim]) -> list[int]:
            answered = {c.sub_question for c in kept}
            return [i for i, sub in enumerate(plan.sub_questions) if sub.question not in answered]

        missing = missing_parts(claims)
        failed_subs = sorted({i for i, sub in enumerate(plan.sub_questions) if any(c.sub_question == sub.question for c in failed)} | set(missing))
        self._note(f"round {rnd}: {len(claims)} claim(s) passed, {len(failed)} failed; parts without a passing claim: {[i + 1 for i in missing] or 'none'}")
        if (failed or missing) and rnd < self.config.max_retries:
            feedback = [f"{f.text[:80]}: {'; '.join(f.reasons)}" for f in failed]
            feedback += [f"no verified answer yet for: {plan.sub_questions[i].question}" for i in missing]
            self._note(f"retrying retrieve/inspect for part(s) {[i + 1 for i in failed_subs]}")
            checks.retries += 1
            return {"verdict": "retry", "round": rnd + 1, "failed_subs": failed_subs, "feedback": feedback}
        fallback = bool(state.get("fallback"))
        update: dict[str, Any] = {}
        if missing and not extractive:
            # Last round and the LLM's claims for some parts did not survive: quote the evidence instead.
            extra, _text = self._extractive(state)
            extra = [c for c in extra if c.sub_question in {plan.sub_questions[i].question for i in missing}]
            if extra:
                kept_extra, failed_extra = await self._check_all(extra, extractive=True)
                if kept_extra:
                    self._note(f"part(s) {[i + 1 for i in missing]} answered extractively: no LLM claim for them passed")
                    checks.notes.append(f"{len(kept_extra)} claim(s) quoted extractively: no LLM claim for their part passed the self-check")
                    checks.checks_run = list(dict.fromkeys([*checks.checks_run, "value"]))
                    if not claims:  # nothing of the LLM's survived: the answer is extractive, say so
                        fallback = True
                        update["answer_text"] = _text
                    claims += kept_extra
                failed += failed_extra
        for f in failed:
            f.status = "dropped"
        checks.claims_total = len(claims) + len(failed)
        checks.claims_passed = len(claims)
        checks.claims_dropped = len(failed)
        checks.passed = bool(claims) and all(c.status == "passed" for c in claims)
        return {"verdict": "finalize", "claims": claims + failed, "fallback": fallback, **update}

    async def _verify(self, claim: Claim) -> bool | None:
        """The LLM's verdict on one claim given only its snippets; None when it cannot give one."""
        assert self.llm is not None
        evidence = "\n".join(f'- "{c.snippet}" (image {c.image_id})' for c in claim.citations)
        messages = [
            {"role": "system", "content": "You check whether a claim is supported by quoted document text. Be strict: the quotes must state it."},
            {"role": "user", "content": f"Claim: {claim.text}\nQuotes:\n{evidence}\nIs the claim supported by the quotes?"},
        ]
        try:
            v = await self.llm.structured(messages, LLMVerdict, purpose="verify", max_tokens=80)
        except LLMOutputError as e:
            self._note(f"verification of {claim.text[:40]!r} unavailable: {e.message}")
            return None
        self._note(f"LLM verification of {claim.text[:40]!r}: {'supported' if v.supported else 'NOT supported'} {v.reason[:60]!r}")
        return v.supported

    # -- finalize --------------------------------------------------------------------------------
    async def _finalize(self, state: AgentState) -> dict[str, Any]:
        plan = state["plan"]
        kept = [c for c in state.get("claims", []) if c.status == "passed"]
        dropped = [c for c in state.get("claims", []) if c.status == "dropped"]
        citations: list[Citation] = []
        for c in kept:
            for cit in c.citations:
                if cit not in citations:
                    citations.append(cit)

        def marks(c: Claim) -> str:
            return "".join(f"[{citations.index(x) + 1}]" for x in c.citations)

        lines = [f"{c.text} {marks(c)}" for c in kept]
        head = state.get("answer_text", "")
        if self.llm is not None and not state.get("fallback"):
            # The LLM's summary is shown only when its words are backed by the verified claims.
            if head and kept and _summary_supported(head, kept, state["question"]):
                text = head + "\n" + "\n".join(lines)
            else:
                if head:
                    self.checks.notes.append("the LLM's summary sentence was left out: it is not backed by the verified claims")
                    self._note(f"summary {head[:60]!r} not backed by verified claims; showing the claims only")
                text = "\n".join(lines)
        else:
            text = (head + "\n" if head else "") + "\n".join(lines)
        if not kept:
            text = ("未在索引中找到可核实的答案。" if plan.lang == "zh" else "No verifiable answer was found in the index.") + (
                f" ({len(dropped)} unverified claim(s) removed.)" if dropped else ""
            )
        elif dropped:
            text += f"\n({len(dropped)} claim(s) removed: they failed the self-check.)"
        if not kept:
            self.checks.passed = False
            self.checks.notes.append("no claim passed the self-check")
        if state.get("fallback"):
            self.checks.notes.append("the LLM answer was unusable; the extractive answerer was used")
        for tool, dropped_args in self.tools.dropped_args.items():
            self.checks.notes.append(f"{tool} does not accept {dropped_args}; left out")
        self._note(f"{len(kept)} claim(s), {len(citations)} citation(s), {len(dropped)} dropped")
        result = Answer(
            question=state["question"],
            answer=text.strip(),
            mode=self.mode,
            claims=kept,
            citations=citations,
            checks=self.checks,
            usage=self.usage,
            timings_ms={},
        )
        return {"result": result}


SUPPORT_MIN = 0.5


def _support(claim: Claim) -> float:
    """Share of the claim's content terms that occur in its snippets (1.0 for a claim of no terms)."""
    terms = [t for t in query_terms(claim.text) if len(t) > 1 or not t.isascii()]
    if not terms:
        return 1.0
    quoted = set(tokens(" ".join(c.snippet for c in claim.citations)))
    return sum(t in quoted for t in terms) / len(terms)


def _summary_supported(summary: str, claims: list[Claim], question: str) -> bool:
    """Whether an LLM's free-text summary says nothing beyond its verified claims and the question."""
    terms = [t for t in query_terms(summary) if len(t) > 1 or not t.isascii()]
    if not terms:
        return False
    known = set(tokens(" ".join([question, *(c.text for c in claims), *(x.snippet for c in claims for x in c.citations)])))
    return sum(t in known for t in terms) / len(terms) >= 0.8


def _match_sub(plan: Plan, text: str) -> str:
    """The sub-question a free-text claim most likely answers (by shared terms)."""
    if len(plan.sub_questions) == 1:
        return plan.sub_questions[0].question
    best = max(plan.sub_questions, key=lambda s: term_coverage(s.key_terms, text))
    return best.question


async def run_agent(
    question: str,
    tools: ToolClient,
    llm: LLMClient | None = None,
    config: AgentConfig | None = None,
    tracer: Callable[[TraceEvent], None] | None = None,
) -> tuple[Answer, ImgragAgent]:
    """Ask once; returns the answer (with node timings filled in) and the agent (trace, crops)."""
    agent = ImgragAgent(tools, llm, config, tracer)
    answer = await agent.ask(question)
    answer.timings_ms = dict(agent.timings_ms)
    answer.usage = agent.usage
    return answer, agent

