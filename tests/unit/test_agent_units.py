"""Fast tests of the agent's pure parts: planning, JSON repair, evidence scoring, citation checks,
argument shaping, the LLM settings and the Markdown/PDF reports (no index, no server)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgrag.agent.evidence import EvidenceLine, ImageInfo, best_lines, find_date, snippet_matches
from imgrag.agent.llm import LLMConfig, json_schema_for, parse_json_reply, schema_example
from imgrag.agent.mcp_client import shape_arguments
from imgrag.agent.planner import extract_dates, extract_entities, rule_plan, split_question
from imgrag.agent.report import find_cjk_font, to_markdown, write_markdown, write_pdf
from imgrag.agent.schemas import Answer, Checks, Citation, Claim, LLMAnswer, LLMPlan
from imgrag.indexing.config import Settings
from imgrag.indexing.errors import ImgragError

# -- planning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("甲方和乙方分别是谁", ["甲方分别是谁", "乙方分别是谁"]),
        ("合同签订日期以及合同金额", ["合同签订日期", "合同金额"]),
        ("甲方是谁并且签订日期是哪天", ["甲方是谁", "签订日期是哪天"]),
        ("甲方是谁；乙方是谁", ["甲方是谁", "乙方是谁"]),
        ("Who is Party A and when was it signed", ["Who is Party A", "when was it signed"]),
        ("Who are Party A and Party B", ["Who are Party A", "Who are Party B"]),
        ("what is the price; also who is Party B", ["what is the price", "who is Party B"]),
        ("合同签订日期", ["合同签订日期"]),
    ],
)
def test_split_question(question: str, parts: list[str]) -> None:
    assert split_question(question) == parts


def test_split_keeps_entities_and_fixed_words_whole() -> None:
    q = "和信贸易有限公司的及时交付条款"
    assert split_question(q, extract_entities(q)) == [q]


@pytest.mark.parametrize(
    ("question", "expected", "rest"),
    [
        ("2023年签订的合同", {"date_from": "2023-01-01", "date_to": "2023-12-31"}, "签订的合同"),
        ("2023年5月的合同", {"date_from": "2023-05-01", "date_to": "2023-05-31"}, "合同"),
        ("2023年5月12日签订的合同", {"date_from": "2023-05-12", "date_to": "2023-05-12"}, "签订的合同"),
        ("contracts signed in 2021", {"date_from": "2021-01-01", "date_to": "2021-12-31"}, "contracts signed"),
        ("agreement dated May 12, 2023", {"date_from": "2023-05-12", "date_to": "2023-05-12"}, "agreement"),
        ("contracts signed before 2024", {"date_to": "2023-12-31"}, "contracts signed"),
        ("contracts signed between 2021 and 2023", {"date_from": "2021-01-01", "date_to": "2023-12-31"}, "contracts signed"),
        ("2022年以后的合同", {"date_from": "2023-01-01"}, "合同"),
        ("合同 HT-2023-0012 的金额", {}, "合同 HT-2023-0012 的金额"),
    ],
)
def test_extract_dates(question: str, expected: dict[str, str], rest: str) -> None:
    filters, text = extract_dates(question)
    assert filters == expected
    assert text == rest


def test_extract_entities() -> None:
    assert extract_entities("与重庆东方商贸股份有限公司签订的合同") == ["重庆东方商贸股份有限公司"]
    assert extract_entities("Who is Party B of the deal with Oakridge Manufacturing Corporation?") == [
        "Oakridge Manufacturing Corporation"
    ]
    assert "HT-20241215-0901" in extract_entities("合同编号 HT-20241215-0901 的甲方")
    assert extract_entities("find “blue seal” pages") == ["blue seal"]


def test_rule_plan_intents_filters_and_user_filter_precedence() -> None:
    plan = rule_plan("2023年重庆东方商贸股份有限公司的合同签订日期和合同金额是多少")
    assert plan.filters == {"date_from": "2023-01-01", "date_to": "2023-12-31"}
    assert [s.intent for s in plan.sub_questions] == ["date", "amount"]
    assert all(s.entities == ["重庆东方商贸股份有限公司"] for s in plan.sub_questions)
    assert all(s.filters == plan.filters for s in plan.sub_questions)
    # A --filter date range replaces the one read from the question.
    user = rule_plan("2023年的合同甲方是谁", {"date_from": "2020-01-01", "quality": ["scanned"]})
    assert user.filters == {"date_from": "2020-01-01", "quality": ["scanned"]}
    en = rule_plan("Who is Party A?")
    assert en.sub_questions[0].intent == "party"
    assert "party a" in en.sub_questions[0].key_terms
    assert en.sub_questions[0].queries[0] == "Party A"


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("合同HT-20200218-792的印章在哪里", "seal"),
        ("where is the seal on contract HT-20200218-792", "seal"),
        ("Where is the company seal/stamp on the contract?", "seal"),
        ("盖章位置", "seal"),
        ("盖章日期是哪天", "date"),
        ("Which section of the Debian Reference is “When to use sudo”?", "section"),  # not "when" → date
        ("《Debian 参考手册》中“控制台基础”是第几节", "section"),
        ("“有趣的文本模式程序包列表”是哪个表格", "section"),
        ("Which table is the list of informative documentation packages?", "section"),
        ("Where is the office of Party A?", "party"),
    ],
)
def test_intents_seal_and_section(question: str, intent: str) -> None:
    assert rule_plan(question).sub_questions[0].intent == intent


def test_entities_touching_chinese_text() -> None:
    assert extract_entities("合同HT-20200218-792的印章在哪里") == ["HT-20200218-792"]
    assert extract_entities("与Redwood Medical Supplies Inc.签订的合同是哪天签的") == ["Redwood Medical Supplies Inc"]
    assert extract_entities("与Northwind Technologies Corporation签订的合同") == ["Northwind Technologies Corporation"]
    assert extract_entities("与Brightstone Trading Co., Ltd.签订的合同") == ["Brightstone Trading Co., Ltd"]


def test_later_part_inherits_the_subject_of_the_first() -> None:
    en = rule_plan("When was the supply agreement signed and who is Party B?")
    first, second = en.sub_questions
    assert first.context_from is None and second.context_from == 0
    assert second.question == "who is Party B of the supply agreement"
    assert all("supply agreement" in q for q in second.queries)
    assert "supply" not in second.key_terms  # the subject picks the document, not the line
    zh = rule_plan("采购合同的签订日期和乙方是谁")
    assert zh.sub_questions[1].question == "采购合同的乙方是谁" and zh.sub_questions[1].context_from == 0
    # An entity named once: the later part keeps the entity and the document of the first.
    ent = rule_plan("重庆东方商贸股份有限公司的合同签订日期和合同金额是多少")
    assert ent.sub_questions[1].entities == ["重庆东方商贸股份有限公司"] and ent.sub_questions[1].context_from == 0
    # Parts that name their own documents, or no document at all, stand alone.
    own = rule_plan("Who is Party A of agreement AG-20230804-751 and who is Party A of agreement AG-20211123-887?")
    assert [s.context_from for s in own.sub_questions] == [None, None]
    assert [s.context_from for s in rule_plan("甲方和乙方分别是谁").sub_questions] == [None, None]


# -- JSON from models -----------------------------------------------------------------------------


def test_parse_json_reply_repairs_truncated_and_fenced() -> None:
    assert parse_json_reply('{"a": 1}') == ({"a": 1}, False)
    assert parse_json_reply('Sure:\n```json\n{"a": [1, 2]}\n```') == ({"a": [1, 2]}, True)
    value, repaired = parse_json_reply('{"answer": "x", "claims": [{"text": "t", "citations": [{"image_id": "ab')
    assert repaired and value["answer"] == "x"
    # Incomplete list items are dropped by the bounded schemas instead of failing the reply.
    ans = LLMAnswer.model_validate(value)
    assert ans.claims[0].text == "t" and ans.claims[0].citations == []
    with pytest.raises(ValueError):
        parse_json_reply("no json here")


def test_bounded_schemas_trim_and_inline() -> None:
    long = LLMAnswer.model_validate({"answer": "x" * 900, "claims": [{"text": "c"}] * 9})
    assert len(long.answer) == 600 and len(long.claims) == 4
    schema = json_schema_for(LLMAnswer)
    assert "$defs" not in schema and "$ref" not in str(schema)
    assert schema["properties"]["claims"]["maxItems"] == 4
    example = schema_example(json_schema_for(LLMPlan))
    assert set(example) == {"sub_questions"} and set(example["sub_questions"][0]) == {"question", "queries"}


LLM_VARS = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "IMGRAG_LLM_BASE_URL", "IMGRAG_LLM_API_KEY", "IMGRAG_LLM_MODEL",
            "IMGRAG_VLM_MODEL", "IMGRAG_LLM", "IMGRAG_LLM_MAX_TOKENS", "IMGRAG_LLM_TIMEOUT", "IMGRAG_LLM_VERIFY", "IMGRAG_DEBUG")


def _llm_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str = "", **env: str) -> LLMConfig | None:
    """LLMConfig from the settings object over exactly these variables (and this imgrag.toml)."""
    for var in LLM_VARS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "imgrag.toml").write_text(toml)
    monkeypatch.setenv("IMGRAG_CONFIG", str(tmp_path / "imgrag.toml"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return LLMConfig.from_settings(Settings())


def test_llm_config_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _llm_from(monkeypatch, tmp_path) is None
    assert _llm_from(monkeypatch, tmp_path, OPENAI_BASE_URL="http://x/v1", IMGRAG_LLM="off") is None
    assert _llm_from(monkeypatch, tmp_path, OPENAI_BASE_URL="http://x/v1", IMGRAG_LLM="none") is None
    assert _llm_from(monkeypatch, tmp_path, OPENAI_BASE_URL="", IMGRAG_LLM_MODEL="") is None  # empty = unset
    cfg = _llm_from(monkeypatch, tmp_path, OPENAI_BASE_URL="http://x/v1", IMGRAG_LLM_MODEL="m", IMGRAG_VLM_MODEL="v",
                    IMGRAG_LLM_MAX_TOKENS="99", IMGRAG_LLM_VERIFY="0", IMGRAG_LLM_TIMEOUT="")
    assert cfg is not None and (cfg.base_url, cfg.model, cfg.vlm_model, cfg.max_tokens) == ("http://x/v1", "m", "v", 99)
    assert cfg.api_key == "not-needed" and cfg.verify is False and cfg.timeout_s == 300.0
    # The imgrag-prefixed names win over the OpenAI SDK's; the environment wins over imgrag.toml.
    cfg = _llm_from(monkeypatch, tmp_path, IMGRAG_LLM_BASE_URL="http://mine/v1", OPENAI_BASE_URL="http://sdk/v1",
                    OPENAI_API_KEY="sk-1")
    assert cfg is not None and (cfg.base_url, cfg.api_key) == ("http://mine/v1", "sk-1")
    toml = 'llm_base_url = "http://toml/v1"\nllm_model = "t"\nllm_api_key = "sk-t"\nllm_max_tokens = 50\n'
    cfg = _llm_from(monkeypatch, tmp_path, toml)
    assert cfg is not None and (cfg.base_url, cfg.model, cfg.api_key, cfg.max_tokens) == ("http://toml/v1", "t", "sk-t", 50)
    cfg = _llm_from(monkeypatch, tmp_path, toml, OPENAI_BASE_URL="http://env/v1")
    assert cfg is not None and cfg.base_url == "http://env/v1"


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("IMGRAG_LLM_MAX_TOKENS", "lots", "IMGRAG_LLM_MAX_TOKENS='lots'"),
        ("IMGRAG_LLM_MAX_TOKENS", "3", "IMGRAG_LLM_MAX_TOKENS='3'"),
        ("IMGRAG_LLM_TIMEOUT", "-1", "IMGRAG_LLM_TIMEOUT='-1'"),
        ("IMGRAG_LLM_VERIFY", "maybe", "IMGRAG_LLM_VERIFY='maybe'"),
        ("IMGRAG_LLM", "sometimes", "IMGRAG_LLM='sometimes'"),
        ("IMGRAG_DEBUG", "loud", "IMGRAG_DEBUG='loud'"),
        ("OPENAI_BASE_URL", "localhost:8080", "IMGRAG_LLM_BASE_URL='localhost:8080'"),
    ],
)
def test_a_bad_llm_setting_is_one_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str, named: str) -> None:
    from imgrag.indexing.config import get_settings

    _llm_from(monkeypatch, tmp_path)
    monkeypatch.setenv(var, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ImgragError, match=re.escape(named)) as e:
            get_settings()
        assert "\n" not in e.value.message
    finally:
        monkeypatch.delenv(var)
        get_settings.cache_clear()


def test_debug_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _llm_from(monkeypatch, tmp_path)
    assert Settings().debug is False
    for value, on in (("1", True), ("0", False), ("", False), ("true", True)):
        monkeypatch.setenv("IMGRAG_DEBUG", value)
        assert Settings().debug is on, value


# -- evidence and checks --------------------------------------------------------------------------


def _line(text: str, y: float, x0: float = 100, x1: float = 600, image_id: str = "img1") -> EvidenceLine:
    return EvidenceLine(image_id=image_id, text=text, bbox=(x0, y, x1, y + 24), confidence=0.95, source="metadata")


def test_party_prefers_label_value_over_mention() -> None:
    plan = rule_plan("甲方是谁")
    lines = [
        _line("第一条 合同标的：乙方按照本合同约定向甲方提供办公设备", 600),
        _line("甲方（买方）：重庆东方商贸股份有限公司", 260),
    ]
    best = best_lines(plan.sub_questions[0], lines, {"img1": ImageInfo(image_id="img1")})
    assert best[0].value == "重庆东方商贸股份有限公司"


def test_party_value_in_the_next_box() -> None:
    plan = rule_plan("Who is Party A?")
    lines = [_line("Party A:", 200, 100, 200), _line("Oakridge Manufacturing Corporation", 201, 230, 700)]
    best = best_lines(plan.sub_questions[0], lines, {"img1": ImageInfo(image_id="img1")})
    assert best[0].value == "Oakridge Manufacturing Corporation"
    assert best[0].snippet_line.text == "Oakridge Manufacturing Corporation"


def test_date_and_amount_values() -> None:
    date_sub = rule_plan("合同签订日期").sub_questions[0]
    amount_sub = rule_plan("合同金额是多少").sub_questions[0]
    lines = [
        _line("签订日期：2024年12月15日", 500),
        _line("第二条 合同金额：本合同总金额为人民币512,700.50元（大写：人民币伍拾壹万）", 700),
        _line("甲乙双方本着平等互利的原则", 540),
    ]
    info = {"img1": ImageInfo(image_id="img1")}
    assert best_lines(date_sub, lines, info)[0].value == "2024年12月15日"
    assert best_lines(amount_sub, lines, info)[0].value == "人民币512,700.50元"
    assert find_date("This Agreement is dated September 21, 2023.") == "September 21, 2023"


def test_entity_bonus_picks_the_named_document() -> None:
    sub = rule_plan("重庆东方商贸股份有限公司的合同签订日期").sub_questions[0]
    lines = [_line("签订日期：2025年1月2日", 500, image_id="other"), _line("签订日期：2024年12月15日", 500, image_id="named")]
    images = {
        "other": ImageInfo(image_id="other", ocr_text="甲方：成都博达科技有限公司"),
        "named": ImageInfo(image_id="named", ocr_text="甲方（买方）：重庆东方商贸股份有限公司"),
    }
    lines[1].rank = 1  # even from a lower-ranked hit
    assert best_lines(sub, lines, images)[0].line.image_id == "named"


def test_snippet_matches_after_normalisation() -> None:
    info = ImageInfo(image_id="a", ocr_text="甲方（买方）：重庆东方商贸股份有限公司\nParty A: Oakridge  Manufacturing")
    assert snippet_matches("甲方(买方):重庆东方商贸股份有限公司", info)  # full-width vs half-width
    assert snippet_matches("party a:oakridge manufacturing", info)  # case and spaces
    assert not snippet_matches("Party A: Fabricated Corp", info)
    assert not snippet_matches("   ", info)


def test_a_section_number_is_not_a_table_caption_number() -> None:
    # The page's stored OCR (Debian Reference en p43): the caption reads more confidently than the heading.
    sub = rule_plan("Which section of the Debian Reference is “Special device files”?").sub_questions[0]
    lines = [
        EvidenceLine(image_id="p", text="1.2.11 Special device files", bbox=(75, 624, 295, 643), confidence=0.977, source="metadata"),
        EvidenceLine(image_id="p", text="Table 1.10: List of special device files", bbox=(325, 886, 540, 903), confidence=0.998, source="metadata"),
    ]
    assert best_lines(sub, lines, {"p": ImageInfo(image_id="p", lines=lines)})[0].value == "1.2.11"


def test_a_quote_is_the_stored_ocr_at_its_box() -> None:
    # Grounding by construction: only the index's stored OCR counts, and only at the cited box.
    stored_lines = [_line("To see who may read the shadow file, type:", 200), _line("sruuun -l /etc/shadow", 240)]
    info = ImageInfo(image_id="img1", lines=stored_lines, ocr_text="To see who may read the shadow file, type:\nsruuun -l /etc/shadow",
                     reread=[EvidenceLine(image_id="img1", text="ls -l /etc/shadow", bbox=(100, 240, 600, 264))])
    assert snippet_matches("sruuun -l /etc/shadow", info, (100, 240, 600, 264))
    assert not snippet_matches("sruuun -l /etc/shadow", info, (100, 200, 600, 224))  # on the page, not at that box
    assert not snippet_matches("ls -l /etc/shadow", info)  # a re-read of this run is not what the index holds
    # A re-read that reads the pixels otherwise is never scored; one that agrees is the stored line.
    sub = rule_plan("How do I see who may read the shadow file?").sub_questions[0]
    reread = [EvidenceLine(image_id="img1", text="ls -l /etc/shadow", bbox=(100, 240, 600, 264), source="ocr_region")]
    assert all(sc.snippet_line.source == "metadata" and "ls -l" not in sc.value for sc in best_lines(sub, reread, {"img1": info}))
    same = [EvidenceLine(image_id="img1", text="To see who may read the shadow file, type:", bbox=(98, 199, 602, 225), source="snippet", rank=1)]
    (sc,) = best_lines(sub, same, {"img1": info})
    assert sc.line is not same[0] and sc.line.bbox == stored_lines[0].bbox and sc.line.rank == 1


def test_shape_arguments_flat_wrapped_and_unknown_keys() -> None:
    flat = {"type": "object", "properties": {"image_id": {}, "bbox": {}, "scale": {}}}
    assert shape_arguments(flat, {"image_id": "a", "bbox": None, "units": "px"}) == ({"image_id": "a"}, ["units"])
    wrapped = {
        "type": "object",
        "properties": {"params": {"$ref": "#/$defs/In"}},
        "$defs": {"In": {"type": "object", "properties": {"image_id": {}, "scale": {}}}},
    }
    assert shape_arguments(wrapped, {"image_id": "a", "scale": 2}) == ({"params": {"image_id": "a", "scale": 2}}, [])


# -- reports --------------------------------------------------------------------------------------


def _answer() -> Answer:
    c1 = Citation(image_id="abc123", path="/data/contract.png", page=1, bbox=(10, 20, 300, 50), snippet="甲方：重庆东方商贸股份有限公司")
    c2 = Citation(image_id="def456", path="/data/en.png", page=2, bbox=None, snippet="Party A: Oakridge | Co")
    claims = [
        Claim(text="甲方: 重庆东方商贸股份有限公司", citations=[c1], status="passed"),
        Claim(text="Party A: Oakridge", citations=[c2], status="passed"),
    ]
    return Answer(
        question="甲方是谁", answer="甲方: 重庆东方商贸股份有限公司 [1]", mode="extractive", claims=claims, citations=[c1, c2],
        checks=Checks(claims_total=2, claims_passed=2, citations_checked=2, citations_passed=2),
    )


def test_markdown_report_tables_and_crops(tmp_path: Path) -> None:
    a = _answer()
    md = to_markdown(a)
    assert "| 1 | `abc123` | /data/contract.png | 1 | [10, 20, 300, 50] | 甲方：重庆东方商贸股份有限公司 |" in md
    assert "Oakridge \\| Co" in md  # pipes escaped inside cells
    assert "| 1 | 甲方: 重庆东方商贸股份有限公司 | [1] |" in md
    out = write_markdown(a, tmp_path / "r.md", {1: _png()})
    assert (tmp_path / "r_crops" / "1.png").is_file()
    assert "![crop 1](r_crops/1.png)" in out.read_text(encoding="utf-8")
    public = a.public()
    assert set(public) >= {"answer", "citations", "checks", "usage", "mode"}
    assert set(public["citations"][0]) == {"image_id", "path", "page", "bbox", "snippet", "kind"}  # type: ignore[index]


def test_markdown_report_escapes_hostile_file_names_and_snippets() -> None:
    # `imgrag ask --format markdown` prints this: a name's ESC sequences and bidi overrides used to
    # reach the terminal raw (only whitespace was collapsed)
    name = "/data/a\x1b[2J\x1b]8;;http://evil\x07x\u202egnp.png"
    c = Citation(image_id="abc123", path=name, page=1, snippet="total\x1b[31m 42\x9b", kind="linked", linked_to="def456", why="stem\x1b[0m")
    a = Answer(question="q", answer="42 [1]", mode="extractive", claims=[Claim(text="total 42", citations=[c])], citations=[c])
    md = to_markdown(a)
    assert not any(ch in md for ch in ("\x1b", "\x07", "\x9b", "\u202e"))
    assert "| /data/a\\x1b[2J\\x1b]8;;http://evil\\x07x\\u202egnp.png |" in md
    assert "total\\x1b[31m 42\\x9b" in md and "linked (stem\\x1b[0m)" in md


def _png() -> bytes:
    img = Image.new("RGB", (600, 120), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((20, 20, 580, 100), fill=(200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (apt-get install poppler-utils)")
@pytest.mark.parametrize("with_font", [True, False])
def test_pdf_report_embeds_crops(tmp_path: Path, with_font: bool) -> None:
    font = find_cjk_font() if with_font else None
    if with_font and font is None:
        pytest.skip("no CJK font on this machine")
    pdf = tmp_path / "r.pdf"
    if with_font:
        notes = write_pdf(_answer(), pdf, {1: _png()}, font)
        assert notes == []
    else:
        import imgrag.agent.report as report

        orig = report.find_cjk_font
        report.find_cjk_font = lambda: None  # type: ignore[assignment]
        try:
            notes = write_pdf(_answer(), pdf, {1: _png()})
        finally:
            report.find_cjk_font = orig  # type: ignore[assignment]
        assert notes and "No CJK font" in notes[0]
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert len(listing.strip().splitlines()) >= 3  # header, rule, one image
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")], check=True)
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")).astype(int)
    red = (page[..., 0] > 150) & (page[..., 1] < 90) & (page[..., 2] < 90)
    assert red.sum() > 200, "the crop is not visible on the rendered page"


def test_unreachable_llm_endpoint_is_one_clear_error() -> None:
    import asyncio
    import socket

    from imgrag.agent.llm import LLMClient
    from imgrag.indexing.errors import ImgragError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes

    async def go() -> None:
        llm = LLMClient(LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=5))
        try:
            await llm.chat([{"role": "user", "content": "hi"}])
        finally:
            await llm.close()

    with pytest.raises(ImgragError, match="cannot reach the LLM endpoint"):
        asyncio.run(go())


def test_eval_answers_llm_mode_reads_the_llm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgrag.evals.answers import ItemScore, summarise
    from imgrag.evals.runner import llm_config
    from imgrag.indexing.config import get_settings
    from imgrag.indexing.errors import ImgragError

    for var in ("IMGRAG_LLM_BASE_URL", "OPENAI_BASE_URL", "IMGRAG_LLM_MODEL", "IMGRAG_LLM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("IMGRAG_HOME", "/nonexistent-imgrag-home")
    get_settings.cache_clear()
    try:
        assert llm_config("extractive") is None
        with pytest.raises(ImgragError, match="needs an LLM endpoint"):
            llm_config("both")
        with pytest.raises(ImgragError, match="unknown --mode"):
            llm_config("gpt")
        monkeypatch.setenv("IMGRAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
        get_settings.cache_clear()
        assert llm_config("llm").base_url == "http://127.0.0.1:9/v1"
        monkeypatch.setenv("IMGRAG_LLM", "off")
        get_settings.cache_clear()
        with pytest.raises(ImgragError, match="IMGRAG_LLM=off"):
            llm_config("llm")
    finally:
        get_settings.cache_clear()
    # The LLM-mode columns: which answers are the LLM's own, and how many calls they took.
    m = summarise([ItemScore(id="a", source="llm", llm_calls=3), ItemScore(id="b", source="extractive", llm_calls=5)])
    assert m["llm_answered"] == 0.5 and m["llm_calls_per_question"] == 4.0
    assert summarise([ItemScore(id="c", source="extractive")])["llm_answered"] is None
