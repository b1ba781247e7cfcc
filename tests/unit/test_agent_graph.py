"""The whole graph in seconds: a small MCP server with canned pages (same tool names and result
shapes as ``mcp_server``), connected in memory with the SDK's client, and a scripted LLM. The slow
tests in ``test_agent_e2e.py`` run the same paths against a real index and real servers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent
from PIL import Image

from imgrag.agent.graph import AgentConfig, Deps, run_agent
from imgrag.agent.llm import LLMClient, LLMConfig
from imgrag.agent.mcp_client import ToolClient
from imgrag.agent.nodes.self_check import check_claim
from imgrag.agent.schemas import Answer, Checks
from imgrag.indexing.text import tokens

PAGES: dict[str, dict[str, Any]] = {
    "zh001": {
        "source": "/corpus/contract_zh.png",
        "lines": [
            ("采购合同", (500, 120, 720, 170)),
            ("甲方（买方）：重庆东方商贸股份有限公司", (130, 260, 550, 290)),
            ("乙方（卖方）：苏州启航机械制造有限责任公司", (130, 380, 590, 405)),
            ("签订日期：2024年12月15日", (130, 500, 630, 523)),
            ("第一条 合同标的：乙方按照本合同约定向甲方提供办公设备", (170, 620, 1100, 650)),
            ("第二条 合同金额：本合同总金额为人民币512,700.50元（大写：伍拾壹万）", (170, 700, 1100, 728)),
        ],
    },
    "en002": {
        "source": "/corpus/contract_en.png",
        "lines": [
            ("CONSULTING AGREEMENT", (420, 120, 820, 165)),
            ("dated September 21, 2023", (470, 180, 770, 210)),
            ("Party A: Oakridge Manufacturing Corporation", (130, 400, 640, 425)),
            ("Party B: Lakeside Logistics Corporation", (130, 460, 600, 485)),
            ("The total contract price is GBP 8,126,000.00", (130, 640, 1010, 680)),
        ],
    },
}
W, H = 1240, 1754


def _png(w: int = 40, h: int = 20) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def fake_server(calls: list[tuple[str, dict[str, Any]]], pages: dict[str, dict[str, Any]] | None = None) -> Any:
    """An MCPServer whose four tools answer from ``pages`` (PAGES by default), shaped like mcp_server's
    outputs. A page may carry "seals" (detector boxes) and a "doc_id"."""
    PAGES = pages or globals()["PAGES"]  # noqa: N806
    mcp = MCPServer("fake-imgrag")

    def result(data: dict[str, Any], *extra: Any) -> CallToolResult:
        return CallToolResult(content=[TextContent(text=json.dumps(data, ensure_ascii=False)), *extra], structured_content=data)

    def line(text: str, box: tuple[int, ...]) -> dict[str, Any]:
        return {"text": text, "bbox": list(box), "confidence": 0.97}

    @mcp.tool()
    def search_images(query: str, k: int = 10, filters: dict[str, Any] | None = None, mode: str = "hybrid") -> CallToolResult:
        calls.append(("search_images", {"query": query, "k": k, "filters": filters, "mode": mode}))
        q = set(tokens(query))
        hits = []
        only = (filters or {}).get("doc_id")
        for image_id, page in PAGES.items():
            if only and page.get("doc_id", image_id) != only:
                continue
            best = max(page["lines"], key=lambda ln: len(q & set(tokens(ln[0]))))
            score = len(q & set(tokens(" ".join(t for t, _ in page["lines"]))))
            hits.append({
                "image_id": image_id, "score": score, "snippet": best[0], "doc_id": page.get("doc_id", image_id),
                "region": {"bbox": list(best[1]), "kind": "line", "label": "ocr", "text": best[0]},
                "file": page["source"].rsplit("/", 1)[-1], "page": 1, "n_pages": 1, "width": W, "height": H,
            })
        hits.sort(key=lambda h: -h["score"])
        return result({"query": query, "hits": hits[:k], "offset": 0, "candidates": len(hits), "next_cursor": None})

    @mcp.tool()
    def get_metadata(image_id: str, max_ocr_lines: int = 200) -> CallToolResult:
        calls.append(("get_metadata", {"image_id": image_id}))
        page = PAGES[image_id]
        return result({
            "image_id": image_id, "source": page["source"], "page": 1, "n_pages": 1, "width": W, "height": H,
            "ocr_lines": [line(t, b) for t, b in page["lines"]], "ocr_text": "\n".join(t for t, _ in page["lines"]),
            "dates": [], "layout": [],
            "seals": [{"bbox": list(b), "color": "red", "shape": "round", "confidence": 0.9} for b in page.get("seals", [])],
        })

    @mcp.tool()
    def ocr_region(image_id: str, bbox: list[float] | None = None, scale: float | str = "auto") -> CallToolResult:
        calls.append(("ocr_region", {"image_id": image_id, "bbox": bbox, "scale": scale}))
        x0, y0, x1, y1 = bbox or (0, 0, W, H)
        lines = [line(t, b) for t, b in PAGES[image_id]["lines"] if y0 <= (b[1] + b[3]) / 2 <= y1 and x0 <= (b[0] + b[2]) / 2 <= x1]
        return result({"image_id": image_id, "bbox": [x0, y0, x1, y1], "scale": 2.0, "lines": lines, "text": "\n".join(ln["text"] for ln in lines)})

    @mcp.tool()
    def crop_region(image_id: str, bbox: list[float], units: str = "px", scale: float = 1.0, enhance: bool = False) -> CallToolResult:
        calls.append(("crop_region", {"image_id": image_id, "bbox": bbox, "units": units}))
        return result({"image_id": image_id, "bbox": [int(v) for v in bbox], "scale": scale, "width": 40, "height": 20},
                      ImageContent(data=_png(), mime_type="image/png"))

    return mcp


class ScriptedLLM(LLMClient):
    """An LLMClient whose endpoint is a list of canned replies, chosen by the schema asked for."""

    def __init__(self, replies: dict[str, list[str]]) -> None:
        super().__init__(LLMConfig(base_url="http://scripted.invalid/v1", model="scripted", repair_retries=1))
        self.replies = replies
        self.seen: list[tuple[str | None, list[dict[str, Any]]]] = []

    async def chat(self, messages: list[dict[str, Any]], *, max_tokens: int | None = None,
                   schema: tuple[str, dict[str, Any]] | None = None, model: str | None = None, purpose: str = "chat") -> str:
        name = schema[0] if schema else None
        self.seen.append((name, messages))
        self.usage.llm_calls += 1
        self.usage.prompt_tokens += 50
        self.usage.completion_tokens += 10
        self.usage.total_tokens += 60
        queue = self.replies.get(name or "", [])
        return queue.pop(0) if len(queue) > 1 else (queue[0] if queue else "{}")


def ask(
    question: str, llm: LLMClient | None = None, pages: dict[str, dict[str, Any]] | None = None, **cfg: Any
) -> tuple[Answer, Any, list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def go() -> tuple[Answer, Any]:
        async with ToolClient.in_memory(fake_server(calls, pages)) as tools:
            return await run_agent(question, tools, llm, AgentConfig(**cfg))

    answer, agent = asyncio.run(go())
    return answer, agent, calls


def test_extractive_graph_over_in_memory_mcp() -> None:
    answer, agent, calls = ask("重庆东方商贸股份有限公司的合同签订日期和合同金额是多少")
    assert answer.mode == "extractive" and answer.checks.passed
    assert "2024年12月15日" in answer.answer and "人民币512,700.50元" in answer.answer
    assert {c.image_id for c in answer.citations} == {"zh001"}
    assert all(c.path == "/corpus/contract_zh.png" and c.bbox for c in answer.citations)
    tools = [name for name, _ in calls]
    # Extractive: the quotes are the stored page OCR, so nothing is re-read.
    assert tools[0] == "search_images" and "get_metadata" in tools and "ocr_region" not in tools
    assert [ev.node for ev in agent.trace] == ["plan", "retrieve", "inspect", "answer", "self_check", "finalize"]


def test_question_date_becomes_a_search_filter() -> None:
    _answer, agent, calls = ask("2023年签订的合同的甲方是谁")
    searches = [args for name, args in calls if name == "search_images"]
    assert searches[0]["filters"] == {"date_from": "2023-01-01", "date_to": "2023-12-31"}


def test_party_question_english() -> None:
    answer, _agent, _calls = ask("Who is Party B of the agreement with Oakridge Manufacturing Corporation?")
    assert answer.claims[0].text == "Party B: Lakeside Logistics Corporation"
    assert answer.citations[0].snippet == "Party B: Lakeside Logistics Corporation"


def _answer_json(image_id: str, text: str, snippet: str, summary: str = "") -> str:
    return json.dumps({"answer": summary or text, "claims": [{"text": text, "citations": [{"image_id": image_id, "snippet": snippet}]}]})


def test_fabricated_citation_is_retried_then_removed_and_usage_summed() -> None:
    llm = ScriptedLLM({
        "LLMPlan": [json.dumps({"sub_questions": [{"question": "Who is Party A", "queries": ["Party A"]}]})],
        "LLMAnswer": [
            _answer_json("nope999", "Party A is Fabricated Corp", "Party A: Fabricated Corp"),
            _answer_json("en002", "Party A is Oakridge Manufacturing Corporation", "Party A: Oakridge Manufacturing Corporation"),
        ],
        "LLMVerdict": ['{"supported": true, "reason": "quoted"}'],
    })
    answer, agent, _calls = ask("Who is Party A?", llm)
    assert answer.mode == "llm" and answer.checks.retries == 1
    assert [f.check for f in answer.checks.failures] == ["inspected"]
    assert answer.answer.startswith("Party A is Oakridge Manufacturing Corporation")
    assert "Fabricated" not in answer.answer
    assert answer.checks.llm_verified == 1
    assert answer.usage.llm_calls == 4 and answer.usage.total_tokens == 240
    feedback = json.dumps([m for name, msgs in llm.seen if name == "LLMAnswer" for m in msgs][-6:], ensure_ascii=False)
    assert "nope999" in feedback


def test_real_snippet_cited_for_an_unrelated_claim_fails_support() -> None:
    unrelated = _answer_json("en002", "The contract was terminated by the buyer in March", "Party A: Oakridge Manufacturing Corporation")
    llm = ScriptedLLM({"LLMPlan": ["{}"], "LLMAnswer": [unrelated], "LLMVerdict": ['{"supported": true}']})
    answer, _agent, _calls = ask("Who is Party A?", llm, max_retries=0)
    assert any(f.check == "support" for f in answer.checks.failures)
    assert "terminated" not in answer.answer
    # The part falls back to quoting the evidence, labelled as such.
    assert answer.answer.startswith("Extractive answer (the LLM's reply gave no verifiable claim)")
    assert "Oakridge Manufacturing Corporation" in answer.answer


def test_truncated_reply_is_repaired_and_unsupported_summary_hidden() -> None:
    truncated = '{"answer": "Party A is Oakridge Manufacturing Corporation, founded in 1887 in Ohio", "claims": [{"text": "Party A is Oakridge Manufacturing Corporation", "citations": [{"image_id": "en002", "snippet": "Party A: Oakridge Manufacturing Corporation"}]}, {"text": "It was fou'
    llm = ScriptedLLM({"LLMPlan": ["not json at all", "still not json"], "LLMAnswer": [truncated], "LLMVerdict": ['{"supported": true}']})
    answer, agent, _calls = ask("Who is Party A?", llm)
    assert answer.usage.llm_repairs >= 2  # the plan was re-asked once, the answer closed locally
    assert answer.usage.llm_failures == 1  # the plan stayed unusable: the rule plan was used
    assert any("rule plan" in d for ev in agent.trace for d in ev.decisions)
    assert [c.text for c in answer.claims] == ["Party A is Oakridge Manufacturing Corporation"]
    assert "1887" not in answer.answer and any("summary" in n for n in answer.checks.notes)


@pytest.mark.parametrize("fmt", ["json"])
def test_public_json_shape(fmt: str) -> None:
    answer, _agent, _calls = ask("甲方是谁")
    out = answer.public()
    assert set(out) >= {"answer", "citations", "checks", "usage", "mode"}
    assert out["mode"] == "extractive"
    assert out["citations"][0]["snippet"] == "甲方（买方）：重庆东方商贸股份有限公司"  # type: ignore[index]


# -- seals, sub-question context, section numbers ----------------------------------------------------
SEAL = (140, 1270, 390, 1520)
SEAL_PAGES: dict[str, dict[str, Any]] = {
    "zh001": {**PAGES["zh001"], "lines": [*PAGES["zh001"]["lines"], ("甲方（盖章）：重庆东方商贸股份有限公司", (130, 1400, 700, 1430))],
              "seals": [SEAL]},
    "en002": PAGES["en002"],
}


def test_seal_question_is_answered_from_the_detected_seal_boxes() -> None:
    answer, agent, calls = ask("重庆东方商贸股份有限公司合同的印章在哪里", pages=SEAL_PAGES)
    assert answer.checks.passed and "seal" in answer.checks.checks_run
    top = answer.claims[0]
    assert top.kind == "seal" and top.citations[0].kind == "seal"
    assert top.citations[0].image_id == "zh001" and top.citations[0].bbox == SEAL
    # The quoted snippet is the page's OCR line nearest to the seal, so it is grounded.
    assert top.citations[0].snippet == "甲方（盖章）：重庆东方商贸股份有限公司"
    assert "[140, 1270, 390, 1520]" in answer.answer and "contract_zh.png" in answer.answer
    assert not [a for name, a in calls if name == "ocr_region"]  # nothing to re-read for a seal
    # A box that is not one the detector found fails the self-check.
    forged = top.model_copy(update={"citations": [top.citations[0].model_copy(update={"bbox": (10.0, 10.0, 50.0, 50.0)})]})
    failures = asyncio.run(check_claim(forged, True, agent.state, Deps(tools=None), Checks()))  # type: ignore[arg-type]
    assert [f.check for f in failures] == ["seal"]


def test_seal_question_says_when_no_seal_was_detected() -> None:
    answer, _agent, _calls = ask("Where is the company seal on the agreement with Lakeside Logistics Corporation?", pages=SEAL_PAGES)
    assert answer.checks.passed
    top = answer.claims[0]
    assert top.kind == "no_seal" and top.citations[0].image_id == "en002"
    assert "no seal was detected on contract_en.png" in answer.answer
    assert "Lakeside Logistics Corporation" in top.citations[0].snippet


CONTEXT_PAGES: dict[str, dict[str, Any]] = {
    "en002": PAGES["en002"],
    "en003": {
        "source": "/corpus/supply_en.png",
        "lines": [
            ("SUPPLY AGREEMENT", (420, 120, 820, 165)),
            ("dated March 3, 2022", (470, 180, 770, 210)),
            ("Party A: Harbor Foods Inc.", (130, 400, 640, 425)),
            ("Party B: Summit Paper Company", (130, 460, 600, 485)),
        ],
    },
}


def test_later_part_inherits_the_subject_and_document_of_the_first() -> None:
    answer, agent, calls = ask("When was the supply agreement signed and who is Party B?", pages=CONTEXT_PAGES)
    assert answer.checks.passed
    plan = agent.trace[0].decisions
    assert any("asks about 'the supply agreement'" in d for d in plan)
    # Both parts are answered from the supply agreement only; the consulting agreement's Party B
    # (also a "Party B:" line) is not.
    assert {c.image_id for c in answer.citations} == {"en003"}
    assert "March 3, 2022" in answer.answer and "Summit Paper Company" in answer.answer
    assert "Lakeside" not in answer.answer
    searches = [a["query"] for name, a in calls if name == "search_images"]
    assert any("supply agreement" in q and "Party B" in q for q in searches)


SECTION_PAGES: dict[str, dict[str, Any]] = {
    "doc1": {
        "source": "/corpus/debian-reference.en-p030.png",
        "lines": [
            ("Debian Reference", (77, 50, 179, 64)),
            ("1.1.2", (77, 200, 120, 220)),
            ("The shell prompt under GUI", (130, 200, 400, 220)),
            ("If you installed a GUI environment, you can get a shell prompt", (77, 240, 700, 258)),
            ("1.1.3 The root account", (77, 300, 400, 320)),
            ("Table 1.1: List of interesting text-mode program packages", (200, 400, 640, 418)),
        ],
    },
}


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("Which section of the Debian Reference is “The shell prompt under GUI”?", "1.1.2"),
        ("Which section of the Debian Reference is “The root account”?", "1.1.3"),
        ("Which table is the list of interesting text-mode program packages?", "Table 1.1"),
    ],
)
def test_section_and_table_questions_answer_the_number(question: str, value: str) -> None:
    answer, _agent, _calls = ask(question, pages=SECTION_PAGES)
    assert answer.checks.passed
    assert answer.claims[0].value == value, answer.claims[0]
