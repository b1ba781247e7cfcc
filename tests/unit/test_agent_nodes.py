"""Each node of the agent's graph called alone: a hand-built state, fake tools and a fake LLM, and the
decisions the node makes — which searches, which pages re-read, which claims, which verdict. A node
must also leave the state it was given as it was (it returns what changes), which these tests check
by comparing the state before and after."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from imgrag.agent.evidence import EvidenceLine, ImageInfo
from imgrag.agent.graph import AgentRun, Deps, build_graph, run_agent
from imgrag.agent.llm import LLMConfig, LLMOutputError
from imgrag.agent.mcp_client import (
    CropView,
    HitView,
    LineView,
    LinkView,
    MetadataView,
    OcrView,
    RegionView,
    SearchView,
    ToolError,
)
from imgrag.agent.nodes import answer, finalize, inspect, plan, retrieve, self_check
from imgrag.agent.planner import Plan, SubQuestion, rule_plan
from imgrag.agent.schemas import (
    Checks,
    Citation,
    Claim,
    LLMPlan,
    LLMSubQuestion,
    LLMVerdict,
    Usage,
)
from imgrag.agent.state import AgentConfig, AgentState, initial_state
from imgrag.indexing.text import tokens

W, H = 1240, 1754
PAGES: dict[str, dict[str, Any]] = {
    "zh1": {
        "doc": "doc-zh", "file": "contract_zh.png",
        "lines": [
            ("采购合同", (500, 120, 720, 170)),
            ("甲方（买方）：重庆东方商贸股份有限公司", (130, 260, 550, 290)),
            ("乙方（卖方）：苏州启航机械制造有限责任公司", (130, 380, 590, 405)),
            ("签订日期：2024年12月15日", (130, 500, 630, 523)),
        ],
    },
    "en1": {
        "doc": "doc-consult", "file": "consulting.png",
        "lines": [
            ("CONSULTING AGREEMENT", (420, 120, 820, 165)),
            ("dated September 21, 2023", (470, 180, 770, 210)),
            ("Party A: Oakridge Manufacturing Corporation", (130, 400, 640, 425)),
            ("Party B: Lakeside Logistics Corporation", (130, 460, 600, 485)),
        ],
    },
    "en2": {
        "doc": "doc-supply", "file": "supply.png", "seals": [(140, 1270, 390, 1520)],
        "lines": [
            ("SUPPLY AGREEMENT", (420, 120, 820, 165)),
            ("dated March 3, 2022", (470, 180, 770, 210)),
            ("Party A: Harbor Foods Inc.", (130, 400, 640, 425)),
            ("Party B: Summit Paper Company", (130, 460, 600, 485)),
            ("Signed for Party A: Harbor Foods Inc.", (130, 1400, 700, 1430)),
        ],
    },
}


class FakeTools:
    """The four MCP tools over PAGES, recording every call; ``empty_with`` makes a search with any
    of those filter keys find nothing (as a date filter may on the real index)."""

    def __init__(self, pages: dict[str, dict[str, Any]] | None = None, empty_with: tuple[str, ...] = ()) -> None:
        self.pages = pages or PAGES
        self.empty_with = empty_with
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.usage = Usage()
        self.dropped_args: dict[str, list[str]] = {}

    async def search_images(self, query: str, k: int = 10, filters: dict[str, Any] | None = None, mode: str = "hybrid") -> SearchView:
        self.calls.append(("search_images", {"query": query, "k": k, "filters": filters, "mode": mode}))
        if filters and set(filters) & set(self.empty_with):
            return SearchView()
        q = set(tokens(query))
        hits = []
        for image_id, page in self.pages.items():
            if filters and "doc_id" in filters and page["doc"] != filters["doc_id"]:
                continue
            if not page["lines"]:  # a picture without text (a DICOM frame): found through its links only
                continue
            best = max(page["lines"], key=lambda ln: len(q & set(tokens(ln[0]))))
            score = len(q & set(tokens(" ".join(t for t, _ in page["lines"]))))
            region = RegionView(bbox=best[1], text=best[0])
            hits.append(HitView(image_id=image_id, score=score, snippet=best[0], region=region, doc_id=page["doc"],
                                file=page["file"], path=f"/corpus/{page['file']}", width=W, height=H,
                                links=[LinkView(**ln) for ln in page.get("links", [])]))
        hits.sort(key=lambda h: -h.score)
        return SearchView(hits=hits[:k])

    async def get_metadata(self, image_id: str) -> MetadataView:
        self.calls.append(("get_metadata", {"image_id": image_id}))
        if image_id not in self.pages:
            raise ToolError("get_metadata", f"no image {image_id}")
        page = self.pages[image_id]
        return MetadataView(
            image_id=image_id, source=f"/corpus/{page['file']}", width=W, height=H,
            ocr_lines=[LineView(text=t, bbox=b, confidence=0.9) for t, b in page["lines"]],
            ocr_text="\n".join(t for t, _ in page["lines"]),
            seals=[{"bbox": list(b), "color": "red", "shape": "round"} for b in page.get("seals", [])],
            caption=page.get("caption", ""), links=[LinkView(**ln) for ln in page.get("links", [])],
        )

    async def ocr_region(self, image_id: str, bbox: list[float] | None = None, scale: float | str = "auto") -> OcrView:
        self.calls.append(("ocr_region", {"image_id": image_id, "bbox": bbox}))
        x0, y0, x1, y1 = bbox or (0, 0, W, H)
        lines = [LineView(text=t, bbox=b) for t, b in self.pages[image_id]["lines"]
                 if y0 <= (b[1] + b[3]) / 2 <= y1 and x0 <= (b[0] + b[2]) / 2 <= x1]
        return OcrView(image_id=image_id, lines=lines)

    async def crop_region(self, image_id: str, bbox: list[float], scale: float = 2.0, enhance: bool = False, units: str = "px") -> CropView:
        self.calls.append(("crop_region", {"image_id": image_id, "bbox": bbox}))
        return CropView(image_id=image_id, bbox=tuple(bbox), width=40, height=20, png=b"\x89PNG fake")

    def called(self, tool: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == tool]


class FakeLLM:
    """Structured replies by schema name (an exception instance is raised instead), chat replies in order."""

    def __init__(self, replies: dict[str, Any] | None = None, chat: list[str] | None = None, **config: Any) -> None:
        self.config = LLMConfig(base_url="http://fake.invalid/v1", model="fake", **config)
        self.usage = Usage()
        self.replies = replies or {}
        self.chats = list(chat or [])
        self.asked: list[tuple[str, list[dict[str, Any]]]] = []

    async def structured(self, messages: list[dict[str, Any]], model_cls: type, *, purpose: str, **_: Any) -> Any:
        self.asked.append((model_cls.__name__, messages))
        reply = self.replies[model_cls.__name__]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        self.asked.append((f"chat:{kw.get('model')}", messages))
        return self.chats.pop(0)


def deps(tools: FakeTools | None = None, llm: FakeLLM | None = None, **config: Any) -> Deps:
    return Deps(tools=tools or FakeTools(), llm=llm, config=AgentConfig(**config))  # type: ignore[arg-type]


def run(node: Any, state: AgentState, d: Deps) -> tuple[dict[str, Any], list[str]]:
    """Call one node alone; returns its update and its decisions, and checks it left ``state`` alone."""
    before = copy.deepcopy(state)
    notes: list[str] = []
    update = asyncio.run(node(state, d, notes.append))
    assert state == before, f"{node.__name__} mutated the state it was given"
    return update, notes


def info_of(image_id: str) -> ImageInfo:
    page = PAGES[image_id]
    return ImageInfo(
        image_id=image_id, path=f"/corpus/{page['file']}", file=page["file"], width=W, height=H, doc_id=page["doc"],
        ocr_text="\n".join(t for t, _ in page["lines"]),
        lines=[EvidenceLine(image_id=image_id, text=t, bbox=b, source="metadata") for t, b in page["lines"]],
        seals=list(page.get("seals", [])), seal_labels=["red round"] * len(page.get("seals", [])),
    )


def line(image_id: str, text: str) -> EvidenceLine:
    box = next(b for t, b in PAGES[image_id]["lines"] if t == text)
    return EvidenceLine(image_id=image_id, text=text, bbox=box, source="ocr_region")


def hit(image_id: str, snippet: str = "") -> HitView:
    page = PAGES[image_id]
    return HitView(image_id=image_id, snippet=snippet, doc_id=page["doc"], file=page["file"], width=W, height=H)


def planned(question: str, **extra: Any) -> AgentState:
    p = rule_plan(question)
    return {**initial_state(question), "plan": p, "failed_subs": list(range(len(p.sub_questions))), **extra}  # type: ignore[typeddict-item]


# -- plan ---------------------------------------------------------------------------------------
def test_plan_without_llm_uses_rules_and_turns_a_year_into_a_filter() -> None:
    update, notes = run(plan, initial_state("2023年签订的合同的甲方是谁"), deps())
    made: Plan = update["plan"]
    assert made.source == "rules" and made.filters == {"date_from": "2023-01-01", "date_to": "2023-12-31"}
    assert update["failed_subs"] == list(range(len(made.sub_questions))) and update["hits"] == {}
    assert notes[0].startswith("planner: rules · language zh")


def test_plan_with_llm_keeps_anchored_parts_and_the_cli_filters() -> None:
    llm = FakeLLM({"LLMPlan": LLMPlan(sub_questions=[
        LLMSubQuestion(question="Who is Party A", queries=["Party A"]),
        LLMSubQuestion(question="What is the weather on Mars", queries=["Mars weather"]),  # not in the question
    ])})
    update, _notes = run(plan, initial_state("Who is Party A?"), deps(llm=llm, filters={"quality": "scanned"}))
    made: Plan = update["plan"]
    assert made.source == "llm" and [s.question for s in made.sub_questions] == ["Who is Party A"]
    assert made.sub_questions[0].filters == {"quality": "scanned"}


def test_plan_falls_back_to_rules_when_the_llm_plan_is_unusable() -> None:
    llm = FakeLLM({"LLMPlan": LLMOutputError("bad plan", "x")})
    update, notes = run(plan, initial_state("Who is Party A?"), deps(llm=llm))
    assert update["plan"].source == "rules" and any("using the rule plan" in n for n in notes)


# -- retrieve -----------------------------------------------------------------------------------
def test_retrieve_adds_an_entity_keyword_search_and_puts_naming_pages_first() -> None:
    tools = FakeTools()
    state = planned("Who is Party B of the agreement with Oakridge Manufacturing Corporation?")
    update, notes = run(retrieve, state, deps(tools, k=2))
    searches = tools.called("search_images")
    assert searches[-1] == {"query": "Oakridge Manufacturing Corporation", "k": 2, "filters": None, "mode": "keyword"}
    assert next(h.image_id for h in update["hits"][0]) == "en1"
    assert any("whose snippet names" in n for n in notes)


def test_retrieve_drops_the_question_date_filter_when_it_finds_nothing() -> None:
    tools = FakeTools(empty_with=("date_from",))
    update, notes = run(retrieve, planned("2023年签订的合同的甲方是谁"), deps(tools))
    filters = [s["filters"] for s in tools.called("search_images")]
    assert filters[0] == {"date_from": "2023-01-01", "date_to": "2023-12-31"} and filters[1] is None
    assert update["hits"][0] and any("searched without it" in n for n in notes)


def test_retrieve_keeps_the_cli_filter_when_relaxing() -> None:
    tools = FakeTools(empty_with=("date_from",))
    d = deps(tools, filters={"quality": "scanned"})
    state = planned("2023年签订的合同的甲方是谁")
    state["plan"] = rule_plan("2023年签订的合同的甲方是谁", {"quality": "scanned"})
    run(retrieve, state, d)
    assert tools.called("search_images")[1]["filters"] == {"quality": "scanned"}


def test_retry_round_searches_wider_and_keeps_earlier_hits_first() -> None:
    tools = FakeTools()
    state = planned("Who is Party A?", round=1, hits={0: [hit("zh1")]})
    update, _notes = run(retrieve, state, deps(tools, k=2))
    searches = tools.called("search_images")
    assert {s["k"] for s in searches} == {4}  # k doubles in a retry
    raw = state["plan"].sub_questions[0].question
    assert (raw, "hybrid") in {(s["query"], s["mode"]) for s in searches}  # the part's own words
    assert any(s["mode"] == "keyword" for s in searches)  # the bare key words
    assert update["hits"][0][0].image_id == "zh1"


def test_retrieve_only_searches_the_answered_document_for_a_later_part() -> None:
    tools = FakeTools()
    state = planned("When was the supply agreement signed and who is Party B?")
    assert state["plan"].sub_questions[1].context_from == 0
    state["failed_subs"] = [1]
    state["answered_docs"] = {0: ["doc-supply"]}
    update, notes = run(retrieve, state, deps(tools))
    doc_searches = [s for s in tools.called("search_images") if s["filters"] and "doc_id" in s["filters"]]
    assert [s["filters"]["doc_id"] for s in doc_searches] == ["doc-supply"]
    assert {h.image_id for h in update["hits"][1]} == {"en2"}
    assert any("searched only the document" in n for n in notes)


def test_a_failing_search_is_noted_not_raised() -> None:
    class Broken(FakeTools):
        async def search_images(self, *a: Any, **kw: Any) -> SearchView:
            raise ToolError("search_images", "index unavailable")

    update, notes = run(retrieve, planned("甲方是谁"), deps(Broken()))
    assert update["hits"] == {0: []} and any("failed" in n for n in notes)


# -- inspect ------------------------------------------------------------------------------------
def test_inspect_extractive_rereads_nothing_and_quotes_stored_lines() -> None:
    # The extractive answerer quotes only the index's stored OCR: a re-read cannot change its answer.
    tools = FakeTools()
    state = planned("Who is Party A?", hits={0: [hit("en1", "Party A: Oakridge Manufacturing Corporation"), hit("zh1")]})
    update, notes = run(inspect, state, deps(tools))
    assert not tools.called("ocr_region") and update["inspected"] == {"en1", "zh1"}
    assert {ln.source for ln in update["evidence"][0]} == {"metadata"}  # the hit's snippet is its stored line
    assert any("nothing re-read" in n for n in notes)


def test_inspect_rereads_regions_and_marks_the_pages_inspected() -> None:
    tools = FakeTools()
    state = planned("Who is Party A?", hits={0: [hit("en1", "Party A: Oakridge Manufacturing Corporation"), hit("zh1")]})
    update, notes = run(inspect, state, deps(tools, FakeLLM()))
    assert update["inspected"] == {"en1", "zh1"}
    # The Chinese page has no region and no line about Party A: nothing on it to re-read.
    assert {a["image_id"] for a in tools.called("ocr_region")} == {"en1"}
    assert update["images"]["en1"].reread, "re-read lines are kept on the image"
    texts = [ln.text for ln in update["evidence"][0]]
    assert "Party A: Oakridge Manufacturing Corporation" in texts
    assert len(update["ocr_cache"]) == len(tools.called("ocr_region"))
    assert any("inspected consulting.png" in n for n in notes)


def test_inspect_skips_pages_that_do_not_name_the_entity() -> None:
    tools = FakeTools()
    state = planned("Who is Party B of the agreement with Oakridge Manufacturing Corporation?", hits={0: [hit("en1"), hit("en2")]})
    update, notes = run(inspect, state, deps(tools, FakeLLM()))
    assert {a["image_id"] for a in tools.called("ocr_region")} == {"en1"}
    assert update["inspected"] == {"en1"} and "en2" in update["images"]  # its metadata was read
    assert any("not re-read" in n for n in notes)


def test_inspect_reuses_cached_rereads_and_known_images() -> None:
    tools = FakeTools()
    state = planned("Who is Party A?", hits={0: [hit("en1")]})
    first, _ = run(inspect, state, deps(tools, FakeLLM()))
    calls = len(tools.calls)
    again, _ = run(inspect, {**state, **first}, deps(tools, FakeLLM()))
    assert len(tools.calls) == calls, "same regions, same images: no tool call"
    assert again["evidence"] == first["evidence"]


def test_inspect_reads_a_known_page_whole_in_a_retry() -> None:
    tools = FakeTools()
    seen = [line("en1", "Party A: Oakridge Manufacturing Corporation")]
    state = planned("Who is Party A?", round=1, hits={0: [hit("en1")]}, evidence={0: seen}, images={"en1": info_of("en1")})
    update, _ = run(inspect, state, deps(tools, FakeLLM()))
    assert tools.called("ocr_region") == [{"image_id": "en1", "bbox": None}]
    assert not tools.called("get_metadata")
    assert update["evidence"][0][0] == seen[0]  # earlier evidence kept


def test_inspect_does_not_reread_for_a_seal_question_but_crops_when_asked() -> None:
    tools = FakeTools()
    state = planned("Where is the seal on the supply agreement?", hits={0: [hit("en2")]})
    assert state["plan"].sub_questions[0].intent == "seal"
    update, _ = run(inspect, state, deps(tools, keep_crops=True))
    assert not tools.called("ocr_region") and update["inspected"] == {"en2"}
    assert list(update["crops"]) == ["en2"]


def test_inspect_shows_the_best_crop_to_the_vision_model() -> None:
    tools = FakeTools()
    llm = FakeLLM(chat=["Party A: Oakridge Manufacturing Corporation"], vlm_model="vision")
    state = planned("Who is Party A?", hits={0: [hit("en1"), hit("zh1")]})
    update, _ = run(inspect, state, deps(tools, llm))
    assert [a["image_id"] for a in tools.called("crop_region")] == ["en1"]  # the best page only
    assert [name for name, _ in llm.asked] == ["chat:vision"]
    assert update["images"]["en1"].vlm_notes == ["Party A: Oakridge Manufacturing Corporation"]


# -- answer -------------------------------------------------------------------------------------
def inspected_state(question: str, evidence: dict[int, list[EvidenceLine]], *ids: str, **extra: Any) -> AgentState:
    hits = {i: [hit(iid) for iid in dict.fromkeys(ln.image_id for ln in lines)] for i, lines in evidence.items()}
    return planned(question, **{"evidence": evidence, "hits": hits, "images": {i: info_of(i) for i in ids}, "inspected": set(ids), **extra})


def test_extractive_answer_quotes_the_value_and_records_its_document() -> None:
    ev = {0: [line("zh1", "甲方（买方）：重庆东方商贸股份有限公司"), line("zh1", "乙方（卖方）：苏州启航机械制造有限责任公司")]}
    update, _ = run(answer, inspected_state("甲方是谁", ev, "zh1"), deps())
    (claim,) = update["claims"]
    assert claim.value == "重庆东方商贸股份有限公司"
    assert claim.citations[0].snippet == "甲方（买方）：重庆东方商贸股份有限公司" and claim.citations[0].path == "/corpus/contract_zh.png"
    assert update["answered_docs"] == {0: ["doc-zh"]} and update["fallback"] is False
    assert update["answer_text"].startswith("抽取式回答（未配置 LLM）")


def test_a_later_part_is_answered_from_the_first_part_s_document() -> None:
    ev = {
        0: [line("en2", "SUPPLY AGREEMENT"), line("en2", "dated March 3, 2022")],
        1: [line("en1", "Party B: Lakeside Logistics Corporation"), line("en2", "Party B: Summit Paper Company")],
    }
    state = inspected_state("When was the supply agreement signed and who is Party B?", ev, "en1", "en2")
    update, _ = run(answer, state, deps())
    assert update["answered_docs"][0] == ["doc-supply"]
    party_b = [c for c in update["claims"] if "Party B" in c.text]
    assert [c.value for c in party_b] == ["Summit Paper Company"]


def test_seal_question_is_answered_from_the_detector_boxes() -> None:
    state = inspected_state("Where is the seal on the supply agreement?", {0: []}, "en2", hits={0: [hit("en2")]})
    update, _ = run(answer, state, deps())
    (claim,) = update["claims"]
    assert claim.kind == "seal" and claim.citations[0].kind == "seal"
    assert claim.citations[0].bbox == (140, 1270, 390, 1520)
    assert claim.citations[0].snippet == "Signed for Party A: Harbor Foods Inc."  # the nearest OCR line


def test_llm_answer_resolves_citations_to_the_quoted_lines() -> None:
    from imgrag.agent.schemas import LLMAnswer, LLMCitation, LLMClaim

    reply = LLMAnswer(answer="Party A is Oakridge.", claims=[LLMClaim(
        text="Party A is Oakridge Manufacturing Corporation",
        citations=[LLMCitation(image_id="en1", snippet="Party A: Oakridge Manufacturing Corporation")])])
    llm = FakeLLM({"LLMAnswer": reply})
    ev = {0: [line("en1", "Party A: Oakridge Manufacturing Corporation")]}
    update, _ = run(answer, inspected_state("Who is Party A?", ev, "en1", feedback=["earlier: wrong"]), deps(llm=llm))
    (claim,) = update["claims"]
    assert claim.citations[0].bbox == (130, 400, 640, 425) and claim.citations[0].path == "/corpus/consulting.png"
    assert update["fallback"] is False and "answered_docs" not in update
    user = llm.asked[0][1][1]["content"]
    assert "failed verification" in user and "earlier: wrong" in user  # the self-check's feedback


def test_the_llm_is_offered_the_extractive_candidates_and_keeps_its_value() -> None:
    from imgrag.agent.schemas import LLMAnswer, LLMCitation, LLMClaim

    # The model cites a cut-short id: it resolves to the one evidence block it starts with.
    reply = LLMAnswer(answer="", claims=[LLMClaim(
        text="Party A", value="Oakridge Manufacturing Corporation",
        citations=[LLMCitation(image_id="consulting.png", snippet="Party A: Oakridge Manufacturing Corporation")])])
    llm = FakeLLM({"LLMAnswer": reply})
    ev = {0: [line("en1", "CONSULTING AGREEMENT"), line("en1", "Party B: Lakeside Logistics Corporation"),
              line("en1", "Party A: Oakridge Manufacturing Corporation")]}
    update, notes = run(answer, inspected_state("Who is Party A?", ev, "en1"), deps(llm=llm, llm_evidence_lines=4))
    _, messages = llm.asked[0]
    user = messages[1]["content"]
    # The same value and quoted line the extractive answer gives, with the page's id.
    assert 'candidate 1: Party A: Oakridge Manufacturing Corporation | quoted from "Party A: Oakridge Manufacturing Corporation" | image_id en1' in user
    tool_text = "\n".join(m["content"] for m in messages if m["role"] == "tool")
    assert "- Party A: Oakridge Manufacturing Corporation" in tool_text
    (c,) = update["claims"]
    assert c.value == "Oakridge Manufacturing Corporation" and c.text == "Party A (Oakridge Manufacturing Corporation)"
    assert c.citations[0].image_id == "en1" and c.citations[0].bbox == (130, 400, 640, 425)
    assert any(n.startswith("LLM offered 1 candidate(s)") for n in notes)


def test_no_candidates_when_turned_off() -> None:
    from imgrag.agent.schemas import LLMAnswer

    llm = FakeLLM({"LLMAnswer": LLMAnswer(answer="", claims=[])})
    ev = {0: [line("en1", "Party A: Oakridge Manufacturing Corporation")]}
    run(answer, inspected_state("Who is Party A?", ev, "en1"), deps(llm=llm, llm_candidates=0))
    assert "candidate" not in llm.asked[0][1][1]["content"].split("\n", 1)[1]


def test_an_unusable_llm_answer_falls_back_to_the_extractive_one() -> None:
    llm = FakeLLM({"LLMAnswer": LLMOutputError("no JSON", "x")})
    ev = {0: [line("en1", "Party A: Oakridge Manufacturing Corporation")]}
    update, notes = run(answer, inspected_state("Who is Party A?", ev, "en1"), deps(llm=llm))
    assert update["fallback"] is True and update["claims"][0].value == "Oakridge Manufacturing Corporation"
    assert any("falling back" in n for n in notes)


# -- self_check ---------------------------------------------------------------------------------
def claim(text: str, image_id: str, snippet: str, value: str = "", sub: str = "Who is Party A?") -> Claim:
    return Claim(text=text, value=value, sub_question=sub,
                 citations=[Citation(image_id=image_id, path="/corpus/x.png", snippet=snippet)])


def test_a_citation_of_an_uninspected_image_fails_and_the_part_is_retried() -> None:
    state = inspected_state("Who is Party A?", {0: []}, "en1", claims=[
        claim("Party A: Fabricated Corp", "nope", "Party A: Fabricated Corp", "Fabricated Corp"),
    ])
    update, _ = run(self_check, state, deps(max_retries=1))
    assert update["verdict"] == "retry" and update["round"] == 1 and update["failed_subs"] == [0]
    assert update["checks"].retries == 1 and [f.check for f in update["checks"].failures] == ["inspected"]
    assert any("no verified answer yet" in f for f in update["feedback"])


def test_the_last_round_drops_what_still_fails() -> None:
    good = claim("Party A: Oakridge Manufacturing Corporation", "en1", "Party A: Oakridge Manufacturing Corporation",
                 "Oakridge Manufacturing Corporation")
    bad = claim("Party A: Imaginary Ltd", "en1", "Party A: Imaginary Ltd", "Imaginary Ltd")
    state = inspected_state("Who is Party A?", {0: []}, "en1", round=1, claims=[good, bad])
    update, _ = run(self_check, state, deps(max_retries=1))
    assert update["verdict"] == "finalize"
    assert [c.status for c in update["claims"]] == ["passed", "dropped"]
    checks: Checks = update["checks"]
    assert (checks.claims_total, checks.claims_passed, checks.claims_dropped, checks.passed) == (2, 1, 1, True)
    assert [f.check for f in checks.failures] == ["snippet"]
    assert checks.checks_run == ["inspected", "snippet", "bbox", "value"]


def test_a_quote_from_a_reread_or_another_box_fails() -> None:
    # The quote must be the stored OCR at the cited box: not a re-read's reading, not another line's box.
    state = inspected_state("Who is Party A?", {0: []}, "en1", round=1)
    state["images"]["en1"].reread.append(EvidenceLine(image_id="en1", text="Party A: Oakridge Mfg. Corp.", bbox=(130, 400, 640, 425)))
    reread = claim("Party A: Oakridge Mfg. Corp.", "en1", "Party A: Oakridge Mfg. Corp.", "Oakridge Mfg. Corp.")
    elsewhere = claim("Party A: Oakridge Manufacturing Corporation", "en1", "Party A: Oakridge Manufacturing Corporation",
                      "Oakridge Manufacturing Corporation")
    elsewhere.citations[0].bbox = (130, 460, 600, 485)  # Party B's line
    at_box = elsewhere.model_copy(deep=True)
    at_box.citations[0].bbox = (130, 400, 640, 425)
    update, _ = run(self_check, {**state, "claims": [reread, elsewhere, at_box]}, deps(max_retries=1))
    assert [c.status for c in update["claims"]] == ["passed", "dropped", "dropped"]
    assert [f.check for f in update["checks"].failures] == ["snippet", "snippet"]


def test_llm_claims_need_their_words_quoted_and_a_verdict() -> None:
    llm = FakeLLM({"LLMVerdict": LLMVerdict(supported=False, reason="no")})
    unrelated = claim("The contract was terminated in March", "en1", "Party A: Oakridge Manufacturing Corporation")
    quoted = claim("Party A is Oakridge Manufacturing Corporation", "en1", "Party A: Oakridge Manufacturing Corporation")
    state = inspected_state("Who is Party A?", {0: [line("en1", "Party A: Oakridge Manufacturing Corporation")]}, "en1",
                            claims=[unrelated, quoted])
    update, _ = run(self_check, state, deps(llm=llm, max_retries=0))
    assert [f.check for f in update["checks"].failures][:2] == ["support", "llm_verify"]
    # Nothing of the LLM's survived: the part is answered by quoting the evidence, and says so.
    assert update["fallback"] is True and update["answer_text"].startswith("Extractive answer (the LLM's reply")
    kept = [c for c in update["claims"] if c.status == "passed"]
    assert [c.value for c in kept] == ["Oakridge Manufacturing Corporation"]
    assert "value" in update["checks"].checks_run and "llm_verify" in update["checks"].checks_run


def test_an_llm_value_that_is_not_quoted_fails_and_the_part_is_quoted_instead() -> None:
    llm = FakeLLM({"LLMVerdict": LLMVerdict(supported=True, reason="")})
    # Real snippet, words mostly quoted, but the value the model gives as its answer is not there.
    wrong = claim("Party A is Oakridge Manufacturing", "en1", "Party A: Oakridge Manufacturing Corporation", "Lakeside Logistics")
    state = inspected_state("Who is Party A?", {0: [line("en1", "Party A: Oakridge Manufacturing Corporation")]}, "en1", claims=[wrong])
    update, _ = run(self_check, state, deps(llm=llm, max_retries=0))
    assert [f.check for f in update["checks"].failures] == ["value"]
    assert not any(name == "LLMVerdict" for name, _ in llm.asked)  # refused before any verdict is asked
    shown = [c for c in update["claims"] if c.status == "passed"]
    assert [c.value for c in shown] == ["Oakridge Manufacturing Corporation"] and update["fallback"] is True
    assert [c.status for c in update["claims"] if c.value == "Lakeside Logistics"] == ["dropped"]


def test_a_seal_citation_must_be_a_detected_seal() -> None:
    forged = Claim(text="seal", kind="seal", sub_question="Where is the seal?", citations=[
        Citation(image_id="en2", snippet="", bbox=(10, 10, 50, 50), kind="seal")])
    state = inspected_state("Where is the seal?", {0: []}, "en2", claims=[forged])
    update, _ = run(self_check, state, deps(max_retries=0))
    assert [f.check for f in update["checks"].failures] == ["seal"] and update["checks"].passed is False


# -- finalize -----------------------------------------------------------------------------------
def test_finalize_numbers_the_citations_and_reports_dropped_claims() -> None:
    c1 = claim("Party A: Oakridge", "en1", "Party A: Oakridge Manufacturing Corporation").model_copy(update={"status": "passed"})
    c2 = claim("Party B: Lakeside", "en1", "Party B: Lakeside Logistics Corporation").model_copy(update={"status": "passed"})
    c3 = claim("Party C: Nobody", "en1", "Party C").model_copy(update={"status": "dropped"})
    tools = FakeTools()
    tools.dropped_args = {"search_images": ["mode"]}
    state = planned("Who are the parties?", claims=[c1, c2, c3], answer_text="Extractive answer: quoted.")
    update, _ = run(finalize, state, deps(tools))
    result = update["result"]
    assert result.answer.splitlines() == [
        "Extractive answer: quoted.", "Party A: Oakridge [1]", "Party B: Lakeside [2]", "(1 claim(s) removed: they failed the self-check.)"
    ]
    assert result.mode == "extractive" and len(result.citations) == 2
    assert "search_images does not accept ['mode']; left out" in result.checks.notes


def test_finalize_with_nothing_verified_says_so_in_the_question_s_language() -> None:
    update, _ = run(finalize, planned("甲方是谁", claims=[]), deps())
    assert update["result"].answer == "未在索引中找到可核实的答案。" and update["checks"].passed is False


def test_finalize_hides_an_llm_summary_its_claims_do_not_back() -> None:
    c1 = claim("Party A is Oakridge Manufacturing Corporation", "en1", "Party A: Oakridge Manufacturing Corporation").model_copy(
        update={"status": "passed"})
    state = planned("Who is Party A?", claims=[c1], answer_text="Oakridge, founded in 1887 in Ohio, is Party A.")
    update, notes = run(finalize, state, deps(llm=FakeLLM()))
    assert "1887" not in update["result"].answer and any("not backed" in n for n in notes)


# -- the graph ----------------------------------------------------------------------------------
def test_a_run_lives_in_its_state_not_in_its_deps() -> None:
    """The same deps twice give the same answer, and the graph is shared by every run: nothing of a
    run stays behind on them. The final state survives LangGraph's checkpoint serializer."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    tools = FakeTools()
    q = "When was the supply agreement signed and who is Party B?"

    async def twice() -> list[tuple[Any, AgentRun]]:
        out = []
        for _ in range(2):
            tools.usage = Usage()
            out.append(await run_agent(q, tools))  # type: ignore[arg-type]
        return out

    (a1, r1), (a2, r2) = asyncio.run(twice())
    assert a1.model_dump(exclude={"timings_ms"}) == a2.model_dump(exclude={"timings_ms"})
    assert a1.checks.passed and "Summit Paper Company" in a1.answer and "Lakeside" not in a1.answer
    assert [e.node for e in r1.trace] == [e.node for e in r2.trace] and r1.inspected == r2.inspected
    assert build_graph() is build_graph()
    serde = JsonPlusSerializer()
    back = serde.loads_typed(serde.dumps_typed(r1.state))
    assert back["result"] == r1.state["result"] and back["images"] == r1.state["images"]
    # The finalize node, replayed alone from the saved state, gives the same answer.
    again = asyncio.run(finalize(back, deps(tools)))
    assert again["result"].answer == a1.answer


def test_run_agent_refuses_an_empty_question() -> None:
    from imgrag.indexing.errors import ImgragError

    with pytest.raises(ImgragError, match="empty question"):
        asyncio.run(run_agent("   ", FakeTools()))  # type: ignore[arg-type]


def test_subquestion_is_plain_data() -> None:
    """What the nodes pass along is pydantic data (checkpointable), not live objects."""
    assert SubQuestion.model_validate(SubQuestion(question="q").model_dump()) == SubQuestion(question="q")


# -- links: a report and its X-ray, an SOP page and its defect photo --------------------------------
CASE_PAGES: dict[str, dict[str, Any]] = {
    "rep": {
        "doc": "doc-rep", "file": "S002.report.png",
        "links": [{"image_id": "mr", "kind": "image", "why": "stem", "file": "S002.dcm", "page": 1}],
        "lines": [
            ("MRI LEFT KNEE — REPORT", (400, 100, 840, 150)),
            ("Accession No: ACC2103045", (130, 220, 600, 250)),
            ("Findings: a 5 mm bone bruise of the lateral femoral condyle.", (130, 400, 1100, 430)),
            ("Impression: no ligament tear.", (130, 460, 700, 490)),
        ],
    },
    "mr": {
        "doc": "doc-mr", "file": "S002.dcm", "lines": [],
        "caption": "MRI magnetic resonance imaging of the left knee, sagittal — MR KNEE LEFT",
        "links": [{"image_id": "rep", "kind": "document", "why": "stem", "file": "S002.report.png", "page": 1}],
    },
    "other": {
        "doc": "doc-other", "file": "S009.report.png",
        "lines": [("Findings: bone bruise of the tibial plateau.", (130, 400, 1000, 430))],
    },
}


def test_an_answer_from_a_linked_report_cites_the_report_line_and_its_image() -> None:
    tools = FakeTools(CASE_PAGES)
    ans, run_ = asyncio.run(run_agent("What does the report say about the bone bruise of the lateral femoral condyle?", tools))  # type: ignore[arg-type]
    assert ans.checks.passed and "linked" in ans.checks.checks_run, ans.checks
    quoted = next(c for c in ans.citations if c.kind == "text" and c.image_id == "rep")
    assert "lateral femoral condyle" in quoted.snippet
    image = next(c for c in ans.citations if c.kind == "linked")
    assert (image.image_id, image.linked_to, image.why) == ("mr", "rep", "stem")
    assert image.snippet == CASE_PAGES["mr"]["caption"] and image.bbox is None  # a DICOM frame has no text: its caption
    assert "mr" in run_.inspected and ("get_metadata", {"image_id": "mr"}) in tools.calls
    assert not any(c.image_id == "other" for c in ans.citations if c.kind == "linked")  # only partners are cited


def test_links_can_be_turned_off() -> None:
    ans, _ = asyncio.run(run_agent("What does the report say about the bone bruise of the lateral femoral condyle?",
                                   FakeTools(CASE_PAGES), config=AgentConfig(linked_per_page=0)))  # type: ignore[arg-type]
    assert ans.citations and not any(c.kind == "linked" for c in ans.citations)


def test_a_linked_citation_must_be_linked_to_a_quoted_page_and_quote_the_partner() -> None:
    def infos() -> dict[str, ImageInfo]:
        out = {}
        for iid, page in CASE_PAGES.items():
            out[iid] = ImageInfo(image_id=iid, file=page["file"], width=W, height=H, caption=page.get("caption", ""),
                                 lines=[EvidenceLine(image_id=iid, text=t, bbox=b, source="metadata") for t, b in page["lines"]],
                                 links=[LinkView(**ln) for ln in page.get("links", [])])
        return out

    text = "Findings: a 5 mm bone bruise of the lateral femoral condyle."
    sub = "What does the report say about the bone bruise?"

    def with_linked(image_id: str, linked_to: str, snippet: str) -> Claim:
        return Claim(text=text, value=text, sub_question=sub, citations=[
            Citation(image_id=linked_to, snippet=text if linked_to == "rep" else "Findings: bone bruise of the tibial plateau."),
            Citation(image_id=image_id, snippet=snippet, kind="linked", linked_to=linked_to, why="stem")])

    cap = CASE_PAGES["mr"]["caption"]
    cases = {
        "ok": with_linked("mr", "rep", cap),
        "not linked": with_linked("mr", "other", cap),
        "made up": with_linked("mr", "rep", "CT of the chest"),
    }
    for name, c in cases.items():
        c.citations[0] = c.citations[0].model_copy(update={"snippet": c.citations[0].snippet})
        state = {**planned(sub), "images": infos(), "inspected": set(CASE_PAGES), "claims": [c], "round": 1}
        update, _ = run(self_check, state, deps(max_retries=1))  # type: ignore[arg-type]
        checks = [f.check for f in update["checks"].failures]
        if name == "ok":
            assert checks == [] and update["claims"][0].status == "passed", update["checks"].failures
        else:
            assert "linked" in checks, (name, update["checks"].failures)


SOP_PAGES: dict[str, dict[str, Any]] = {
    "sop": {
        "doc": "doc-sop", "file": "sop_gr-3668.png",
        "links": [{"image_id": "photo", "kind": "image", "why": "part_number=GR-3668", "file": "d002_gear.jpg", "page": 1}],
        "lines": [
            ("Visual Inspection SOP — Spur Gear", (300, 80, 940, 120)),
            ("Part No: GR-3668", (130, 200, 500, 230)),
            ("DF-D02 dent no dent deeper than 0.2 mm", (130, 400, 1100, 430)),
            ("3. Rework: polish with 120-grit paper and re-anodize on line 2.", (130, 700, 1100, 730)),
        ],
    },
    "photo": {
        "doc": "doc-photo", "file": "d002_gear.jpg", "caption": "gear, sprocket",
        "links": [{"image_id": "sop", "kind": "document", "why": "part_number=GR-3668", "file": "sop_gr-3668.png", "page": 1}],
        "lines": [("P/N: GR-3668", (500, 400, 620, 420)), ("LOT: L2408-00132", (500, 430, 620, 450))],
    },
}


@pytest.mark.parametrize("question", ["Which SOP step fixes the dent on part GR-3668?", "零件GR-3668的凹坑按作业指导书怎么处理？"])
def test_a_remedy_question_quotes_the_step_and_cites_the_photo(question: str) -> None:
    from imgrag.agent.evidence import typed

    ans, _ = asyncio.run(run_agent(question, FakeTools(SOP_PAGES)))  # type: ignore[arg-type]
    assert ans.checks.passed, ans.checks
    step = next(c for c in ans.citations if c.kind == "text" and c.image_id == "sop")
    assert step.snippet.startswith("3. Rework"), ans.citations  # the step, not the line naming the defect
    photo = next(c for c in ans.citations if c.kind == "linked")
    assert photo.image_id == "photo" and photo.snippet == "P/N: GR-3668" and photo.why == "part_number=GR-3668"
    # a question that asks for a value keeps its reader ("which option may fix …" is an option)
    assert typed(rule_plan("Which option to MC may fix garbage characters on screen?").sub_questions[0]) == "option"
