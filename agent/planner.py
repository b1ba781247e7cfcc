"""Turning a question into sub-questions with search queries and filters.

The rule-based planner is the default and the safety net of the LLM planner: it splits on
conjunctions (和 / 及 / 以及 / 并且 / ； / and / also), turns dates and years into date filters
("2023年签订的合同" → 2023-01-01..2023-12-31), pulls out entities (company names, quoted strings,
contract numbers) and guesses what kind of answer each part wants (a date, a party, an amount, a
place), which the extractive answerer uses to pick evidence lines. The LLM planner may rephrase and
decompose, but its output is validated, anchored to the question's own words, and merged with the
rule-extracted filters, so a weak model cannot make the search worse than the rules alone.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from imgrag.indexing.text import CJK, find_dates, normalize, query_terms, squash

from .schemas import LLMPlan

if TYPE_CHECKING:
    from .llm import LLMClient

Intent = Literal["date", "party", "amount", "seal", "section", "location", "remedy", "general"]


class SubQuestion(BaseModel):
    """One part of the question: what to search for and what kind of line answers it."""

    question: str
    queries: list[str] = Field(default_factory=list)
    intent: Intent = "general"
    key_terms: list[str] = Field(default_factory=list, description="words an answering line should contain")
    entities: list[str] = Field(default_factory=list, description="names that pick out the right document")
    filters: dict[str, Any] = Field(default_factory=dict, description="search_images filters (JSON)")
    context_from: int | None = Field(
        default=None,
        description="index of an earlier part whose subject this part inherits (\"When was the supply agreement "
        "signed and who is Party B?\": part 2 asks about the same agreement): answer it from the same document",
    )


class Plan(BaseModel):
    question: str
    rewritten: str
    lang: Literal["zh", "en"]
    sub_questions: list[SubQuestion]
    filters: dict[str, Any] = Field(default_factory=dict, description="filters found in the question itself")
    source: Literal["rules", "llm"] = "rules"
    notes: list[str] = Field(default_factory=list)


# -- dates ----------------------------------------------------------------------------------
_BEFORE = re.compile(r"(before|prior to|earlier than|until|之前|以前|前)", re.I)
_AFTER = re.compile(r"(after|since|later than|from|之后|以后|后|起|以来)", re.I)


def extract_dates(text: str) -> tuple[dict[str, str], str]:
    """Date/year mentions → ``{"date_from", "date_to"}`` (ISO) and the text without them.

    "2023年" → the whole year; "2023年5月" → that month; a full date → that day; "before/之前"
    and "after/since/之后" open the range on one side; two mentions give the range between them.
    """
    found: list[tuple[int, int, date, date]] = []
    for s in find_dates(text, question=True):
        # "2023年度" (fiscal year 2023): the 度 goes with the year, not into the search text
        end = s.end + 1 if s.precision == "year" and text[s.end : s.end + 1] == "度" else s.end
        found.append((s.start, end, s.date, s.last))
    if not found:
        return {}, text
    lo, hi = min(f[2] for f in found), max(f[3] for f in found)
    filters: dict[str, str] = {}
    if len(found) == 1:
        start, end = found[0][0], found[0][1]
        before = text[max(0, start - 14) : start] + " " + text[end : end + 4]
        if _BEFORE.search(before) and not _AFTER.search(text[max(0, start - 14) : start]):
            filters["date_to"] = (lo - timedelta(days=1)).isoformat()
        elif _AFTER.search(before):
            filters["date_from"] = (hi + timedelta(days=1) if "后" in text[end : end + 3] or "after" in before.lower() else lo).isoformat()
        else:
            filters["date_from"], filters["date_to"] = lo.isoformat(), hi.isoformat()
    else:
        filters["date_from"], filters["date_to"] = lo.isoformat(), hi.isoformat()
    # Remove the mentions and the range words around them from the search text.
    out, last = [], 0
    for start, end, _, _ in found:
        gap = text[last:start]
        if last and re.fullmatch(r"\s*(and|to|through|until|-|–|~|至|到|和)\s*", gap, flags=re.I):
            gap = " "  # "between 2021 and 2023", "2021年至2023年"
        out.append(gap)
        last = end
    out.append(text[last:])
    rest = "".join(out)
    rest = re.sub(
        r"\b(in|on|during|before|after|since|between|from|until|prior to|dated)\s*(?=\s|$|[,.?])", " ", rest, flags=re.I
    )
    rest = re.sub(r"(之前|以前|之后|以后|以来|至|到|期间)", " ", rest)
    rest = re.sub(r"\s+", " ", rest).strip(" ,，的")
    return filters, rest or text


# -- entities --------------------------------------------------------------------------------
_QUOTED = re.compile(r"[\"“「『']([^\"”」』']{2,80})[\"”」』']")
_ZH_ORG = re.compile(
    rf"[{CJK}A-Za-z0-9（）()]{{2,24}}?(?:股份有限公司|有限责任公司|有限公司|集团公司|集团|公司|银行|大学|医院|研究院|研究所|事务所|工作室)"
)
# ASCII word edges, not \b: in "与Redwood Media Inc.签订" or "合同HT-2023-001的" the name touches CJK
# characters, which \b counts as word characters.
_EN_ORG = re.compile(
    r"(?<![A-Za-z0-9])(?:[A-Z][A-Za-z0-9&'.-]*\s+){1,5}(?:Inc|LLC|Ltd|Limited|Corporation|Corp|Co|Company|Group|GmbH|PLC|LLP|Holdings|Partners)(?![A-Za-z0-9])\.?"
    r"(?:,?\s*(?:Ltd|Limited|Inc|LLC)(?![A-Za-z0-9])\.?)?"
)
_CODE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,8}[-_/]?\d{2,}(?:[-_/][A-Z0-9]+)*(?![A-Za-z0-9])")
_ZH_ORG_PREFIX = re.compile(r"^(请问|关于|查询|查找|找到|找出|与|和|跟|同|及|给|对|由|在|是)+")
_EN_ORG_PREFIX = re.compile(r"^(?:(?:The|With|And|Between|For|From|By|Of|Is|Who|What|When|Where|Which)\s+)+")


def extract_entities(text: str) -> list[str]:
    """Names that single out a document: quoted strings, company names, contract numbers."""
    out: list[str] = []
    for m in _QUOTED.finditer(text):
        out.append(m.group(1).strip())
    for m in _ZH_ORG.finditer(text):
        name = _ZH_ORG_PREFIX.sub("", m.group(0))
        if len(name) >= 4:
            out.append(name)
    for m in _EN_ORG.finditer(text):
        name = _EN_ORG_PREFIX.sub("", m.group(0).strip())
        if len(name.split()) >= 2:
            out.append(name.rstrip("."))
    for m in _CODE.finditer(text):
        if not re.fullmatch(r"(19|20)\d{2}", m.group(0)):
            out.append(m.group(0))
    return list(dict.fromkeys(e for e in out if e))


# -- intents and key terms ---------------------------------------------------------------------
_INTENT_RULES: list[tuple[Intent, re.Pattern[str]]] = [
    # "Which section is “Console basics”?", "“…”是哪个表格": the answer is a heading's or caption's number.
    ("section", re.compile(
        r"(\b(?:which|what)\s+(?:section|chapter|table|figure)\b|\b(?:section|table|chapter)\s+number\b"
        r"|第几[节章]|哪[一个]?[节章]|哪个表格?|哪张表|哪一个表|表格编号|章节号)", re.I)),
    ("date", re.compile(r"(日期|时间|何时|什么时候|哪天|哪一天|几月|哪年|签订于|签署于|\bwhen\b|\bdate\b|\bdated\b|\bwhat day\b)", re.I)),
    # Where a seal or stamp is: answered from the seal detector's boxes (get_metadata), not from OCR.
    ("seal", re.compile(r"(印章|盖章|公章|签章|合同章|用章|\bseals?\b|\bstamps?\b|\bstamped\b|\bchop\b)", re.I)),
    ("party", re.compile(r"(甲方|乙方|丙方|是谁|谁|委托方|受托方|买方|卖方|出租方|承租方|\bwho\b|\bparty\b|\bbuyer\b|\bseller\b|\bclient\b|\bcontractor\b|\bvendor\b|\bsupplier\b)", re.I)),
    ("amount", re.compile(r"(金额|多少钱|价款|价格|总价|费用|合同价|大写|\bamount\b|\bprice\b|how much|\bcost\b|\bfee\b|\btotal\b|\bsum\b|\bvalue\b)", re.I)),
    ("location", re.compile(r"(在哪|哪里|位置|印章|盖章|公章|\bwhere\b|\blocation\b|\bseal\b|\bstamp\b)", re.I)),
    # How a defect or fault is fixed ("which SOP step fixes the scratch", "裂纹怎么处理"): the answer is the
    # line that prescribes the action (REMEDY_LINE in agent/evidence.py), not the one naming the defect.
    ("remedy", re.compile(r"(\bfix(?:es|ing)?\b|\brepair(?:s|ed|ing)?\b|\brework(?:ed)?\b|\bremed(?:y|ies)\b|\bcorrective\b"
                          r"|怎么处理|如何处理|怎样处理|怎么修|如何修|修复|返工|返修|整改|纠正|处置|补救)", re.I)),
]
_ZH_QWORDS = re.compile(r"(请问|请|分别|怎么|怎样|如何|用什么|应该|是谁|是什么|是多少|是哪[一]?[天年月个家]?|在哪里|在哪儿|在哪|哪里|什么时候|何时|多少钱|多少|什么|哪些|哪个|哪家|吗|呢|吧|是否|有没有|告诉我|一下)")
_EN_QWORDS = frozenset(
    "who whom whose what when where which how much many is are was were did does do please tell me find show i my can should "
    "give list the a an of in on for to by with and also this that it its their there".split()
)
_ROLE_EN = re.compile(r"\bparty\s+[a-c]\b", re.I)
_EXPANSIONS: dict[Intent, dict[str, str]] = {
    "date": {"zh": "签订日期", "en": "date signed"},
    "party": {"zh": "", "en": ""},
    "amount": {"zh": "金额", "en": "amount price"},
    "seal": {"zh": "", "en": ""},
    "section": {"zh": "", "en": ""},
    "location": {"zh": "", "en": ""},
    "remedy": {"zh": "", "en": ""},
    "general": {"zh": "", "en": ""},
}


def detect_lang(text: str) -> Literal["zh", "en"]:
    return "zh" if re.search(f"[{CJK}]", text) else "en"


_QUOTED_TITLE = re.compile(r"[\"“「『《]([^\"”」』》]{1,80})[\"”」』》]")


def detect_intent(text: str) -> Intent:
    """What kind of answer a part wants, judged on its words outside quotes (a quoted title such as
    “When to use sudo” names a heading, it does not ask for a date)."""
    bare = _QUOTED_TITLE.sub(" ", text)
    for intent, pat in _INTENT_RULES:
        m = pat.search(bare)
        if m and intent == "date" and m.group(0).lower() == "when" and _WHEN_CLAUSE.search(bare[: m.start()]):
            # "How do I get to the login prompt when I'm in the GUI?": a condition, not a date asked for.
            m = pat.search(bare, m.end())
        if m:
            return intent
    return "general"


# Words before a "when" that make it a clause of a question already asked ("How do I … when …").
_WHEN_CLAUSE = re.compile(r"\b(?:how|what|which|who|where|why|do|does|did|can|is|are|should)\b.*\S\s*$", re.I)


def strip_question_words(text: str) -> str:
    """The content of a question without its question words: what a matching line would contain."""
    t = _ZH_QWORDS.sub(" ", text)
    t = _ROLE_EN.sub(lambda m: re.sub(r"\s+", "\uE002", m.group(0)), t)  # "Party A" keeps its letter
    words = re.split(r"(\s+)", t)
    kept = [w for w in words if w.strip().lower().strip("?？,.，。!！") not in _EN_QWORDS]
    t = "".join(kept).replace("\uE002", " ")
    t = re.sub(r"[?？!！。，,;；:：]+", " ", t)
    t = re.sub(r"的|^其", " ", t.strip())
    return re.sub(r"\s+", " ", t).strip(" 的")


def key_terms(text: str, entities: list[str]) -> list[str]:
    """Query terms of the question's content, minus entity words (they pick the document, not the line)."""
    content = strip_question_words(text)
    for e in entities:
        content = content.replace(e, " ")
    terms = query_terms(content)
    phrase = re.findall(r"\bparty\s+[a-c]\b", normalize(content))
    return list(dict.fromkeys([*phrase, *terms]))


# -- splitting -----------------------------------------------------------------------------------
_PROTECT_ZH = ("及时", "涉及", "普及", "及格", "和平", "总和", "和解", "温和", "和谐", "共和", "和约", "以及时")
_SPLIT_ZH = re.compile(r"以及|并且|而且|还有|同时|和|及|；|;")
_SPLIT_EN = re.compile(r"\s*;\s*|,?\s+\band also\b\s+|,?\s+\balso\b\s+|,?\s+\band\b\s+", re.I)
_ZH_Q_TAIL = re.compile(r"(分别)?(是谁|是什么|是多少|是哪.*|在哪.*|什么时候.*|何时.*|多少.*|有哪些.*)$")
_ZH_ROLE = re.compile(r"^(甲方|乙方|丙方|买方|卖方|委托方|受托方|出租方|承租方)")
_EN_LEAD = re.compile(r"^((?:who|what|when|where|which|how\s+much|how\s+many)\s+(?:is|are|was|were|did|does|do|'s)?)\s*", re.I)
_HAS_Q = re.compile(r"(谁|什么|多少|哪|何|吗|日期|时间|金额|地址|\bwho\b|\bwhat\b|\bwhen\b|\bwhere\b|\bwhich\b|\bhow\b)", re.I)


def _protect(text: str, keep: list[str]) -> tuple[str, dict[str, str]]:
    table: dict[str, str] = {}
    for i, word in enumerate(sorted(set(keep), key=len, reverse=True)):
        if word and word in text:
            token = f"\uE000{i}\uE001"
            table[token] = word
            text = text.replace(word, token)
    return text, table


def _restore(text: str, table: dict[str, str]) -> str:
    for token, word in table.items():
        text = text.replace(token, word)
    return text


def split_question(text: str, entities: list[str] | None = None) -> list[str]:
    """Split on conjunctions, keeping entity names and fixed words whole; a fragment without a
    predicate borrows it ("甲方和乙方分别是谁" → 甲方分别是谁 / 乙方分别是谁, "who are Party A and
    Party B" → who are Party A / who are Party B)."""
    protected, table = _protect(text, [*(entities or []), *_PROTECT_ZH])
    lang = detect_lang(text)
    parts = [p.strip(" ,，。?？") for p in (_SPLIT_ZH if lang == "zh" else _SPLIT_EN).split(protected)]
    if lang == "zh":
        # English conjunctions can still appear in mixed questions.
        parts = [q.strip(" ,，。?？") for p in parts for q in _SPLIT_EN.split(p)]
    parts = [re.sub(r"^(?:also|and|then)\s+", "", p, flags=re.I) for p in parts]
    parts = [p for p in parts if re.search(rf"[{CJK}A-Za-z0-9\uE000]", p)]
    if len(parts) <= 1:
        return [text.strip()]
    if lang == "zh":
        last = parts[-1]
        tail = ""
        role = _ZH_ROLE.match(last)
        if role:
            tail = last[role.end() :]
        else:
            m = _ZH_Q_TAIL.search(last)
            tail = m.group(0) if m else ""
        parts = [
            p + tail
            if tail and not _HAS_Q.search(p) and (len(p) <= 4 or _ZH_ROLE.fullmatch(p) or "\uE000" in p)
            else p
            for p in parts
        ]
    else:
        lead = _EN_LEAD.match(parts[0])
        prefix = lead.group(1) if lead else ""
        if not prefix and any(not _HAS_Q.search(p) for p in parts[1:]):
            # "Members of which group may add, modify and remove printers?": a list inside one
            # question, not two questions.
            return [text.strip()]
        if prefix and len(parts[0].split()) > 6 and any(not _HAS_Q.search(p) and len(p.split()) <= 3 for p in parts[1:]):
            # "What should I use instead of sudo to give access to limited devices and files?": two
            # nouns of one long question, not "What files?".
            return [text.strip()]
        parts = [p if (_HAS_Q.search(p) or not prefix) else f"{prefix} {p}" for p in parts]
    return [_restore(p, table) for p in parts]


def clean_question(text: str) -> str:
    """A light rewrite: full-width forms normalised (NFKC keeps CJK), polite openers and trailing
    punctuation dropped."""
    t = re.sub(r"\s+", " ", text).strip()
    t = re.sub(r"^(请问|请帮我|帮我|麻烦|please\s+(?:tell me\s+)?|can you tell me\s+|could you tell me\s+)", "", t, flags=re.I)
    return t.strip(" ?？。.!！")


def _queries_for(sub: str, intent: Intent, lang: Literal["zh", "en"], entities: list[str]) -> list[str]:
    content = strip_question_words(sub) or sub
    queries = [content]
    have = normalize(content)
    extra = " ".join(w for w in _EXPANSIONS[intent][lang].split() if w not in have)
    if extra:
        queries.append(f"{content} {extra}".strip())
    bare = re.sub(r"\W", "", content.lower())
    if entities and not any(re.sub(r"\W", "", e.lower()) in bare for e in entities):
        queries.append(" ".join(entities) + " " + content)
    return list(dict.fromkeys(q for q in queries if q.strip()))[:3]


_DOC_NOUN_EN = (
    r"(?:agreement|contract|lease|invoice|purchase\s+order|order|receipt|report|letter|memorandum|memo|policy|"
    r"certificate|statement|quotation|document|form)s?"
)
_SUBJECT_EN = re.compile(rf"\b(?:the|this|that|our|my|your)\s+(?:[A-Za-z][\w-]*\s+){{0,3}}?{_DOC_NOUN_EN}\b", re.I)
_SUBJECT_ZH = re.compile(rf"(?:(?!的|和|与|及|跟|同)[{CJK}A-Za-z0-9]){{0,8}}?(?:合同书|合同|协议书|协议|订单|发票|收据|报告|证书|函)")


def subject_of(text: str) -> str:
    """The document a part is about, in its own words ("the supply agreement", "采购合同"), or "".
    Question words are left out, so "哪份合同" gives the bare "合同"."""
    m = _SUBJECT_EN.search(text)
    if m:
        return m.group(0).strip()
    m = _SUBJECT_ZH.search(_ZH_QWORDS.sub(" ", text))
    return m.group(0).strip() if m else ""


_GENERIC = re.compile(rf"^(?:(?:the|this|that|our|my|your)\s+)?{_DOC_NOUN_EN}$|^(?:该|本|此|这份|这个|那份)?(?:合同书|合同|协议书|协议)$", re.I)


def document_name(subject: str) -> str:
    """The name a specific subject gives its document, without the determiner ("the supply
    agreement" → "supply agreement", "采购合同" as is); "" for a generic one ("the contract")."""
    if _generic(subject):
        return ""
    return re.sub(r"^(?:the|this|that|our|my|your)\s+", "", subject, flags=re.I).strip()


def _generic(subject: str) -> bool:
    """No subject, or one that names no particular document ("the contract", "合同")."""
    return not subject or bool(_GENERIC.match(subject))


def _with_subject(part: str, subject: str, lang: Literal["zh", "en"]) -> str:
    """``part`` asked about ``subject``: "who is Party B" → "who is Party B of the supply agreement",
    "乙方是谁" → "采购合同的乙方是谁"."""
    if lang == "zh" and detect_lang(subject) == "zh":
        return f"{subject}的{part}"
    return f"{part} of {subject}"


def rule_plan(question: str, base_filters: dict[str, Any] | None = None) -> Plan:
    """Split, extract dates/entities and build queries without any model."""
    q = clean_question(question) or question.strip()
    lang = detect_lang(q)
    date_filters, without_dates = extract_dates(q)
    entities = extract_entities(without_dates)
    base = dict(base_filters or {})
    # The user's --filter wins over what the question implies; a date filter replaces ours whole.
    filters = {} if ("date_from" in base or "date_to" in base) else dict(date_filters)
    filters.update(base)
    notes = [f"date filter from the question: {date_filters}"] if date_filters else []
    subs: list[SubQuestion] = []
    anchor: tuple[int, str] | None = None  # the first part that names its document, and how
    parts = split_question(without_dates, entities)
    named = ""
    if len(parts) > 1 and not entities:
        # A document named anywhere in the question ("Who is Party B of the supply agreement and
        # when was it signed?") picks the pages of every part, whatever the word order: its name
        # is an entity of each.
        named = next((d for d in (document_name(subject_of(p)) for p in parts) if d), "")
        if named:
            entities = [named]
            notes.append(f"the question is about {named!r}: every part is answered from pages naming it")
    for part in parts:
        own = [e for e in entities if e in part]
        subject = subject_of(part)
        # Entities named once apply to every part ("X公司的甲方和签订日期").
        ents = own or entities
        intent = detect_intent(part)
        asked, context_from = part, None
        if named:
            own = [e for e in own if e != named]  # the subject's name: the part still says it in words
        if anchor is not None and not own and _generic(subject):
            # A later part without a subject of its own asks about the earlier part's document
            # ("When was the supply agreement signed and who is Party B?"): say so in its search
            # text, and let the answerer keep it to the document that part was answered from.
            context_from = anchor[0]
            if anchor[1]:
                asked = _with_subject(part, anchor[1], lang)
                notes.append(f"part {len(subs) + 1} {part!r} asks about {anchor[1]!r} (from part {anchor[0] + 1})")
            else:
                notes.append(f"part {len(subs) + 1} {part!r} asks about the document of part {anchor[0] + 1}")
        elif anchor is None and (own or subject):
            anchor = (len(subs), "" if own or _generic(subject) else subject)
        subs.append(
            SubQuestion(
                question=asked,
                queries=_queries_for(asked, intent, lang, ents),
                intent=intent,
                key_terms=key_terms(part, ents),
                entities=ents,
                filters=dict(filters),
                context_from=context_from,
            )
        )
    return Plan(question=question, rewritten=without_dates, lang=lang, sub_questions=subs, filters=filters, notes=notes)


# -- LLM planner ---------------------------------------------------------------------------------
_PLAN_SYSTEM = (
    "You plan searches over a collection of scanned documents and images. Split the user's question into "
    "at most 4 independent sub-questions and give 1-2 short keyword search queries for each, in the "
    "question's language. Keep names, numbers and dates exactly as written. Reply with JSON only."
)


def _anchored(text: str, question_terms: set[str], share: float = 0.6) -> bool:
    """Most of ``text``'s terms come from the question: a rephrasing, not a new topic."""
    terms = set(query_terms(text))
    return bool(terms) and len(terms & question_terms) / len(terms) >= share


async def llm_plan(question: str, llm: LLMClient, base_filters: dict[str, Any] | None = None) -> Plan:
    """Ask the LLM to decompose; keep only sub-questions and queries that share words with the
    question, derive intent/entities/filters by rule, and fall back to the rule plan if nothing
    usable comes back."""
    rules = rule_plan(question, base_filters)
    messages = [
        {"role": "system", "content": _PLAN_SYSTEM},
        {"role": "user", "content": f"Question: {rules.rewritten}"},
    ]
    try:
        out = await llm.structured(messages, LLMPlan, purpose="plan")
    except Exception as e:  # an unusable plan is not an error: the rules still work
        rules.notes.append(f"LLM plan unusable ({type(e).__name__}: {str(e)[:120]}); using the rule plan")
        return rules
    anchor = set(query_terms(question))
    subs: list[SubQuestion] = []
    seen: set[str] = set()
    for s in out.sub_questions:
        text = clean_question(s.question)
        key = squash(text).strip("?？.。")
        if not text or not _anchored(text, anchor) or key in seen:
            continue
        seen.add(key)
        ents = [e for e in extract_entities(text)] or [e for sub in rules.sub_questions for e in sub.entities if e in text]
        ents = ents or [e for sub in rules.sub_questions for e in sub.entities]
        intent = detect_intent(text)
        queries = [q.strip() for q in s.queries if q.strip() and _anchored(q, anchor, 0.8)]
        queries = list(dict.fromkeys(_queries_for(text, intent, rules.lang, ents) + queries))[:3]
        subs.append(
            SubQuestion(
                question=text,
                queries=queries,
                intent=intent,
                key_terms=key_terms(text, ents),
                entities=list(dict.fromkeys(ents)),
                filters=dict(rules.filters),
            )
        )
    if not subs:
        rules.notes.append("LLM plan had no sub-question anchored in the question; using the rule plan")
        return rules
    # Rule-split parts the LLM dropped are kept: decomposition may only add, never lose, a part.
    covered = {normalize(s.question) for s in subs}
    for r in rules.sub_questions:
        if not any(set(r.key_terms) <= set(key_terms(s.question, s.entities)) for s in subs) and normalize(r.question) not in covered:
            subs.append(r)
    return Plan(
        question=question,
        rewritten=rules.rewritten,
        lang=rules.lang,
        sub_questions=subs[:4],
        filters=rules.filters,
        source="llm",
        notes=rules.notes,
    )
