"""*plan*: split the question so each part gets its own search, and turn a year in it into a date
filter instead of noise in the query (the LLM's plan when one is configured, else the rule plan)."""

from __future__ import annotations

from typing import Any

from ..planner import llm_plan, rule_plan
from ..state import AgentState, Deps, Note, log


async def plan(state: AgentState, deps: Deps, note: Note = log.debug) -> dict[str, Any]:
    q = state["question"]
    if deps.llm is not None:
        made = await llm_plan(q, deps.llm, deps.config.filters)
    else:
        made = rule_plan(q, deps.config.filters)
    note(f"planner: {made.source} · language {made.lang} · filters {made.filters or 'none'}")
    for n in made.notes:
        note(n)
    for i, s in enumerate(made.sub_questions, 1):
        ents = f" entities={s.entities}" if s.entities else ""
        note(f"sub-question {i}: {s.question!r} [{s.intent}] queries={s.queries}{ents}")
    return {"plan": made, "hits": {}, "evidence": {}, "feedback": [], "failed_subs": list(range(len(made.sub_questions)))}
