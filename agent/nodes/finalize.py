"""*finalize*: the answer text with numbered citations, the kept claims and what was checked."""

from __future__ import annotations

from typing import Any

from imgrag.indexing.text import query_terms, tokens

from ..schemas import Answer, Checks, Citation, Claim
from ..state import AgentState, Deps, Note, log


def summary_supported(summary: str, claims: list[Claim], question: str) -> bool:
    """Whether an LLM's free-text summary says nothing beyond its verified claims and the question."""
    terms = [t for t in query_terms(summary) if len(t) > 1 or not t.isascii()]
    if not terms:
        return False
    known = set(tokens(" ".join([question, *(c.text for c in claims), *(x.snippet for c in claims for x in c.citations)])))
    return sum(t in known for t in terms) / len(terms) >= 0.8


async def finalize(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    plan = state["plan"]
    checks = state.get("checks", Checks()).model_copy(deep=True)
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
    if deps.llm is not None and not state.get("fallback"):
        # The LLM's summary is shown only when its words are backed by the verified claims.
        if head and kept and summary_supported(head, kept, state["question"]):
            text = head + "\n" + "\n".join(lines)
        else:
            if head:
                checks.notes.append("the LLM's summary sentence was left out: it is not backed by the verified claims")
                note(f"summary {head[:60]!r} not backed by verified claims; showing the claims only")
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
        checks.passed = False
        checks.notes.append("no claim passed the self-check")
    if state.get("fallback"):
        checks.notes.append("the LLM answer was unusable; the extractive answerer was used")
    for tool, dropped_args in deps.tools.dropped_args.items():
        checks.notes.append(f"{tool} does not accept {dropped_args}; left out")
    note(f"{len(kept)} claim(s), {len(citations)} citation(s), {len(dropped)} dropped")
    result = Answer(
        question=state["question"],
        answer=text.strip(),
        mode=deps.mode,
        claims=kept,
        citations=citations,
        checks=checks,
        usage=deps.tools.usage,
        timings_ms={},
    )
    return {"result": result, "checks": checks}
